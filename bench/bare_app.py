"""The framework's own ceiling: a bare FastAPI endpoint that reads the request body and returns a constant,
with FastAPI's default handling (dependency solving, jsonable_encoder, JSONResponse). bench/serve.py
measures it beside the service in the same run.

With --asgi, the same answer from a plain ASGI function instead: no framework at all, only uvicorn reading
the body. bench/serve.py uses it for the HTTP floor of the batch-1 latency. With --run-model, that function
also runs the model once per request (batch 1, zeros, in a thread, with the service's session settings)
before it answers, and reports the run in a Server-Timing header as the service reports its compute: the
least any server around onnxruntime does. After a run of some milliseconds the caches are cold and the
threads wake from idle, and every server pays for that. With --sleep-ms instead, the thread only sleeps
that long: the idle gap alone, without the run's work.

The FastAPI endpoint runs on stock uvicorn (httptools, glibc's allocator defaults): the framework as it
comes. With --server service, either app runs in the service's process configuration instead: its HTTP
protocol (service/rest/protocol.py) and its allocator tuning (ZOOSERVE_MALLOC_KEEP_MB), so that only the
request handling differs; bench/serve.py runs the HTTP floors that way.

    python bench/bare_app.py --port 8001 [--server service] [--asgi [--run-model model.onnx | --sleep-ms 17]]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fastapi import FastAPI, Request

from service.rest.responses import server_timing

app = FastAPI()


@app.post("/v2/models/{model_name}/infer")
async def infer(model_name: str, request: Request) -> dict:
    await request.body()
    return {"model_name": model_name, "model_version": "1", "outputs": []}


@app.get("/v2/health/ready")
async def ready() -> dict:
    return {"ready": True}


_CONSTANT = b'{"model_name":"m","model_version":"1","outputs":[]}'
_runner = ThreadPoolExecutor(1, thread_name_prefix="run")
_run_model = None  # with --run-model (or --sleep-ms): runs the model once (or sleeps), returns the nanoseconds it took


def model_runner(path: str | Path, idle_priority: bool = False):
    """The model at batch 1 (zeros) with the service's session settings: a function that runs it once and
    returns the nanoseconds it took (bench/contention.py times its runs with it too)."""
    import numpy as np

    from service.runtime import create_session, init_global_thread_pool, plan_providers

    init_global_thread_pool(0, idle_priority)
    session = create_session(Path(path), plan_providers(["cpu"]))
    spec = session.get_inputs()[0]
    feed = {spec.name: np.zeros((1, *spec.shape[1:]), np.float32)}

    def run() -> int:
        t0 = time.perf_counter_ns()
        session.run(None, feed)
        return time.perf_counter_ns() - t0

    run()
    return run


def sleeper(ms: float):
    """A stand-in for the run that only sleeps: what the idle gap alone costs the request around it."""

    def run() -> int:
        t0 = time.perf_counter_ns()
        time.sleep(ms / 1e3)
        return time.perf_counter_ns() - t0

    return run


async def asgi_app(scope, receive, send) -> None:
    """Reads the whole body of any request and answers the constant (no framework); with a model, after
    running it once in a thread, as the service runs a batch in the model's batch thread."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(_CONSTANT))]
    if _run_model is not None:
        run_ns = await asyncio.get_running_loop().run_in_executor(_runner, _run_model)
        headers.append((b"server-timing", server_timing(compute=run_ns / 1e6)))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": _CONSTANT})


if __name__ == "__main__":
    import uvicorn

    from service.rest.protocol import PROTOCOL
    from service.runtime import tune_allocator
    from service.settings import Settings

    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--asgi", action="store_true", help="serve the plain ASGI function instead of FastAPI")
    parser.add_argument("--run-model", help="with --asgi: an ONNX file to run once per request before answering")
    parser.add_argument(
        "--sleep-ms",
        type=float,
        help="with --asgi: sleep this long per request in the thread instead of running a model (an idle gap "
        "as long as the run, without the run's work)",
    )
    parser.add_argument(
        "--server",
        choices=["stock", "service"],
        default="stock",
        help="stock uvicorn, or the service's HTTP protocol and allocator tuning",
    )
    args = parser.parse_args()
    if args.run_model:
        _run_model = model_runner(args.run_model)
    elif args.sleep_ms is not None:
        _run_model = sleeper(args.sleep_ms)
    if args.server == "service":
        tune_allocator(Settings().malloc_keep_mb)
    uvicorn.run(
        asgi_app if args.asgi else app,
        host=args.host,
        port=args.port,
        loop="uvloop",
        http=PROTOCOL if args.server == "service" else "httptools",
        access_log=False,
        log_level="warning",
        lifespan="off" if args.asgi else "auto",
    )
