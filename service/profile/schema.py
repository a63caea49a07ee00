"""The profile request and response bodies (pydantic: they are the HTTP API and the CLI's JSON)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

GroupBy = Literal["layer", "block", "op_type", "node"]
MethodChoice = Literal["profiler", "prefix"]
MethodName = Literal["onnxruntime-profiler", "prefix-differences"]
SortOrder = Literal["execution", "time"]

MAX_RUNS = 1000
MAX_WARMUP = 100

PROFILER = "onnxruntime-profiler"
PREFIX = "prefix-differences"

METHOD_NOTES = {
    PROFILER: (
        "onnxruntime's profiler in a separate session with the serving optimisation level: per executed node, "
        "the time from the kernel's start to its return on the host. On the CPU provider that is the work; on "
        "GPU providers it is only the launch."
    ),
    PREFIX: (
        "Prefix differences: the graph is cut after each group's output into prefix models (onnx.utils."
        "Extractor); each prefix runs with inputs and outputs bound on the device (IO binding) and is synchronised "
        "after every run; consecutive prefixes run interleaved and a group's time is the paired difference "
        "T(prefix k) - T(prefix k-1). The first prefix's reference T(0) is an empty run (the fixed cost of one "
        "Run call), reported as the unattributed remainder. onnxruntime's fusions inside each prefix are kept."
    ),
}


class ProfileRequest(BaseModel):
    """POST /v2/models/{name}/profile body; every field has a default."""

    model_config = ConfigDict(extra="forbid")

    batch_size: int = Field(1, ge=1, description="images per run (at most the model's max batch size)")
    runs: int = Field(20, ge=1, le=MAX_RUNS, description="timed runs")
    warmup: int = Field(3, ge=0, le=MAX_WARMUP, description="untimed runs before the timed ones")
    group_by: GroupBy = Field("layer", description="layer (module path, cut at `depth`), block, op_type or node")
    depth: int | None = Field(None, ge=1, description="for group_by=layer: module path components kept")
    provider: str | None = Field(None, description="execution provider (cpu, cuda, ...); default: the serving one")
    method: MethodChoice | None = Field(
        None, description="profiler or prefix; default: profiler on CPU, prefix on GPU providers"
    )
    refresh: bool = Field(False, description="measure again even when a cached measurement of these parameters exists")


class Stats(BaseModel):
    mean: float
    p50: float
    p90: float


class ProfileRow(BaseModel):
    name: str = Field(description="module path (`(root)`: the model's own forward), op type, or node name")
    module_class: str | None = None
    module: str | None = Field(None, description="group_by=node: the module the node is attributed to")
    op_types: list[str]
    nodes: int = Field(description="executed nodes per run (prefix method: exported ONNX nodes in the group)")
    mean_ms: float
    p50_ms: float
    p90_ms: float
    share: float = Field(description="share of the summed node (group) time, by the response's `statistic`")
    macs: int = Field(description="multiply-accumulates per image")
    params: int
    output_shape: list[int] | None = None
    gmacs_per_s: float | None = Field(None, description="achieved GMAC/s: macs * batch / time (by `statistic`)")


class ProfileResponse(BaseModel):
    model: str
    version: int
    method: MethodName
    method_note: str
    provider: str = Field(description="the execution provider actually used (session.get_providers()[0])")
    providers: list[str]
    node_providers: dict[str, int] = Field(description="executed nodes per provider in one run")
    batch_size: int
    runs: int
    warmup: int
    group_by: GroupBy
    depth: int | None
    sort: SortOrder
    statistic: Literal["mean", "p50"] = Field(
        description="what shares, node_sum_ms and unattributed_ms are computed from: the mean (profiler: per-node "
        "times add up exactly) or the median (prefix: robust to outliers in the differences)"
    )
    total_ms: Stats = Field(description="latency of one run")
    node_sum_ms: float = Field(description="the summed node (group) times, by `statistic`")
    unattributed_ms: float = Field(
        description="total - node sum, by `statistic`: time in no node (between kernels, the Run call itself)"
    )
    macs: int
    params: int
    rows: list[ProfileRow]
    warnings: list[str] = []
    cached: bool = False
    measured_at: str
    seconds: float = Field(description="wall time the measurement took")


class LayerTable(BaseModel):
    """GET /v2/models/{name}/layers: the manifest's static per-layer table."""

    model: str
    version: int
    num_params: int
    macs: int
    input_shape: list[int]
    layers: list[dict]
