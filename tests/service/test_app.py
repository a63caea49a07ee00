"""The app in process (ASGI, TestClient) over the tiny store: routes, the one error shape, infer in JSON and
binary, classify, stats, repository load/unload, metrics."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from service.rest.app import create_app
from service.settings import Settings
from tests.service.conftest import LABELS, tiny_forward, tiny_weights


@pytest.fixture(scope="module")
def client(tiny_store):
    app = create_app(Settings(store=tiny_store, models=["tiny"], warmup="all"))
    with TestClient(app) as c:
        yield c


def png(value: int = 128, size: int = 8, mode: str = "L") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (size, size), value).save(buf, "PNG")
    return buf.getvalue()


def infer_json(x: np.ndarray, **extra) -> dict:
    return {
        "inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]
    } | extra


def test_server_health_and_metadata(client):
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").status_code == 200
    meta = client.get("/v2").json()
    assert meta["name"] == "zooserve" and "binary_tensor_data" in meta["extensions"]
    m = client.get("/v2/models/tiny").json()
    assert m["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 1, 8, 8]}]
    assert m["outputs"] == [{"name": "logits", "datatype": "FP32", "shape": [-1, 3]}]
    assert m["providers"] == ["CPUExecutionProvider"]
    assert client.get("/v2/models/tiny/versions/1").json() == m
    assert client.get("/v2/models/tiny/ready").json()["ready"] is True
    assert client.get("/v2/models/tiny/config").json()["max_batch_size"] == 8


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("get", "/v2/models/nope", 404),
        ("get", "/v2/models/tiny/versions/2", 404),
        ("get", "/v2/models/tiny_rgb/ready", 404),  # in the store, not loaded
        ("post", "/v2/models/nope/infer", 404),
        ("post", "/v2/models/tiny/infer", 400),  # empty body
        ("get", "/v2/no/such/route", 404),
        ("get", "/v2/models/tiny/infer", 405),
        ("post", "/v2/repository/models/nope/load", 404),
    ],
)
def test_errors_have_one_shape(client, method, path, status):
    r = getattr(client, method)(path)
    assert r.status_code == status
    assert set(r.json()) == {"error"} and r.json()["error"]


def test_infer_json_matches_the_model(client):
    x = np.random.default_rng(0).standard_normal((3, 1, 8, 8), dtype=np.float32)
    r = client.post("/v2/models/tiny/infer", json=infer_json(x, id="abc"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_name"] == "tiny" and body["model_version"] == "1" and body["id"] == "abc"
    out = body["outputs"][0]
    assert out["name"] == "logits" and out["shape"] == [3, 3] and out["datatype"] == "FP32"
    np.testing.assert_allclose(np.reshape(out["data"], (3, 3)), tiny_forward(x, *tiny_weights(1)), rtol=1e-5)


def test_infer_binary_and_classification(client):
    x = np.random.default_rng(1).standard_normal((2, 1, 8, 8), dtype=np.float32)
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": [2, 1, 8, 8],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": x.nbytes},
                }
            ],
            "outputs": [
                {"name": "logits", "parameters": {"binary_data": True}},
                {"name": "logits", "parameters": {"classification": 2}},
            ],
        }
    ).encode()
    r = client.post(
        "/v2/models/tiny/versions/1/infer",
        content=header + x.tobytes(),
        headers={"Inference-Header-Content-Length": str(len(header)), "Content-Type": "application/octet-stream"},
    )
    assert r.status_code == 200, r.text
    hl = int(r.headers["inference-header-content-length"])
    meta = json.loads(r.content[:hl])
    binary, classes = meta["outputs"]
    logits = np.frombuffer(r.content[hl : hl + binary["parameters"]["binary_data_size"]], np.float32).reshape(2, 3)
    np.testing.assert_allclose(logits, tiny_forward(x, *tiny_weights(1)), rtol=1e-5)
    assert classes["datatype"] == "BYTES" and classes["shape"] == [2, 2]
    top = [s.split(":") for s in classes["data"]]
    assert [int(t[1]) for t in top[:2]] == np.argsort(-logits[0])[:2].tolist()
    assert top[0][2] == LABELS[int(top[0][1])]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"inputs": [{"name": "image", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": [0] * 64}]}, "takes one"),
        ({"inputs": [{"name": "input", "shape": [1, 1, 4, 4], "datatype": "FP32", "data": [0] * 16}]}, "shape"),
        ({"inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP64", "data": [0] * 64}]}, "FP32"),
        ({"inputs": [{"name": "input", "shape": [9, 1, 8, 8], "datatype": "FP32", "data": [0] * 576}]}, "1..8"),
        (
            {
                "inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": [0] * 64}],
                "outputs": [{"name": "probs"}],
            },
            "no output",
        ),
    ],
)
def test_infer_validates_against_the_model(client, payload, message):
    r = client.post("/v2/models/tiny/infer", json=payload)
    assert r.status_code == 400 and message in r.json()["error"]


def test_classify_raw_and_multipart(client):
    r = client.post("/v2/models/tiny/classify?top_k=2", content=png(200))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_name"] == "tiny" and body["model_version"] == "1"
    (preds,) = body["predictions"]
    assert len(preds) == 2 and preds[0]["score"] >= preds[1]["score"]
    assert preds[0]["label"] == LABELS[preds[0]["index"]]
    assert set(body["timing_ms"]) == {"decode", "queue", "compute"}
    header = dict(m.strip().split(";dur=") for m in r.headers["server-timing"].split(","))
    assert {k: round(float(v), 3) for k, v in header.items()} == {k: round(v, 3) for k, v in body["timing_ms"].items()}
    # the same image as the model computes it
    x = (np.full((1, 1, 8, 8), 200, np.float32) * np.float32(1 / 255) - np.float32(0.5)) / np.float32(0.25)
    logits = tiny_forward(x, *tiny_weights(1))[0].astype(np.float64)
    probs = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    assert preds[0]["index"] == int(np.argmax(probs))
    assert preds[0]["score"] == pytest.approx(probs.max(), rel=1e-5)

    files = [("file", (f"{v}.png", png(v), "image/png")) for v in (0, 100, 255)] * 4  # 12 images > max batch 8
    r = client.post("/v2/models/tiny/classify", files=files)
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["predictions"]) == 12 and all(len(p) == 3 for p in body["predictions"])  # top_k 5 capped at 3
    assert body["filenames"][:3] == ["0.png", "100.png", "255.png"]
    assert body["predictions"][0] == body["predictions"][3]


@pytest.mark.parametrize(
    ("kwargs", "status"),
    [
        ({"content": b"not an image"}, 400),
        ({"content": png(), "params": {"top_k": "x"}}, 400),
        ({"content": png(), "params": {"top_k": "0"}}, 400),
        ({"files": [("note", ("a.txt", b"hello", "text/plain"))], "data": {"x": "1"}}, 400),
    ],
)
def test_classify_errors(client, kwargs, status):
    r = client.post("/v2/models/tiny/classify", **kwargs)
    assert r.status_code == status and "error" in r.json()


def test_stats_are_triton_shaped(client):
    x = np.zeros((2, 1, 8, 8), np.float32)
    before = client.get("/v2/models/tiny/stats").json()["model_stats"][0]
    assert client.post("/v2/models/tiny/infer", json=infer_json(x)).status_code == 200
    stats = client.get("/v2/models/tiny/stats").json()["model_stats"][0]
    assert stats["name"] == "tiny" and stats["version"] == "1"
    assert stats["providers"] == ["CPUExecutionProvider"]
    inf = stats["inference_stats"]
    assert inf["success"]["count"] == before["inference_stats"]["success"]["count"] + 1
    assert stats["inference_count"] == before["inference_count"] + 2
    for key in ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output"):
        assert set(inf[key]) == {"count", "ns"}
    assert any(b["batch_size"] == 2 and b["compute_infer"]["count"] >= 1 for b in stats["batch_stats"])
    assert client.get("/v2/models/stats").json()["model_stats"][0]["name"] == "tiny"


def test_repository_load_and_unload(client):
    index = {m["name"]: m for m in client.get("/v2/repository/index").json()}
    assert index["tiny"]["state"] == "READY" and index["tiny_rgb"]["state"] == "UNAVAILABLE"
    r = client.post("/v2/repository/models/tiny_rgb/load")
    assert r.status_code == 200 and r.json()["state"] == "READY"
    assert client.get("/v2/models/tiny_rgb/ready").status_code == 200
    img = io.BytesIO()
    Image.new("RGB", (20, 10), (10, 200, 30)).save(img, "JPEG")
    assert client.post("/v2/models/tiny_rgb/classify", content=img.getvalue()).status_code == 200
    ready_only = client.post("/v2/repository/index", json={"ready": True}).json()
    assert {m["name"] for m in ready_only} == {"tiny", "tiny_rgb"}
    for bad in (b'{"ready": "false"}', b"[true]", b"{not json"):  # refused, not read as "list everything"
        r = client.post("/v2/repository/index", content=bad)
        assert r.status_code == 400 and "index request" in r.json()["error"], bad
    assert client.post("/v2/repository/models/tiny_rgb/unload").status_code == 200
    assert client.get("/v2/models/tiny_rgb/ready").status_code == 404
    assert client.post("/v2/models/tiny_rgb/classify", content=img.getvalue()).status_code == 404
    index = {m["name"]: m for m in client.get("/v2/repository/index").json()}
    assert index["tiny_rgb"]["state"] == "UNAVAILABLE" and index["tiny_rgb"]["reason"] == "unloaded"
    assert client.get("/v2/models/tiny/ready").status_code == 200


def test_not_ready_is_a_400_as_the_protocol_says(client):
    """Open Inference Protocol health: 200 for true, 4xx for false (Triton: 400)."""
    from service.dataplane import ModelState

    dp = client.app.state.dataplane
    status = dp._status_of("tiny_rgb")
    status.state = ModelState.LOADING  # as while its first load runs
    try:
        r = client.get("/v2/models/tiny_rgb/ready")
        assert r.status_code == 400 and r.json() == {"name": "tiny_rgb", "ready": False}
    finally:
        status.state = ModelState.UNAVAILABLE
    dp._stopping = True
    try:
        r = client.get("/v2/health/ready")
        assert r.status_code == 400 and r.json() == {"ready": False}
        assert client.get("/v2/health/live").status_code == 400
    finally:
        dp._stopping = False
    assert client.get("/v2/health/ready").status_code == 200


def test_metrics_parse(client):
    client.post("/v2/models/tiny/infer", json=infer_json(np.zeros((1, 1, 8, 8), np.float32)))
    client.post("/v2/models/nope/infer", json={})
    r = client.get("/metrics")
    assert r.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(r.text)}
    requests = {
        (s.labels["model"], s.labels["endpoint"], s.labels["outcome"]): s.value
        for s in families["zooserve_requests"].samples
        if s.name == "zooserve_requests_total"
    }
    assert requests[("tiny", "infer", "success")] >= 1
    assert requests[("_unknown", "infer", "client_error")] >= 1
    for name in (
        "zooserve_request_duration_seconds",
        "zooserve_queue_duration_seconds",
        "zooserve_compute_duration_seconds",
        "zooserve_batch_size",
    ):
        assert families[name].type == "histogram"
        assert any(s.labels.get("model") == "tiny" for s in families[name].samples)
    ready = {s.labels["model"]: s.value for s in families["zooserve_model_ready"].samples}
    assert ready["tiny"] == 1.0
    assert families["zooserve_requests_in_flight"].samples[0].value == 0.0
    assert "zooserve_queue_size" in families


def test_body_limit(tiny_store):
    app = create_app(Settings(store=tiny_store, models=["tiny"], warmup="none", max_request_bytes=2048))
    with TestClient(app) as c:
        r = c.post("/v2/models/tiny/infer", content=b"x" * 4096, headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and "error" in r.json()


def test_multipart_limits_and_errors(tiny_store):
    settings = Settings(store=tiny_store, models=["tiny"], warmup="none", max_request_bytes=2048, max_queue_size=1)
    boundary = "zooserve-test"
    part = png(0, size=64)  # a few hundred bytes; four of them exceed 2048 with their headers
    body = (
        b"".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{i}.png"\r\n'
            f"Content-Type: image/png\r\n\r\n".encode()
            + part
            + b"\r\n"
            for i in range(12)
        )
        + f"--{boundary}--\r\n".encode()
    )
    multipart = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    with TestClient(create_app(settings)) as c:
        # chunked, so no Content-Length to refuse it by: refused as the body arrives
        r = c.post("/v2/models/tiny/classify", content=iter([body[:1000], body[1000:]]), headers=multipart)
        assert r.status_code == 413 and "exceeds the limit of 2048" in r.json()["error"]
        r = c.post("/v2/models/tiny/classify", content=b"xx", headers={"Content-Type": "multipart/form-data"})
        assert r.status_code == 400 and "malformed multipart body" in r.json()["error"], r.text
    big_enough = Settings(store=tiny_store, models=["tiny"], warmup="none", max_queue_size=1)
    with TestClient(create_app(big_enough)) as c:
        # 12 images are two batches of at most 8: more than a queue of 1 holds, however idle the model
        r = c.post("/v2/models/tiny/classify", content=body, headers=multipart)
        assert r.status_code == 400 and "12 images are more than model 'tiny' queues at once" in r.json()["error"]
        one = [("file", (f"{i}.png", png(i), "image/png")) for i in range(8)]
        assert c.post("/v2/models/tiny/classify", files=one).status_code == 200


def test_unknown_start_up_model_fails_the_start(tiny_store):
    app = create_app(Settings(store=tiny_store, models=["nope"]))
    with pytest.raises(Exception, match="nope"), TestClient(app):
        pass


def test_a_manifest_naming_an_output_the_model_lacks_fails_the_load(tiny_store, tmp_path):
    import shutil

    shutil.copytree(tiny_store / "tiny", tmp_path / "tiny")
    manifest = json.loads((tmp_path / "tiny" / "model.json").read_text())
    manifest["output"]["name"] = "scores"
    (tmp_path / "tiny" / "model.json").write_text(json.dumps(manifest))
    app = create_app(Settings(store=tmp_path, models=["tiny"], warmup="none"))
    with pytest.raises(Exception, match="lack the manifest's 'scores'"), TestClient(app):
        pass


def test_a_client_gone_mid_body_is_a_client_error():
    """The body reader turns an http.disconnect into a 499, which the request metrics count as client_error."""
    import asyncio

    from service.errors import ClientClosedRequest
    from service.rest.responses import receive_body

    messages = iter([{"type": "http.request", "body": b"x" * 10, "more_body": True}, {"type": "http.disconnect"}])

    async def receive():
        return next(messages)

    with pytest.raises(ClientClosedRequest, match="after 10 bytes") as info:
        asyncio.run(receive_body(receive, b"100", 1000))
    assert info.value.status_code == 499


def test_classify_survives_a_reload_during_its_decode(tiny_store):
    """The model is looked up again after the decode: a reload meanwhile (a new batcher) is no 503."""
    import asyncio
    import time

    from service.dataplane import DataPlane

    async def main():
        dp = DataPlane(Settings(store=tiny_store, models=["tiny"], warmup="none"))
        await dp.start()
        try:
            model = dp._models["tiny"]
            decode = model.preprocessor.batch

            def slow_decode(images):
                time.sleep(0.3)  # a large image's decode, long enough for the reload below
                return decode(images)

            model.preprocessor.batch = slow_decode
            classify = asyncio.ensure_future(dp.classify("tiny", None, [png(200)], 2))
            await asyncio.sleep(0.05)
            await dp.load("tiny")  # a reload: the old batcher closes, a new one takes over
            assert dp._models["tiny"] is not model
            return await classify
        finally:
            await dp.stop()

    result = asyncio.run(main())
    assert len(result["predictions"][0]) == 2


def test_a_cancelled_load_does_not_stay_loading(tiny_store):
    import asyncio
    import time

    from service.dataplane import DataPlane

    async def main():
        dp = DataPlane(Settings(store=tiny_store, models=[], warmup="none"))
        await dp.start()
        build = dp._build

        def slow_build(name, model_dir):
            time.sleep(0.3)
            return build(name, model_dir)

        dp._build = slow_build
        try:
            load = asyncio.ensure_future(dp.load("tiny"))
            await asyncio.sleep(0.05)
            assert [m["state"] for m in dp.index() if m["name"] == "tiny"] == ["LOADING"]
            load.cancel()
            with pytest.raises(asyncio.CancelledError):
                await load
            return [m for m in dp.index() if m["name"] == "tiny"]
        finally:
            await dp.stop()  # waits for the build still running in the loader thread, off the event loop

    assert asyncio.run(main()) == [{"name": "tiny", "state": "UNAVAILABLE", "reason": "load cancelled"}]


def test_stop_abandons_a_warm_up_in_progress(tiny_store, monkeypatch):
    """A load still warming up when the server stops gives up before its next batch size: the shutdown
    does not wait for the whole warm-up (seconds to minutes for a large model with every batch size)."""
    import asyncio
    import time

    from service import dataplane as dataplane_module
    from service.dataplane import DataPlane
    from service.errors import ShuttingDown

    warm_up = dataplane_module.warm_up

    def slow_warm_up(session, input_name, sample_shape, sizes, stop=None):
        def slowly():
            for n in sizes:
                time.sleep(0.2)
                yield n

        warm_up(session, input_name, sample_shape, slowly(), stop)

    monkeypatch.setattr(dataplane_module, "warm_up", slow_warm_up)

    async def main():
        dp = DataPlane(Settings(store=tiny_store, models=[], warmup="all"))  # tiny: sizes 1..8, 1.6 s here
        await dp.start()
        load = asyncio.ensure_future(dp.load("tiny"))
        await asyncio.sleep(0.3)
        t0 = time.perf_counter()
        await dp.stop()
        stopped_in = time.perf_counter() - t0
        with pytest.raises(ShuttingDown):
            await load
        return stopped_in

    assert asyncio.run(main()) < 0.8
