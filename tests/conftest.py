"""Shared fixtures: one store of exported models per test session.

Exporting is the slow part of the suite, so every model is exported at most once per session, into
one shared store (ZOOSERVE_TEST_STORE keeps it between sessions while developing; up-to-date entries
are skipped). Tests that start a server get a folder holding links to just the entries they need,
so the server loads only those.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

_lock = threading.Lock()


@pytest.fixture(scope="session")
def shared_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = os.environ.get("ZOOSERVE_TEST_STORE")
    if path:
        Path(path).mkdir(parents=True, exist_ok=True)
        return Path(path)
    return tmp_path_factory.mktemp("store")


@pytest.fixture(scope="session")
def export_model(shared_store: Path) -> Callable[[str], Path]:
    """export_model(name) -> the model's entry folder in the shared store, exported on first use."""
    from export.build import build

    done: set[str] = set()

    def ensure(name: str) -> Path:
        with _lock:
            if name not in done:
                build(name, shared_store, log=lambda *_: None)
                done.add(name)
        return shared_store / name

    return ensure


@pytest.fixture(scope="session")
def exported_store(
    export_model: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory
) -> Callable[..., Path]:
    """exported_store(*names) -> a store folder holding exactly those models (links into the shared store)."""

    def make(*names: str) -> Path:
        folder = tmp_path_factory.mktemp("-".join(names)[:60] or "empty")
        for name in names:
            (folder / name).symlink_to(export_model(name).resolve(), target_is_directory=True)
        return folder

    return make


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
