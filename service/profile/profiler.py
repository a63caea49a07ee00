"""The profiler: validate, pick the method, measure (or take the cached measurement), aggregate.

It needs only the model's folder and manifest, the providers the model is served on, the max batch size
and limits: the HTTP route and the command-line twin both call it.
"""

from __future__ import annotations

import gc
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from service.errors import BadRequest
from service.manifest import Manifest
from service.profile.aggregate import aggregate
from service.profile.guard import ProfileGuard, ProfileLimits
from service.profile.mapping import ModuleMap
from service.profile.prefix import measure_prefix
from service.profile.schema import PREFIX, PROFILER, LayerTable, ProfileRequest, ProfileResponse
from service.profile.sessions import (
    DEVICE_PROVIDERS,
    Deadline,
    Measurement,
    ProviderSpec,
    choose_providers,
    default_session_options,
    provider_names,
)
from service.profile.trace import measure_profiler


@dataclass(frozen=True)
class ProfileTarget:
    """A model as the profiler sees it."""

    name: str
    version: int
    model_dir: Path
    manifest: Manifest
    providers: Sequence[ProviderSpec] = ("CPUExecutionProvider",)
    max_batch_size: int = 0  # 0: the manifest's

    @property
    def model_path(self) -> Path:
        return self.manifest.model_path(self.model_dir)

    @property
    def batch_limit(self) -> int:
        return self.max_batch_size or self.manifest.max_batch_size


def resolve_method(request: ProfileRequest, provider: str) -> str:
    device = provider in DEVICE_PROVIDERS
    per_node = request.group_by in ("op_type", "node")
    if request.method == "prefix" or (request.method is None and device):
        if per_node:
            if request.method == "prefix":
                raise BadRequest(
                    "method=prefix times contiguous groups of the graph: use group_by=layer or block "
                    "(group_by=op_type/node needs method=profiler)"
                )
            raise BadRequest(
                f"on {provider} onnxruntime's per-node times are launch times, so the default method is "
                "prefix, which times layers or blocks: use group_by=layer or block, or ask for "
                "method=profiler explicitly to get per-node launch times"
            )
        return PREFIX
    return PROFILER


