"""A cheap closed-loop HTTP/1.1 load generator: N keep-alive connections, each sending a pre-built request
as soon as the previous response is complete, straight from the protocol callback (no task per request).

It shares the machine with the server, so it is written to cost little CPU; the CPU it did use is
reported beside the numbers.
"""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass, field

import numpy as np


def http_request(
    path: str, body: bytes, content_type: str = "application/json", headers: dict[str, str] | None = None
) -> bytes:
    """A complete HTTP/1.1 POST (or GET with body=b'' and content_type='') as bytes."""
    method = "POST" if content_type else "GET"
    lines = [f"{method} {path} HTTP/1.1", "Host: bench", "Connection: keep-alive"]
    if content_type:
        lines += [f"Content-Type: {content_type}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@dataclass
class LoadResult:
    requests: int
    errors: int
    seconds: float
    latencies_s: np.ndarray
    client_cpu: float  # fraction of one core
    statuses: dict[int, int] = field(default_factory=dict)
    compute_s: np.ndarray | None = None
    """Per request, beside latencies_s: the compute the server reported in its Server-Timing header
    (`compute;dur=<ms>`), NaN where it gave none."""
    concurrency: int = 0
    """Connections kept busy (a closed loop), 0 if unknown."""

    def added_ms(self) -> np.ndarray:
        """Per request: its latency less the compute its server reported, in milliseconds."""
        compute = self.compute_s if self.compute_s is not None else np.full(len(self.latencies_s), np.nan)
        return (self.latencies_s - compute) * 1e3

    @property
    def counted_rps(self) -> float:
        """Successful answers counted in the window, per second. Where answers come in bursts (a batch of
        32 finishing at once every half second), this is quantised by whole batches: a window of five
        batches counts four or six of them, so +-20% from one window to the next."""
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def rps(self) -> float:
        """Successful requests per second. In a closed loop each connection sends its next request the
        moment an answer is in, so its cycle is the latency, and by Little's law the rate is connections /
        mean latency (times the share answered 200): a rate over whole cycles, which bursts do not
        quantise. Counted in the window otherwise."""
        n = len(self.latencies_s)
        if not self.concurrency or not n:
            return self.counted_rps
        return self.concurrency / float(np.mean(self.latencies_s)) * self.requests / n

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(self.latencies_s, q) * 1e3) if len(self.latencies_s) else float("nan")


_NAN = float("nan")


def _server_compute_s(value: str) -> float:
    """`compute;dur=17.512` in a Server-Timing header value, in seconds (NaN if absent)."""
    for metric in value.split(","):
        name, _, params = metric.strip().partition(";")
        if name == "compute" and params.startswith("dur="):
            return float(params[4:]) / 1e3
    return _NAN


class _Conn(asyncio.Protocol):
    def __init__(self, run: _Run, request: bytes) -> None:
        self.run = run
        self.request = request
        self.buf = bytearray()
        self.need = -1  # total bytes of the response being read, once its headers are in
        self.status = 0
        self.compute = _NAN
        self.sent = 0.0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.send()

    def send(self) -> None:
        self.sent = time.perf_counter()
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        while True:
            if self.need < 0:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = bytes(buf[:end]).decode("latin-1")
                self.status = int(head[9:12])
                length = 0
                self.compute = _NAN
                for line in head.split("\r\n")[1:]:
                    k, _, v = line.partition(":")
                    k = k.strip().lower()
                    if k == "content-length":
                        length = int(v)
                    elif k == "server-timing":
                        self.compute = _server_compute_s(v)
                self.need = end + 4 + length
            if len(buf) < self.need:
                return
            del buf[: self.need]
            self.need = -1
            now = time.perf_counter()
            self.run.done(self.status, now - self.sent, now, self.compute)
            if self.run.running:
                self.send()
            else:
                self.run.closed(self)
                return

    def connection_lost(self, exc) -> None:
        self.run.closed(self)


class _Run:
    def __init__(self, start: float, stop: float) -> None:
        self.start, self.stop = start, stop
        self.latencies: list[float] = []
        self.computes: list[float] = []
        self.statuses: dict[int, int] = {}
        self.running = True
        self.open: set[_Conn] = set()
        self.all_closed = asyncio.get_running_loop().create_future()

    def done(self, status: int, latency: float, now: float, compute: float) -> None:
        if self.start <= now <= self.stop:
            self.latencies.append(latency)
            self.computes.append(compute)
            self.statuses[status] = self.statuses.get(status, 0) + 1
        if now > self.stop:
            self.running = False

    def closed(self, conn: _Conn) -> None:
        if conn in self.open:
            self.open.discard(conn)
            if conn.transport is not None:
                conn.transport.close()
        if not self.open and not self.all_closed.done():
            self.all_closed.set_result(None)


async def run_load(
    host: str, port: int, requests: list[bytes], concurrency: int, seconds: float, warmup: float = 1.0
) -> LoadResult:
    """Closed loop: `concurrency` connections for warmup + seconds; connection i sends requests[i % len]."""
    loop = asyncio.get_running_loop()
    t0 = time.perf_counter()
    run = _Run(t0 + warmup, t0 + warmup + seconds)
    cpu0 = None
    for i in range(concurrency):
        _, conn = await loop.create_connection(lambda i=i: _Conn(run, requests[i % len(requests)]), host, port)
        run.open.add(conn)
    await asyncio.sleep(max(0.0, run.start - time.perf_counter()))
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.sleep(max(0.0, run.stop - time.perf_counter()))
    cpu1, wall1 = time.process_time(), time.perf_counter()
    run.running = False
    try:
        await asyncio.wait_for(asyncio.shield(run.all_closed), timeout=60)
    except TimeoutError:
        for conn in list(run.open):
            run.closed(conn)
    ok = run.statuses.get(200, 0)
    return LoadResult(
        requests=ok,
        errors=sum(run.statuses.values()) - ok,
        seconds=seconds,
        latencies_s=np.asarray(run.latencies),
        client_cpu=(cpu1 - cpu0) / (wall1 - wall0),
        statuses=dict(run.statuses),
        compute_s=np.asarray(run.computes),
        concurrency=concurrency,
    )
