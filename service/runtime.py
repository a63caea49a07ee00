"""onnxruntime: one global thread pool, execution providers with an honest fallback, sessions, warm-up.

- One process-wide intra-op pool sized to the CPUs this process may really use (affinity and the
  container's cgroup CPU quota), shared by every session (`use_per_session_threads = False`): 40
  models do not mean 40 pools fighting over 2 cores.
- Providers are asked for in order of preference. onnxruntime silently falls back to CPU when a GPU
  provider cannot load, so the provider actually in use is read back from the session
  (`get_providers()`), logged, and reported; ZOOSERVE_REQUIRE_GPU turns a fallback into a failure.
- Optionally (ZOOSERVE_THREADS_IDLE_PRIORITY), the pool's worker threads run at the lowest CPU priority
  (Linux SCHED_IDLE). onnxruntime's workers spin-wait between runs, and its Python API cannot turn that
  off for the global pool; at normal priority a spinning worker takes its share of a core from the event
  loop. Measured on 2 cores, lenet5_digits JSON infer at 64 connections: 1.02-1.16x the bare FastAPI
  endpoint with it, 0.93-1.09x without (4 alternating rounds each), the event loop waiting for a CPU 0.04
  of the time against 0.19-0.26; resnet18 binary infer 0.963 of raw with it, 0.962 without. Off by
  default all the same, because it is unsafe beside any other busy process: the thread that calls `run`
  spin-waits for a worker that has taken a share of the work, and an idle-priority worker gets no CPU
  back while a normal-priority thread keeps one busy. resnet18 at batch 1 beside one busy-looping
  process: p99 4,153 ms, worst 5,522 ms with it; p99 65-71 ms, worst 68-73 ms without (nice 5, 10, 19: p99
  81, 109, 562 ms).
- Session creation is not guaranteed thread-safe: the data plane creates sessions one at a time.
- glibc's allocator is told to keep freed memory (ZOOSERVE_MALLOC_KEEP_MB): see tune_allocator.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import math
import os
import sys
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from service.errors import ProviderError, ShuttingDown

log = logging.getLogger("zooserve.runtime")

PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "gpu": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
    "rocm": "ROCMExecutionProvider",
    "migraphx": "MIGraphXExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "dml": "DmlExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
}
GPU_PROVIDERS = frozenset(
    {
        "CUDAExecutionProvider",
        "TensorrtExecutionProvider",
        "ROCMExecutionProvider",
        "MIGraphXExecutionProvider",
        "DmlExecutionProvider",
    }
)
DEVICE_OPTION_PROVIDERS = frozenset({"CUDAExecutionProvider", "TensorrtExecutionProvider", "ROCMExecutionProvider"})

_pool_lock = threading.Lock()
_pool_threads: int | None = None


# --- CPUs -----------------------------------------------------------------------------------------


def cgroup_cpu_limit(
    cgroup_root: Path = Path("/sys/fs/cgroup"), proc_self_cgroup: Path = Path("/proc/self/cgroup")
) -> float | None:
    """The CPU quota of this process's cgroup (quota / period), or None when unlimited or unknown: the
    smallest quota of its own group and the groups above it.

    cgroup v2: `<root>/<path>/cpu.max` ("max 100000" or "200000 100000"), the path from the `0::` line of
    /proc/self/cgroup. cgroup v1: `<root>/<cpu controller>/<path>/cpu.cfs_quota_us` / `cpu.cfs_period_us`,
    the path from the line naming the `cpu` controller. In a container the process's group is usually
    mounted as the root itself, which is looked at too."""
    v2_path, v1_path = None, None
    try:
        for line in proc_self_cgroup.read_text().splitlines():
            parts = line.split(":", 2)
            if len(parts) != 3:
                continue
            if parts[0] == "0" and parts[1] == "":
                v2_path = parts[2].strip()
            elif "cpu" in parts[1].split(","):
                v1_path = parts[2].strip()
    except OSError:
        pass

    def groups(base: Path, path: str | None) -> list[Path]:
        """`base/path`, its parents up to `base`: ordered, without repeats."""
        rel = Path((path or "").lstrip("/"))
        found = [base / rel, *(base / p for p in rel.parents)]
        return list(dict.fromkeys([*found, base]))

    limits: list[float] = []
    for folder in groups(cgroup_root, v2_path):
        try:
            quota, period = (folder / "cpu.max").read_text().split()[:2]
        except (OSError, ValueError):
            continue
        if quota != "max" and float(period) > 0:
            limits.append(float(quota) / float(period))
    for controller in (cgroup_root / "cpu", cgroup_root / "cpu,cpuacct"):
        for folder in groups(controller, v1_path):
            try:
                quota_us = float((folder / "cpu.cfs_quota_us").read_text())
                period_us = float((folder / "cpu.cfs_period_us").read_text())
            except (OSError, ValueError):
                continue
            if quota_us > 0 and period_us > 0:
                limits.append(quota_us / period_us)
    return min(limits) if limits else None


def usable_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by the cgroup quota (rounded up)."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    quota = cgroup_cpu_limit()
    if quota is not None:
        n = min(n, max(1, math.ceil(quota)))
    return max(1, n)


def _threads() -> set[int]:
    try:
        return {int(t) for t in os.listdir("/proc/self/task")}
    except OSError:  # not Linux
        return set()


def _idle_priority(thread_ids: Iterable[int]) -> int:
    """Put these threads under SCHED_IDLE (allowed without privileges); returns how many were changed."""
    changed = 0
    for tid in thread_ids:
        try:
            os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
            changed += 1
        except (AttributeError, OSError) as exc:
            log.warning("cannot lower the priority of onnxruntime pool thread %d: %s", tid, exc)
    return changed


def init_global_thread_pool(threads: int = 0, idle_priority: bool = False) -> int:
    """Create onnxruntime's global intra-op pool (once per process) and return its size.

    With `idle_priority`, the pool's worker threads (those onnxruntime starts here; the thread that calls
    `run` is the pool's first thread and keeps its priority) run under SCHED_IDLE: see the module's notes.
    Every session must then be created with `session_options()` (use_per_session_threads=False)."""
    global _pool_threads
    wanted = threads or usable_cpus()
    with _pool_lock:
        if _pool_threads is None:
            before = _threads()
            ort.set_global_thread_pool_sizes(wanted, 1)  # creates onnxruntime's environment and its pools
            workers = _threads() - before if before else set()
            lowered = _idle_priority(workers) if idle_priority else 0
            if lowered:
                log.warning(
                    "onnxruntime pool workers at idle priority: runs may stall for seconds while another "
                    "process keeps the CPUs busy (see service/runtime.py)"
                )
            _pool_threads = wanted
            log.info(
                "onnxruntime global thread pool: %d intra-op threads (%d worker threads at idle priority)",
                wanted,
                lowered,
            )
        elif _pool_threads != wanted:
            log.warning(
                "onnxruntime global thread pool already has %d threads; %d asked for is ignored",
                _pool_threads,
                wanted,
            )
        return _pool_threads


def global_thread_pool_size() -> int | None:
    return _pool_threads


def session_options() -> ort.SessionOptions:
    """Options for a session that shares the global thread pool (call init_global_thread_pool first).

    Anyone building another session in this process (e.g. for profiling) must start from these: once the
    global pool exists, onnxruntime refuses sessions with their own pools."""
    so = ort.SessionOptions()
    so.use_per_session_threads = False
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    return so


# --- providers ------------------------------------------------------------------------------------


def provider_name(name: str) -> str:
    """'cuda' -> 'CUDAExecutionProvider'; full names pass through. Unknown aliases raise ValueError."""
    key = name.strip()
    if key.lower() in PROVIDER_ALIASES:
        return PROVIDER_ALIASES[key.lower()]
    if key.endswith("ExecutionProvider"):
        return key
    raise ValueError(
        f"unknown execution provider {name!r}: use one of {', '.join(sorted(PROVIDER_ALIASES))} "
        "or a full onnxruntime provider name"
    )


@dataclass(frozen=True)
class ProviderPlan:
    """What to ask onnxruntime for, and what was asked for in the first place."""

    requested: tuple[str, ...]
    providers: tuple[str, ...]
    options: tuple[dict[str, str], ...]
    require_gpu: bool


def _preload_cuda_libraries() -> None:
    """Load CUDA and cuDNN from the nvidia-* pip wheels (the GPU image installs them that way, not system-wide),
    so the CUDA provider finds them. A no-op on builds without the helper; failures surface as the provider's
    fallback warning (or a failed start with ZOOSERVE_REQUIRE_GPU)."""
    preload = getattr(ort, "preload_dlls", None)
    if preload is not None:
        try:
            preload(cuda=True, cudnn=True, msvc=False)
        except Exception as exc:  # missing wheels: the session creation reports the consequence
            log.warning("could not preload CUDA libraries from pip wheels: %s", exc)


def plan_providers(
    requested: Iterable[str],
    *,
    require_gpu: bool = False,
    device_id: int = 0,
    available: Sequence[str] | None = None,
) -> ProviderPlan:
    """Resolve aliases, drop (with a warning) providers this onnxruntime build lacks, keep CPU last."""
    wanted = [provider_name(p) for p in requested]
    available = list(ort.get_available_providers() if available is None else available)
    usable = []
    for p in dict.fromkeys(wanted):
        if p in available:
            usable.append(p)
        else:
            log.warning(
                "execution provider %s is not in this onnxruntime build (available: %s); falling back",
                p,
                ", ".join(available),
            )
    if require_gpu and not any(p in GPU_PROVIDERS for p in usable):
        raise ProviderError(
            f"ZOOSERVE_REQUIRE_GPU is set but no GPU provider is usable: asked for {', '.join(wanted)}, "
            f"this onnxruntime build has {', '.join(available)}"
        )
    if require_gpu and usable[0] not in GPU_PROVIDERS:
        raise ProviderError(
            f"ZOOSERVE_REQUIRE_GPU is set but {usable[0]} comes first in ZOOSERVE_PROVIDERS "
            f"({', '.join(wanted)}): put the GPU provider first"
        )
    if not usable:
        usable = ["CPUExecutionProvider"]
    if any(p in GPU_PROVIDERS for p in usable):
        _preload_cuda_libraries()
    options = tuple({"device_id": str(device_id)} if p in DEVICE_OPTION_PROVIDERS else {} for p in usable)
    return ProviderPlan(tuple(wanted), tuple(usable), options, require_gpu)


def create_session(path: Path, plan: ProviderPlan) -> ort.InferenceSession:
    """A session on the first provider of `plan` that really loads; the fallback is detected and logged."""
    kwargs = {"enable_fallback": 0} if plan.require_gpu else {}
    session = ort.InferenceSession(
        str(path),
        sess_options=session_options(),
        providers=list(plan.providers),
        provider_options=[dict(o) for o in plan.options],
        **kwargs,
    )
    used = session.get_providers()
    if plan.require_gpu and (not used or used[0] not in GPU_PROVIDERS):
        raise ProviderError(
            f"ZOOSERVE_REQUIRE_GPU is set but onnxruntime runs {path} on {', '.join(used)} "
            f"(asked for {', '.join(plan.requested)}): the GPU provider failed to load"
        )
    if used and plan.requested and used[0] != plan.requested[0]:
        log.warning("%s: asked for %s, onnxruntime runs on %s (fallback)", path, plan.requested[0], ", ".join(used))
    return session


def warmup_sizes(max_batch_size: int, mode: str) -> list[int]:
    """Batch sizes to run once before a model is reported ready."""
    if mode == "none" or max_batch_size < 1:
        return []
    if mode == "all":
        return list(range(1, max_batch_size + 1))
    sizes = [1 << i for i in range(max_batch_size.bit_length()) if (1 << i) <= max_batch_size]
    return sorted({*sizes, max_batch_size})


def warm_up(
    session: ort.InferenceSession,
    input_name: str,
    sample_shape: Sequence[int],
    sizes: Iterable[int],
    stop: threading.Event | None = None,
) -> None:
    """Run each batch size once (shape-specific planning, CUDA algorithm search) on zeros; when `stop` is
    set (the server shutting down), give up before the next size (ShuttingDown)."""
    for n in sizes:
        if stop is not None and stop.is_set():
            raise ShuttingDown("the server is shutting down: warm-up abandoned")
        session.run(None, {input_name: np.zeros((n, *sample_shape), np.float32)})


def tune_interpreter(switch_interval_us: int) -> None:
    """Process-wide settings for a server that hands batches to threads, after the models are loaded.

    - The GIL switch interval bounds how long a worker thread, woken to run a batch or to hand its result
      back, waits for the GIL while the event loop is busy (Python's default is 5 ms).
    - Objects that exist after start-up (the app, the models' metadata) are moved out of the garbage
      collector's sight (gc.freeze), so collections triggered by request garbage stay cheap."""
    if switch_interval_us > 0:
        sys.setswitchinterval(switch_interval_us / 1e6)
    gc.collect()
    gc.freeze()


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_MMAP_THRESHOLD_MAX = 32 << 20  # glibc refuses more on 64-bit (HEAP_MAX_SIZE / 2)


def tune_allocator(keep_mb: int) -> bool:
    """Make glibc's malloc keep up to `keep_mb` MiB of freed memory for reuse instead of returning it to the
    kernel at once. Returns whether the settings took (False off glibc, or with keep_mb 0).

    Request bodies, decoded tensors and batches are large (a 224x224 FP32 input is 602 KB, a batch of 32 of
    them 19 MB) and are allocated and freed on every request. glibc serves such blocks from mmap, or from a
    heap top that it trims back as soon as they are freed, unless its dynamic thresholds happen to have
    grown past them; then each request touches fresh pages and pays the kernel's page faults and zeroing
    again. Measured on 2 cores, a plain ASGI app on uvicorn took 0.94 ms at p50 to read a 602 KB request and
    answer with glibc's defaults, 0.24 ms with this (4.8 ms and 1.1 ms for 4.8 MB). The service, whose heap
    top is held by long-lived objects, page-faulted about once per request either way in the same test:
    there the setting guarantees what the heuristics gave. Blocks up to 32 MiB then come from the heap (the
    mmap threshold), and up to keep_mb of free memory at its top stays mapped (the trim threshold).
    """
    if keep_mb <= 0 or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        log.info("no glibc mallopt here: the allocator keeps its defaults")
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    keep = min(keep_mb, 1024) << 20
    settings = ((_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX), (_M_TRIM_THRESHOLD, keep), (_M_TOP_PAD, 16 << 20))
    took = all([mallopt(param, value) == 1 for param, value in settings])  # every one tried
    if took:
        log.info("allocator: blocks up to 32 MiB from the heap, up to %d MiB of freed memory kept", keep >> 20)
    else:
        log.warning("allocator: mallopt refused a setting; glibc's defaults may apply")
    return took
