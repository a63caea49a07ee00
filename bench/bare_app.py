"""The framework's own ceiling: a bare FastAPI endpoint that reads the request body and returns a constant,
with FastAPI's default handling (dependency solving, jsonable_encoder, JSONResponse), served by the same
uvicorn configuration as the service. bench/serve.py measures it beside the service in the same run.

    python bench/bare_app.py --port 8001
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


if __name__ == "__main__":
    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    uvicorn.run(
        app, host=args.host, port=args.port, loop="uvloop", http="httptools", access_log=False, log_level="warning"
    )
