"""The service's HTTP protocol: a response's writes reach the socket as one, body chunks reach the app
uncopied, and HTTP/1.1 still behaves (keep-alive, pipelining, Connection: close, large bodies) over a real
uvicorn server."""

from __future__ import annotations

import asyncio
import hashlib
import socket
from types import SimpleNamespace

import pytest
import uvicorn

from service.rest.protocol import CoalescingTransport, HttpProtocol


class FakeTransport:
    def __init__(self) -> None:
        self.calls: list[list[bytes]] = []
        self.closed = False

    def writelines(self, data) -> None:
        self.calls.append(list(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


def test_writes_in_one_loop_step_go_out_as_one():
    async def scenario() -> FakeTransport:
        fake = FakeTransport()
        transport = CoalescingTransport(fake, asyncio.get_running_loop())
        transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
        transport.write(b"body")
        assert fake.calls == []  # held until the step ends
        await asyncio.sleep(0)
        assert fake.calls == [[b"HTTP/1.1 200 OK\r\n\r\n", b"body"]]
        transport.write(b"next")
        await asyncio.sleep(0)
        assert fake.calls[-1] == [b"next"]
        assert transport.get_extra_info("peername") == "info:peername"  # everything else is the transport's
        return fake

    asyncio.run(scenario())


def test_close_hands_over_what_is_held_first():
    async def scenario() -> None:
        fake = FakeTransport()
        transport = CoalescingTransport(fake, asyncio.get_running_loop())
        transport.write(b"last words")
        transport.close()
        assert fake.calls == [[b"last words"]] and fake.closed
        transport.write(b"too late")
        await asyncio.sleep(0)  # the scheduled flush finds the transport closing and drops it
        assert fake.calls == [[b"last words"]]

    asyncio.run(scenario())


class _Flow:
    def __init__(self) -> None:
        self.paused = 0

    def pause_reading(self) -> None:
        self.paused += 1


def _protocol_with_cycle() -> tuple[HttpProtocol, SimpleNamespace]:
    """An HttpProtocol with only what on_body touches: a parser, flow control and a request cycle as uvicorn
    makes it (an empty bytearray for the body)."""
    protocol = HttpProtocol.__new__(HttpProtocol)
    protocol.parser = SimpleNamespace(should_upgrade=lambda: False)
    protocol.flow = _Flow()
    cycle = SimpleNamespace(body=bytearray(), response_complete=False, message_event=asyncio.Event())
    protocol.cycle = cycle
    return protocol, cycle


def test_a_body_chunk_read_before_the_next_reaches_the_app_uncopied():
    protocol, cycle = _protocol_with_cycle()
    chunk = b"x" * 256_000
    protocol.on_body(chunk)
    assert cycle.body is chunk and bytes(cycle.body) is chunk  # what uvicorn's receive sends
    assert cycle.message_event.is_set() and protocol.flow.paused == 1  # above the high-water mark


def test_chunks_that_pile_up_are_joined_in_order():
    protocol, cycle = _protocol_with_cycle()
    for part in (b"ab", b"cd", b"ef"):
        protocol.on_body(part)
    assert bytes(cycle.body) == b"abcdef" and protocol.flow.paused == 0
    cycle.response_complete = True  # uvicorn drops a body that arrives after the response
    protocol.on_body(b"gh")
    assert bytes(cycle.body) == b"abcdef"


async def _echo_length(scope, receive, send) -> None:
    """Answers each request with the size of its body and its SHA-256."""
    if scope["type"] != "http":
        return
    size, more, digest = 0, True, hashlib.sha256()
    while more:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        digest.update(chunk)
        more = message.get("more_body", False)
    body = b"%d %s" % (size, digest.hexdigest().encode())
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


async def _read_response(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.lower().split(b"\r\n")
    length = next(int(line.split(b":")[1]) for line in lines if line.startswith(b"content-length"))
    return head, await reader.readexactly(length)


@pytest.fixture
def serve():
    """serve(client) runs `client(port)` against a uvicorn with HttpProtocol serving _echo_length."""

    def run(client) -> None:
        async def main() -> None:
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            config = uvicorn.Config(_echo_length, http=HttpProtocol, lifespan="off", log_level="warning")
            server = uvicorn.Server(config)
            task = asyncio.create_task(server.serve(sockets=[sock]))
            while not server.started:
                await asyncio.sleep(0.01)
            try:
                await client(sock.getsockname()[1])
            finally:
                server.should_exit = True
                await task

        asyncio.run(main())

    return run


def _content(size: int) -> bytes:
    return bytes(i * 7 % 251 for i in range(251)) * (size // 251) + b"z" * (size % 251)


def _answer(size: int) -> bytes:
    return b"%d %s" % (size, hashlib.sha256(_content(size)).hexdigest().encode())


def _post(size: int, close: bool = False) -> bytes:
    extra = b"Connection: close\r\n" if close else b""
    return b"POST / HTTP/1.1\r\nHost: t\r\n%sContent-Length: %d\r\n\r\n" % (extra, size) + _content(size)


def test_keep_alive_pipelining_and_large_bodies(serve):
    async def client(port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        sizes = [0, 10, 3_000_000, 7]
        writer.write(b"".join(_post(n) for n in sizes))  # pipelined: all before any answer
        for n in sizes:
            head, body = await _read_response(reader)
            assert head.startswith(b"HTTP/1.1 200 OK") and body == _answer(n)
        writer.write(_post(5))  # the connection is still open
        assert (await _read_response(reader))[1] == _answer(5)
        writer.close()

    serve(client)


def test_connection_close_answers_then_closes(serve):
    async def client(port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(_post(3, close=True))
        head, body = await _read_response(reader)
        assert b"connection: close" in head.lower() and body == _answer(3)
        assert await reader.read() == b""  # closed by the server, after the answer
        writer.close()

    serve(client)
