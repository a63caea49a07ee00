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


def test_the_fingerprint_covers_what_shapes_an_entry(monkeypatch):
    """Not only a builder's own module: the family modules it builds on, training, the analysis behind the
    manifest, the manifest and config writers, and the model libraries' versions."""
    import importlib.metadata

    from export import build
    from export.zoo.registry import get_spec

    names = {p.as_posix().split("/export/")[-1] if "/export/" in p.as_posix() else p.name
             for p in build.fingerprint_files()}  # fmt: skip
    assert {"zoo/resnet_cifar.py", "zoo/wrn.py", "training.py", "analyze.py", "weights.py", "labels.py"} <= names
    assert {"manifest.py", "store.py"} <= names
    spec = get_spec("wrn_16_8")
    before = build.fingerprint(spec, "random", 0)
    assert build.fingerprint(spec, "random", 0) == before  # stable
    assert build.fingerprint(spec, "random", 1) != before  # seed
    version = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda p: "0.0.0" if p == "timm" else version(p))
    assert build.fingerprint(spec, "random", 0) != before  # a model library's version


def test_leftovers_of_killed_builds_are_cleared(tmp_path):
    import os
    import subprocess
    import sys

    from export.build import remove_leftovers

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(gone.stdout)  # a process that has exited
    (tmp_path / f".lenet5.tmp-{dead}").mkdir()  # killed while exporting
    (tmp_path / f".lenet5.old-{dead}" / "1").mkdir(parents=True)  # killed between the two renames
    (tmp_path / f".lenet5.tmp-{os.getpid()}").mkdir()  # a build still running: left alone
    (tmp_path / f".lenet5_digits.tmp-{dead}").mkdir()  # another model's: its own build clears it
    remove_leftovers(tmp_path, "lenet5")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f".lenet5.tmp-{os.getpid()}",
        f".lenet5_digits.tmp-{dead}",
        "lenet5",  # the replaced entry put back
    ]


def test_list_refuses_a_readme_it_cannot_refresh(run_cli, tmp_path):
    proc = run_cli("list", "--readme", str(tmp_path / "README.md"), check=False)
    assert proc.returncode == 2 and "--readme goes with --markdown" in proc.stderr
    readme = tmp_path / "README.md"
    readme.write_text("# no model list here\n")
    zoo = tmp_path / "zoo.md"
    proc = run_cli("list", "--markdown", str(zoo), "--readme", str(readme), check=False)
    assert proc.returncode == 2 and "no model list to refresh" in proc.stderr
    assert not zoo.exists()  # nothing written
