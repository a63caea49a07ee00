"""onnxruntime set-up: the CPU quota, the pool's thread priority, provider resolution and fallback, warm-up sizes."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from service import runtime
from service.errors import ProviderError

ROOT = Path(__file__).resolve().parents[2]


def test_cgroup_v2_quota(tmp_path):
    (tmp_path / "proc").write_text("0::/box/app\n")
    (tmp_path / "box" / "app").mkdir(parents=True)
    (tmp_path / "box" / "app" / "cpu.max").write_text("max 100000\n")
    (tmp_path / "box" / "cpu.max").write_text("150000 100000\n")
    assert runtime.cgroup_cpu_limit(tmp_path, tmp_path / "proc") == 1.5


def test_cgroup_v1_quota_and_unlimited(tmp_path):
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert runtime.cgroup_cpu_limit(tmp_path, tmp_path / "missing") is None
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("300000\n")
    assert runtime.cgroup_cpu_limit(tmp_path, tmp_path / "missing") == 3.0


def test_cgroup_v1_quota_of_the_process_group(tmp_path):
    # a v1 host: the process's group is /system.slice/zs.service, its quota set there, not at the root
    (tmp_path / "proc").write_text("12:cpu,cpuacct:/system.slice/zs.service\n3:memory:/system.slice/zs.service\n")
    group = tmp_path / "cpu,cpuacct" / "system.slice" / "zs.service"
    group.mkdir(parents=True)
    (group / "cpu.cfs_quota_us").write_text("200000\n")
    (group / "cpu.cfs_period_us").write_text("100000\n")
    assert runtime.cgroup_cpu_limit(tmp_path, tmp_path / "proc") == 2.0


def test_usable_cpus_is_capped_by_the_quota(monkeypatch):
    monkeypatch.setattr(runtime, "cgroup_cpu_limit", lambda: 0.5)
    assert runtime.usable_cpus() == 1
    monkeypatch.setattr(runtime, "cgroup_cpu_limit", lambda: None)
    assert runtime.usable_cpus() >= 1


def test_provider_aliases():
    assert runtime.provider_name("cuda") == "CUDAExecutionProvider"
    assert runtime.provider_name("CPU") == "CPUExecutionProvider"
    assert runtime.provider_name("FooExecutionProvider") == "FooExecutionProvider"
    with pytest.raises(ValueError, match="unknown execution provider"):
        runtime.provider_name("cdua")


def test_a_missing_provider_is_a_warning_and_a_fallback(caplog):
    with caplog.at_level(logging.WARNING, "zooserve.runtime"):
        plan = runtime.plan_providers(["cuda", "cpu"], available=["CPUExecutionProvider"])
    assert plan.providers == ("CPUExecutionProvider",)
    assert plan.requested == ("CUDAExecutionProvider", "CPUExecutionProvider")
    assert "CUDAExecutionProvider is not in this onnxruntime build" in caplog.text


def test_require_gpu_without_a_gpu_provider_fails():
    with pytest.raises(ProviderError, match="REQUIRE_GPU"):
        runtime.plan_providers(["cuda", "cpu"], require_gpu=True, available=["CPUExecutionProvider"])
    both = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    with pytest.raises(ProviderError, match="CPUExecutionProvider comes first"):  # it would never run on the GPU
        runtime.plan_providers(["cpu", "cuda"], require_gpu=True, available=both)


def test_device_options_go_to_gpu_providers_only():
    plan = runtime.plan_providers(
        ["cuda", "cpu"], device_id=1, available=["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    assert plan.options == ({"device_id": "1"}, {})


def test_session_fallback_is_detected(tiny_store, caplog):
    """A session asked for a provider it cannot use runs elsewhere; the provider in use is read back."""
    plan = runtime.ProviderPlan(
        requested=("CUDAExecutionProvider", "CPUExecutionProvider"),
        providers=("CPUExecutionProvider",),
        options=({},),
        require_gpu=False,
    )
    runtime.init_global_thread_pool(0)
    with caplog.at_level(logging.WARNING, "zooserve.runtime"):
        session = runtime.create_session(tiny_store / "tiny" / "1" / "model.onnx", plan)
    assert session.get_providers() == ["CPUExecutionProvider"]
    assert "fallback" in caplog.text
    with pytest.raises(ProviderError):
        runtime.create_session(
            tiny_store / "tiny" / "1" / "model.onnx",
            runtime.ProviderPlan(plan.requested, plan.providers, plan.options, require_gpu=True),
        )


def test_warmup_sizes():
    assert runtime.warmup_sizes(4, "all") == [1, 2, 3, 4]
    assert runtime.warmup_sizes(12, "pow2") == [1, 2, 4, 8, 12]
    assert runtime.warmup_sizes(8, "none") == []


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux-only")
@pytest.mark.parametrize("idle", [True, False])
def test_pool_workers_run_at_idle_priority(idle):
    """The pool's worker threads (not the caller) are SCHED_IDLE, unless turned off, with a warning of the
    stalls that risks; a fresh process each."""
    code = f"""
import logging, os, threading
logging.basicConfig(level=logging.WARNING)
from service import runtime
before = {{int(t) for t in os.listdir("/proc/self/task")}}
runtime.init_global_thread_pool(3, idle_priority={idle})
new = {{int(t) for t in os.listdir("/proc/self/task")}} - before
print(len(new), sum(os.sched_getscheduler(t) == os.SCHED_IDLE for t in new),
      os.sched_getscheduler(threading.get_native_id()) == os.SCHED_IDLE)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    workers, idle_workers, caller_idle = out.stdout.split()
    assert int(workers) == 2  # a pool of 3 is the calling thread and 2 workers
    assert int(idle_workers) == (2 if idle else 0)
    assert caller_idle == "False"
    assert ("may stall" in out.stderr) == idle


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
@pytest.mark.parametrize("keep_mb", [256, 0])
def test_allocator_keeps_request_sized_blocks_warm(keep_mb):
    """A request body read the way uvicorn reads it (a growing buffer, a copy per chunk, then joined) and
    freed, again and again: with glibc's defaults each round page-faults its memory anew; tuned, none."""
    code = f"""
import resource
from service import runtime
print(runtime.tune_allocator({keep_mb}))
chunk = b"x" * 256_000
def request():
    body = bytearray()
    for _ in range(3):
        body += chunk
        part = bytes(body)
    return len(b"".join([part, part]))
for _ in range(20):
    request()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(100):
    request()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 100)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    took, faults = out.stdout.split()
    assert took == str(keep_mb > 0)
    if keep_mb:
        assert float(faults) < 5
    else:
        assert float(faults) > 100  # the pathology the setting exists for (a 1.4 MB round is ~350 pages)
