"""The profiler method: a separate onnxruntime session with profiling on, its trace read back and parsed.

The trace file goes to a private temporary folder that is always removed; the session is dropped after
the runs (its events live in memory until `end_profiling()`). Node events (`cat: "Node"`,
`<name>_kernel_time`) are assigned to the `model_run` event that contains them; the warm-up runs are
dropped.

Memory: onnxruntime writes one event per line, each with thread and allocator statistics; parsed whole,
an event takes about 3.5 KB of Python objects, and the file and parser as much again at the peak (70,000
events took 481 MB). The file is read a line at a time and each event kept slim (the fields the
aggregation and a Chrome trace use, about 1.2 KB), and the runs are capped so that a profile records at
most MAX_EVENTS events (onnxruntime's own cap, 1,000,000, would cut runs silently).
"""

from __future__ import annotations

import bisect
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import orjson

from service.profile.mapping import ModuleMap
from service.profile.schema import PROFILER
from service.profile.sessions import (
    DEVICE_PROVIDERS,
    Deadline,
    Measurement,
    OptionsFactory,
    ProviderSpec,
    Unit,
    create_session,
    input_batch,
)

KERNEL_SUFFIX = "_kernel_time"
MAX_EVENTS = 200_000
"""Events one profile may record (warm-up runs included): with slim events, about 240 MB at most."""
ORT_MAX_EVENTS = 1_000_000  # onnxruntime's profiler stops recording there
_KEPT_ARGS = ("op_name", "provider", "node_index", "input_type_shape", "output_type_shape")


def read_trace(path: Path) -> list[dict]:
    """onnxruntime's trace file, one event per line, each without its thread and allocator statistics."""
    events = []
    with open(path, "rb") as f:
        for line in f:
            line = line.strip().rstrip(b",")
            if not line.startswith(b"{"):
                continue  # the array's brackets
            e = orjson.loads(line)
            args = e.get("args")
            if args:
                e["args"] = {k: args[k] for k in _KEPT_ARGS if k in args}
            events.append(e)
    return events


