"""The framework's own ceiling: a bare FastAPI endpoint that reads the request body and returns a constant,
with FastAPI's default handling (dependency solving, jsonable_encoder, JSONResponse), served by the same
uvicorn configuration as the service. bench/serve.py measures it beside the service in the same run.

With --asgi, the same answer from a plain ASGI function instead: no framework at all, only uvicorn reading
the body. bench/serve.py uses it for the HTTP floor of the batch-1 latency (what moving the request's bytes
through uvicorn costs before any serving work).

    python bench/bare_app.py --port 8001 [--asgi]
"""

from __future__ import annotations

import argparse

from fastapi import FastAPI, Request

app = FastAPI()


@app.post("/v2/models/{model_name}/infer")
async def infer(model_name: str, request: Request) -> dict:
    await request.body()
    return {"model_name": model_name, "model_version": "1", "outputs": []}


@app.get("/v2/health/ready")
async def ready() -> dict:
    return {"ready": True}


_CONSTANT = b'{"model_name":"m","model_version":"1","outputs":[]}'


async def asgi_app(scope, receive, send) -> None:
    """Reads the whole body of any request and answers the constant (no framework)."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(_CONSTANT))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": _CONSTANT})


if __name__ == "__main__":
    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--asgi", action="store_true", help="serve the plain ASGI function instead of FastAPI")
    args = parser.parse_args()
    uvicorn.run(
        asgi_app if args.asgi else app,
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        lifespan="off" if args.asgi else "auto",
    )
