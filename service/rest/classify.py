"""POST /v2/models/{m}[/versions/{v}]/classify?top_k=5: images in, labels and softmax scores out.

One image as the raw body (JPEG, PNG, WebP, BMP, GIF), or several as multipart/form-data files (in
order). The answer: one list of {"label", "index", "score"} per image, the model name and version, and
the milliseconds spent decoding, queued and computing (also in a Server-Timing header, as infer gives).
"""

from __future__ import annotations

import orjson
from fastapi import APIRouter
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from service.dataplane import DataPlane
from service.errors import BadRequest
from service.rest.responses import JSON, check_length, limit_receive, receive_body, server_timing

MAX_FILES = 1024


async def classify(request: Request) -> Response:
    dataplane: DataPlane = request.app.state.dataplane
    params = request.path_params
    name = params["model_name"]
    version = params.get("model_version")
    with dataplane.track(name, "classify"):
        dataplane.check_capacity(name, version)
        raw_k = request.query_params.get("top_k")
        try:
            top_k = dataplane.settings.top_k if raw_k is None else int(raw_k)
        except ValueError:
            raise BadRequest(f"top_k must be an integer, got {raw_k!r}") from None
        limit = dataplane.settings.max_request_bytes
        content_type = request.headers.get("content-type", "")
        length = request.headers.get("content-length")
        if content_type.startswith("multipart/form-data"):
            # Starlette's form parser has no size limit of its own: refused at once when Content-Length says
            # so, else as the body arrives (chunked)
            check_length(length, limit)
            form_request = Request(request.scope, limit_receive(request.receive, limit))
            images, names = [], []
            try:
                async with form_request.form(max_files=MAX_FILES, max_fields=MAX_FILES) as form:
                    for field, value in form.multi_items():
                        if isinstance(value, UploadFile):
                            images.append(await value.read())
                            names.append(value.filename or field)
            except (StarletteHTTPException, MultiPartException) as exc:  # how Starlette refuses a malformed body
                detail = exc.detail if isinstance(exc, StarletteHTTPException) else exc.message
                raise BadRequest(f"malformed multipart body: {detail}") from None
            if not images:
                raise BadRequest("the multipart request holds no file")
        else:
            images, names = [await receive_body(request.receive, length, limit)], None
        result = await dataplane.classify(name, version, images, top_k)
        if names is not None:
            result["filenames"] = names
    timing = server_timing(**result["timing_ms"]).decode()
    return Response(orjson.dumps(result), headers={"server-timing": timing}, media_type=JSON)


async def classify_app(scope: Scope, receive: Receive, send: Send) -> None:
    """`classify` as an ASGI function, for the app's hot-path dispatch."""
    response = await classify(Request(scope, receive))
    await response(scope, receive, send)


# Like infer: dispatched at the app's entry (ZooServeApp), listed here as a plain Starlette route.
router = APIRouter(
    routes=[
        Route("/v2/models/{model_name}/classify", classify, methods=["POST"]),
        Route("/v2/models/{model_name}/versions/{model_version}/classify", classify, methods=["POST"]),
    ]
)
