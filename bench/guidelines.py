"""ShuffleNet v2's guideline experiments (G1-G4), measured on this machine through ZooServe.

Ma et al., "ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture Design" (ECCV 2018), as
summarised in the survey (seed text, section ShuffleNet v2): FLOPs are not speed. Four small benchmark
networks test four guidelines at equal FLOPs, on 56x56 inputs, each a stack of 10 identical blocks:

- G1: equal channel width minimises memory access cost: blocks of two 1x1 convolutions c1->c2->c1,
  c1:c2 = 1:1, 1:2, 1:6, 1:12 with c1*c2 (the FLOPs) fixed (the paper's Table 1 channel pairs);
- G2: excessive group convolution increases MAC: blocks of two 1x1 group convolutions c->c with
  g = 1, 2, 4, 8 and c^2/g fixed (Table 2);
- G3: network fragmentation reduces parallelism: blocks of 1, 2 or 4 1x1 convolutions in series
  (channels scaled so that the FLOPs match) or in parallel (branches c->c/n, concatenated) (Table 3);
- G4: element-wise operations are not negligible: ResNet bottleneck units with and without ReLU and
  shortcut (Table 4), and where the time goes in a MobileNet v2 style unit (depthwise convolution,
  ReLU, add) against where the MACs are.

The networks are defined here (they are not zoo models), exported through the export stage
(`export.build.build(spec, store)`), served by a real `python -m service` process, and profiled through
its HTTP endpoint POST /v2/models/{m}/profile. Images/s = batch / median run latency. Every table
prints a ratio against its first row, measured in the same run.

    .venv/bin/python bench/guidelines.py [--store DIR] [--runs 12] [--rounds 3] [--batch-sizes 1,8] [--only G1,G4]
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from export.build import build  # noqa: E402
from export.zoo.registry import ModelSpec  # noqa: E402
from service.manifest import Paper, Preprocessing, Reference  # noqa: E402

SIZE = 56
BLOCKS = 10
PAPER = Paper(
    title="ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture Design",
    authors="Ma, Zhang, Zheng, Sun",
    year=2018,
    url="https://arxiv.org/abs/1807.11164",
)


# --- networks ---------------------------------------------------------------------------------------


def conv1x1(cin: int, cout: int, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, groups=groups, bias=False)


class Head(nn.Sequential):
    """Global average pool and a 10-way classifier: the same tiny head on every benchmark network."""

    def __init__(self, channels: int) -> None:
        super().__init__(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, 10))


class Bench(nn.Module):
    """`BLOCKS` copies of a block on a c x 56 x 56 input, then the head."""

    def __init__(self, make_block: Callable[[], nn.Module], channels: int) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*(make_block() for _ in range(BLOCKS)))
        self.head = Head(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(x))


class PointwisePair(nn.Module):
    """G1/G2: two 1x1 (group) convolutions c1 -> c2 -> c1."""

    def __init__(self, c1: int, c2: int, groups: int = 1) -> None:
        super().__init__()
        self.conv1 = conv1x1(c1, c2, groups)
        self.relu1 = nn.ReLU()
        self.conv2 = conv1x1(c2, c1, groups)
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu2(self.conv2(self.relu1(self.conv1(x))))


class Series(nn.Module):
    """G3: n 1x1 convolutions one after the other."""

    def __init__(self, c: int, n: int) -> None:
        super().__init__()
        self.fragments = nn.Sequential(*(nn.Sequential(conv1x1(c, c), nn.ReLU()) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fragments(x)


class Parallel(nn.Module):
    """G3: n 1x1 convolutions c -> c/n side by side on the same input, concatenated."""

    def __init__(self, c: int, n: int) -> None:
        super().__init__()
        self.branches = nn.ModuleList(nn.Sequential(conv1x1(c, c // n), nn.ReLU()) for _ in range(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([b(x) for b in self.branches], dim=1)


class Bottleneck(nn.Module):
    """G4: ResNet's bottleneck unit (1x1 c->c/4, 3x3 c/4, 1x1 c/4->c), ReLU and shortcut switchable."""

    def __init__(self, c: int, relu: bool, shortcut: bool) -> None:
        super().__init__()
        mid = c // 4
        self.conv1 = conv1x1(c, mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, padding=1, bias=False)
        self.conv3 = conv1x1(mid, c)
        self.relu = nn.ReLU() if relu else nn.Identity()
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv3(self.relu(self.conv2(self.relu(self.conv1(x)))))
        if self.shortcut:
            out = out + x
        return self.relu(out)