class Profiler:
    def __init__(self, limits: ProfileLimits | None = None) -> None:
        self.guard = ProfileGuard(limits)
        self.limits = self.guard.limits
        self._maps: OrderedDict[tuple[str, str], ModuleMap] = OrderedDict()
        self._maps_lock = threading.Lock()
        self._stop = threading.Event()

    def close(self) -> None:
        """The server is stopping: a profile still running stops at its next run (ShuttingDown, 503)."""
        self._stop.set()

    def module_map(self, target: ProfileTarget) -> ModuleMap:
        key = (str(target.model_path), target.manifest.onnx.sha256)
        with self._maps_lock:
            if key in self._maps:
                self._maps.move_to_end(key)
                return self._maps[key]
        mmap = ModuleMap.load(target.model_path, target.manifest)
        with self._maps_lock:
            self._maps[key] = mmap
            while len(self._maps) > 8:
                self._maps.popitem(last=False)
        return mmap

    def measure(
        self, target: ProfileTarget, request: ProfileRequest, *, keep_trace: bool = False
    ) -> tuple[Measurement, bool, ModuleMap]:
        """The measurement for `request` (cached or new) and whether it came from the cache."""
        self.guard.check(request, target.batch_limit)
        providers = choose_providers(target.providers, request.provider)
        method = resolve_method(request, provider_names(providers)[0])
        depth = request.depth if request.group_by == "layer" else None
        segmentation = (request.group_by, depth) if method == PREFIX else None
        key = (
            target.name, target.version, target.manifest.onnx.sha256,
            tuple(p if isinstance(p, str) else (p[0], tuple(sorted(p[1].items()))) for p in providers),
            method, request.batch_size, request.runs, request.warmup, segmentation,
        )  # fmt: skip
        need_trace = keep_trace and method == PROFILER
        hit = None if request.refresh else self.guard.cache.get(key, need_trace=need_trace)
        mmap = self.module_map(target)
        if hit is not None:
            return hit, True, mmap
        with self.guard.slot(target.name):
            hit = None if request.refresh else self.guard.cache.get(key, need_trace=need_trace)
            if hit is not None:
                return hit, True, mmap
            options = self.limits.options_factory or default_session_options
            shape = target.manifest.input.shape
            common = dict(
                batch_size=request.batch_size, runs=request.runs, warmup=request.warmup,
                deadline=Deadline(self.limits.max_seconds, self._stop),
            )  # fmt: skip
            try:
                if method == PREFIX:
                    m = measure_prefix(
                        target.model_path, mmap, target.manifest.input.name, shape, providers, options,
                        key=lambda module: mmap.group_key(module, request.group_by, depth),
                        max_segments=self.limits.max_prefix_segments, **common,
                    )  # fmt: skip
                else:
                    m = measure_profiler(
                        target.model_path, mmap, target.manifest.input.name, shape, providers, options,
                        keep_trace=keep_trace, **common,
                    )  # fmt: skip
            finally:
                gc.collect()  # sessions and prefix protos hold large buffers: release them now
            wanted = provider_names(providers)[0]
            if m.provider and m.provider != wanted:
                m.warnings.append(f"asked for {wanted}, onnxruntime ran on {m.provider} (fallback)")
            if request.method is None and method == PREFIX and m.provider not in DEVICE_PROVIDERS:
                m.warnings.append("method prefix was chosen for a GPU provider, but the session ran on the CPU")
            if m.complete:  # one cut short by the time budget is not what was asked for
                self.guard.cache.put(key, m)
        return m, False, mmap

    def with_defaults(self, target: ProfileTarget, request: ProfileRequest) -> ProfileRequest:
        """On a GPU provider the default method is prefix, which builds a session per group: there a request
        that leaves method and depth open groups by block, not by leaf layer (hundreds of prefixes)."""
        if request.method is None and request.group_by == "layer" and request.depth is None:
            providers = choose_providers(target.providers, request.provider)
            if resolve_method(request, provider_names(providers)[0]) == PREFIX:
                return request.model_copy(update={"group_by": "block"})
        return request

    def profile(
        self, target: ProfileTarget, request: ProfileRequest | None = None, *, sort: str = "execution"
    ) -> ProfileResponse:
        request = self.with_defaults(target, request or ProfileRequest())
        m, cached, mmap = self.measure(target, request)
        depth = request.depth if request.group_by == "layer" else None
        return aggregate(m, mmap, target.manifest, group_by=request.group_by, depth=depth, sort=sort, cached=cached)

    def chrome_trace(self, target: ProfileTarget, request: ProfileRequest | None = None) -> dict:
        """The measurement as a Chrome trace (opens in Perfetto / chrome://tracing).

        Profiler method: onnxruntime's own events, each node's `args.module` added. Prefix method: one
        synthetic event per group and run, laid end to end (there is no per-node trace)."""
        request = self.with_defaults(target, request or ProfileRequest())
        m, _, _ = self.measure(target, request, keep_trace=True)
        meta = {
            "model": target.name, "version": target.version, "method": m.method, "provider": m.provider,
            "batch_size": m.batch_size, "runs": m.runs, "warmup": m.warmup,
        }  # fmt: skip
        if m.trace is not None:
            return {"traceEvents": m.trace, "displayTimeUnit": "ms", "otherData": meta}
        events: list[dict] = []
        ts = 0.0
        for r in range(m.durations_us.shape[0]):
            run_start = ts
            overhead = float(m.overhead_us[r]) if m.overhead_us is not None else 0.0
            ts += max(overhead, 0.0)
            for u, d in zip(m.units, m.durations_us[r], strict=True):
                events.append({
                    "name": u.name, "cat": "Group", "ph": "X", "pid": 1, "tid": 1, "ts": round(ts, 3),
                    "dur": round(max(float(d), 0.0), 3),
                    "args": {"module": u.module, "op_types": list(u.op_types), "difference_us": float(d)},
                })  # fmt: skip
                ts += max(float(d), 0.0)
            events.append({
                "name": "run", "cat": "Session", "ph": "X", "pid": 1, "tid": 0, "ts": round(run_start, 3),
                "dur": round(float(m.totals_us[r]), 3), "args": {"run": r},
            })  # fmt: skip
            ts = max(ts, run_start + float(m.totals_us[r])) + 10.0
        return {"traceEvents": events, "displayTimeUnit": "ms", "otherData": meta}


def layer_table(manifest: Manifest) -> LayerTable:
    return LayerTable(
        model=manifest.name,
        version=manifest.version,
        num_params=manifest.num_params,
        macs=manifest.macs,
        input_shape=list(manifest.input.shape),
        layers=[row.model_dump() for row in manifest.layers],
    )
