"""Model metadata, readiness, configuration and statistics:
GET /v2/models/{m}[/versions/{v}][/ready|/config|/stats], GET /v2/models/stats."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from service.errors import ModelNotReady
from service.rest.deps import DataPlaneDep
from service.rest.responses import json_response

router = APIRouter(prefix="/v2/models", tags=["models"])


@router.get("/stats")
async def all_stats(dataplane: DataPlaneDep) -> Response:
    """Triton-shaped statistics of every loaded model."""
    return json_response(dataplane.stats())


@router.get("/{model_name}")
@router.get("/{model_name}/versions/{model_version}")
async def metadata(dataplane: DataPlaneDep, model_name: str, model_version: str | None = None) -> Response:
    """Inputs, outputs, platform, and the execution providers actually in use."""
    return json_response(dataplane.model_metadata(model_name, model_version))


@router.get("/{model_name}/ready")
@router.get("/{model_name}/versions/{model_version}/ready")
async def ready(dataplane: DataPlaneDep, model_name: str, model_version: str | None = None) -> Response:
    """200 when the model is loaded and warmed up; 404 unknown or not loaded; 400 loading or unloading (the
    protocol's 4xx for false, as Triton)."""
    try:
        return json_response(dataplane.model_ready(model_name, model_version))
    except ModelNotReady:
        return json_response({"name": model_name, "ready": False}, 400)


@router.get("/{model_name}/config")
@router.get("/{model_name}/versions/{model_version}/config")
async def config(dataplane: DataPlaneDep, model_name: str, model_version: str | None = None) -> Response:
    """config.pbtxt as JSON, with the batching limits and providers in effect."""
    return json_response(dataplane.model_config(model_name, model_version))


@router.get("/{model_name}/stats")
@router.get("/{model_name}/versions/{model_version}/stats")
async def stats(dataplane: DataPlaneDep, model_name: str, model_version: str | None = None) -> Response:
    """Success/fail/queue/compute counts and durations, per batch size, and the provider in use."""
    return json_response(dataplane.stats(model_name, model_version))
