"""POST /v2/models/{m}[/versions/{v}]/infer: Open Inference Protocol inference, JSON tensors or Triton's
binary tensor extension, with the classification extension.

The hottest path, written as a plain ASGI function: dispatched at the app's entry (see `ZooServeApp` in
app.py: FastAPI's per-request machinery costs more than a whole lenet5 inference), headers read from the
ASGI scope, the body straight from `receive`, pre-encoded bytes sent as two ASGI messages; no Starlette
Request or Response objects, no pydantic validation of tensors, numpy views into the body for binary
tensors. A request for a model whose queue is full is refused before its body is read.

Each answer carries a Server-Timing header (W3C) with the request's time queued and its batch's compute in
milliseconds, e.g. `server-timing: queue;dur=0.004, compute;dur=17.512`: per request what /stats gives
in aggregate, and what the benchmark subtracts to find the latency HTTP and serving add.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from service import codecs
from service.dataplane import DataPlane
from service.rest.responses import receive_body, send_body, server_timing

_JSON = codecs.JSON_CONTENT_TYPE.encode()
_BINARY = codecs.BINARY_CONTENT_TYPE.encode()
_HEADER_LENGTH = codecs.HEADER_LENGTH.encode()
_SERVER_TIMING = b"server-timing"


async def infer(scope: Scope, receive: Receive, send: Send) -> None:
    dataplane: DataPlane = scope["app"].state.dataplane
    params = scope["path_params"]
    name = params["model_name"]
    version = params.get("model_version")
    with dataplane.track(name, "infer"):
        dataplane.check_capacity(name, version)
        headers = dict(scope["headers"])  # names arrive lower-case
        limit = dataplane.settings.max_request_bytes
        body = await receive_body(receive, headers.get(b"content-length"), limit)
        encoding = headers.get(b"content-encoding")
        if encoding is not None:
            body = codecs.decode_body(body, encoding.decode("latin-1"), limit)
        header_length = headers.get(_HEADER_LENGTH)
        req = codecs.decode_infer_request(body, None if header_length is None else header_length.decode("latin-1"))
        result = await dataplane.infer(name, version, req)
        payload, json_length = codecs.encode_infer_response(
            result.model_name, result.model_version, result.id, result.outputs
        )
    timing = (_SERVER_TIMING, server_timing(queue=result.queue_ns / 1e6, compute=result.compute_ns / 1e6))
    if json_length is None:
        await send_body(send, payload, _JSON, [timing])
    else:
        await send_body(send, payload, _BINARY, [(_HEADER_LENGTH, b"%d" % json_length), timing])


class _AsgiEndpoint:
    """Lets the router list an ASGI function (Starlette wraps plain functions as Request -> Response)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


router = APIRouter(
    routes=[
        Route("/v2/models/{model_name}/infer", _AsgiEndpoint(infer), methods=["POST"]),
        Route("/v2/models/{model_name}/versions/{model_version}/infer", _AsgiEndpoint(infer), methods=["POST"]),
    ]
)
