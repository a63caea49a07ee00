"""The service as a real process, driven by the stock tritonclient and plain HTTP: readiness, metadata,
JSON and binary inference against PyTorch, classification, the digits test split as PNG images,
dynamic batching under concurrency, statistics, repository index, metrics."""

from __future__ import annotations

import asyncio
import io
import time

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

MODEL = "lenet5_digits"


@pytest.fixture(scope="module")
def server(exported_store, start_server):
    return start_server(exported_store(MODEL), warmup="all")


@pytest.fixture(scope="module")
def client(server):
    c = triton.InferenceServerClient(server.hostport, concurrency=4)
    yield c
    c.close()


@pytest.fixture(scope="module")
def torch_model():
    """The same network in PyTorch, with the weights the store entry was exported from."""
    import torch

    from export.weights import load
    from export.zoo.registry import get_spec

    model = load(get_spec(MODEL), "default", 0, log=lambda *a: None).model.eval()

    def forward(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(x)).numpy()

    return forward


def digits(n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    from export.training import digits_split

    _, _, images, labels = digits_split()
    return (images, labels) if n is None else (images[:n], labels[:n])


@pytest.fixture(scope="module")
def tensor_of(exported_store):
    """images -> what the model takes for these 8x8 digits (the training pipeline)."""
    from export.training import to_tensor
    from service.manifest import Manifest

    pre = Manifest.read(exported_store(MODEL) / MODEL).preprocessing
    return lambda images: to_tensor(images, pre).numpy()


def png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image, "L").save(buf, "PNG")
    return buf.getvalue()


def test_health_and_metadata(client):
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(MODEL) and client.is_model_ready(MODEL, "1")
    assert not client.is_model_ready("no_such_model")
    server_meta = client.get_server_metadata()
    assert server_meta["name"] == "zooserve" and "classification" in server_meta["extensions"]
    meta = client.get_model_metadata(MODEL)
    assert meta["name"] == MODEL and meta["versions"] == ["1"] and meta["platform"] == "onnxruntime_onnx"
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 1, 32, 32]}]
    assert meta["outputs"] == [{"name": "logits", "datatype": "FP32", "shape": [-1, 10]}]
    assert meta["providers"][0] == "CPUExecutionProvider"
    config = client.get_model_config(MODEL)
    assert config["max_batch_size"] == 256 and config["platform"] == "onnxruntime_onnx"


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_infer_matches_pytorch(client, torch_model, tensor_of, binary):
    images, _ = digits(5)
    x = tensor_of(images)
    inp = triton.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    out = triton.InferRequestedOutput("logits", binary_data=binary)
    result = client.infer(MODEL, [inp], outputs=[out], request_id="r1")
    got = result.as_numpy("logits")
    assert got.shape == (5, 10) and result.get_response()["id"] == "r1"
    want = torch_model(x)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    # default outputs (tritonclient then asks for binary), and a version in the path
    inp2 = triton.InferInput("input", list(x.shape), "FP32")
    inp2.set_data_from_numpy(x, binary_data=True)
    np.testing.assert_array_equal(client.infer(MODEL, [inp2], model_version="1").as_numpy("logits"), got)


