"""What makes profiling safe on a live server: bounds, one profile at a time per model, a result cache.

- Bounds: runs, warm-up runs and batch size are capped (batch by the model's max batch size).
- One at a time per model (a second request for the same model while one runs gets 409 with
  Retry-After), and at most `max_concurrent` profiles in the process (503 beyond): profiling competes
  with serving for the CPU only.
- A cache of measurements keyed by everything that shapes the numbers (model file hash, providers,
  method, batch, runs, warm-up, and the cuts for the prefix method); grouping and sorting are redone per
  request from the cached measurement, so group_by=op_type and group_by=layer of one measurement agree
  exactly. Bounded in entries and bytes, entries expire after `ttl_s`.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from service.errors import BadRequest, ServerBusy, ServingError
from service.profile.schema import MAX_RUNS, MAX_WARMUP, ProfileRequest
from service.profile.sessions import Measurement, OptionsFactory


class ProfileInProgress(ServingError):
    """A profile of this model is already running: one at a time per model."""

    status_code = 409

    def __init__(self, message: str, *, retry_after_s: int = 5) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after_s)})


@dataclass(frozen=True)
class ProfileLimits:
    max_runs: int = MAX_RUNS
    max_warmup: int = MAX_WARMUP
    max_concurrent: int = 1
    """Profiles running at the same time in this process, all models together."""
    cache_entries: int = 32
    cache_bytes: int = 256 * 1024 * 1024
    cache_ttl_s: float = 600.0
    max_prefix_segments: int = 256
    """Prefix models one prefix-differences profile may build (each is a session)."""
    max_seconds: float | None = 300.0
    """Time budget of one profile. Profiler method: the warm-up is skipped and the timed runs stop (at least
    one done) once it is spent. Prefix method: the profile is refused (400) when it runs past it."""
    options_factory: OptionsFactory | None = None
    """Session options of the profiling sessions (default: the serving ones, see sessions.py)."""


class MeasurementCache:
    def __init__(self, entries: int, max_bytes: int, ttl_s: float) -> None:
        self.entries, self.max_bytes, self.ttl_s = entries, max_bytes, ttl_s
        self._items: OrderedDict[Hashable, tuple[float, int, Measurement]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable, *, need_trace: bool = False) -> Measurement | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            stamp, _, m = item
            if time.monotonic() - stamp > self.ttl_s:
                self._drop(key)
                return None
            if need_trace and m.trace is None:
                return None
            self._items.move_to_end(key)
            return m

    def put(self, key: Hashable, m: Measurement) -> None:
        size = m.nbytes()
        with self._lock:
            if key in self._items:
                self._drop(key)
            if size > self.max_bytes or self.entries <= 0:
                return
            self._items[key] = (time.monotonic(), size, m)
            self._bytes += size
            while len(self._items) > self.entries or self._bytes > self.max_bytes:
                self._drop(next(iter(self._items)))

    def _drop(self, key: Hashable) -> None:
        _, size, _ = self._items.pop(key)
        self._bytes -= size

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        return self._bytes


class ProfileGuard:
    def __init__(self, limits: ProfileLimits | None = None) -> None:
        self.limits = limits or ProfileLimits()
        self.cache = MeasurementCache(self.limits.cache_entries, self.limits.cache_bytes, self.limits.cache_ttl_s)
        self._busy: set[str] = set()
        self._running = 0
        self._lock = threading.Lock()

    def check(self, request: ProfileRequest, max_batch_size: int) -> None:
        lim = self.limits
        if request.batch_size > max_batch_size:
            raise BadRequest(f"batch_size {request.batch_size} exceeds the model's max batch size {max_batch_size}")
        if request.runs > lim.max_runs:
            raise BadRequest(f"runs {request.runs} exceeds the limit {lim.max_runs}")
        if request.warmup > lim.max_warmup:
            raise BadRequest(f"warmup {request.warmup} exceeds the limit {lim.max_warmup}")

    @contextmanager
    def slot(self, model: str) -> Iterator[None]:
        """Hold the model's profiling slot (and one of the process's) while measuring."""
        with self._lock:
            if model in self._busy:
                raise ProfileInProgress(f"a profile of {model} is already running; try again when it is done")
            if self._running >= self.limits.max_concurrent:
                raise ServerBusy(
                    f"{self._running} profile(s) already running (limit {self.limits.max_concurrent})",
                    retry_after_s=5,
                )
            self._busy.add(model)
            self._running += 1
        try:
            yield
        finally:
            with self._lock:
                self._busy.discard(model)
                self._running -= 1

    def busy(self, model: str) -> bool:
        with self._lock:
            return model in self._busy
