"""What both timing methods share: providers, session options, the input batch, the measurement record."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import onnxruntime as ort

from service import runtime
from service.errors import BadRequest, ShuttingDown

ProviderSpec = str | tuple[str, dict]
OptionsFactory = Callable[[], ort.SessionOptions]

CPU = "CPUExecutionProvider"
# Providers whose node times in onnxruntime's profiler are host-side launch times, not device time.
DEVICE_PROVIDERS = runtime.GPU_PROVIDERS
# Providers whose tensors live in CUDA memory (IO binding device "cuda").
_CUDA_MEMORY = frozenset({"CUDAExecutionProvider", "TensorrtExecutionProvider"})


@dataclass
class Unit:
    """One thing timed per run: an executed node (profiler) or a contiguous group of nodes (prefix)."""

    name: str
    module: str
    op_types: tuple[str, ...]
    nodes: int
    provider: str
    how: str = ""  # how the unit was attributed to its module


class Deadline:
    """When a profile must stop: its time budget has run out, or the server is shutting down."""

    def __init__(self, seconds: float | None, stop: threading.Event | None = None) -> None:
        self.seconds = seconds
        self.stop = stop or threading.Event()
        self._end = time.monotonic() + seconds if seconds else None

    def passed(self) -> bool:
        """The budget is spent (raises ShuttingDown instead when the server is stopping)."""
        if self.stop.is_set():
            raise ShuttingDown("the server is shutting down: profile abandoned")
        return self._end is not None and time.monotonic() > self._end


@dataclass
class Measurement:
    method: str
    provider: str
    providers: list[str]
    batch_size: int
    runs: int
    warmup: int
    units: list[Unit]
    durations_us: np.ndarray  # (runs, units)
    totals_us: np.ndarray  # (runs,)
    seconds: float
    overhead_us: np.ndarray | None = None  # prefix: T(0) per run, the fixed cost of one Run call
    trace: list[dict] | None = None
    warnings: list[str] = field(default_factory=list)
    complete: bool = True  # False when the time budget cut it short: not what was asked for, so not cached
    measured_at: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))

    def nbytes(self) -> int:
        size = self.durations_us.nbytes + self.totals_us.nbytes + 200 * len(self.units)
        if self.trace is not None:
            size += 1500 * len(self.trace)  # a slimmed event (trace.py) as Python objects: about 1.2 KB
        return size


def provider_names(providers: Sequence[ProviderSpec]) -> list[str]:
    return [p if isinstance(p, str) else p[0] for p in providers]


def choose_providers(serving: Sequence[ProviderSpec], requested: str | None) -> list[ProviderSpec]:
    """The providers of the profiling session: the serving ones, or the one asked for (then CPU)."""
    if not requested:
        return list(serving) or [CPU]
    try:
        name = runtime.provider_name(requested)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    available = ort.get_available_providers()
    if name not in available:
        raise BadRequest(
            f"execution provider {name} is not in this onnxruntime build (available: {', '.join(available)})"
        )
    options = next((p[1] for p in serving if not isinstance(p, str) and p[0] == name), None)
    chosen: list[ProviderSpec] = [(name, dict(options)) if options else name]
    if name != CPU:
        chosen.append(CPU)
    return chosen


def default_session_options() -> ort.SessionOptions:
    """The serving options: the service's (global thread pool) when its pool exists, else the same
    optimisation level with a per-session pool."""
    if runtime.global_thread_pool_size() is not None:
        return runtime.session_options()
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    return so


def create_session(
    model: str | bytes, providers: Sequence[ProviderSpec], options: ort.SessionOptions
) -> ort.InferenceSession:
    names = provider_names(providers)
    provider_options = [{} if isinstance(p, str) else dict(p[1]) for p in providers]
    try:
        return ort.InferenceSession(model, options, providers=names, provider_options=provider_options)
    except RuntimeError as exc:
        if "use_per_session_threads" not in str(exc):
            raise
        # A global thread pool exists in this process: sessions must use it.
        options.use_per_session_threads = False
        return ort.InferenceSession(model, options, providers=names, provider_options=provider_options)


def io_device(session: ort.InferenceSession) -> tuple[str, int]:
    """Where the first provider keeps tensors, for IO binding: ("cuda", id) or ("cpu", 0)."""
    used = session.get_providers()[0]
    if used in _CUDA_MEMORY:
        opts = session.get_provider_options().get(used, {})
        return "cuda", int(opts.get("device_id", 0) or 0)
    return "cpu", 0


def input_batch(shape: Sequence[int], batch_size: int, seed: int = 0) -> np.ndarray:
    """A batch of normal noise shaped like the model's input (the batch axis replaced)."""
    dims = [batch_size, *(d if d > 0 else 1 for d in shape[1:])]
    return np.random.default_rng(seed).standard_normal(dims, dtype=np.float32)
