"""`python -m export list [--json | --markdown [PATH]]` and `python -m export build NAME... | --all`."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path

DEFAULT_STORE = Path(os.environ.get("ZOOSERVE_STORE", "model_store"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p_list = sub.add_parser("list", help="list the registered architectures")
    fmt = p_list.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="one JSON object per model")
    fmt.add_argument(
        "--markdown", nargs="?", const="docs/zoo.md", metavar="PATH", help="write the zoo table (docs/zoo.md)"
    )
    p_list.add_argument("--readme", type=Path, metavar="PATH", help="with --markdown: also refresh README's model list")

    p_build = sub.add_parser("build", help="export models into the store")
    p_build.add_argument("names", nargs="*", metavar="NAME")
    p_build.add_argument("--all", action="store_true", help="every registered model")
    p_build.add_argument("--store", type=Path, default=DEFAULT_STORE, help=f"store folder (default {DEFAULT_STORE})")
    p_build.add_argument("--force", action="store_true", help="rebuild entries that are up to date")
    p_build.add_argument(
        "--weights",
        default="default",
        metavar="SRC",
        help="random | trained | torchvision | timm | PATH to a state_dict checkpoint "
        "(default: the model's own default, random with --seed, or trained)",
    )
    p_build.add_argument("--seed", type=int, default=0, help="seed for random weights and training")
    p_build.add_argument(
        "--jobs", "-j", type=int, default=1, metavar="N", help="build N models at once, one process and thread each"
    )

    args = parser.parse_args(argv)
    if args.command == "list":
        if args.readme and not args.markdown:
            parser.error("--readme goes with --markdown")
        return _list(args)
    # docker compose stop sends SIGTERM: exit through `finally`, so a build in this process removes its
    # temporary folder (what a killed worker leaves is removed by the next build of that model)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    return _build(args, parser)


def _list(args) -> int:
    from export.docs import model_rows, update_readme, zoo_markdown

    rows = model_rows()
    if args.json:
        for row in rows:
            print(json.dumps(row))
    elif args.markdown:
        readme = None
        if args.readme:  # checked before anything is written
            try:
                readme = update_readme(args.readme.read_text(), rows)
            except (OSError, ValueError) as exc:
                print(f"cannot refresh {args.readme}: {exc}", file=sys.stderr)
                return 2
        path = Path(args.markdown)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(zoo_markdown(rows))
        print(f"wrote {path} ({len(rows)} models)")
        if readme is not None:
            args.readme.write_text(readme)
            print(f"updated the model list in {args.readme}")
    else:
        print(f"{'name':32} {'family':26} {'input':>11} {'params':>10}  paper")
        for r in rows:
            print(
                f"{r['name']:32} {r['family']:26} {'x'.join(map(str, r['input'])):>11} "
                f"{r['params'] / 1e6:9.2f}M  {r['paper']} ({r['year']})"
            )
    return 0


def _report(prefix: str, r) -> None:
    if r.status == "failed":
        print(f"{prefix}: FAILED: {r.error}", flush=True)
    elif r.status == "skipped":
        print(f"{prefix}: up to date, skipped", flush=True)
    else:
        print(
            f"{prefix}: built in {r.seconds:.1f} s, parity {r.parity:.2g} <= {r.tolerance:.2g}, "
            f"{r.onnx_bytes / 1e6:.1f} MB",
            flush=True,
        )


def _build(args, parser) -> int:
    import torch

    from export.build import build
    from export.zoo import list_models
    from export.zoo.registry import UnknownModelError, get_spec

    if args.all == bool(args.names):
        parser.error("give model names or --all (not both)")
    names = list_models() if args.all else list(dict.fromkeys(args.names))
    unknown = []
    for n in names:
        try:
            get_spec(n)
        except UnknownModelError as exc:
            unknown.append(str(exc))
    if unknown:
        print("\n".join(unknown), file=sys.stderr)
        return 2

    results = []
    total_start = time.perf_counter()
    if args.jobs > 1:
        from concurrent.futures import as_completed

        from export.build import build_quietly, worker_pool

        print(f"building {len(names)} models, {args.jobs} at a time", flush=True)
        with worker_pool(args.jobs) as pool:
            futures = {pool.submit(build_quietly, n, args.store, args.weights, args.seed, args.force): n for n in names}
            for i, future in enumerate(as_completed(futures), 1):
                try:
                    r = future.result()
                except Exception as exc:  # the worker died (killed, out of memory): the pool is broken
                    from export.build import BuildResult

                    r = BuildResult(futures[future], "failed", error=f"{type(exc).__name__}: {exc}".strip())
                _report(f"[{i}/{len(names)}] {r.name}", r)
                results.append(r)
        order = {n: i for i, n in enumerate(names)}
        results.sort(key=lambda r: order[r.name])
    else:
        torch.set_num_threads(max(1, len(os.sched_getaffinity(0))))
        for i, name in enumerate(names, 1):
            prefix = f"[{i}/{len(names)}] {name}"
            print(f"{prefix}: building", flush=True)
            try:
                r = build(name, args.store, weights=args.weights, seed=args.seed, force=args.force)
            except Exception as exc:  # one model's failure must not stop the others
                from export.build import BuildResult

                r = BuildResult(name, "failed", error=f"{type(exc).__name__}: {exc}".strip())
                if os.environ.get("ZOOSERVE_DEBUG"):
                    traceback.print_exc()
            _report(prefix, r)
            results.append(r)

    print()
    print(f"{'model':32} {'status':8} {'seconds':>8} {'params':>10} {'MMACs':>9} {'parity':>9} {'MB':>8}")
    for r in results:
        parity = "" if r.parity is None else f"{r.parity:.2g}"
        print(
            f"{r.name:32} {r.status:8} {r.seconds:8.1f} {r.num_params / 1e6:9.2f}M "
            f"{r.macs / 1e6:9.1f} {parity:>9} {r.onnx_bytes / 1e6:8.1f}"
        )
    print(f"total {time.perf_counter() - total_start:.1f} s, store {args.store}")
    failed = [r for r in results if r.status == "failed"]
    if failed:
        print(f"\n{len(failed)} model(s) failed:", file=sys.stderr)
        for r in failed:
            print(f"  {r.name}: {r.error}", file=sys.stderr)
        return 1
    return 0
