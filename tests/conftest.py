"""Shared fixtures: one store of exported models per test session.

Exporting is the slow part of the suite, so every model is exported at most once per session, into
one shared store (ZOOSERVE_TEST_STORE keeps it between sessions while developing; up-to-date entries
are skipped), by a pool of worker processes (ZOOSERVE_TEST_EXPORT_JOBS, default 2) that starts on
the models the collected tests parametrise over, in test order, while the tests run. Tests that start
a server get a folder holding links to just the entries they need, so the server loads only those.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
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


def pytest_collection_modifyitems(session, config, items) -> None:
    """Remember which models the collected tests export, in order, so the pool can start on them early."""
    names = [
        item.callspec.params["name"]
        for item in items
        if hasattr(item, "callspec") and "name" in item.callspec.params and "export_model" in item.fixturenames
    ]
    config.stash[_PREFETCH] = list(dict.fromkeys(names))


_PREFETCH = pytest.StashKey[list]()


@pytest.fixture(scope="session")
def export_model(shared_store: Path, pytestconfig: pytest.Config) -> Iterator[Callable[[str], Path]]:
    """export_model(name) -> the model's entry folder in the shared store, exported once per session."""
    from export.build import build_quietly, worker_pool

    pool = worker_pool(int(os.environ.get("ZOOSERVE_TEST_EXPORT_JOBS", "2")))
    futures: dict[str, Future] = {}

    def submit(name: str) -> Future:
        with _lock:
            if name not in futures:
                futures[name] = pool.submit(build_quietly, name, shared_store)
            return futures[name]

    def ensure(name: str) -> Path:
        result = submit(name).result()
        if result.status == "failed":
            raise AssertionError(f"export of {name} failed: {result.error}")
        return shared_store / name

    for name in pytestconfig.stash.get(_PREFETCH, []):
        submit(name)
    yield ensure
    pool.shutdown(wait=True, cancel_futures=True)


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
