"""GET /metrics: Prometheus text format."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from service.metrics import CONTENT_TYPE
from service.rest.deps import DataPlaneDep

router = APIRouter(tags=["metrics"])


@router.get("/metrics")
async def metrics(dataplane: DataPlaneDep) -> Response:
    return Response(dataplane.metrics.render(), media_type=CONTENT_TYPE)
