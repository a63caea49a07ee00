"""Where a model's weights come from: a seeded random init, training, torchvision, timm or a local file.

Published weights bring their own preprocessing (resize, crop, mean, std) and ImageNet labels; the
manifest then records those, not the spec's defaults.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from export.zoo.registry import ModelSpec
from service.manifest import Preprocessing, Weights

SOURCES = ("default", "random", "trained", "torchvision", "timm")
CACHE_DIR = Path(".cache") / "weights"


class WeightsError(RuntimeError):
    """The requested weights cannot be had or do not fit the model."""


@dataclass
class Loaded:
    model: nn.Module
    weights: Weights
    preprocessing: Preprocessing
    metrics: dict[str, float]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def resolve_source(spec: ModelSpec, source: str) -> str:
    return spec.default_weights if source == "default" else source


def load(spec: ModelSpec, source: str, seed: int, log=print) -> Loaded:
    """Build `spec`'s module with weights from `source` (a name in SOURCES or a checkpoint path)."""
    source = resolve_source(spec, source)
    torch.manual_seed(seed)
    model = spec.build()
    pre, metrics = spec.preprocessing, {}
    if source == "random":
        info = Weights(source="random", seed=seed)
    elif source == "trained":
        info, metrics = _trained(spec, model, seed, log)
    elif source == "torchvision":
        info, pre = _torchvision(spec, model)
    elif source == "timm":
        info, pre = _timm(spec, model)
    else:
        path = Path(source)
        if not path.is_file():
            raise WeightsError(
                f"weights {source!r} are neither one of {', '.join(SOURCES[1:])} nor an existing checkpoint file"
            )
        state = torch.load(path, map_location="cpu", weights_only=True)
        for key in ("state_dict", "model"):
            if isinstance(state, dict) and isinstance(state.get(key), dict):
                state = state[key]
        _load_state(model, state, str(path))
        info = Weights(source="file", name=str(path.resolve()), sha256=sha256_file(path))
    return Loaded(model=model.eval(), weights=info, preprocessing=pre, metrics=metrics)


def _load_state(model: nn.Module, state: dict, what: str) -> None:
    """Load strictly, except that keys of auxiliary training heads (absent from the served graph) are dropped."""
    own = model.state_dict()
    extra = [k for k in state if k not in own]
    unexpected = [k for k in extra if "aux" not in k.lower()]
    missing = [k for k in own if k not in state]
    if missing or unexpected:
        raise WeightsError(
            f"{what} does not fit the model: {len(missing)} missing keys (e.g. {missing[:3]}), "
            f"{len(unexpected)} unexpected keys (e.g. {unexpected[:3]})"
        )
    bad = [k for k in own if tuple(state[k].shape) != tuple(own[k].shape)]
    if bad:
        raise WeightsError(f"{what}: shape mismatch for {bad[:3]}")
    model.load_state_dict({k: state[k] for k in own})


def _published(spec: ModelSpec, library: str) -> str:
    try:
        return spec.pretrained[library]
    except KeyError:
        have = ", ".join(spec.pretrained) or "none"
        raise WeightsError(f"{spec.name} has no published {library} weights (available: {have})") from None


def _torchvision(spec: ModelSpec, model: nn.Module) -> tuple[Weights, Preprocessing]:
    from torchvision.models import get_weight

    name = _published(spec, "torchvision")
    weights = get_weight(name)
    try:
        state = weights.get_state_dict(progress=True, check_hash=True)
    except Exception as exc:  # network errors come in many types
        raise WeightsError(f"cannot download torchvision weights {name}: {exc}") from exc
    _load_state(model, state, name)
    if getattr(model, "transform_input", None) is False:
        # GoogLeNet / Inception-v3 weights were trained on inputs in [-1, 1]; with transform_input the graph
        # maps the ImageNet-normalised input (the weights' own transforms) to that range itself.
        model.transform_input = True
    t = weights.transforms()
    crop, resize = int(t.crop_size[0]), int(t.resize_size[0])
    pre = spec.preprocessing.model_copy(
        update={"crop": crop, "resize": resize, "mean": list(t.mean), "std": list(t.std)}
    )
    return Weights(source="torchvision", name=name, sha256=_state_sha(state)), pre


def _timm(spec: ModelSpec, model: nn.Module) -> tuple[Weights, Preprocessing]:
    import timm

    name = _published(spec, "timm")
    try:
        reference = timm.create_model(name, pretrained=True)
    except Exception as exc:
        raise WeightsError(f"cannot download timm weights {name}: {exc}") from exc
    state = reference.state_dict()
    _load_state(model, state, name)
    cfg = timm.data.resolve_data_config({}, model=reference)
    crop = int(cfg["input_size"][-1])
    pre = spec.preprocessing.model_copy(
        update={
            "crop": crop,
            "resize": int(crop / cfg["crop_pct"]),
            "mean": list(cfg["mean"]),
            "std": list(cfg["std"]),
            "interpolation": cfg.get("interpolation", "bilinear"),
        }
    )
    return Weights(source="timm", name=name, sha256=_state_sha(state)), pre


def _state_sha(state: dict) -> str:
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _trained(spec: ModelSpec, model: nn.Module, seed: int, log) -> tuple[Weights, dict]:
    if spec.trainer is None:
        raise WeightsError(f"{spec.name} is not trained as part of its build (weights: random, a file, ...)")
    # Keyed by what shapes the trained weights: the architecture's code, the training code and the seed.
    import inspect

    from export import training

    h = hashlib.sha256(f"{spec.name}:{seed}".encode())
    for source in (inspect.getsourcefile(spec.builder), inspect.getsourcefile(training)):
        h.update(Path(source).read_bytes())
    cache = CACHE_DIR / f"{spec.name}-{h.hexdigest()[:16]}.pt"
    meta = cache.with_suffix(".json")
    if cache.is_file() and meta.is_file():
        model.load_state_dict(torch.load(cache, map_location="cpu", weights_only=True))
        metrics = json.loads(meta.read_text())
        log(f"    trained weights from cache {cache}")
    else:
        log(f"    training {spec.name} (seed {seed})")
        metrics = spec.trainer(model, seed)
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp")
        torch.save(model.state_dict(), tmp)
        tmp.replace(cache)
        meta.write_text(json.dumps(metrics))
    model.eval()
    return Weights(source="trained", seed=seed, name=str(cache), sha256=sha256_file(cache)), metrics
