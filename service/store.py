"""Reading and writing the model store: `<store>/<name>/{config.pbtxt, model.json, labels.txt, <v>/model.onnx}`.

`config.pbtxt` is NVIDIA Triton's model configuration (platform onnxruntime_onnx), so Triton can serve the
same folder. We write the subset we use and parse it back with a small reader for protobuf text format.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from service.manifest import CONFIG_FILE, MANIFEST_FILE, Manifest

DEFAULT_MAX_QUEUE_DELAY_US = 500


@dataclass(frozen=True)
class BatchingConfig:
    max_batch_size: int
    max_queue_delay_us: int = DEFAULT_MAX_QUEUE_DELAY_US


def render_config_pbtxt(manifest: Manifest, max_queue_delay_us: int = DEFAULT_MAX_QUEUE_DELAY_US) -> str:
    """Triton model configuration for one store entry. Dims exclude the batch axis (max_batch_size > 0)."""

    def tensor(spec) -> str:
        dims = ", ".join(str(d) for d in spec.shape[1:])
        return f'  {{\n    name: "{spec.name}"\n    data_type: TYPE_{spec.datatype}\n    dims: [ {dims} ]\n  }}'

    return (
        f'name: "{manifest.name}"\n'
        'platform: "onnxruntime_onnx"\n'
        f"max_batch_size: {manifest.max_batch_size}\n"
        f"input [\n{tensor(manifest.input)}\n]\n"
        f"output [\n{tensor(manifest.output)}\n]\n"
        "dynamic_batching {\n"
        f"  max_queue_delay_microseconds: {max_queue_delay_us}\n"
        "}\n"
        "version_policy: { latest: { num_versions: 1 } }\n"
    )


_TOKEN = re.compile(r'\s*(?:(#[^\n]*)|("(?:[^"\\]|\\.)*")|([{}\[\]:,])|([^\s{}\[\]:,"#]+))')


def parse_pbtxt(text: str) -> dict:
    """Parse protobuf text format into nested dicts; repeated fields become lists."""
    tokens = [m.group(2) or m.group(3) or m.group(4) for m in _TOKEN.finditer(text) if not m.group(1)]
    tokens = [t for t in tokens if t]
    pos = 0

    def scalar(tok: str):
        if tok.startswith('"'):
            # C-style escapes resolved to bytes (\303\251 as well as raw UTF-8), then the bytes read as UTF-8
            return tok[1:-1].encode().decode("unicode_escape").encode("latin-1").decode("utf-8", "replace")
        for cast in (int, float):
            try:
                return cast(tok)
            except ValueError:
                pass
        return {"true": True, "false": False}.get(tok, tok)

    def value():
        nonlocal pos
        tok = tokens[pos]
        pos += 1
        if tok == "{":
            return message("}")
        if tok == "[":
            items = []
            while tokens[pos] != "]":
                if tokens[pos] == ",":
                    pos += 1
                    continue
                items.append(value())
            pos += 1
            return items
        return scalar(tok)

    def message(end: str | None) -> dict:
        nonlocal pos
        out: dict = {}
        while pos < len(tokens) and tokens[pos] != end:
            key = tokens[pos]
            pos += 1
            if tokens[pos] == ":":
                pos += 1
            val = value()
            if key in out:
                prev = out[key]
                out[key] = (prev if isinstance(prev, list) else [prev]) + (val if isinstance(val, list) else [val])
            else:
                out[key] = val
            if pos < len(tokens) and tokens[pos] in (",", ";"):
                pos += 1
        pos += 1
        return out

    return message(None)


def read_batching_config(model_dir: Path) -> BatchingConfig:
    cfg = parse_pbtxt((model_dir / CONFIG_FILE).read_text())
    delay = cfg.get("dynamic_batching", {}).get("max_queue_delay_microseconds", DEFAULT_MAX_QUEUE_DELAY_US)
    return BatchingConfig(max_batch_size=int(cfg.get("max_batch_size", 1)), max_queue_delay_us=int(delay))


def list_store(store: Path) -> list[str]:
    """Names of the complete entries of a store (folders holding a manifest), sorted."""
    if not store.is_dir():
        return []
    return sorted(p.name for p in store.iterdir() if (p / MANIFEST_FILE).is_file() and not p.name.startswith("."))


def read_labels(model_dir: Path, manifest: Manifest) -> list[str]:
    return (model_dir / manifest.labels_file).read_text().splitlines()
