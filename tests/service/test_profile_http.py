"""POST /v2/models/{m}/profile and GET /v2/models/{m}/layers on the real app (issue 5)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.manifest import Manifest
from service.rest.app import create_app
from service.settings import Settings

MODEL = "resnet18"


@pytest.fixture(scope="module")
def client(exported_store):
    store = exported_store(MODEL)
    app = create_app(Settings(store=store, warmup="none"))
    with TestClient(app) as c:
        c.manifest = Manifest.read(store / MODEL)
        yield c


def test_layers_is_the_manifest_table(client):
    r = client.get(f"/v2/models/{MODEL}/layers")
    assert r.status_code == 200
    body = r.json()
    assert body["model"] == MODEL and body["macs"] == client.manifest.macs
    assert body["layers"] == [row.model_dump() for row in client.manifest.layers]
    assert client.get("/v2/models/nope/layers").status_code == 404


def test_profile_over_http(client):
    r = client.post(f"/v2/models/{MODEL}/profile", json={"depth": 2, "runs": 3, "warmup": 1})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["method"] == "onnxruntime-profiler" and body["provider"] == "CPUExecutionProvider"
    names = [row["name"] for row in body["rows"]]
    assert [n for n in names if n.startswith("layer")] == [f"layer{i}.{j}" for i in range(1, 5) for j in range(2)]
    assert sum(row["share"] for row in body["rows"]) == pytest.approx(1.0, abs=1e-3)
    assert sum(row["macs"] for row in body["rows"]) == client.manifest.macs
    again = client.post(f"/v2/models/{MODEL}/profile?sort=time", json={"depth": 2, "runs": 3, "warmup": 1}).json()
    assert again["cached"] and again["sort"] == "time"
    times = [row["mean_ms"] for row in again["rows"]]
    assert times == sorted(times, reverse=True)


def test_profile_defaults_and_chrome_trace(client):
    r = client.post(f"/v2/models/{MODEL}/profile?format=chrome", json={"runs": 2, "warmup": 0})
    assert r.status_code == 200
    events = r.json()["traceEvents"]
    assert any(e.get("cat") == "Node" and e.get("args", {}).get("module") == "fc" for e in events)
    # An empty body takes every default.
    r = client.post(f"/v2/models/{MODEL}/profile")
    assert r.status_code == 200 and r.json()["runs"] == 20 and r.json()["group_by"] == "layer"


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"batch_size": 1000}, 400, "max batch size"),
        ({"runs": 1001}, 400, "runs"),
        ({"group_by": "everything"}, 400, "group_by"),
        ({"method": "prefix", "group_by": "op_type"}, 400, "layer or block"),
        ({"provider": "nonsense"}, 400, "provider"),
        ({"surprise": 1}, 400, "surprise"),
    ],
)
def test_profile_errors(client, body, status, words):
    r = client.post(f"/v2/models/{MODEL}/profile", json=body)
    assert r.status_code == status and words in r.json()["error"]


def test_unknown_model(client):
    r = client.post("/v2/models/nope/profile", json={})
    assert r.status_code == 404 and "error" in r.json()


def test_profile_while_serving(client):
    """A profile runs off the event loop beside live inference: both succeed."""
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224), dtype=np.float32)
    infer = {"inputs": [{"name": "input", "shape": [1, 3, 224, 224], "datatype": "FP32", "data": x.ravel().tolist()}]}
    statuses: list[int] = []
    profiled: list[int] = []

    def serve() -> None:
        for _ in range(8):
            statuses.append(client.post(f"/v2/models/{MODEL}/infer", json=infer).status_code)

    def profile() -> None:
        body = {"runs": 5, "warmup": 1, "batch_size": 2, "group_by": "block"}
        profiled.append(client.post(f"/v2/models/{MODEL}/profile", json=body).status_code)

    threads = [threading.Thread(target=serve), threading.Thread(target=profile)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert profiled == [200]
    assert statuses == [200] * 8
    # Serving is still healthy afterwards, and the profiling session is gone (no profile left running).
    assert client.get(f"/v2/models/{MODEL}/ready").status_code == 200
    assert not client.app.state.profiler.guard.busy(MODEL)


def test_second_profile_of_a_busy_model_is_refused(client):
    if not hasattr(client.app.state, "profiler"):
        client.post(f"/v2/models/{MODEL}/profile", json={"runs": 1, "warmup": 0})  # creates the app's profiler
    profiler = client.app.state.profiler
    with profiler.guard.slot(MODEL):
        r = client.post(f"/v2/models/{MODEL}/profile", json={"runs": 4, "warmup": 2})
    assert r.status_code == 409 and r.headers["Retry-After"]
