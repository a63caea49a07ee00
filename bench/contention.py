"""Whether onnxruntime's pool workers may run at idle CPU priority (ZOOSERVE_THREADS_IDLE_PRIORITY): a model's
batch-1 runs with the workers at normal priority and under SCHED_IDLE, alone and beside one process that keeps
a CPU busy, each configuration in a fresh process with the service's session settings.

    python bench/contention.py [--model resnet18] [--store model_store] [--seconds 15]

Printed per configuration: runs, p50, p99 and worst run in ms, and the stalls: runs longer than ten times
the p50 at normal priority alone; then, beside the busy process, the ratio of the worst runs idle / normal.
The thread that calls `run` spin-waits for a worker that has taken a share of the work; a worker at idle
priority gets no CPU back while a normal-priority thread keeps its core busy, so that wait can last as
long as the other process runs.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BUSY_LOOP = "while True: pass"


def runs_ms(model_path: Path, seconds: float, idle_priority: bool) -> np.ndarray:
    """In this process: the model at batch 1, run for `seconds`; each run's time in ms."""
    from bench.bare_app import model_runner

    run = model_runner(model_path, idle_priority)
    for _ in range(2):
        run()
    times = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        times.append(run())
    return np.asarray(times) / 1e6


def measure(model_path: Path, seconds: float, idle_priority: bool, busy: bool) -> np.ndarray:
    hog = subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) if busy else None
    try:
        child = [sys.executable, __file__, "--child", str(model_path), str(seconds), "1" if idle_priority else "0"]
        out = subprocess.run(child, cwd=ROOT, check=True, capture_output=True, text=True).stdout
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()
    return np.asarray(json.loads(out.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet18")
    p.add_argument("--store", type=Path, default=ROOT / "model_store")
    p.add_argument("--seconds", type=float, default=15.0, help="seconds of runs per configuration")
    p.add_argument("--child", nargs=3, metavar=("MODEL_PATH", "SECONDS", "IDLE"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        path, seconds, idle = args.child
        print(json.dumps(runs_ms(Path(path), float(seconds), idle == "1").round(3).tolist()))
        return 0

    from service.manifest import Manifest

    entry = args.store / args.model
    if not (entry / "model.json").is_file():
        print(f"{entry} is missing: export it first (python -m export build {args.model})", file=sys.stderr)
        return 2
    model_path = Manifest.read(entry).model_path(entry)
    print(f"{args.model} at batch 1, {args.seconds:g} s per configuration:")
    worst = {}
    stall_ms = None
    for busy in (False, True):
        for idle in (False, True):
            times = measure(model_path, args.seconds, idle, busy)
            stall_ms = stall_ms or 10 * float(np.median(times))  # the first: normal priority, alone
            worst[busy, idle] = float(times.max())
            label = f"{'idle' if idle else 'normal'} priority, {'beside a busy process' if busy else 'alone'}"
            print(
                f"  {label:<40} {len(times):5d} runs  p50 {np.median(times):8.1f} ms  "
                f"p99 {np.percentile(times, 99):8.1f} ms  worst {times.max():8.1f} ms  "
                f"stalls (> {stall_ms:.0f} ms) {int((times > stall_ms).sum())}",
                flush=True,
            )
    print(f"beside a busy process, worst run idle / normal priority: {worst[True, True] / worst[True, False]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
