"""Pre-encoded JSON responses (orjson): no jsonable_encoder, no response model validation."""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response

from service.errors import PayloadTooLarge

JSON = "application/json"


def json_response(content: object, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY), status_code, headers, JSON)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused (413) beyond `limit` bytes, before reading it when Content-Length says so."""
    length = request.headers.get("content-length")
    if length is not None:
        if length.isdigit() and int(length) > limit:
            raise PayloadTooLarge(f"request body of {length} bytes exceeds the limit of {limit}")
        return await request.body()
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