class DepthwiseUnit(nn.Module):
    """G4: a MobileNet v2 style unit: 1x1 conv, ReLU, 3x3 depthwise conv, ReLU, 1x1 conv, shortcut add."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.pw1 = conv1x1(c, c)
        self.relu1 = nn.ReLU()
        self.dw = nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False)
        self.relu2 = nn.ReLU()
        self.pw2 = conv1x1(c, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pw2(self.relu2(self.dw(self.relu1(self.pw1(x)))))


def g1_net(c1: int, c2: int) -> nn.Module:
    return Bench(lambda: PointwisePair(c1, c2), c1)


def g2_net(c: int, groups: int) -> nn.Module:
    return Bench(lambda: PointwisePair(c, c, groups), c)


def g3_net(c: int, n: int, parallel: bool) -> nn.Module:
    return Bench(lambda: (Parallel if parallel else Series)(c, n), c)


def g4_net(c: int, relu: bool, shortcut: bool) -> nn.Module:
    return Bench(lambda: Bottleneck(c, relu, shortcut), c)


def g4_dw_net(c: int) -> nn.Module:
    return Bench(lambda: DepthwiseUnit(c), c)


# --- experiments ------------------------------------------------------------------------------------


@dataclass
class Net:
    table: str
    name: str
    label: list[str]  # the row's leading cells
    builder: Callable[..., nn.Module]
    kwargs: dict
    channels: int


def experiments() -> list[Net]:
    nets: list[Net] = []
    # G1 (Table 1, GPU column): (c1, c2) with c1 * c2 ~ 128^2.
    for ratio, (c1, c2) in {"1:1": (128, 128), "1:2": (90, 180), "1:6": (52, 312), "1:12": (36, 432)}.items():
        nets.append(Net("G1", f"g1_{c1}x{c2}", [ratio, f"({c1},{c2})"], g1_net, {"c1": c1, "c2": c2}, c1))
    # G2 (Table 2, GPU column): c^2 / g ~ 128^2.
    for g, c in {1: 128, 2: 180, 4: 256, 8: 360}.items():
        nets.append(Net("G2", f"g2_g{g}_c{c}", [str(g), str(c)], g2_net, {"c": c, "groups": g}, c))
    # G3 (Table 3): c = 128 for one fragment; series fragments c / sqrt(n), parallel branches c -> c / n.
    c = 128
    for label, n, parallel in [
        ("1-fragment", 1, False),
        ("2-fragment-series", 2, False),
        ("4-fragment-series", 4, False),
        ("2-fragment-parallel", 2, True),
        ("4-fragment-parallel", 4, True),
    ]:
        width = c if parallel else round(c / math.sqrt(n))
        name = f"g3_{'par' if parallel else 'ser'}{n}_c{width}"
        nets.append(Net("G3", name, [label, str(width)], g3_net, {"c": width, "n": n, "parallel": parallel}, width))
    # G4 (Table 4): bottleneck units with/without ReLU and shortcut, two widths.
    for relu, shortcut in [(True, True), (False, True), (True, False), (False, False)]:
        for c in (32, 128):
            name = f"g4_c{c}_{'relu' if relu else 'norelu'}_{'sc' if shortcut else 'nosc'}"
            cells = ["yes" if relu else "no", "yes" if shortcut else "no"]
            nets.append(Net("G4", name, cells, g4_net, {"c": c, "relu": relu, "shortcut": shortcut}, c))
    nets.append(Net("G4dw", "g4_dw_c64", ["dw unit", "64"], g4_dw_net, {"c": 64}, 64))
    return nets


def spec_for(net: Net) -> ModelSpec:
    torch.manual_seed(0)
    params = sum(p.numel() for p in net.builder(**net.kwargs).parameters())
    return ModelSpec(
        name=net.name,
        builder=net.builder,
        family="ShuffleNet v2 guideline benchmark",
        paper=PAPER,
        reference=Reference(params=params, source="bench/guidelines.py (counted)", exact=True),
        input_size=(net.channels, SIZE, SIZE),
        num_classes=10,
        labels="digits",
        preprocessing=Preprocessing(resize=SIZE, crop=SIZE, mean=[0.0], std=[1.0], color_mode="L"),
        kwargs=net.kwargs,
        max_batch_size=8,
    )


# --- the service ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(store: Path, port: int) -> Iterator[str]:
    """A real `python -m service` process on `store`; yields its base URL once every model is ready."""
    import httpx

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "service", "--store", str(store), "--port", str(port), "--warmup", "none",
           "--log-level", "warning"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the service exited with {proc.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("the service did not become ready in 300 s")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Client:
    def __init__(self, url: str) -> None:
        import httpx

        self.http = httpx.Client(base_url=url, timeout=600)

    def profile(self, model: str, **body) -> dict:
        r = self.http.post(f"/v2/models/{model}/profile", json=body)
        if r.status_code != 200:
            raise RuntimeError(f"profile {model}: HTTP {r.status_code}: {r.text}")
        return r.json()


# --- tables -----------------------------------------------------------------------------------------


def combine(profiles: list[dict]) -> dict:
    """One profile per round -> the round with the median latency (its rows and shares as measured)."""
    return sorted(profiles, key=lambda p: p["total_ms"]["p50"])[len(profiles) // 2]


def images_per_s(profile: dict) -> float:
    return profile["batch_size"] / (profile["total_ms"]["p50"] / 1e3)


def print_table(title: str, header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = [title, "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |"]
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows]
    text = "\n".join(lines)
    print(text + "\n", flush=True)
    return text


def throughput_table(title: str, first: list[str], nets: list[Net], results: dict, batches: list[int]) -> str:
    header = [*first, "MMACs"]
    for b in batches:
        header += [f"img/s b={b}", "ratio"]
    rows = []
    base = {b: images_per_s(results[nets[0].name][b]) for b in batches}
    for net in nets:
        p = results[net.name][batches[0]]
        row = [*net.label, f"{p['macs'] / 1e6:.0f}"]
        for b in batches:
            ips = images_per_s(results[net.name][b])
            row += [f"{ips:.1f}", f"{ips / base[b]:.2f}"]
        rows.append(row)
    return print_table(title, header, rows)


ELEMENTWISE = {"Relu", "Add", "Sum", "Mul", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Concat"}
LAYOUT = {"ReorderInput", "ReorderOutput", "Transpose"}


def p50_shares(profile: dict) -> dict[str, float]:
    """Each row's share of the summed row medians: robust to a burst of load in a few runs."""
    total = sum(max(r["p50_ms"], 0.0) for r in profile["rows"]) or 1.0
    return {r["name"]: max(r["p50_ms"], 0.0) / total for r in profile["rows"]}


