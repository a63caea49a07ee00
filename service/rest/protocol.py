"""The HTTP/1.1 protocol uvicorn runs for the service: uvicorn's httptools protocol, with each response's
writes coalesced into one and request bodies handed on without uvicorn's two extra copies.

uvicorn writes a response's status line and headers to the socket as soon as the app sends
`http.response.start`, and the body as a second write on `http.response.body`. With TCP_NODELAY (which
uvloop sets) those are two segments, two system calls and two wake-ups of the client, which is woken for
headers it cannot use yet. Here the writes made during one event-loop step are held and handed to the
socket together (one `writelines`, one writev) at the end of the step, before the loop polls again.
Measured on the 2-core development machine, resnet18 at batch 1 (binary infer): sending the response
took 0.195 ms of the request's time with two writes, 0.045 ms with one.

uvicorn appends each chunk of a request body to a bytearray and copies that into a new bytes object for
the app's `receive`: two copies of every byte, beside the two the event loop and the parser make. Here a
chunk goes to the app as it is, the same bytes object, when the app has read the one before; only chunks
that pile up before the app reads them are joined, in a bytearray as uvicorn does. Measured on the 2-core
development machine, binary infer at batch 1 (602 KB bodies, read in three chunks): the event loop's time
in memmove fell by a third (perf), and the latency the service adds at p50 was 1.258 ms against 1.327 ms
for resnet18, 1.104 ms against 1.134 ms for mobilenet_v2 (medians of six alternating rounds).

Nothing else changes: flow control, keep-alive, pipelining and timeouts are uvicorn's own.
`python -m service` runs with it, and so do the benchmark's HTTP floors (`bench/bare_app.py --server
service`, which passes `http=PROTOCOL`).
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

PROTOCOL = "service.rest.protocol:HttpProtocol"
"""uvicorn's `http` setting for this protocol (an import string, as the benchmark's apps use it)."""


class CoalescingTransport:
    """A transport whose writes made within one event-loop step reach the real transport as one
    `writelines`, scheduled with `call_soon` when the first of them arrives. Everything else is the
    real transport's; closing first hands over what is held."""

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(data)

    def flush(self) -> None:
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        if not self._transport.is_closing():
            self._transport.writelines(pending)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str):
        return getattr(self._transport, name)


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol writing through a CoalescingTransport (reading, flow control and
    connection state stay on the real transport), and passing body chunks on without copying them."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = CoalescingTransport(transport, self.loop)  # type: ignore[assignment]

    def on_body(self, body: bytes) -> None:
        """uvicorn's `on_body`, less its copies: the cycle's `receive` sends `bytes(cycle.body)`, which is
        the object itself when it is bytes, and starts the next message from an empty bytearray."""
        cycle = self.cycle
        if (self.parser.should_upgrade() and self._should_upgrade()) or cycle.response_complete:
            return
        held = cycle.body
        if not held:
            cycle.body = body  # type: ignore[assignment]  # the common case: read before the next chunk
        elif isinstance(held, bytearray):
            held += body
        else:  # a second chunk before the app read the first: join them as uvicorn does
            cycle.body = bytearray(held) + body
        if len(cycle.body) > HIGH_WATER_LIMIT:
            self.flow.pause_reading()
        cycle.message_event.set()
