"""What an idle gap costs the work that follows it on this machine, with and without a web stack: the same
work done back to back and after the thread doing it (or waiting for it) has slept, side by side.

    python bench/idle_gap.py [--bytes 602112] [--gaps 1,7,18,42] [--seconds 2] [--rounds 3]

At batch 1 a request waits for its model's run; during the run the event loop and the client sleep, and
the run itself leaves the caches to the model. This measures what such a gap costs on its own, three ways,
for a request of --bytes (default: one 224x224 FP32 image), after gaps as long as the batch-1 runs of
mobilenet_v2, resnet18 and resnet50 on the 2-vCPU development machine (7, 18, 42 ms) and after 1 ms:
1. copy: one numpy copy of a buffer that size, in microseconds;
2. sockets: a blocking-socket round trip with no Python web stack (the client sends the bytes, a server
   thread reads them, a worker thread sleeps for the gap, the server answers 64 bytes), less the sleep;
3. ASGI: the plain ASGI app of bench/serve.py's HTTP floors, in the service's server configuration
   (`bench/bare_app.py --asgi --server service --sleep-ms GAP`), sleeping in a thread for the gap before
   it answers; the request's latency less that sleep (its Server-Timing), measured with bench/loadgen.py
   at one connection.
Each point is the median over rounds of each round's p50; the gaps alternate within a round. Printed: the
points, and each as a ratio to the same work with no gap (a sleep of zero, so the same thread hand-offs).
"""

from __future__ import annotations

import argparse
import asyncio
import queue
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.loadgen import http_request, run_load  # noqa: E402
from bench.serve import free_port, stop, wait_ready  # noqa: E402
from service.runtime import tune_allocator  # noqa: E402
from service.settings import Settings  # noqa: E402

_ANSWER = 64  # bytes: the sleep it measured (8) and padding


def copy_us(nbytes: int, gap_ms: float, seconds: float) -> np.ndarray:
    """Microseconds per copy of `nbytes`, each copy after sleeping `gap_ms` (back to back at 0)."""
    src = np.frombuffer(np.random.default_rng(0).bytes(nbytes), np.uint8)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    times = []
    end = time.monotonic() + seconds
    while time.monotonic() < end or len(times) < 5:
        if gap_ms:
            time.sleep(gap_ms / 1e3)
        t0 = time.perf_counter_ns()
        np.copyto(dst, src)
        times.append(time.perf_counter_ns() - t0)
    return np.asarray(times) / 1e3