def share_of(op_profile: dict, ops: set[str]) -> float:
    """Share of the node time spent in these op types (a group_by=op_type profile)."""
    return sum(v for k, v in p50_shares(op_profile).items() if k in ops)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", type=Path, default=None, help="store for the benchmark networks (default: a temp dir)")
    ap.add_argument("--runs", type=int, default=12, help="timed runs per point, split over the rounds")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds over the networks of a table")
    ap.add_argument("--warmup", type=int, default=1, help="untimed runs before each round's timed ones")
    ap.add_argument("--batch-sizes", default="1,8")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--only", default="", help="comma-separated tables to run (G1,G2,G3,G4)")
    args = ap.parse_args(argv)
    batches = [int(b) for b in args.batch_sizes.split(",")]
    started = time.perf_counter()

    nets = experiments()
    if args.only:
        keep = {t.strip().upper() for t in args.only.split(",")}
        nets = [n for n in nets if n.table.rstrip("dw") in keep or n.table in keep]
    tmp = None
    store = args.store
    if store is None:
        tmp = tempfile.TemporaryDirectory(prefix="zooserve-guidelines-")
        store = Path(tmp.name)
    print(f"exporting {len(nets)} networks to {store} ...", flush=True)
    for net in nets:
        build(spec_for(net), store, log=lambda *_: None)
    print(f"  done in {time.perf_counter() - started:.0f} s", flush=True)

    # The CPU is shared: the networks of a table are measured in interleaved rounds (each round a fresh
    # profile of every network), and a point is the median over rounds, so a burst of load elsewhere hits
    # every row of a table alike instead of one row.
    results: dict[str, dict] = {n.name: {} for n in nets}
    runs_per_round = max(1, args.runs // args.rounds)
    with serve(store, args.port or free_port()) as url:
        client = Client(url)
        for table in dict.fromkeys(n.table for n in nets):
            members = [n for n in nets if n.table == table]
            sizes = batches if table in ("G1", "G2", "G3") else [1]
            group = "op_type" if table == "G4" else ("layer" if table == "G4dw" else "block")
            runs = runs_per_round * (4 if table.startswith("G4") else 1)  # G4's units are cheap: more runs
            for _ in range(args.rounds):
                for b in sizes:
                    for net in members:
                        p = client.profile(net.name, batch_size=b, runs=runs, warmup=args.warmup, group_by=group,
                                           refresh=True)  # fmt: skip
                        results[net.name].setdefault(b, []).append(p)
        for per_batch in results.values():
            for b, profiles in per_batch.items():
                per_batch[b] = combine(profiles)
        provider = next(iter(next(iter(results.values())).values()))["provider"]

    cpu = os.cpu_count()
    print(
        f"machine: {cpu} CPUs, provider {provider}, input {SIZE}x{SIZE}, {args.rounds} interleaved rounds of "
        f"{runs_per_round} runs per point (G4: {4 * runs_per_round}); images/s from the median round, time shares "
        "from per-row medians\n"
    )
    tables = []
    by = {t: [n for n in nets if n.table == t] for t in ("G1", "G2", "G3", "G4", "G4dw")}
    if by["G1"]:
        tables.append(throughput_table("G1: input/output channel ratio at equal FLOPs", ["c1:c2", "(c1,c2)"],
                                       by["G1"], results, batches))  # fmt: skip
    if by["G2"]:
        tables.append(throughput_table("G2: group convolution at equal FLOPs", ["g", "c"], by["G2"], results, batches))
    if by["G3"]:
        tables.append(throughput_table("G3: fragmentation at equal FLOPs", ["structure", "c"], by["G3"], results,
                                       batches))  # fmt: skip
    if by["G4"]:
        header = ["ReLU", "short-cut"]
        widths = sorted({n.kwargs["c"] for n in by["G4"]})
        for c in widths:
            header += [f"img/s c={c}", "ratio", "element-wise", "reorders"]
        rows = []
        combos = list(dict.fromkeys(tuple(n.label) for n in by["G4"]))
        base = {}
        for combo in combos:
            row = list(combo)
            for c in widths:
                net = next(n for n in by["G4"] if tuple(n.label) == combo and n.kwargs["c"] == c)
                p = results[net.name][1]
                ips = images_per_s(p)
                base.setdefault(c, ips)
                row += [
                    f"{ips:.1f}",
                    f"{ips / base[c]:.2f}",
                    f"{100 * share_of(p, ELEMENTWISE):.1f}%",
                    f"{100 * share_of(p, LAYOUT):.1f}%",
                ]
            rows.append(row)
        tables.append(print_table("G4: ReLU and short-cut removed from a bottleneck unit (batch 1)", header, rows))
    if by["G4dw"]:
        net = by["G4dw"][0]
        layers = results[net.name][1]
        kinds: dict[str, list[float]] = {}
        shares = p50_shares(layers)
        for r in layers["rows"]:
            leaf = r["name"].rsplit(".", 1)[-1]
            kind = {"pw1": "1x1 conv", "pw2": "1x1 conv", "dw": "3x3 depthwise conv", "relu1": "ReLU",
                    "relu2": "ReLU"}.get(leaf)  # fmt: skip
            if kind is None:
                kind = "add (short-cut)" if r["name"].startswith("blocks.") else "head"
            acc = kinds.setdefault(kind, [0.0, 0.0, 0.0])
            acc[0] += shares[r["name"]]
            acc[1] += r["macs"]
            acc[2] += r["p50_ms"]
        total_macs = sum(v[1] for v in kinds.values()) or 1
        rows = [
            [k, f"{100 * v[1] / total_macs:.1f}%", f"{100 * v[0]:.1f}%", f"{v[2]:.3f}"]
            for k, v in sorted(kinds.items(), key=lambda kv: -kv[1][0])
        ]
        tables.append(print_table("G4: where the time goes in a depthwise-separable unit (c=64, batch 1)",
                                  ["layer kind", "share of MACs", "share of time", "ms (p50)"], rows))  # fmt: skip
    print(f"total {time.perf_counter() - started:.0f} s")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
