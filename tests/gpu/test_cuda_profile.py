"""On a CUDA machine (onnxruntime-gpu installed, a GPU present): the provider really is CUDA, and the
per-block GPU times of the prefix-differences method add up to the full run.

Run there with `pytest tests/gpu`; elsewhere these tests are skipped because the hardware is missing.
"""

from __future__ import annotations

import onnxruntime as ort
import pytest

from service.manifest import Manifest
from service.profile import Profiler, ProfileRequest, ProfileTarget

pytestmark = pytest.mark.skipif(
    "CUDAExecutionProvider" not in ort.get_available_providers(), reason="needs onnxruntime-gpu and a GPU"
)


@pytest.fixture(scope="module")
def resnet50(export_model):
    entry = export_model("resnet50")
    return ProfileTarget(
        name="resnet50",
        version=1,
        model_dir=entry,
        manifest=Manifest.read(entry),
        providers=("CUDAExecutionProvider", "CPUExecutionProvider"),
    )


def test_block_times_add_up_to_the_full_run_on_the_gpu(resnet50):
    result = Profiler().profile(resnet50, ProfileRequest(batch_size=8, runs=50, group_by="layer", depth=2))
    if result.provider != "CUDAExecutionProvider":
        pytest.fail(f"onnxruntime fell back to {result.provider}: the CUDA provider did not load")
    assert result.method == "prefix-differences"
    assert {r.name for r in result.rows} >= {f"layer{i}.0" for i in range(1, 5)}
    block_sum = sum(r.p50_ms for r in result.rows)
    assert 0.8 * result.total_ms.p50 <= block_sum <= 1.2 * result.total_ms.p50