def planned_runs(nodes: int, runs: int, warmup: int) -> tuple[int, int]:
    """(runs, warmup) within MAX_EVENTS, for a graph of `nodes` nodes (events per run: one per node
    onnxruntime runs, which its fusions make fewer, and two per run). At least one timed run."""
    per_run = nodes + 2
    fit = max(1, MAX_EVENTS // per_run)
    warmup = min(warmup, fit - 1)
    return max(1, min(runs, fit - warmup)), warmup


def profile_session(
    model_path: Path,
    input_name: str,
    input_shape: Sequence[int],
    providers: Sequence[ProviderSpec],
    options_factory: OptionsFactory,
    *,
    batch_size: int,
    runs: int,
    warmup: int,
    deadline: Deadline | None = None,
) -> tuple[list[dict], list[str], int]:
    """Run the model `warmup + runs` times with profiling on; return the trace events, the providers used
    and the warm-up runs done. Once `deadline` has passed, the rest of the warm-up is skipped and the
    timed runs stop (at least one is done)."""
    deadline = deadline or Deadline(None)
    tmp = tempfile.mkdtemp(prefix="zooserve-profile-")
    session = None
    try:
        options = options_factory()
        options.enable_profiling = True
        options.profile_file_prefix = os.path.join(tmp, "ort")
        session = create_session(str(model_path), providers, options)
        used = session.get_providers()
        feed = {input_name: input_batch(input_shape, batch_size)}
        warmed = 0
        while warmed < warmup and not deadline.passed():
            session.run(None, feed)
            warmed += 1
        for _ in range(runs):
            session.run(None, feed)
            if deadline.passed():
                break
        events = read_trace(Path(session.end_profiling()))
    finally:
        del session  # a session still profiling writes its file when destroyed: before the folder goes
        shutil.rmtree(tmp, ignore_errors=True)
    return events, used, warmed


def split_runs(events: list[dict], warmup: int) -> tuple[list[dict], list[list[dict]]]:
    """The timed `model_run` events and, for each, its node events in execution order."""
    model_runs = sorted((e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"),
                        key=lambda e: e["ts"])  # fmt: skip
    timed = model_runs[warmup:]
    starts = [r["ts"] for r in timed]
    per_run: list[list[dict]] = [[] for _ in timed]
    for e in events:
        if e.get("cat") != "Node" or not e.get("name", "").endswith(KERNEL_SUFFIX):
            continue
        i = bisect.bisect_right(starts, e["ts"]) - 1
        if i >= 0 and e["ts"] <= timed[i]["ts"] + timed[i]["dur"]:
            per_run[i].append(e)
    for run in per_run:
        run.sort(key=lambda e: e["ts"])
    return timed, per_run


def measure_profiler(
    model_path: Path,
    mmap: ModuleMap,
    input_name: str,
    input_shape: Sequence[int],
    providers: Sequence[ProviderSpec],
    options_factory: OptionsFactory,
    *,
    batch_size: int,
    runs: int,
    warmup: int,
    keep_trace: bool = False,
    deadline: Deadline | None = None,
) -> Measurement:
    start = time.perf_counter()
    deadline = deadline or Deadline(None)
    asked = runs
    runs, warmup = planned_runs(len(mmap.nodes), runs, warmup)
    events, used, warmup = profile_session(
        model_path, input_name, input_shape, providers, options_factory,
        batch_size=batch_size, runs=runs, warmup=warmup, deadline=deadline,
    )  # fmt: skip
    timed, per_run = split_runs(events, warmup)
    if not timed:
        raise RuntimeError("onnxruntime's trace holds no timed model_run event")

    # Units: every executed node, in the order of the first timed run (later runs may add nodes).
    index: dict[str, int] = {}
    units: list[Unit] = []
    sequence: list[tuple[str, str]] = []
    for run in per_run:
        for e in run:
            name = e["name"][: -len(KERNEL_SUFFIX)]
            if name not in index:
                index[name] = len(units)
                args = e.get("args", {})
                op = args.get("op_name", "")
                units.append(Unit(name, "", (op,), 1, args.get("provider", "")))
                sequence.append((name, op))
    for unit, attribution in zip(units, mmap.attribute(sequence), strict=True):
        unit.module, unit.how = attribution.module, attribution.how

    durations = np.zeros((len(timed), len(units)), dtype=np.float64)
    for r, run in enumerate(per_run):
        for e in run:
            durations[r, index[e["name"][: -len(KERNEL_SUFFIX)]]] += e["dur"]
    totals = np.array([r["dur"] for r in timed], dtype=np.float64)

    warnings = []
    if runs < asked:
        warnings.append(
            f"timed runs capped at {runs} of the {asked} asked for: a graph of {len(mmap.nodes)} nodes records about "
            f"{len(mmap.nodes) + 2} events a run, and a profile keeps at most {MAX_EVENTS:,}"
        )
    complete = len(timed) == runs
    if not complete:
        why = (
            f"onnxruntime's profiler stopped recording at its limit of {ORT_MAX_EVENTS:,} events"
            if len(events) >= ORT_MAX_EVENTS
            else f"the time budget of {deadline.seconds} s ran out"
        )
        warnings.append(f"stopped after {len(timed)} of {runs} timed runs: {why}")
    provider = used[0] if used else ""
    if provider in DEVICE_PROVIDERS:
        warnings.append(
            f"{provider}: onnxruntime's profiler times kernel launches on the host, not device work; "
            "use method=prefix for device time per group"
        )
    trace = None
    if keep_trace:
        modules = {u.name: u.module for u in units}
        trace = events
        for e in trace:
            if e.get("cat") == "Node" and e.get("name", "").endswith(KERNEL_SUFFIX):
                e.setdefault("args", {})["module"] = modules.get(e["name"][: -len(KERNEL_SUFFIX)], "")
    return Measurement(
        method=PROFILER,
        provider=provider,
        providers=list(used),
        batch_size=batch_size,
        runs=len(timed),
        warmup=warmup,
        units=units,
        durations_us=durations,
        totals_us=totals,
        seconds=round(time.perf_counter() - start, 3),
        trace=trace,
        warnings=warnings,
        complete=complete,
    )
