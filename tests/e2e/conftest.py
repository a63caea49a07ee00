"""End-to-end fixtures: `python -m service` as a real uvicorn process on a free port, over a store of
exported models (the shared `exported_store` fixture of tests/conftest.py)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    proc: subprocess.Popen
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def hostport(self) -> str:
        return f"127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture(scope="session")
def start_server(repo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Server]]:
    """start_server(store, **env) -> a ready Server (ZOOSERVE_<KEY>=value for each keyword)."""
    started: list[Server] = []

    def start(store: Path, timeout: float = 300, **env: object) -> Server:
        port = free_port()
        log = tmp_path_factory.mktemp("server") / "server.log"
        environ = {k: v for k, v in os.environ.items() if not k.startswith("ZOOSERVE_")}
        environ |= {f"ZOOSERVE_{k.upper()}": str(v) for k, v in env.items()}
        environ.setdefault("ZOOSERVE_WARMUP", "pow2")
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "service", "--store", str(store), "--port", str(port)],
                cwd=repo_root,
                env=environ,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        server = Server(proc, port, log)
        started.append(server)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"server exited with {proc.returncode}:\n{server.output()}")
            try:
                if httpx.get(f"{server.url}/v2/health/ready", timeout=2).status_code == 200:
                    return server
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        server.stop()
        raise AssertionError(f"server not ready after {timeout}s:\n{server.output()}")

    yield start
    for server in started:
        server.stop(timeout=30)
