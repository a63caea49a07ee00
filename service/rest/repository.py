"""Model repository extension: GET|POST /v2/repository/index, POST /v2/repository/models/{m}/load|unload."""

from __future__ import annotations

import orjson
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from service.errors import BadRequest
from service.rest.deps import DataPlaneDep
from service.rest.responses import json_response

router = APIRouter(prefix="/v2/repository", tags=["repository"])


@router.get("/index")
@router.post("/index")
async def index(dataplane: DataPlaneDep, request: Request) -> Response:
    """Every model of the store and its state (READY, LOADING, UNLOADING, UNAVAILABLE). POST body
    `{"ready": true}` lists only the ready ones."""
    ready_only = False
    body = await request.body()
    if body.strip():
        try:
            options = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise BadRequest(f"the index request's body is not JSON: {exc}") from None
        if not isinstance(options, dict) or not isinstance(options.get("ready", False), bool):
            raise BadRequest('the index request\'s body is an object with an optional boolean "ready"')
        ready_only = options.get("ready", False)
    return json_response(dataplane.index(ready_only=ready_only))


@router.post("/models/{model_name}/load")
async def load(dataplane: DataPlaneDep, model_name: str) -> Response:
    """Load (or reload) a model of the store without disturbing the others; answers when it is ready."""
    with dataplane.track(model_name, "load", counts_in_stats=False):
        handle = await dataplane.load(model_name)
    return json_response(
        {"name": handle.name, "version": str(handle.version), "state": "READY", "providers": list(handle.providers)}
    )


@router.post("/models/{model_name}/unload")
async def unload(dataplane: DataPlaneDep, model_name: str) -> Response:
    """Stop taking requests for the model, finish the ones it holds, release it."""
    with dataplane.track(model_name, "unload", counts_in_stats=False):
        await dataplane.unload(model_name)
    return json_response({"name": model_name, "state": "UNAVAILABLE"})
