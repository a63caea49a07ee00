"""POST /v2/models/{m}[/versions/{v}]/infer: Open Inference Protocol inference, JSON tensors or Triton's
binary tensor extension, with the classification extension.

The hot path: dispatched at the app's entry (see `ZooServeApp` in app.py: FastAPI's per-request machinery
costs more than the whole inference of a small model) and also listed as a plain Starlette route; the raw
Request in, pre-encoded bytes out; no pydantic validation of tensors, numpy views into the body for binary
tensors. A request for a model whose queue is full is refused before its body is read.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service import codecs
from service.dataplane import DataPlane
from service.rest.responses import read_body


async def infer(request: Request) -> Response:
    dataplane: DataPlane = request.app.state.dataplane
    params = request.path_params
    name = params["model_name"]
    version = params.get("model_version")
    with dataplane.track(name, "infer"):
        dataplane.check_capacity(name, version)
        headers = request.headers
        limit = dataplane.settings.max_request_bytes
        body = codecs.decode_body(await read_body(request, limit), headers.get("content-encoding"), limit)
        req = codecs.decode_infer_request(body, headers.get(codecs.HEADER_LENGTH))
        result = await dataplane.infer(name, version, req)
        payload, header_length = codecs.encode_infer_response(
            result.model_name, result.model_version, result.id, result.outputs
        )
    if header_length is None:
        return Response(payload, media_type=codecs.JSON_CONTENT_TYPE)
    return Response(
        payload,
        media_type=codecs.BINARY_CONTENT_TYPE,
        headers={"Inference-Header-Content-Length": str(header_length)},
    )


router = APIRouter(
    routes=[
        Route("/v2/models/{model_name}/infer", infer, methods=["POST"]),
        Route("/v2/models/{model_name}/versions/{model_version}/infer", infer, methods=["POST"]),
    ]
)
