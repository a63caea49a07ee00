"""Serving benchmark: HTTP throughput and latency of the service against raw onnxruntime, measured in one run.

    python bench/serve.py [--model resnet50] [--store model_store] [--concurrency N] [--seconds 10]

1. raw: the model's ONNX file in onnxruntime in this process, with the service's own session settings (the
   global thread pool sized to the usable CPUs), at every batch size up to its max: images/s. The best
   batch size is measured again before each further round of binary infer and at the end; the mean of
   these runs is the baseline (on a shared machine the CPU a process gets drifts).
2. the service (`python -m service`, a real uvicorn process) under a closed-loop load of N keep-alive
   connections, one image per request: binary tensors (Triton's extension) in rounds alternating with the
   raw run (the ratio is the median of the rounds' ratios), JSON tensors, and classify
   (an encoded image as the body); then one connection: the latency HTTP, queueing and serialisation add at
   batch 1, per request its latency less the compute the service reports for it (Server-Timing), at p50;
   beside the HTTP floor: the same request to a plain ASGI app in the same server configuration
   (bench/bare_app.py --asgi), answering at once; sleeping in a thread as long as the model's batch-1 run
   first (threads waking from an idle gap); running the model once per request in a thread first (the
   gap, and caches the run has emptied), which any server around onnxruntime pays.
3. a bare FastAPI endpoint (bench/bare_app.py) that only reads the same JSON body and returns a constant,
   on stock uvicorn: the framework's own ceiling, to compare JSON infer requests/s with (--bare-server
   service: on the service's HTTP protocol and allocator tuning instead). Both servers are up together and
   measured in alternating rounds (JSON infer, bare, JSON infer, ...), so that the machine's drift over
   the run falls on both alike; the ratio is the median of the rounds' ratios.

Printed: requests/s, images/s, p50/p95/p99 latency, mean batch size (from /stats), server and client CPU
(cores), the share of the time the server's event loop ran and the share it was ready but waited for a CPU
(Linux schedstat: on 2 cores, onnxruntime's spinning pool worker and the client take it), and the ratios
HTTP / raw, JSON infer / bare FastAPI (also per second the event loop ran: what a request costs the loop,
whatever CPU the other threads leave it), and the latency HTTP adds at batch 1.
Requests/s is connections / mean latency (Little's law for a closed loop, `LoadResult.rps`): a batching
server answers in bursts, a batch of 32 every half second for resnet18, and a count of answers in a window
of a few seconds is quantised by whole batches (each round's count is printed beside it).
The load generator runs on the same machine: its CPU is reported, as it competes with the server.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.loadgen import LoadResult, http_request, run_load  # noqa: E402
from service.manifest import Manifest  # noqa: E402
from service.runtime import (  # noqa: E402
    create_session,
    init_global_thread_pool,
    plan_providers,
    usable_cpus,
    warmup_sizes,
)
from service.store import read_batching_config  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str, timeout: float = 5.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def wait_ready(proc: subprocess.Popen, url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {timeout}s")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def loop_schedstat(pid: int) -> tuple[float, float]:
    """Seconds the process's main thread (the server's event loop) has been on a CPU, and has waited on a run
    queue while ready to run (Linux schedstat; zeros where it is not available)."""
    try:
        on_cpu, waiting = Path(f"/proc/{pid}/task/{pid}/schedstat").read_text().split()[:2]
    except (OSError, ValueError):
        return 0.0, 0.0
    return int(on_cpu) / 1e9, int(waiting) / 1e9


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- raw onnxruntime ------------------------------------------------------------------------------


@dataclass
class RawResult:
    batch: int
    images_per_s: float
    p50_ms: float
    cpu: float
    """Cores this process used while running (what the machine actually gave it)."""


def raw_onnxruntime(
    model_path: Path, sample_shape, batch_sizes, seconds: float, providers, threads: int
) -> list[RawResult]:
    init_global_thread_pool(threads, os.environ.get("ZOOSERVE_THREADS_IDLE_PRIORITY", "0").lower() in ("1", "true"))
    session = create_session(model_path, plan_providers(providers))
    name = session.get_inputs()[0].name
    rng = np.random.default_rng(0)
    out = []
    for n in batch_sizes:
        x = rng.standard_normal((n, *sample_shape), dtype=np.float32)
        session.run(None, {name: x})
        times = []
        cpu0, wall0 = time.process_time(), time.perf_counter()
        t_end = wall0 + seconds
        while time.perf_counter() < t_end or len(times) < 3:
            t0 = time.perf_counter()
            session.run(None, {name: x})
            times.append(time.perf_counter() - t0)
        cpu = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
        out.append(RawResult(n, n * len(times) / sum(times), float(np.median(times)) * 1e3, cpu))
        print(
            f"  raw batch {n:3d}: {out[-1].images_per_s:9.1f} images/s, p50 {out[-1].p50_ms:8.2f} ms/run, "
            f"{cpu:.2f} cores",
            flush=True,
        )
    del session
    return out


# --- requests -------------------------------------------------------------------------------------


def sample_inputs(manifest: Manifest, count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.standard_normal((1, *manifest.input.shape[1:]), dtype=np.float32) for _ in range(count)]


def binary_request(path: str, manifest: Manifest, x: np.ndarray) -> bytes:
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": manifest.input.name,
                    "shape": list(x.shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": x.nbytes},
                }
            ],
            "outputs": [{"name": manifest.output.name, "parameters": {"binary_data": True}}],
        }
    ).encode()
    return http_request(
        path, header + x.tobytes(), "application/octet-stream", {"Inference-Header-Content-Length": str(len(header))}
    )


def json_body(manifest: Manifest, x: np.ndarray) -> bytes:
    import orjson

    return orjson.dumps(
        {"inputs": [{"name": manifest.input.name, "shape": list(x.shape), "datatype": "FP32", "data": x.ravel()}]},
        option=orjson.OPT_SERIALIZE_NUMPY,
    )


def sample_image(manifest: Manifest, seed: int) -> tuple[bytes, str]:
    """An encoded test image: a small grayscale PNG for L models (like the digits), a 320x240 JPEG else."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    if manifest.preprocessing.color_mode == "L":
        img = Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8), "L")
        buf = io.BytesIO()
        img.save(buf, "PNG")
        return buf.getvalue(), "image/png"
    yy, xx = np.mgrid[0:240, 0:320]
    base = np.stack([xx * 255 / 320, yy * 255 / 240, (xx + yy) * 255 / 560], axis=-1)
    pixels = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buf, "JPEG", quality=90)
    return buf.getvalue(), "image/jpeg"


