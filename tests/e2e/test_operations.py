"""Operating the service as a real process: overload answers 503 at once and the server stays healthy,
models load and unload while another model is under traffic, SIGTERM drains what is in flight and exits."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from prometheus_client.parser import text_string_to_metric_families

SMALL, BIG = "lenet5_digits", "resnet18"


def binary_infer(x: np.ndarray) -> tuple[bytes, dict[str, str]]:
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": list(x.shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": x.nbytes},
                }
            ],
            "outputs": [{"name": "logits", "parameters": {"binary_data": True}}],
        }
    ).encode()
    headers = {"Inference-Header-Content-Length": str(len(header)), "Content-Type": "application/octet-stream"}
    return header + x.tobytes(), headers


def metric(url: str, name: str, **labels: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


def test_overload_answers_503_at_once_and_the_server_stays_healthy(exported_store, start_server):
    server = start_server(exported_store(BIG), max_batch_size=1, max_queue_size=2)
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224), dtype=np.float32)
    body, headers = binary_infer(x)
    url = f"{server.url}/v2/models/{BIG}/infer"

    async def flood(n: int) -> list[tuple[httpx.Response, float]]:
        limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
        async with httpx.AsyncClient(timeout=120, limits=limits) as http:

            async def one():
                t0 = time.perf_counter()
                r = await http.post(url, content=body, headers=headers)
                return r, time.perf_counter() - t0

            return await asyncio.gather(*(one() for _ in range(n)))

    results = asyncio.run(flood(24))
    statuses = [r.status_code for r, _ in results]
    assert set(statuses) <= {200, 503}, statuses
    assert statuses.count(200) >= 1 and statuses.count(503) >= 1, statuses
    rejected = [(r, t) for r, t in results if r.status_code == 503]
    served = [t for r, t in results if r.status_code == 200]
    for r, _ in rejected:
        assert r.headers["retry-after"].isdigit()
        assert "overloaded" in r.json()["error"]
    # refused at once: faster than the quickest request that was served
    assert min(t for _, t in rejected) < min(served)
    assert metric(server.url, "zooserve_requests_total", model=BIG, outcome="rejected") == statuses.count(503)
    # still healthy, still serving
    assert httpx.get(f"{server.url}/v2/health/ready").status_code == 200
    assert httpx.post(url, content=body, headers=headers, timeout=120).status_code == 200
    assert server.proc.poll() is None


def test_load_and_unload_while_another_model_is_under_traffic(exported_store, start_server):
    store = exported_store(SMALL, BIG)
    server = start_server(store, models=SMALL, max_batch_size=2)
    client = triton.InferenceServerClient(server.hostport)
    x = np.zeros((1, 1, 32, 32), np.float32)
    payload = {"inputs": [{"name": "input", "shape": [1, 1, 32, 32], "datatype": "FP32", "data": x.ravel().tolist()}]}
    statuses: list[int] = []
    stop = threading.Event()

    def traffic():
        with httpx.Client(base_url=server.url, timeout=60) as http:
            while not stop.is_set():
                statuses.append(http.post(f"/v2/models/{SMALL}/infer", json=payload).status_code)

    workers = [threading.Thread(target=traffic) for _ in range(2)]
    for w in workers:
        w.start()
    try:
        assert not client.is_model_ready(BIG)
        index = {m["name"]: m["state"] for m in client.get_model_repository_index()}
        assert index == {SMALL: "READY", BIG: "UNAVAILABLE"}
        client.load_model(BIG)
        assert client.is_model_ready(BIG)
        inp = triton.InferInput("input", [2, 3, 224, 224], "FP32")
        inp.set_data_from_numpy(np.ones((2, 3, 224, 224), np.float32))
        assert client.infer(BIG, [inp]).as_numpy("logits").shape == (2, 1000)
        loaded_during = len(statuses)
        client.unload_model(BIG)
        assert not client.is_model_ready(BIG)
        with pytest.raises(triton.InferenceServerException, match="not loaded"):
            client.infer(BIG, [inp])
        assert {m["name"]: m["state"] for m in client.get_model_repository_index()}[BIG] == "UNAVAILABLE"
        client.load_model(BIG)  # and back
        assert client.is_model_ready(BIG)
        time.sleep(0.2)
    finally:
        stop.set()
        for w in workers:
            w.join()
        client.close()
    assert len(statuses) > loaded_during > 0
    assert set(statuses) == {200}, {s: statuses.count(s) for s in set(statuses)}
    assert metric(server.url, "zooserve_model_ready", model=BIG) == 1.0


def test_sigterm_finishes_what_is_in_flight_then_exits(exported_store, start_server):
    server = start_server(exported_store(BIG), max_batch_size=2, graceful_shutdown_s=60)
    x = np.random.default_rng(1).standard_normal((2, 3, 224, 224), dtype=np.float32)
    body, headers = binary_infer(x)
    n = 8  # each a full batch: they run one after another, so most of them wait in the queue
    results: list[int] = []

    def send():
        r = httpx.post(f"{server.url}/v2/models/{BIG}/infer", content=body, headers=headers, timeout=120)
        results.append(r.status_code)

    threads = [threading.Thread(target=send) for _ in range(n)]
    for t in threads:
        t.start()
    # SIGTERM once every request has reached the server and several are still in flight (running or queued).
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        in_flight = metric(server.url, "zooserve_requests_in_flight")
        if in_flight >= 2 and in_flight + len(results) == n:
            break
        time.sleep(0.005)
    else:
        raise AssertionError(f"never saw all {n} requests at the server with 2+ in flight")
    assert server.stop(timeout=120) == 0, server.output()
    for t in threads:
        t.join()
    assert results == [200] * n
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/v2/health/live", timeout=2)
    assert "Application shutdown complete" in server.output()


def test_sigterm_past_the_graceful_timeout_cancels_the_rest_and_exits(exported_store, start_server):
    # Requests still queued when the graceful timeout runs out are cancelled by uvicorn; the batcher must
    # see that nothing is left to run, or closing it (and the process) would wait for ever.
    server = start_server(exported_store(BIG), max_batch_size=2, graceful_shutdown_s=0.2)
    body, headers = binary_infer(np.zeros((2, 3, 224, 224), np.float32))
    n = 12
    outcomes: list[object] = []

    def send():
        try:
            r = httpx.post(f"{server.url}/v2/models/{BIG}/infer", content=body, headers=headers, timeout=120)
            outcomes.append(r.status_code)
        except httpx.HTTPError as exc:  # cut off at shutdown
            outcomes.append(type(exc).__name__)

    threads = [threading.Thread(target=send) for _ in range(n)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while metric(server.url, "zooserve_queue_size") < 4 and time.monotonic() < deadline:
        time.sleep(0.005)
    t0 = time.monotonic()
    assert server.stop(timeout=60) == 0, server.output()
    assert time.monotonic() - t0 < 30, server.output()
    assert "timeout graceful shutdown exceeded" in server.output()
    for t in threads:
        t.join()
    assert len(outcomes) == n and 200 in outcomes


def test_sigterm_abandons_a_long_profile(exported_store, start_server):
    # A profile runs in a worker thread, which uvicorn's cancellation at the end of the graceful shutdown
    # cannot stop: the profiler is told to stop instead, or the process would wait for the whole profile.
    server = start_server(exported_store(BIG), graceful_shutdown_s=0.5)
    long_profile = {"runs": 1000, "method": "prefix", "group_by": "block"}  # minutes on two cores

    def send():
        with contextlib.suppress(httpx.HTTPError):  # cut off at shutdown
            httpx.post(f"{server.url}/v2/models/{BIG}/profile", json=long_profile, timeout=120)

    client = threading.Thread(target=send)
    client.start()
    time.sleep(1.5)  # profiling by now
    t0 = time.monotonic()
    assert server.stop(timeout=30) == 0, server.output()
    assert time.monotonic() - t0 < 15, server.output()
    client.join()


def test_require_gpu_without_a_gpu_is_a_failed_start(tmp_path, repo_root):
    """ZOOSERVE_REQUIRE_GPU=1 on a machine (or onnxruntime build) without a usable GPU provider: no silent
    CPU fallback, the process exits non-zero and says why."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("ZOOSERVE_")}
    env |= {"ZOOSERVE_PROVIDERS": "cuda,cpu", "ZOOSERVE_REQUIRE_GPU": "1", "ZOOSERVE_PORT": "0"}
    proc = subprocess.run(
        [sys.executable, "-m", "service", "--store", str(tmp_path)],
        cwd=repo_root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "REQUIRE_GPU" in proc.stderr and "CUDAExecutionProvider" in proc.stderr
