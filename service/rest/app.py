"""The app factory: `create_app(settings)` wires the data plane, the routers and the error handlers.
Nothing happens at import time; the lifespan loads the store on start-up and drains it on shutdown."""

from __future__ import annotations

import importlib.util
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from service import __version__
from service.dataplane import DataPlane
from service.errors import ServingError, error_body
from service.rest import classify, health, infer, metrics, models, repository
from service.rest.responses import JSON
from service.settings import Settings

log = logging.getLogger("zooserve")


async def _serving_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServingError)
    if exc.status_code >= 500:
        log.warning("%s %s: %s", request.method, request.url.path, exc.message)
    return Response(error_body(exc.message), exc.status_code, exc.headers or None, JSON)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    return Response(error_body(str(exc.detail)), exc.status_code, exc.headers, JSON)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}" for e in exc.errors())
    return Response(error_body(f"invalid request: {problems}"), 400, None, JSON)


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    log.exception("%s %s failed", request.method, request.url.path, exc_info=exc)
    return Response(error_body(f"internal error: {type(exc).__name__}: {exc}"), 500, None, JSON)


_HOT_PATH = re.compile(
    r"/v2/models/(?P<model_name>[^/]+)(?:/versions/(?P<model_version>[^/]+))?/(?P<op>infer|classify)"
)
_HOT: dict[str, Callable[[Scope, Receive, Send], Awaitable[None]]] = {
    "infer": infer.infer,
    "classify": classify.classify_app,
}


class ZooServeApp(FastAPI):
    """FastAPI, with the two hot paths (infer, classify) dispatched at the application's entry.

    Measured on the 2-core development machine: FastAPI's middleware stack, router and request handling
    cost about 3x a bare ASGI answer (~4,000 vs ~12,600 requests/s for a body read and a constant reply),
    more than a whole lenet5 inference. POST .../infer and .../classify therefore go straight to their
    ASGI handlers (the router lists the same handlers, for other methods' 405), with the same error
    mapping; every other path takes the full FastAPI route."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            match = _HOT_PATH.fullmatch(scope["path"])
            if match is not None:
                await self._hot_path(match, scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    async def _hot_path(self, match: re.Match, scope: Scope, receive: Receive, send: Send) -> None:
        params = match.groupdict()
        op = params.pop("op")
        if params["model_version"] is None:
            del params["model_version"]
        scope["app"] = self
        scope["path_params"] = params
        try:
            await _HOT[op](scope, receive, send)
            return
        except ClientDisconnect:  # raised by Starlette's multipart parsing
            return  # nobody to answer
        except ServingError as exc:
            response = await _serving_error(Request(scope, receive), exc)
        except StarletteHTTPException as exc:  # Starlette's own refusals, as the router answers them
            response = await _http_error(Request(scope, receive), exc)
        except Exception as exc:  # the same answer as the router's handler
            response = await _unexpected_error(Request(scope, receive), exc)
        await response(scope, receive, send)


def _profile_router():
    """The per-layer profiling routes (service/rest/profile.py), when that module is present."""
    if importlib.util.find_spec("service.rest.profile") is None:
        return None
    from service.rest import profile

    return profile.router


def create_app(settings: Settings | None = None, dataplane: DataPlane | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        dp = dataplane or DataPlane(settings)
        app.state.dataplane = dp
        try:
            await dp.start()
            yield
        finally:
            profiler = getattr(app.state, "profiler", None)  # created by the first profile request
            if profiler is not None:
                profiler.close()
            await dp.stop()

    app = ZooServeApp(
        title="ZooServe",
        version=__version__,
        description="Classic CNNs on onnxruntime over the Open Inference Protocol (KServe V2).",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.add_exception_handler(ServingError, _serving_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected_error)
    # infer and classify are dispatched before the router (ZooServeApp); their routes answer other methods.
    for router in (infer.router, classify.router, health.router, models.router, repository.router, metrics.router):
        app.include_router(router)
    profile_router = _profile_router()
    if profile_router is not None:
        app.include_router(profile_router)
    return app
