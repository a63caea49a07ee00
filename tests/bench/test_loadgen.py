"""The load generator the benchmarks rest on: it counts what it was answered, and reads each answer's
Server-Timing so that the latency a server adds can be measured per request."""

from __future__ import annotations

import asyncio

import numpy as np

from bench.loadgen import http_request, run_load


class _Server(asyncio.Protocol):
    """Answers every request (as soon as its headers are in; the test's bodies are empty) with a
    Server-Timing whose compute is 2 ms, or 503 for the path /busy."""

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while b"\r\n\r\n" in self.buf:
            head, self.buf = self.buf.split(b"\r\n\r\n", 1)
            if b" /busy " in head:
                self.transport.write(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n")
            else:
                self.transport.write(
                    b"HTTP/1.1 200 OK\r\nServer-Timing: queue;dur=0.5, compute;dur=2.000\r\ncontent-length: 2\r\n\r\n{}"
                )


def _load(path: str):
    async def main():
        server = await asyncio.get_running_loop().create_server(_Server, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            return await run_load("127.0.0.1", port, [http_request(path, b"", "")], 4, 0.3, warmup=0.1)
        finally:
            server.close()

    return asyncio.run(main())


def test_counts_answers_and_reads_server_timing():
    result = _load("/ok")
    assert result.requests > 10 and result.errors == 0 and set(result.statuses) == {200}
    assert len(result.compute_s) == len(result.latencies_s) == result.requests
    np.testing.assert_allclose(result.compute_s, 0.002)
    np.testing.assert_allclose(result.added_ms(), result.latencies_s * 1e3 - 2.0)


def test_other_statuses_are_errors_without_timing():
    result = _load("/busy")
    assert result.requests == 0 and result.errors > 10 and set(result.statuses) == {503}
    assert np.isnan(result.compute_s).all()


class _BatchingServer(_Server):
    """Holds every answer until the next tick of a 100 ms clock, then sends them all at once: the bursts of
    a server that runs a batch every 100 ms."""

    def __init__(self, held: list) -> None:
        self.held = held

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while b"\r\n\r\n" in self.buf:
            _, self.buf = self.buf.split(b"\r\n\r\n", 1)
            self.held.append(self.transport)


def test_rate_in_bursts_is_not_quantised_by_the_window():
    async def main():
        loop = asyncio.get_running_loop()
        held: list = []
        server = await loop.create_server(lambda: _BatchingServer(held), "127.0.0.1", 0)

        def tick():
            answers, held[:] = list(held), []
            for transport in answers:
                transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
            clock[0] = loop.call_later(0.1, tick)

        clock = [loop.call_later(0.1, tick)]
        try:
            return await run_load(
                "127.0.0.1", server.sockets[0].getsockname()[1], [http_request("/", b"", "")], 4, 0.45, warmup=0.25
            )
        finally:
            clock[0].cancel()
            server.close()

    result = asyncio.run(main())
    # 4 answers every 100 ms: 40 requests/s. The 0.45 s window holds four or five bursts (16 or 20
    # answers: 36 or 44 requests/s); connections / mean latency gives the rate itself.
    assert result.concurrency == 4 and 16 <= result.requests <= 20
    assert abs(result.rps - 40) < 2, (result.rps, result.counted_rps)
