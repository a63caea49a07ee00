"""`python -m export build`: progress, summary, skip when up to date, failures named, weights from a file."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import torch

from export.weights import sha256_file
from export.zoo import build_model
from service.manifest import Manifest


def test_unknown_names_get_the_valid_ones(run_cli, tmp_path):
    proc = run_cli("build", "resnet5", "lenet5", "--store", str(tmp_path), check=False)
    assert proc.returncode == 2
    assert "unknown model 'resnet5'" in proc.stderr and "resnet50" in proc.stderr
    assert not any(tmp_path.iterdir()), "nothing is built when a name is unknown"


def test_build_then_skip_when_up_to_date(run_cli, tmp_path):
    first = run_cli("build", "lenet5", "--store", str(tmp_path))
    assert "[1/1] lenet5: building" in first.stdout and "built in" in first.stdout
    assert "parity" in first.stdout and "total" in first.stdout
    second = run_cli("build", "lenet5", "--store", str(tmp_path))
    assert "up to date, skipped" in second.stdout
    forced = run_cli("build", "lenet5", "--store", str(tmp_path), "--force")
    assert "built in" in forced.stdout
    # Only the entry itself: no temporary or replaced folders left behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lenet5"]
    assert sorted(p.name for p in (tmp_path / "lenet5").iterdir()) == [
        "1",
        "config.pbtxt",
        "labels.txt",
        "model.json",
    ]


def test_failures_are_named_and_others_still_built(run_cli, tmp_path):
    proc = run_cli("build", "lenet5", "resnet18", "--weights", str(tmp_path / "missing.pt"), "--store",
                   str(tmp_path / "s"), check=False)  # fmt: skip
    assert proc.returncode == 1
    assert "2 model(s) failed" in proc.stderr
    assert "lenet5: WeightsError" in proc.stderr and "resnet18: WeightsError" in proc.stderr
    proc = run_cli("build", "lenet5_digits", "lenet5", "--weights", "torchvision", "--store",
                   str(tmp_path / "s"), check=False)  # fmt: skip
    assert proc.returncode == 1 and "has no published torchvision weights" in proc.stderr


def test_weights_from_a_local_checkpoint(run_cli, tmp_path):
    torch.manual_seed(123)
    model = build_model("lenet5").eval()
    ckpt = tmp_path / "lenet5.pt"
    torch.save({"state_dict": model.state_dict()}, ckpt)
    run_cli("build", "lenet5", "--weights", str(ckpt), "--store", str(tmp_path / "s"))
    entry = tmp_path / "s" / "lenet5"
    manifest = Manifest.read(entry)
    assert manifest.weights.source == "file" and manifest.weights.sha256 == sha256_file(ckpt)
    assert manifest.export.parity_max_abs_diff <= manifest.export.parity_tolerance
    x = torch.randn(4, 1, 32, 32)
    with torch.inference_mode():
        expected = model(x).numpy()
    session = ort.InferenceSession(str(manifest.model_path(entry)), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": x.numpy()})[0]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_checkpoint_that_does_not_fit_is_refused(run_cli, tmp_path):
    ckpt = tmp_path / "wrong.pt"
    torch.save(build_model("lenet5").state_dict(), ckpt)
    proc = run_cli("build", "resnet18", "--weights", str(ckpt), "--store", str(tmp_path / "s"), check=False)
    assert proc.returncode == 1 and "does not fit the model" in proc.stderr