# --- one scenario ---------------------------------------------------------------------------------


@dataclass
class Row:
    scenario: str
    concurrency: int
    result: LoadResult
    server_cpu: float
    mean_batch: float | None
    compute_ms: float | None = None
    """Mean onnxruntime run per request in the server during the scenario (its /stats compute_infer)."""
    loop_run: float = 0.0
    """Share of the scenario's time the server's event loop was on a CPU."""
    loop_wait: float = 0.0
    """Share of the scenario's time the server's event loop was ready to run but waited for a CPU: taken by
    other threads (onnxruntime's, the client's), not by the loop's own work."""


def default_concurrency(best_batch: int) -> int:
    """Connections for the throughput runs: twice the batch size raw onnxruntime runs fastest at, so that a
    batch that size can queue while the previous one runs (16 at least, 128 at most).

    With fewer, the server cannot form the batches its model runs best at: lenet5_digits (raw best at 64)
    ran batches of 23 at 64 connections and of 44 at 128 (docs/benchmarks.md)."""
    return min(128, max(16, 2 * best_batch))


def measure(name, host, port, pid, requests, concurrency, seconds, stats_url=None, warmup=None) -> Row:
    before = get_json(stats_url)["model_stats"][0] if stats_url else None
    cpu0, (run0, wait0), t0 = cpu_seconds(pid), loop_schedstat(pid), time.perf_counter()
    warmup = min(2.0, seconds / 4) if warmup is None else warmup
    result = asyncio.run(run_load(host, port, requests, concurrency, seconds, warmup=warmup))
    wall = time.perf_counter() - t0
    server_cpu = (cpu_seconds(pid) - cpu0) / wall
    run1, wait1 = loop_schedstat(pid)
    mean_batch = compute_ms = None
    if stats_url:
        after = get_json(stats_url)["model_stats"][0]
        execs = after["execution_count"] - before["execution_count"]
        rows = after["inference_count"] - before["inference_count"]
        mean_batch = rows / execs if execs else None
        infer_a, infer_b = after["inference_stats"]["compute_infer"], before["inference_stats"]["compute_infer"]
        count = infer_a["count"] - infer_b["count"]
        compute_ms = (infer_a["ns"] - infer_b["ns"]) / count / 1e6 if count else None
    row = Row(
        name,
        concurrency,
        result,
        server_cpu,
        mean_batch,
        compute_ms,
        loop_run=(run1 - run0) / wall,
        loop_wait=(wait1 - wait0) / wall,
    )
    print(
        f"  {name:<22} c={concurrency:<3d} {result.rps:9.1f} req/s ({result.counted_rps:.1f} counted)  "
        f"p50 {result.percentile_ms(50):8.2f} ms  "
        f"p99 {result.percentile_ms(99):8.2f} ms  errors {result.errors}  statuses {result.statuses}  "
        f"loop on CPU {row.loop_run:.2f}, waiting for one {row.loop_wait:.2f}",
        flush=True,
    )
    return row


