"""The profiler method: a separate onnxruntime session with profiling on, its trace read back and parsed.

The trace file goes to a private temporary folder that is always removed; the session is dropped after
the runs (its events live in memory until `end_profiling()`). Node events (`cat: "Node"`,
`<name>_kernel_time`) are assigned to the `model_run` event that contains them; the warm-up runs are
dropped.
"""

from __future__ import annotations

import bisect
import json
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from service.profile.mapping import ModuleMap
from service.profile.schema import PROFILER
from service.profile.sessions import (
    DEVICE_PROVIDERS,
    Measurement,
    OptionsFactory,
    ProviderSpec,
    Unit,
    create_session,
    input_batch,
)

KERNEL_SUFFIX = "_kernel_time"


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
    max_seconds: float | None = None,
) -> tuple[list[dict], list[str]]:
    """Run the model `warmup + runs` times with profiling on (fewer timed runs, at least one, when
    `max_seconds` runs out); return the trace events and the providers used."""
    tmp = tempfile.mkdtemp(prefix="zooserve-profile-")
    session = None
    try:
        options = options_factory()
        options.enable_profiling = True
        options.profile_file_prefix = os.path.join(tmp, "ort")
        session = create_session(str(model_path), providers, options)
        used = session.get_providers()
        feed = {input_name: input_batch(input_shape, batch_size)}
        deadline = time.monotonic() + max_seconds if max_seconds else None
        for i in range(warmup + runs):
            session.run(None, feed)
            if deadline is not None and i >= warmup and time.monotonic() > deadline:
                break
        trace_file = session.end_profiling()
        events = json.loads(Path(trace_file).read_bytes())
    finally:
        del session  # a session still profiling writes its file when destroyed: before the folder goes
        shutil.rmtree(tmp, ignore_errors=True)
    return events, used


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
    max_seconds: float | None = None,
) -> Measurement:
    start = time.perf_counter()
    events, used = profile_session(
        model_path, input_name, input_shape, providers, options_factory,
        batch_size=batch_size, runs=runs, warmup=warmup, max_seconds=max_seconds,
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
    if len(timed) < runs:
        warnings.append(f"stopped after {len(timed)} of {runs} timed runs: the time budget of {max_seconds} s ran out")
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
    )
