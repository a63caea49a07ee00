"""onnxruntime set-up: the CPU quota, provider resolution and fallback, warm-up sizes."""

from __future__ import annotations

import logging

import pytest

from service import runtime
from service.errors import ProviderError


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
