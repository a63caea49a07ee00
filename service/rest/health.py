"""Server metadata and health (Open Inference Protocol): GET /v2, /v2/health/live, /v2/health/ready.

The protocol answers health with the status code: 200 for true, 4xx for false (400, as Triton)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from service.rest.deps import DataPlaneDep
from service.rest.responses import json_response

router = APIRouter(prefix="/v2", tags=["health"])


@router.get("")
async def server_metadata(dataplane: DataPlaneDep) -> Response:
    return json_response(dataplane.server_metadata())


@router.get("/health/live")
async def live(dataplane: DataPlaneDep) -> Response:
    ok = dataplane.live
    return json_response({"live": ok}, 200 if ok else 400)


@router.get("/health/ready")
async def ready(dataplane: DataPlaneDep) -> Response:
    """200 once every start-up model is loaded and warmed up (400 while stopping)."""
    ok = dataplane.ready
    return json_response({"ready": ok}, 200 if ok else 400)