def test_infer_reports_queue_and_compute_in_server_timing(server, tensor_of):
    images, _ = digits(3)
    x = tensor_of(images)
    body = {"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]}
    with httpx.Client(base_url=server.url, timeout=60) as http:
        t0 = time.perf_counter()
        response = http.post(f"/v2/models/{MODEL}/infer", json=body)
        elapsed_ms = (time.perf_counter() - t0) * 1e3
    assert response.status_code == 200
    metrics = {}
    for metric in response.headers["server-timing"].split(","):
        name, _, dur = metric.strip().partition(";dur=")
        metrics[name] = float(dur)
    assert set(metrics) == {"queue", "compute"}
    assert metrics["queue"] >= 0 and metrics["compute"] > 0
    assert metrics["queue"] + metrics["compute"] < elapsed_ms


def test_classification_extension(client, tensor_of):
    images, labels = digits(8)
    x = tensor_of(images)
    inp = triton.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    result = client.infer(MODEL, [inp], outputs=[triton.InferRequestedOutput("logits", class_count=3)])
    classes = result.as_numpy("logits")
    assert classes.shape == (8, 3)
    for row in classes:
        score, index, name = row[0].decode().split(":")
        assert float(score) > float(row[1].decode().split(":")[0])
        assert name == index  # the digits' labels are their digits
    top1 = np.array([int(r[0].decode().split(":")[1]) for r in classes])
    assert (top1 == labels).mean() >= 0.75


def test_digits_split_as_png_is_classified_like_the_paper_says(server):
    """The whole test split (450 digits) as PNG files through classify: at least 97% correct."""
    images, labels = digits()
    predicted = []
    with httpx.Client(base_url=server.url, timeout=120) as http:
        for start in range(0, len(images), 64):
            chunk = images[start : start + 64]
            files = [("file", (f"{start + i}.png", png(im), "image/png")) for i, im in enumerate(chunk)]
            r = http.post(f"/v2/models/{MODEL}/classify", params={"top_k": 3}, files=files)
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["model_name"] == MODEL and len(body["predictions"]) == len(chunk)
            predicted += [p[0]["index"] for p in body["predictions"]]
        # one image as the raw body answers the same as in a multipart batch
        r = http.post(f"/v2/models/{MODEL}/classify", content=png(images[0]), headers={"Content-Type": "image/png"})
        assert r.json()["predictions"][0][0]["index"] == predicted[0]
    accuracy = float((np.array(predicted) == labels).mean())
    assert accuracy >= 0.97, accuracy


def test_dynamic_batching_forms_batches_and_returns_each_its_own_rows(server, tensor_of):
    images, _ = digits(96)
    x = tensor_of(images)
    url = f"/v2/models/{MODEL}/infer"

    def body(i: int) -> dict:
        return {
            "inputs": [{"name": "input", "shape": [1, 1, 32, 32], "datatype": "FP32", "data": x[i].ravel().tolist()}]
        }

    with httpx.Client(base_url=server.url, timeout=60) as http:
        single = [np.array(http.post(url, json=body(i)).json()["outputs"][0]["data"]) for i in range(len(x))]
        before = batch_histogram(http)

    async def burst() -> list[np.ndarray]:
        limits = httpx.Limits(max_connections=48, max_keepalive_connections=48)
        async with httpx.AsyncClient(base_url=server.url, timeout=60, limits=limits) as http:
            responses = await asyncio.gather(*(http.post(url, json=body(i)) for i in range(len(x)) for _ in range(2)))
        assert all(r.status_code == 200 for r in responses)
        return [np.array(r.json()["outputs"][0]["data"]) for r in responses]

    bursts = 0
    while bursts < 5:
        bursts += 1
        concurrent = asyncio.run(burst())
        for k, out in enumerate(concurrent):
            np.testing.assert_allclose(out, single[k // 2], rtol=1e-5, atol=1e-5)
        with httpx.Client(base_url=server.url) as http:
            after = batch_histogram(http)
        executed = after["count"] - before["count"]
        rows = after["sum"] - before["sum"]
        if rows > executed:  # some batch held more than one request
            break
    assert rows == 2 * len(x) * bursts
    assert rows > executed, f"{rows} rows in {executed} batches: no batching in {bursts} bursts"


def batch_histogram(http: httpx.Client) -> dict[str, float]:
    families = {f.name: f for f in text_string_to_metric_families(http.get("/metrics").text)}
    out = {"count": 0.0, "sum": 0.0}
    for s in families["zooserve_batch_size"].samples:
        if s.labels.get("model") == MODEL and s.name.endswith(("_count", "_sum")):
            out[s.name.rsplit("_", 1)[1]] += s.value
    return out


def test_statistics_index_and_metrics(client, server):
    stats = client.get_inference_statistics(MODEL)["model_stats"][0]
    assert stats["name"] == MODEL and stats["inference_stats"]["success"]["count"] > 0
    assert stats["providers"][0] == "CPUExecutionProvider"
    assert stats["execution_count"] <= stats["inference_count"]
    assert any(b["batch_size"] > 1 for b in stats["batch_stats"])
    index = client.get_model_repository_index()
    assert {"name": MODEL, "state": "READY", "version": "1", "reason": ""} in index
    with pytest.raises(triton.InferenceServerException):
        client.get_model_metadata("no_such_model")
    text = httpx.get(f"{server.url}/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    success = [
        s.value
        for s in families["zooserve_requests"].samples
        if s.name == "zooserve_requests_total"
        and s.labels == {"model": MODEL, "endpoint": "infer", "outcome": "success"}
    ]
    assert success and success[0] >= 1
    assert {s.labels["model"]: s.value for s in families["zooserve_model_ready"].samples}[MODEL] == 1.0
