"""`python -m service.profile MODEL --store DIR [options]`: per-layer timing in the terminal, no server needed.

Reads the store entry directly and runs the same profiler as POST /v2/models/{m}/profile.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from service.errors import ServingError
from service.manifest import MANIFEST_FILE, Manifest
from service.profile.profiler import Profiler, ProfileTarget, layer_table
from service.profile.schema import MAX_RUNS, MAX_WARMUP, ProfileRequest
from service.profile.table import render_table
from service.store import list_store, read_batching_config


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m service.profile",
        description="Where a model spends its time, layer by layer (onnxruntime, mapped to PyTorch modules).",
    )
    p.add_argument("model", help="model name (a folder of the store)")
    p.add_argument("--store", type=Path, default=Path("model_store"), help="model store folder (default: model_store)")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--runs", type=int, default=20, help=f"timed runs (at most {MAX_RUNS})")
    p.add_argument("--warmup", type=int, default=3, help=f"untimed runs first (at most {MAX_WARMUP})")
    p.add_argument("--group-by", choices=["layer", "block", "op_type", "node"], default="layer")
    p.add_argument("--depth", type=int, default=None, help="group_by=layer: module path components kept")
    p.add_argument("--provider", default=None, help="cpu, cuda, ... (default: cpu)")
    p.add_argument("--method", choices=["profiler", "prefix"], default=None,
                   help="default: profiler on CPU, prefix on GPU providers")  # fmt: skip
    p.add_argument("--sort", choices=["execution", "time"], default="execution")
    p.add_argument(
        "--format",
        choices=["table", "json", "chrome", "layers"],
        default="table",
        help="table (default), json (the HTTP response), chrome (trace JSON), layers (static table)",
    )
    p.add_argument("--output", "-o", type=Path, default=None, help="write to this file instead of stdout")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    entry = args.store / args.model
    if not (entry / MANIFEST_FILE).is_file():
        names = list_store(args.store)
        print(f"no model {args.model!r} in {args.store} (models: {', '.join(names) or 'none'})", file=sys.stderr)
        return 2
    manifest = Manifest.read(entry)
    try:
        max_batch = read_batching_config(entry).max_batch_size
    except OSError:
        max_batch = manifest.max_batch_size
    if args.format == "layers":
        text = layer_table(manifest).model_dump_json(indent=2)
    else:
        try:
            request = ProfileRequest(
                batch_size=args.batch_size, runs=args.runs, warmup=args.warmup, group_by=args.group_by,
                depth=args.depth, provider=args.provider, method=args.method,
            )  # fmt: skip
        except ValueError as exc:
            print(f"invalid options: {exc}", file=sys.stderr)
            return 2
        providers = ["CPUExecutionProvider"]  # --provider overrides it
        target = ProfileTarget(manifest.name, manifest.version, entry, manifest, providers, max_batch)
        profiler = Profiler()
        try:
            if args.format == "chrome":
                text = json.dumps(profiler.chrome_trace(target, request))
            else:
                response = profiler.profile(target, request, sort=args.sort)
                text = response.model_dump_json(indent=2) if args.format == "json" else render_table(response)
        except ServingError as exc:
            print(f"error: {exc.message}", file=sys.stderr)
            return 2
    if args.output:
        args.output.write_text(text + "\n")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
