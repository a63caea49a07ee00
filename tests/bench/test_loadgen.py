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
