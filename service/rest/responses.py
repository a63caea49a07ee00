"""Bodies in and out without framework overhead: request bodies straight from ASGI `receive`, pre-encoded
JSON responses (orjson: no jsonable_encoder, no response model validation)."""

from __future__ import annotations

import orjson
from starlette.responses import Response
from starlette.types import Message, Receive, Send

from service.errors import ClientClosedRequest, PayloadTooLarge

JSON = "application/json"


def json_response(content: object, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY), status_code, headers, JSON)


def check_length(content_length: str | bytes | None, limit: int) -> None:
    """Refuse (413) a request whose Content-Length already says it is beyond `limit` bytes."""
    if content_length is not None and content_length.isdigit() and int(content_length) > limit:
        length = content_length.decode() if isinstance(content_length, bytes) else content_length
        raise PayloadTooLarge(f"request body of {length} bytes exceeds the limit of {limit}")


async def receive_body(receive: Receive, content_length: str | bytes | None, limit: int) -> bytes:
    """The whole request body, refused (413) beyond `limit` bytes: before reading it when Content-Length
    says so, else as soon as the chunks read exceed it. A client gone mid-body is ClientClosedRequest."""
    check_length(content_length, limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientClosedRequest(f"the client went away after {size} bytes of the request body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
        if not message.get("more_body", False):
            if not chunks:
                return chunk  # one message: the common case, no copy
            chunks.append(chunk)
            return b"".join(chunks)
        chunks.append(chunk)


def limit_receive(receive: Receive, limit: int) -> Receive:
    """`receive` that refuses (413) a request body as soon as the bytes read exceed `limit`: for readers that
    take the body from `receive` themselves (Starlette's form parser), Content-Length or not (chunked)."""
    size = 0

    async def receive_within_limit() -> Message:
        nonlocal size
        message = await receive()
        if message["type"] == "http.request":
            size += len(message.get("body", b""))
            if size > limit:
                raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
        return message

    return receive_within_limit


def server_timing(**durations_ms: float) -> bytes:
    """A Server-Timing header value (W3C): `queue;dur=0.004, compute;dur=17.512`, in milliseconds."""
    return ", ".join(f"{name};dur={ms:.3f}" for name, ms in durations_ms.items()).encode()


async def send_body(send: Send, body: bytes, content_type: bytes, headers: list[tuple[bytes, bytes]] = ()) -> None:
    """A complete 200 response as the two ASGI messages, headers built here (no Response object)."""
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", content_type), (b"content-length", b"%d" % len(body)), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})