def merge(rows: list[Row]) -> Row:
    """One row from several rounds of the same scenario: requests and CPU summed, latencies pooled."""
    results = [r.result for r in rows]
    seconds = sum(r.seconds for r in results)
    statuses: dict[int, int] = {}
    for r in results:
        for k, v in r.statuses.items():
            statuses[k] = statuses.get(k, 0) + v
    merged = LoadResult(
        requests=sum(r.requests for r in results),
        errors=sum(r.errors for r in results),
        seconds=seconds,
        latencies_s=np.concatenate([r.latencies_s for r in results]),
        client_cpu=sum(r.client_cpu * r.seconds for r in results) / seconds,
        statuses=statuses,
        compute_s=np.concatenate([r.compute_s for r in results]),
        concurrency=rows[0].concurrency,
    )
    batches = [r.mean_batch for r in rows if r.mean_batch]
    return Row(
        rows[0].scenario,
        rows[0].concurrency,
        merged,
        sum(r.server_cpu * r.result.seconds for r in rows) / seconds,
        sum(batches) / len(batches) if batches else None,
        loop_run=sum(r.loop_run * r.result.seconds for r in rows) / seconds,
        loop_wait=sum(r.loop_wait * r.result.seconds for r in rows) / seconds,
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet50")
    p.add_argument("--store", type=Path, default=ROOT / "model_store")
    p.add_argument(
        "--concurrency",
        type=int,
        default=0,
        help="client connections for the throughput runs (default: twice the raw best batch size, 16 to 128, so "
        "that a full batch can queue while the previous one runs)",
    )
    p.add_argument("--seconds", type=float, default=10.0, help="measured seconds per scenario (after a warm-up)")
    p.add_argument(
        "--raw-seconds", type=float, default=3.0, help="seconds per batch size for raw onnxruntime (3 runs at least)"
    )
    p.add_argument("--providers", default="cpu")
    p.add_argument("--warmup", default="pow2", help="the service's ZOOSERVE_WARMUP (start-up time only)")
    p.add_argument(
        "--skip", default="", help="comma-separated scenarios to skip: binary, json, classify, bare, latency"
    )
    p.add_argument(
        "--rounds", type=int, default=4, help="alternating rounds of JSON infer and the bare endpoint (default 4)"
    )
    p.add_argument(
        "--bare-server",
        choices=["stock", "service"],
        default="stock",
        help="the bare FastAPI endpoint on stock uvicorn (default) or in the service's server configuration",
    )
    p.add_argument("--json-out", type=Path, default=None, help="write the numbers as JSON here")
    args = p.parse_args(argv)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}

    entry = args.store / args.model
    if not (entry / "model.json").is_file():
        print(
            f"{entry} is missing: export it first (python -m export build {args.model} --store {args.store})",
            file=sys.stderr,
        )
        return 2
    manifest = Manifest.read(entry)
    max_batch = read_batching_config(entry).max_batch_size
    sample_shape = tuple(manifest.input.shape[1:])
    cpus = usable_cpus()
    print(
        f"model {args.model}: input {list(sample_shape)}, max batch {max_batch}; "
        f"{cpus} usable CPUs; {os.uname().machine}"
    )

    print("raw onnxruntime (in process, the service's session settings):")
    sizes = warmup_sizes(max_batch, "pow2")  # 1, 2, 4, ... and the max
    threads = int(os.environ.get("ZOOSERVE_THREADS", "0"))  # the service reads the same variable
    raw = raw_onnxruntime(
        manifest.model_path(entry), sample_shape, sizes, args.raw_seconds, args.providers.split(","), threads
    )
    best = max(raw, key=lambda r: r.images_per_s)
    raw_b1 = next(r for r in raw if r.batch == 1)

    concurrency = args.concurrency or default_concurrency(best.batch)
    host = "127.0.0.1"
    port, bare_port, floor_port = free_port(), free_port(), free_port()
    env = dict(
        os.environ,
        ZOOSERVE_MODELS=args.model,
        ZOOSERVE_LOG_LEVEL="warning",
        ZOOSERVE_PROVIDERS=args.providers,
        ZOOSERVE_WARMUP=args.warmup,
        ZOOSERVE_MAX_QUEUE_SIZE=str(max(64, 2 * concurrency)),
    )
    server = subprocess.Popen(
        [sys.executable, "-m", "service", "--store", str(args.store), "--host", host, "--port", str(port)],
        cwd=ROOT,
        env=env,
    )
    bare_cmd = [sys.executable, str(ROOT / "bench" / "bare_app.py"), "--host", host]
    bare = None
    if "bare" not in skip and "json" not in skip:
        bare = subprocess.Popen([*bare_cmd, "--server", args.bare_server, "--port", str(bare_port)], cwd=ROOT)
    rows: list[Row] = []
    round_ratios: list[float] = []
    binary_ratios: list[float] = []
    raw_rounds: list[RawResult] = [best]
    model_path = manifest.model_path(entry)
    raw_args = (args.raw_seconds, args.providers.split(","), threads)
    try:
        wait_ready(server, f"http://{host}:{port}/v2/health/ready", timeout=600)
        stats_url = f"http://{host}:{port}/v2/models/{args.model}/stats"
        infer_path = f"/v2/models/{args.model}/infer"
        xs = sample_inputs(manifest, 8)
        binary = [binary_request(infer_path, manifest, x) for x in xs]
        json_bodies = [json_body(manifest, x) for x in xs]
        json_reqs = [http_request(infer_path, b) for b in json_bodies]
        images = [sample_image(manifest, i) for i in range(8)]
        classify = [http_request(f"/v2/models/{args.model}/classify?top_k=5", b, ct) for b, ct in images]
        # Requests/s is connections / mean latency, which needs the steady state: a warm-up of two cycles
        # (a cycle is at least n requests at the raw rate), and windows of several cycles.
        n = concurrency
        cycle = n / best.images_per_s
        warm = max(2.0, 2 * cycle)
        secs = max(args.seconds, 15 * best.p50_ms / 1e3, 4 * cycle)
        print(f"service (pid {server.pid}), {n} connections, {secs:g} s per scenario:")
        if "binary" not in skip:
            # Alternating with the raw run at the best batch size (the sweep's run is the first), so that the
            # machine's drift falls on both alike; the ratio is the median of the rounds' ratios.
            part = max(secs / args.rounds, 10 * best.p50_ms / 1e3, 4 * cycle)
            binary_rounds = []
            for i in range(args.rounds):
                if i:
                    time.sleep(0.5)  # let the server's onnxruntime workers stop spinning
                    raw_rounds.append(raw_onnxruntime(model_path, sample_shape, [best.batch], *raw_args)[0])
                binary_rounds.append(measure("infer binary", host, port, server.pid, binary, n, part, stats_url, warm))
                binary_ratios.append(binary_rounds[-1].result.rps / raw_rounds[-1].images_per_s)
            rows.append(merge(binary_rounds))
        if "json" not in skip and bare is None:
            rows.append(measure("infer JSON", host, port, server.pid, json_reqs, n, secs, stats_url, warm))
        elif "json" not in skip:
            wait_ready(bare, f"http://{host}:{bare_port}/v2/health/ready", timeout=60)
            bare_reqs = [http_request(infer_path, b) for b in json_bodies]
            json_rounds, bare_rounds = [], []
            for _ in range(args.rounds):
                part = secs / args.rounds
                json_rounds.append(measure("infer JSON", host, port, server.pid, json_reqs, n, part, stats_url, warm))
                bare_row = measure("bare FastAPI (JSON)", host, bare_port, bare.pid, bare_reqs, n, part, None, warm)
                bare_rounds.append(bare_row)
                round_ratios.append(json_rounds[-1].result.rps / max(1e-9, bare_rounds[-1].result.rps))
            rows += [merge(json_rounds), merge(bare_rounds)]
        if "classify" not in skip:
            rows.append(measure("classify", host, port, server.pid, classify, n, secs, stats_url, warm))
        if "latency" not in skip:
            rows.append(measure("infer binary (latency)", host, port, server.pid, binary, 1, secs, stats_url))
            # The floor, three times: answering at once (moving the bytes); sleeping in a thread as long as the
            # run takes first (the idle gap alone); running the model once per request in a thread first (the
            # least a server around onnxruntime does).
            floors_cmds = (
                ("HTTP floor (latency)", []),
                ("HTTP floor + idle (latency)", ["--sleep-ms", f"{raw_b1.p50_ms:.3f}"]),
                ("HTTP floor + run (latency)", ["--run-model", str(model_path)]),
            )
            for label, extra in floors_cmds:
                floor_cmd = [*bare_cmd, "--server", "service", "--asgi", "--port", str(floor_port), *extra]
                floor = subprocess.Popen(floor_cmd, cwd=ROOT)
                try:
                    wait_ready(floor, f"http://{host}:{floor_port}/v2/health/ready", timeout=60)
                    rows.append(measure(label, host, floor_port, floor.pid, binary, 1, secs))
                finally:
                    stop(floor)
        stop(server)
        # The raw run once more, now that the server is gone: the baseline is the mean of all of them.
        print("raw onnxruntime again at the best batch size:")
        raw_rounds.append(raw_onnxruntime(model_path, sample_shape, [best.batch], *raw_args)[0])
    finally:
        stop(server)
        if bare is not None:
            stop(bare)

    baseline = float(np.mean([r.images_per_s for r in raw_rounds]))
    print()
    print(
        f"{args.model}, {cpus} CPUs ({os.uname().machine}), raw best batch {best.batch}: "
        + ", ".join(f"{r.images_per_s:.1f}" for r in raw_rounds)
        + f" images/s over the run: baseline {baseline:.1f} images/s"
    )
    header = (
        f"| {'scenario':<22} | conc | {'req/s':>8} | {'images/s':>8} | {'p50 ms':>8} | {'p95 ms':>8} | {'p99 ms':>8} | "
        f"batch | srv CPU | cli CPU | loop run | loop wait |"
    )
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    print(
        f"| {'raw onnxruntime':<22} | {'-':>4} | {'-':>8} | {baseline:8.1f} | {best.p50_ms:8.2f} | {'-':>8} | "
        f"{'-':>8} | {best.batch:5d} | {best.cpu:7.2f} | {'-':>7} | {'-':>8} | {'-':>9} |"
    )
    for r in rows:
        res = r.result
        batch = f"{r.mean_batch:5.1f}" if r.mean_batch else f"{'-':>5}"
        print(
            f"| {r.scenario:<22} | {r.concurrency:4d} | {res.rps:8.1f} | {res.rps:8.1f} | "
            f"{res.percentile_ms(50):8.2f} | "
            f"{res.percentile_ms(95):8.2f} | {res.percentile_ms(99):8.2f} | {batch} | {r.server_cpu:7.2f} | "
            f"{res.client_cpu:7.2f} | {r.loop_run:8.2f} | {r.loop_wait:9.2f} |"
        )
    by = {r.scenario: r for r in rows}
    ratios = {}
    if binary_ratios:
        ratios["infer binary / raw (median of rounds)"] = float(np.median(binary_ratios))
    if "classify" in by:
        ratios["classify / raw"] = by["classify"].result.rps / baseline
    if round_ratios:
        ratios["infer JSON / bare FastAPI (req/s, median of rounds)"] = float(np.median(round_ratios))
    if round_ratios and by["infer JSON"].loop_run > 0 and by["bare FastAPI (JSON)"].loop_run > 0:
        # What each request costs the event loop, whatever CPU the other threads left it: requests per second
        # of the loop on a CPU (Linux schedstat), the service's against the bare endpoint's.
        json_row, bare_row = by["infer JSON"], by["bare FastAPI (JSON)"]
        ratios["infer JSON / bare FastAPI, per second the event loop ran"] = (
            json_row.result.rps / json_row.loop_run / (bare_row.result.rps / bare_row.loop_run)
        )
    if "infer JSON" in by:
        ratios["infer JSON / raw"] = by["infer JSON"].result.rps / baseline
    # On a shared machine the CPU each process gets varies: images per CPU-second of the server process (event
    # loop, HTTP and onnxruntime together) against the raw run's, a conservative efficiency ratio.
    raw_per_core = baseline / max(1e-9, float(np.mean([r.cpu for r in raw_rounds])))
    for key, scenario in (("infer binary", "infer binary"), ("classify", "classify")):
        if scenario in by and by[scenario].server_cpu > 0:
            ratios[f"{key} / raw, per core used"] = by[scenario].result.rps / by[scenario].server_cpu / raw_per_core
    print()
    for k, v in ratios.items():
        print(f"ratio {k}: {v:.3f}")
    if binary_ratios:
        print("binary infer / raw, round by round: " + ", ".join(f"{r:.3f}" for r in binary_ratios))
    if round_ratios:
        print("JSON infer / bare FastAPI, round by round: " + ", ".join(f"{r:.3f}" for r in round_ratios))
    added = added_vs_raw = floors = None
    if "infer binary (latency)" in by:
        lat = by["infer binary (latency)"].result
        added_vs_raw = lat.percentile_ms(50) - raw_b1.p50_ms
        # Per request, its HTTP latency less the compute the server reported for it (Server-Timing): immune to
        # the machine's drift between the raw measurement and this one, and to the run's own spread.
        per_request = lat.added_ms()
        added = {
            "p50": float(np.nanpercentile(per_request, 50)),
            "p95": float(np.nanpercentile(per_request, 95)),
            "mean": float(np.nanmean(per_request)),
        }
        print(
            f"latency added at batch 1 by HTTP, queueing and serialisation (each request's latency less the "
            f"compute its Server-Timing reports): p50 {added['p50']:.3f} ms, p95 {added['p95']:.3f} ms, "
            f"mean {added['mean']:.3f} ms"
        )
        print(
            f"  for comparison, HTTP p50 {lat.percentile_ms(50):.3f} ms - raw run p50 {raw_b1.p50_ms:.3f} ms "
            f"(measured before the server started): {added_vs_raw:.3f} ms"
        )
        floors = {}
        if "HTTP floor (latency)" in by:
            floors["instant"] = by["HTTP floor (latency)"].result.percentile_ms(50)
            print(
                f"  the HTTP floor: a plain ASGI app on the same uvicorn reads the same {len(binary[0]):,}-byte "
                f"request and answers a constant in {floors['instant']:.3f} ms (p50)"
            )
        if "HTTP floor + idle (latency)" in by:
            floors["idle"] = float(np.nanpercentile(by["HTTP floor + idle (latency)"].result.added_ms(), 50))
            print(
                f"  the same app sleeping {raw_b1.p50_ms:.3f} ms per request in a thread (an idle gap as long as the "
                f"run) before answering adds {floors['idle']:.3f} ms (p50) beyond the sleep"
            )
        if "HTTP floor + run (latency)" in by:
            floors["run"] = float(np.nanpercentile(by["HTTP floor + run (latency)"].result.added_ms(), 50))
            print(
                f"  the same app running the model once per request in a thread before answering adds "
                f"{floors['run']:.3f} ms (p50) beyond the run; the service adds {added['p50'] - floors['run']:.3f} ms "
                "beyond that"
            )
    if args.json_out:
        args.json_out.write_text(
            json.dumps(
                {
                    "model": args.model,
                    "cpus": cpus,
                    "raw": [r.__dict__ for r in raw],
                    "raw_rounds": [r.__dict__ for r in raw_rounds],
                    "baseline_images_per_s": baseline,
                    "rows": [
                        {
                            "scenario": r.scenario,
                            "concurrency": r.concurrency,
                            "rps": r.result.rps,
                            "counted_rps": r.result.counted_rps,
                            "p50_ms": r.result.percentile_ms(50),
                            "p95_ms": r.result.percentile_ms(95),
                            "p99_ms": r.result.percentile_ms(99),
                            "errors": r.result.errors,
                            "mean_batch": r.mean_batch,
                            "server_cpu": r.server_cpu,
                            "client_cpu": r.result.client_cpu,
                            "compute_ms": r.compute_ms,
                            "loop_run": r.loop_run,
                            "loop_wait": r.loop_wait,
                        }
                        for r in rows
                    ],
                    "ratios": ratios,
                    "json_bare_round_ratios": round_ratios,
                    "binary_raw_round_ratios": binary_ratios,
                    "added_latency_ms": added,
                    "added_latency_ms_p50_vs_raw_p50": added_vs_raw,
                    "floor_ms_p50": floors,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
