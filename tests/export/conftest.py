from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.fixture(scope="session")
def run_cli(repo_root):
    """run_cli(*args) -> CompletedProcess of `python -m export ARGS` in the repository root."""

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [sys.executable, "-m", "export", *args], cwd=repo_root, capture_output=True, text=True, timeout=900
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc

    return run
