"""Shared fixtures: one store of exported models per test session.

Exporting is the slow part of the suite, so every model is exported at most once per session, into
one shared store, by a pool of worker processes (ZOOSERVE_TEST_EXPORT_JOBS, default 2) that starts on
the models the collected tests parametrise over, in test order, while the tests run. Tests that start
a server get a folder holding links to just the entries they need, so the server loads only those.

The whole zoo takes about 6 GB exported, so a temporary store does not keep it all: a model's tests
run one after another, its entry is deleted after the last of them (a later test that asks for it
again gets it exported anew), and the store itself goes at the end of the session. It then holds what
the pool has exported ahead of the tests, at most 3.1 GB in a full run.
ZOOSERVE_TEST_STORE names a store to keep instead (while developing: up-to-date entries are skipped).
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path

import pytest

_lock = threading.Lock()
_PREFETCH = pytest.StashKey[list]()
_LAST_USE = pytest.StashKey[dict]()
_RELEASE = pytest.StashKey[Callable[[str], None]]()


def _model_of(item: pytest.Item) -> str | None:
    """The model a test exports, when it is parametrised over `name` and uses `export_model`."""
    callspec = getattr(item, "callspec", None)
    if callspec is None or "name" not in callspec.params or "export_model" not in item.fixturenames:
        return None
    return callspec.params["name"]


@pytest.hookimpl(trylast=True)  # after -k and -m have deselected
def pytest_collection_modifyitems(session, config, items) -> None:
    """Run each model's tests together (a stable sort within each module), then remember the order the
    models are needed in, for the export pool, and each model's last test, to let its entry go after it."""
    module_at: dict[object, int] = {}
    group_at: dict[tuple[object, object], int] = {}
    for i, item in enumerate(items):
        module_at.setdefault(item.parent, i)
        group_at.setdefault((item.parent, _model_of(item) or item.nodeid), i)
    items.sort(key=lambda it: (module_at[it.parent], group_at[(it.parent, _model_of(it) or it.nodeid)]))

    last_use: dict[str, str] = {}
    for item in items:
        if name := _model_of(item):
            last_use[name] = item.nodeid
    config.stash[_PREFETCH] = list(last_use)  # first-use order is the same: each model's tests are together
    config.stash[_LAST_USE] = {nodeid: name for name, nodeid in last_use.items()}


def pytest_runtest_teardown(item: pytest.Item) -> None:
    name = item.config.stash.get(_LAST_USE, {}).get(item.nodeid)
    release = item.config.stash.get(_RELEASE, None)
    if name and release:
        release(name)


@pytest.fixture(scope="session")
def shared_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = os.environ.get("ZOOSERVE_TEST_STORE")
    if path:
        Path(path).mkdir(parents=True, exist_ok=True)
        yield Path(path)
        return
    store = tmp_path_factory.mktemp("store")
    yield store
    shutil.rmtree(store, ignore_errors=True)


@pytest.fixture(scope="session")
def export_model(shared_store: Path, pytestconfig: pytest.Config) -> Iterator[Callable[[str], Path]]:
    """export_model(name) -> the model's entry folder in the shared store, exported once per session
    (again only if its entry was let go after its own tests and a later test needs it)."""
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

    def release(name: str) -> None:
        with _lock:
            future = futures.pop(name, None)
        if future is not None:
            future.result()  # never delete under a running export
            shutil.rmtree(shared_store / name, ignore_errors=True)

    for name in pytestconfig.stash.get(_PREFETCH, []):
        submit(name)
    if not os.environ.get("ZOOSERVE_TEST_STORE"):
        pytestconfig.stash[_RELEASE] = release
    yield ensure
    if _RELEASE in pytestconfig.stash:
        del pytestconfig.stash[_RELEASE]
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