class SocketServer:
    """A blocking server on 127.0.0.1: a connection thread reads each request (its first 8 bytes: the gap in
    microseconds), hands it to a worker thread that sleeps that long, and answers with the sleep it timed."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = nbytes
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self._work: queue.SimpleQueue[float | None] = queue.SimpleQueue()
        self._done: queue.SimpleQueue[int] = queue.SimpleQueue()
        threading.Thread(target=self._worker, daemon=True).start()
        threading.Thread(target=self._serve, daemon=True).start()

    def _worker(self) -> None:
        while (gap_s := self._work.get()) is not None:
            t0 = time.perf_counter_ns()
            time.sleep(gap_s)
            self._done.put(time.perf_counter_ns() - t0)

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = bytearray(self.nbytes)
        view = memoryview(buf)
        with conn:
            while True:
                got = 0
                while got < self.nbytes:
                    n = conn.recv_into(view[got:])
                    if not n:
                        return
                    got += n
                self._work.put(struct.unpack_from("<q", buf)[0] / 1e6)
                slept_ns = self._done.get()
                conn.sendall(struct.pack("<q", slept_ns).ljust(_ANSWER, b"\0"))

    def close(self) -> None:
        self._work.put(None)
        self.sock.close()


class SocketClient:
    def __init__(self, port: int, nbytes: int) -> None:
        self.conn = socket.create_connection(("127.0.0.1", port))
        self.conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.payload = bytearray(np.random.default_rng(1).bytes(nbytes))

    def added_ms(self, gap_ms: float, seconds: float) -> np.ndarray:
        """Per round trip with the server sleeping `gap_ms`: its latency less the sleep, in milliseconds."""
        struct.pack_into("<q", self.payload, 0, round(gap_ms * 1e3))
        added = []
        end = time.monotonic() + seconds
        while time.monotonic() < end or len(added) < 5:
            t0 = time.perf_counter_ns()
            self.conn.sendall(self.payload)
            answer = b""
            while len(answer) < _ANSWER:
                chunk = self.conn.recv(_ANSWER - len(answer))
                if not chunk:
                    raise ConnectionError("the server closed the connection")
                answer += chunk
            latency_ns = time.perf_counter_ns() - t0
            added.append((latency_ns - struct.unpack_from("<q", answer)[0]) / 1e6)
        return np.asarray(added)

    def close(self) -> None:
        self.conn.close()


def asgi_added_ms(port: int, request: bytes, seconds: float) -> np.ndarray:
    """Per request to a bench/bare_app.py floor at one connection: its latency less the reported sleep."""
    result = asyncio.run(run_load("127.0.0.1", port, [request], 1, seconds, warmup=min(1.0, seconds / 4)))
    if result.errors or not result.requests:
        raise RuntimeError(f"the ASGI floor answered {result.statuses}")
    return result.added_ms()


def table(name: str, unit: str, points: dict[float, list[float]]) -> list[str]:
    """One line per gap: the median of the rounds' p50s and its ratio to no gap."""
    base = float(np.median(points[0.0]))
    lines = []
    for gap, p50s in points.items():
        value = float(np.median(p50s))
        rounds = ", ".join(f"{v:.3f}" for v in p50s)
        label = "no gap" if gap == 0 else f"after {gap:g} ms"
        lines.append(f"  {name:<8} {label:<14} {value:9.3f} {unit}  x{value / base:5.2f}   (rounds: {rounds})")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bytes", type=int, default=3 * 224 * 224 * 4, help="request size (default: 602,112)")
    p.add_argument("--gaps", default="1,7,18,42", help="gaps in ms, comma-separated (no gap is always measured)")
    p.add_argument("--seconds", type=float, default=2.0, help="seconds per point per round (at least 5 samples)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--skip-asgi", action="store_true", help="measure only the copy and the socket round trip")
    args = p.parse_args(argv)
    if args.bytes < 8:
        p.error("--bytes must be at least 8 (the gap travels in the request's first 8 bytes)")
    gaps = [0.0, *sorted({float(g) for g in args.gaps.split(",") if g.strip() and float(g) > 0})]
    # The service's allocator settings, so that neither side here page-faults its buffers anew.
    tune_allocator(Settings().malloc_keep_mb)

    floors: dict[float, tuple[subprocess.Popen, int]] = {}
    request = http_request("/v2/models/m/infer", bytes(args.bytes), "application/octet-stream")
    server = SocketServer(args.bytes)
    client = SocketClient(server.port, args.bytes)
    try:
        if not args.skip_asgi:
            for gap in gaps:
                port = free_port()
                cmd = [sys.executable, str(ROOT / "bench" / "bare_app.py"), "--asgi", "--server", "service"]
                proc = subprocess.Popen([*cmd, "--port", str(port), "--sleep-ms", f"{gap:g}"], cwd=ROOT)
                floors[gap] = proc, port
            for proc, port in floors.values():
                wait_ready(proc, f"http://127.0.0.1:{port}/v2/health/ready", timeout=60)
        results: dict[str, dict[float, list[float]]] = {"copy": {}, "sockets": {}, "ASGI": {}}
        print(
            f"{args.bytes:,} bytes, gaps {', '.join(f'{g:g}' for g in gaps)} ms, {args.rounds} rounds of "
            f"{args.seconds:g} s per point",
            flush=True,
        )
        for r in range(args.rounds):
            for gap in gaps:
                results["copy"].setdefault(gap, []).append(
                    float(np.percentile(copy_us(args.bytes, gap, args.seconds), 50))
                )
                results["sockets"].setdefault(gap, []).append(
                    float(np.percentile(client.added_ms(gap, args.seconds), 50))
                )
                if floors:
                    results["ASGI"].setdefault(gap, []).append(
                        float(np.nanpercentile(asgi_added_ms(floors[gap][1], request, args.seconds), 50))
                    )
            print(f"round {r + 1} of {args.rounds} done", flush=True)
    finally:
        client.close()
        server.close()
        for proc, _ in floors.values():
            stop(proc)
    print("p50, median of the rounds, and the ratio to no gap:")
    lines = table("copy", "us", results["copy"]) + table("sockets", "ms", results["sockets"])
    if floors:
        lines += table("ASGI", "ms", results["ASGI"])
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
