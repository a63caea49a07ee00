"""What HTTP transport alone takes from onnxruntime on the same cores: raw onnxruntime throughput, quiet and
while a plain ASGI app (the service's server configuration, no serving work) receives the model's binary
infer requests at a fixed rate from a client process on the same machine, in alternating rounds.

    python bench/transport.py [--model resnet18] [--store model_store] [--rate R] [--rounds 3]

The default rate is 95% of the quiet raw throughput at the model's best batch size: the rate the service
serves at when it meets the 95% target. Printed: raw images/s per round, quiet and loaded, and the ratio
loaded / quiet: how much moving the requests' bytes (client, kernel, uvicorn) slows onnxruntime when all
of them share the same cores, with no serving work at all. It is a measure of that interference, not a
part to subtract from bench/serve.py's ratio: the service runs onnxruntime in another process, with its
own allocator settings and batch sizes.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.serve import binary_request, free_port, raw_onnxruntime, sample_inputs, stop, wait_ready  # noqa: E402
from service.manifest import Manifest  # noqa: E402
from service.runtime import warmup_sizes  # noqa: E402
from service.store import read_batching_config  # noqa: E402


def client(port: int, request_file: Path, rate: float, seconds: float, connections: int = 4) -> None:
    """Send the request `rate` times a second (open loop, round robin over keep-alive connections)."""
    request = request_file.read_bytes()
    conns = [socket.create_connection(("127.0.0.1", port)) for _ in range(connections)]
    start = time.perf_counter()
    sent = 0
    while time.perf_counter() < start + seconds:
        conn = conns[sent % connections]
        conn.sendall(request)
        answer = b""
        while not answer.endswith(b"}"):
            chunk = conn.recv(65536)
            if not chunk:
                raise ConnectionError("the app closed the connection")
            answer += chunk
        sent += 1
        time.sleep(max(0.0, start + sent / rate - time.perf_counter()))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet18")
    p.add_argument("--store", type=Path, default=ROOT / "model_store")
    p.add_argument("--rate", type=float, default=0.0, help="requests/s (default: 95%% of the quiet raw rate)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=6.0, help="seconds per raw measurement")
    p.add_argument("--client", nargs=3, metavar=("PORT", "REQUEST_FILE", "RATE"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.client:
        port, request_file, rate = args.client
        client(int(port), Path(request_file), float(rate), seconds=3600)
        return 0

    entry = args.store / args.model
    if not (entry / "model.json").is_file():
        print(f"{entry} is missing: export it first (python -m export build {args.model})", file=sys.stderr)
        return 2
    manifest = Manifest.read(entry)
    shape = tuple(manifest.input.shape[1:])
    model_path = manifest.model_path(entry)
    max_batch = read_batching_config(entry).max_batch_size
    sizes = warmup_sizes(max_batch, "pow2")  # 1, 2, 4, ... and the max
    print(f"model {args.model}: raw onnxruntime sweep")
    best = max(raw_onnxruntime(model_path, shape, sizes, 2.0, ["cpu"], 0), key=lambda r: r.images_per_s)
    rate = args.rate or 0.95 * best.images_per_s
    request_file = Path(tempfile.mkstemp(suffix=".http")[1])
    request_file.write_bytes(binary_request(f"/v2/models/{args.model}/infer", manifest, sample_inputs(manifest, 1)[0]))
    port = free_port()
    app_cmd = [sys.executable, str(ROOT / "bench" / "bare_app.py"), "--asgi", "--server", "service"]
    app = subprocess.Popen([*app_cmd, "--port", str(port)], cwd=ROOT)
    quiet, loaded = [], []
    try:
        wait_ready(app, f"http://127.0.0.1:{port}/v2/health/ready", timeout=60)
        print(f"rounds at batch {best.batch}, {len(request_file.read_bytes()):,}-byte requests at {rate:.1f}/s:")
        for _ in range(args.rounds):
            quiet.append(raw_onnxruntime(model_path, shape, [best.batch], args.seconds, ["cpu"], 0)[0].images_per_s)
            load = subprocess.Popen(
                [sys.executable, __file__, "--client", str(port), str(request_file), str(rate)], cwd=ROOT
            )
            try:
                time.sleep(0.5)
                loaded.append(
                    raw_onnxruntime(model_path, shape, [best.batch], args.seconds, ["cpu"], 0)[0].images_per_s
                )
            finally:
                load.kill()
                load.wait()
    finally:
        stop(app)
        request_file.unlink(missing_ok=True)
    ratios = [b / a for a, b in zip(quiet, loaded, strict=True)]
    print(f"quiet:  {', '.join(f'{v:.1f}' for v in quiet)} images/s")
    print(f"loaded: {', '.join(f'{v:.1f}' for v in loaded)} images/s")
    print(f"ratio loaded / quiet (median of rounds): {float(np.median(ratios)):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
