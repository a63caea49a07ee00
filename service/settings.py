"""Every option of the service, from the command line (`python -m service --help`) or the environment.

One pydantic-settings class; each field's docstring is its help text. Environment variables carry the
prefix ZOOSERVE_ (ZOOSERVE_STORE, ZOOSERVE_PORT, ...); list options are comma-separated there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "ZOOSERVE_"


def _split(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_ignore_empty=True,
        extra="ignore",
        use_attribute_docstrings=True,
        frozen=True,
    )

    store: Path = Path("model_store")
    """The model store folder: one `<name>/` entry per model (config.pbtxt, model.json, labels.txt, 1/model.onnx)."""

    host: str = "127.0.0.1"
    """Address to listen on (0.0.0.0 for every interface)."""

    port: int = Field(8000, ge=0, le=65535)
    """TCP port to listen on."""

    models: Annotated[list[str] | None, NoDecode] = None
    """Models to load at start, comma-separated (default: every model of the store; `none`: no model)."""

    providers: Annotated[list[str], NoDecode] = ["cpu"]
    """onnxruntime execution providers in order of preference, comma-separated: cpu, cuda, tensorrt, or full
    names such as CUDAExecutionProvider. One that cannot load is a warning and a fallback to the next."""

    require_gpu: bool = False
    """Fail to start (or to load a model) when no GPU provider is actually in use."""

    gpu_device_id: int = Field(0, ge=0)
    """CUDA / TensorRT device to run on."""

    threads: int = Field(0, ge=0)
    """Size of the one global onnxruntime intra-op thread pool (0: the CPUs this process may use,
    affinity and container CPU quota included)."""

    threads_idle_priority: bool = False
    """Run the intra-op pool's worker threads at idle CPU priority (Linux SCHED_IDLE): their spin-waiting
    between runs then never takes CPU from the event loop (tiny models on few cores serve more requests/s),
    but a run can stall for seconds while another process keeps the CPUs busy (see service/runtime.py).
    Only for a machine or container the service has to itself."""

    gil_switch_interval_us: int = Field(200, ge=0)
    """Python's GIL switch interval in microseconds (0: leave Python's 5 ms): how long a thread that finished
    or is about to start a batch may wait for the GIL while the event loop is busy."""

    malloc_keep_mb: int = Field(256, ge=0, le=1024)
    """glibc: MiB of freed memory the allocator keeps for reuse rather than returning it to the kernel at once
    (0: glibc's defaults), and serve blocks up to 32 MiB from its heap: large request bodies and batches then
    reuse warm pages rather than page-faulting fresh ones on every request (see runtime.tune_allocator)."""

    max_batch_size: int = Field(0, ge=0)
    """Upper bound on every model's batch size (0: each model's config.pbtxt max_batch_size)."""

    max_queue_delay_us: int | None = Field(None, ge=0)
    """How long a partial batch may wait for more requests, in microseconds (default: each model's
    config.pbtxt dynamic_batching.max_queue_delay_microseconds). Used while the model is busy, or always with
    queue_delay_when_idle."""

    queue_delay_when_idle: bool = False
    """Triton's policy: a partial batch waits up to max_queue_delay even when the model is idle (fuller batches
    at moderate load, up to the delay added to every request). Off: an idle model starts at once, and batches
    form from the requests that arrive while it runs."""

    max_queue_size: int = Field(64, ge=1)
    """Requests that may wait per model (not counting the running batch); beyond it the answer is 503 with
    Retry-After, at once."""

    max_concurrent_batches: int = Field(1, ge=1)
    """Batches of one model that may run at the same time (each model has this many threads of its own)."""

    warmup: Literal["all", "pow2", "none"] = "all"
    """Batch sizes run once at load before a model is ready: every size up to max batch (all), powers of two and
    the max (pow2), or none."""

    max_request_bytes: int = Field(64 * 1024 * 1024, ge=1024)
    """Largest request body accepted (413 beyond it)."""

    max_image_pixels: int = Field(64_000_000, ge=1)
    """Largest decoded image accepted by classify, in pixels (decompression bombs are refused)."""

    top_k: int = Field(5, ge=1)
    """Default number of classes classify returns per image."""

    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    """Log level of the service and uvicorn."""

    access_log: bool = False
    """Log every HTTP request (costs throughput)."""

    graceful_shutdown_s: float = Field(30.0, ge=0)
    """On SIGTERM: how long to wait for requests in flight before closing."""

    limit_concurrency: int | None = Field(None, ge=1)
    """Connections + requests in flight beyond which uvicorn answers 503 (default: no limit)."""

    @field_validator("models", mode="before")
    @classmethod
    def _split_models(cls, value: object) -> object:
        value = _split(value)
        if isinstance(value, list) and [v.lower() for v in value] in (["all"], ["*"]):
            return None
        if isinstance(value, list) and [v.lower() for v in value] == ["none"]:
            return []
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_case(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value  # INFO as well as info

    @field_validator("providers", mode="before")
    @classmethod
    def _split_providers(cls, value: object) -> object:
        value = _split(value)
        if value == []:
            raise ValueError("at least one provider is needed (e.g. cpu)")
        return value
