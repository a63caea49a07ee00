"""Per-layer timing over HTTP: POST /v2/models/{m}/profile, GET /v2/models/{m}/layers.

Thin adapter over `service.profile.Profiler`: the loaded model's handle comes from the data plane, the
measurement runs in a worker thread (never on the event loop), errors are the service's exception types.
"""

from __future__ import annotations

from typing import Annotated, Literal

import anyio.to_thread
from fastapi import APIRouter, Body, Request
from starlette.responses import Response

from service.dataplane import ModelHandle
from service.profile import Profiler, ProfileRequest, ProfileTarget, layer_table
from service.profile.schema import SortOrder
from service.rest.deps import DataPlaneDep, SettingsDep
from service.rest.responses import json_response
from service.runtime import DEVICE_OPTION_PROVIDERS
from service.settings import Settings

router = APIRouter(prefix="/v2/models", tags=["profile"])


def get_profiler(request: Request) -> Profiler:
    """The app's profiler (its guard and cache live as long as the app), created on first use."""
    profiler = getattr(request.app.state, "profiler", None)
    if profiler is None:
        profiler = request.app.state.profiler = Profiler()
    return profiler


def target_of(handle: ModelHandle, settings: Settings) -> ProfileTarget:
    providers = [
        (p, {"device_id": str(settings.gpu_device_id)}) if p in DEVICE_OPTION_PROVIDERS else p for p in handle.providers
    ]
    return ProfileTarget(
        name=handle.name,
        version=handle.version,
        model_dir=handle.model_dir,
        manifest=handle.manifest,
        providers=providers,
        max_batch_size=handle.max_batch_size,
    )


@router.post("/{model_name}/profile")
async def profile(
    request: Request,
    dataplane: DataPlaneDep,
    settings: SettingsDep,
    model_name: str,
    body: Annotated[ProfileRequest | None, Body()] = None,
    sort: SortOrder = "execution",
    format: Literal["json", "chrome"] = "json",
) -> Response:
    """Time the model layer by layer in a separate onnxruntime session (serving sessions never profile).

    `?sort=time` sorts rows by time (default: execution order); `?format=chrome` returns the trace
    (Chrome trace JSON, opens in Perfetto)."""
    target = target_of(dataplane.model(model_name), settings)
    profiler = get_profiler(request)
    req = body or ProfileRequest()
    try:
        if format == "chrome":
            trace = await anyio.to_thread.run_sync(profiler.chrome_trace, target, req)
            return json_response(trace)
        result = await anyio.to_thread.run_sync(lambda: profiler.profile(target, req, sort=sort))
    except anyio.get_cancelled_exc_class():
        # uvicorn cancels what is still in flight when the graceful shutdown runs out: the thread would
        # go on profiling, and the process wait for it
        profiler.close()
        raise
    return json_response(result.model_dump())


@router.get("/{model_name}/layers")
async def layers(dataplane: DataPlaneDep, model_name: str) -> Response:
    """The static per-layer table of the manifest: module path, class, params, MACs, output shape."""
    return json_response(layer_table(dataplane.model(model_name).manifest).model_dump())
