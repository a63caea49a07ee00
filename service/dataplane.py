"""The transport-free core (MLServer's DataPlane idea): the model repository (load, unload, ready),
inference, image classification, metadata and statistics. The REST routes are thin adapters over it.

Threads: the event loop owns all state. onnxruntime runs in each model's own batch thread(s) (its
Batcher's, max_concurrent_batches of them); image decoding in a pool of its own; session creation and
warm-up in one loader thread (serving sessions are created one at a time, beside the batches of the
models already serving), so loading a model never stalls the others.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import numpy as np
import onnxruntime as ort

from service import __version__, codecs
from service.batching import Batcher, BatchResult
from service.errors import (
    BadRequest,
    ModelLoadError,
    ModelNotFound,
    ModelNotReady,
    ServerBusy,
    ServingError,
    ShuttingDown,
)
from service.images import Preprocessor
from service.manifest import CONFIG_FILE, MANIFEST_FILE, Manifest
from service.metrics import Metrics
from service.runtime import (
    ProviderPlan,
    create_session,
    init_global_thread_pool,
    plan_providers,
    tune_allocator,
    tune_interpreter,
    usable_cpus,
    warm_up,
    warmup_sizes,
)
from service.settings import Settings
from service.stats import ModelStats
from service.store import list_store, parse_pbtxt, read_batching_config, read_labels

log = logging.getLogger("zooserve")

PLATFORM = "onnxruntime_onnx"
EXTENSIONS = ["binary_tensor_data", "classification", "statistics", "model_repository", "model_configuration"]


class ModelState(StrEnum):
    LOADING = "LOADING"
    READY = "READY"
    UNLOADING = "UNLOADING"
    UNAVAILABLE = "UNAVAILABLE"


@dataclass(frozen=True)
class ModelHandle:
    """What others (e.g. the profiler) may know about a loaded model; building their own session from
    `model_path` with `service.runtime.session_options()` and `providers` reproduces ours."""

    name: str
    version: int
    manifest: Manifest
    model_dir: Path
    providers: tuple[str, ...]
    """As read back from the session: the first one is the provider actually in use."""
    labels: tuple[str, ...]
    max_batch_size: int
    max_queue_delay_us: int

    @property
    def model_path(self) -> Path:
        return self.manifest.model_path(self.model_dir)


@dataclass
class _Model:
    handle: ModelHandle
    session: ort.InferenceSession
    batcher: Batcher
    preprocessor: Preprocessor | None
    stats: ModelStats
    input_name: str
    sample_shape: tuple[int, ...]
    output_names: list[str]
    output_shapes: list[list[int]]

    @property
    def logits(self) -> int:
        """Which of the outputs classify takes the class scores from: the manifest's."""
        return self.output_names.index(self.handle.manifest.output.name)


@dataclass
class _Status:
    state: ModelState
    version: int | None = None
    reason: str = ""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass(slots=True)
class InferResult:
    model_name: str
    model_version: str
    id: str | None
    outputs: list[codecs.OutputTensor]
    queue_ns: int = 0
    """From joining the model's queue to the start of its batch."""
    compute_ns: int = 0
    """Its batch's stacking of inputs and onnxruntime run."""


class _BatchObserver:
    """Feeds one model's executed batches into its stats and Prometheus histograms."""

    def __init__(self, stats: ModelStats, metrics: Metrics, model: str) -> None:
        self._stats = stats
        _, self._compute, self._batch = metrics.model_histograms(model)

    def on_batch(self, rows: int, input_ns: int, infer_ns: int, output_ns: int, ok: bool) -> None:
        if ok:
            self._stats.batch_done(rows, input_ns, infer_ns, output_ns)
        self._compute.observe((input_ns + infer_ns) / 1e9)
        self._batch.observe(rows)


class _Tracked:
    """`DataPlane.track`'s context manager (a plain class: the hot path runs it for every request)."""

    __slots__ = ("_counts_in_stats", "_dataplane", "_endpoint", "_name", "_started")

    def __init__(self, dataplane: DataPlane, name: str, endpoint: str, counts_in_stats: bool) -> None:
        self._dataplane, self._name, self._endpoint, self._counts_in_stats = dataplane, name, endpoint, counts_in_stats

    def __enter__(self) -> None:
        self._dataplane.in_flight += 1
        self._started = time.perf_counter_ns()

    def __exit__(self, exc_type, exc, tb) -> None:
        elapsed = time.perf_counter_ns() - self._started
        dp = self._dataplane
        dp.in_flight -= 1
        if exc_type is None:
            outcome = "success"
        elif issubclass(exc_type, ServerBusy):
            outcome = "rejected"
        elif issubclass(exc_type, ServingError):
            outcome = "client_error" if exc.status_code < 500 else "server_error"
        else:
            outcome = "server_error"
        dp.metrics.request_done(dp.label_for(self._name), self._endpoint, outcome, elapsed / 1e9)
        if self._counts_in_stats:
            model = dp._models.get(self._name)
            if model is not None:
                model.stats.request_done(outcome == "success", elapsed)


class DataPlane:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = Path(settings.store)
        self._models: dict[str, _Model] = {}
        self.in_flight = 0
        """Infer, classify, load and unload requests being handled (read by the metrics at scrape time)."""
        self.metrics = Metrics(self.queue_depths, lambda: self.in_flight)
        self._status: dict[str, _Status] = {}
        self._known: set[str] = set()
        self._plan: ProviderPlan | None = None
        self._image_pool: ThreadPoolExecutor | None = None
        self._loader: ThreadPoolExecutor | None = None
        self._started = False
        self._stopping = False
        self._abandon_loads = threading.Event()  # set on stop: a warm-up in the loader gives up

    # --- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Create the thread pools, resolve providers, load the start-up models; raise if any fails."""
        s = self.settings
        threads = init_global_thread_pool(s.threads, s.threads_idle_priority)
        cpus = usable_cpus()
        self._plan = plan_providers(s.providers, require_gpu=s.require_gpu, device_id=s.gpu_device_id)
        self._image_pool = ThreadPoolExecutor(cpus, thread_name_prefix="images")
        self._loader = ThreadPoolExecutor(1, thread_name_prefix="loader")
        in_store = list_store(self.store)
        self._known.update(in_store)
        names = in_store if s.models is None else list(dict.fromkeys(s.models))
        missing = [n for n in names if n not in in_store]
        if missing:
            raise ModelNotFound(
                f"models not in the store {self.store}: {', '.join(missing)} "
                f"(it holds: {', '.join(in_store) or 'nothing'})"
            )
        log.info(
            "store %s: %d models, loading %d; providers %s; %d intra-op threads",
            self.store,
            len(in_store),
            len(names),
            ", ".join(self._plan.providers),
            threads,
        )
        for name in names:
            await self.load(name)
        tune_interpreter(s.gil_switch_interval_us)
        tune_allocator(s.malloc_keep_mb)
        self._started = True

    async def stop(self) -> None:
        """Take no new work, finish what is queued and running, release the pools."""
        self._stopping = True
        self._abandon_loads.set()
        await asyncio.gather(*(m.batcher.close() for m in self._models.values()), return_exceptions=True)
        for pool in (self._image_pool, self._loader):
            if pool is not None:  # off the event loop: a model still loading may take a while
                await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)

    @property
    def live(self) -> bool:
        return not self._stopping

    @property
    def ready(self) -> bool:
        """Every start-up model loaded and warmed up, and not stopping."""
        return self._started and not self._stopping

    # --- repository -------------------------------------------------------------------------------

    def _status_of(self, name: str) -> _Status:
        status = self._status.get(name)
        if status is None:
            status = self._status[name] = _Status(ModelState.UNAVAILABLE, reason="not loaded")
        return status

    def index(self, ready_only: bool = False) -> list[dict]:
        """Every model of the store and every loaded one, with its state (Triton's repository index)."""
        names = set(list_store(self.store)) | set(self._models)
        self._known.update(names)
        out = []
        for name in sorted(names):
            st = self._status.get(name)
            state = st.state if st else ModelState.UNAVAILABLE
            if ready_only and state != ModelState.READY:
                continue
            entry = {"name": name, "state": str(state)}
            model = self._models.get(name)
            version = model.handle.version if model else (st.version if st else None)
            if version is not None:
                entry["version"] = str(version)
            entry["reason"] = "" if state == ModelState.READY else (st.reason if st else "not loaded")
            out.append(entry)
        return out

    async def load(self, name: str) -> ModelHandle:
        """Load (or reload) `name` from the store; other models keep serving meanwhile. A reload swaps the new
        session in once it is warm, then lets the old one finish what it holds."""
        if self._stopping:
            raise ShuttingDown("the server is shutting down")
        model_dir = self.store / name
        if "/" in name or name.startswith(".") or not (model_dir / MANIFEST_FILE).is_file():
            raise ModelNotFound(f"model '{name}' is not in the store {self.store}")
        status = self._status_of(name)
        async with status.lock:
            self._known.add(name)
            if name not in self._models:
                status.state, status.reason = ModelState.LOADING, "loading"
            loop = asyncio.get_running_loop()
            started = time.perf_counter()
            try:
                built = await loop.run_in_executor(self._loader, self._build, name, model_dir)
            except asyncio.CancelledError:  # shutting down, or the request went away: not left LOADING
                if name not in self._models:
                    status.state, status.reason = ModelState.UNAVAILABLE, "load cancelled"
                raise
            except Exception as exc:
                if name not in self._models:
                    status.state, status.reason = ModelState.UNAVAILABLE, f"load failed: {exc}"
                if isinstance(exc, ServingError):
                    raise
                raise ModelLoadError(f"cannot load model '{name}': {exc}") from exc
            old = self._models.get(name)
            self._models[name] = built
            status.state, status.version, status.reason = ModelState.READY, built.handle.version, ""
            h = built.handle
            if old is not None and old.handle.version != h.version:
                self.metrics.model_ready.labels(name, str(old.handle.version)).set(0)
            self.metrics.model_ready.labels(name, str(h.version)).set(1)
            log.info(
                "model %s v%d ready in %.2fs on %s (max batch %d, queue delay %d us)",
                name,
                h.version,
                time.perf_counter() - started,
                ", ".join(h.providers),
                h.max_batch_size,
                h.max_queue_delay_us,
            )
            if old is not None:
                await old.batcher.close()
            return h

    def _build(self, name: str, model_dir: Path) -> _Model:
        """In the loader thread: read the entry, create the session, warm it up."""
        s = self.settings
        manifest = Manifest.read(model_dir)
        if manifest.name != name:
            raise ModelLoadError(f"store entry '{name}' holds a manifest for '{manifest.name}'")
        batching = read_batching_config(model_dir)
        max_batch = max(1, batching.max_batch_size)
        if s.max_batch_size:
            max_batch = min(max_batch, s.max_batch_size)
        delay_us = batching.max_queue_delay_us if s.max_queue_delay_us is None else s.max_queue_delay_us
        labels = tuple(read_labels(model_dir, manifest))
        session = create_session(manifest.model_path(model_dir), self._plan)
        inputs, outputs = session.get_inputs(), session.get_outputs()
        if len(inputs) != 1 or inputs[0].name != manifest.input.name:
            raise ModelLoadError(
                f"model '{name}': the ONNX file's inputs {[i.name for i in inputs]} do not match the manifest's "
                f"'{manifest.input.name}'"
            )
        output_names = [o.name for o in outputs]
        if manifest.output.name not in output_names:
            raise ModelLoadError(
                f"model '{name}': the ONNX file's outputs {output_names} lack the manifest's '{manifest.output.name}'"
            )
        sample_shape = tuple(int(d) for d in manifest.input.shape[1:])
        warm_up(session, inputs[0].name, sample_shape, warmup_sizes(max_batch, s.warmup), self._abandon_loads)
        providers = tuple(session.get_providers())
        handle = ModelHandle(
            name=name,
            version=manifest.version,
            manifest=manifest,
            model_dir=model_dir,
            providers=providers,
            labels=labels,
            max_batch_size=max_batch,
            max_queue_delay_us=delay_us,
        )
        try:
            preprocessor = Preprocessor(manifest.preprocessing, sample_shape, s.max_image_pixels)
        except ValueError as exc:
            log.warning("model %s: no image classification (%s)", name, exc)
            preprocessor = None
        stats = ModelStats(name, str(manifest.version), list(providers))
        input_name = inputs[0].name

        def run(x: np.ndarray) -> list[np.ndarray]:
            return session.run(output_names, {input_name: x})

        batcher = Batcher(
            name,
            run,
            max_batch_size=max_batch,
            max_queue_delay_s=delay_us / 1e6,
            max_queue_size=s.max_queue_size,
            max_concurrent_batches=s.max_concurrent_batches,
            wait_when_idle=s.queue_delay_when_idle,
            observer=_BatchObserver(stats, self.metrics, name),
        )
        shapes = [  # V2 shapes are integers: -1 for the batch and any other dimension onnxruntime names
            [-1, *manifest.output.shape[1:]]
            if o.name == manifest.output.name
            else [d if isinstance(d, int) else -1 for d in o.shape]
            for o in outputs
        ]
        return _Model(handle, session, batcher, preprocessor, stats, inputs[0].name, sample_shape, output_names, shapes)

    async def unload(self, name: str) -> None:
        """Stop taking requests for `name`, finish what it holds, release its session."""
        status = self._status.get(name)
        if status is None and not (self.store / name / MANIFEST_FILE).is_file():
            raise ModelNotFound(f"model '{name}' is neither loaded nor in the store {self.store}")
        status = self._status_of(name)
        async with status.lock:
            model = self._models.get(name)
            if model is None:
                return
            status.state, status.reason = ModelState.UNLOADING, "unloading"
            self.metrics.model_ready.labels(name, str(model.handle.version)).set(0)
            await model.batcher.close()
            del self._models[name]
            status.state, status.reason = ModelState.UNAVAILABLE, "unloaded"
            log.info("model %s unloaded", name)

    # --- lookups ----------------------------------------------------------------------------------

    def model(self, name: str, version: str | int | None = None) -> ModelHandle:
        """The handle of a ready model (ModelNotFound / ModelNotReady otherwise)."""
        return self._get(name, version).handle

    def _get(self, name: str, version: str | int | None = None) -> _Model:
        model = self._models.get(name)
        if model is None:
            status = self._status.get(name)
            if status is not None and status.state == ModelState.LOADING:  # its first load (UNLOADING: below)
                raise ModelNotReady(f"model '{name}' is {status.state.lower()}")
            if status is not None or name in self._known:
                raise ModelNotFound(f"model '{name}' is not loaded (POST /v2/repository/models/{name}/load loads it)")
            raise ModelNotFound(f"unknown model '{name}'")
        if version not in (None, "") and str(version) != str(model.handle.version):
            raise ModelNotFound(f"model '{name}' has no version {version} (loaded: {model.handle.version})")
        status = self._status.get(name)
        if status is not None and status.state == ModelState.UNLOADING:
            raise ModelNotReady(f"model '{name}' is unloading")
        return model

    def label_for(self, name: str) -> str:
        """The `model` label for metrics: unknown names share one label (no cardinality explosion)."""
        return name if name in self._known else "_unknown"

    def check_capacity(self, name: str, version: str | None = None) -> None:
        """Raise at once if a request for this model would be refused (unknown, not ready, queue full)."""
        self._get(name, version).batcher.check_capacity()

    def queue_depths(self) -> Iterator[tuple[str, int]]:
        for name, model in list(self._models.items()):
            yield name, model.batcher.queued

    # --- metadata ---------------------------------------------------------------------------------

    def server_metadata(self) -> dict:
        return {"name": "zooserve", "version": __version__, "extensions": EXTENSIONS}

    def model_metadata(self, name: str, version: str | None = None) -> dict:
        m = self._get(name, version)
        h = m.handle
        return {
            "name": h.name,
            "versions": [str(h.version)],
            "platform": PLATFORM,
            "inputs": [{"name": m.input_name, "datatype": "FP32", "shape": [-1, *m.sample_shape]}],
            "outputs": [
                {"name": n, "datatype": "FP32", "shape": s}
                for n, s in zip(m.output_names, m.output_shapes, strict=True)
            ],
            "providers": list(h.providers),
            "max_batch_size": h.max_batch_size,
            "family": h.manifest.family,
            "num_classes": h.manifest.num_classes,
            "preprocessing": h.manifest.preprocessing.model_dump(),
        }

    def model_ready(self, name: str, version: str | None = None) -> dict:
        h = self.model(name, version)
        return {"name": h.name, "version": str(h.version), "ready": True}

    def model_config(self, name: str, version: str | None = None) -> dict:
        """config.pbtxt as JSON, with the batching limits in effect."""
        h = self.model(name, version)
        cfg = parse_pbtxt((h.model_dir / CONFIG_FILE).read_text())
        cfg["max_batch_size"] = h.max_batch_size
        cfg.setdefault("dynamic_batching", {})["max_queue_delay_microseconds"] = h.max_queue_delay_us
        cfg["dynamic_batching"]["default_queue_policy"] = {"max_queue_size": self.settings.max_queue_size}
        cfg["execution_providers"] = list(h.providers)
        return cfg

    def stats(self, name: str | None = None, version: str | None = None) -> dict:
        models = [self._get(name, version)] if name else list(self._models.values())
        return {"model_stats": [m.stats.json() for m in models]}

    # --- requests ---------------------------------------------------------------------------------

    def track(self, name: str, endpoint: str, counts_in_stats: bool = True) -> _Tracked:
        """Around one HTTP request: in-flight gauge, outcome counter, duration histogram, Triton stats."""
        return _Tracked(self, name, endpoint, counts_in_stats)

    def _account(self, model: _Model, result: BatchResult, rows: int, output_ns: int) -> None:
        self.metrics.model_histograms(model.handle.name)[0].observe(result.queue_ns / 1e9)
        model.stats.request_timing(result.queue_ns, result.input_ns, result.infer_ns, output_ns, rows)

    async def infer(self, name: str, version: str | None, request: codecs.InferRequest) -> InferResult:
        model = self._get(name, version)
        x = request.inputs.get(model.input_name)
        if x is None or len(request.inputs) != 1:
            raise BadRequest(
                f"model '{name}' takes one input '{model.input_name}', got {', '.join(map(repr, request.inputs))}"
            )
        if x.dtype != np.float32:
            raise BadRequest(f"input '{model.input_name}' must be FP32, got {codecs.datatype_of(x)}")
        if x.ndim != len(model.sample_shape) + 1 or x.shape[1:] != model.sample_shape:
            raise BadRequest(
                f"input '{model.input_name}' has shape {list(x.shape)}, model '{name}' takes "
                f"{[-1, *model.sample_shape]}"
            )
        wanted = request.outputs
        if wanted is not None:
            unknown = [o.name for o in wanted if o.name not in model.output_names]
            if unknown:
                raise BadRequest(
                    f"model '{name}' has no output {', '.join(map(repr, unknown))} "
                    f"(outputs: {', '.join(model.output_names)})"
                )
        result = await model.batcher.submit(x)
        t0 = time.perf_counter_ns()
        outputs = []
        if wanted is None:
            for out_name, arr in zip(model.output_names, result.outputs, strict=True):
                outputs.append(codecs.OutputTensor(out_name, arr, request.binary_output))
        else:
            by_name = dict(zip(model.output_names, result.outputs, strict=True))
            for o in wanted:
                arr = by_name[o.name]
                if o.classification:
                    arr = codecs.classification(arr, o.classification, model.handle.labels)
                outputs.append(
                    codecs.OutputTensor(o.name, arr, request.binary_output if o.binary is None else o.binary)
                )
        self._account(model, result, x.shape[0], time.perf_counter_ns() - t0)
        return InferResult(name, str(model.handle.version), request.id, outputs, result.queue_ns, result.compute_ns)

    async def classify(self, name: str, version: str | None, images: Sequence[bytes], top_k: int) -> dict:
        """Decode and preprocess the images as the manifest says, run them, return top-k softmax classes."""
        model = self._get(name, version)
        if model.preprocessor is None:
            raise BadRequest(f"model '{name}' has no image preprocessing in its manifest")
        if top_k < 1:
            raise BadRequest("top_k must be at least 1")
        step = model.handle.max_batch_size
        entries = -(-len(images) // step)  # the images go in batches of at most max_batch_size, one queue entry each
        if entries > model.batcher.max_queue_size:
            raise BadRequest(
                f"{len(images)} images are more than model '{name}' queues at once "
                f"({model.batcher.max_queue_size} x {step}); send them in several requests"
            )
        model.batcher.check_capacity(entries)
        loop = asyncio.get_running_loop()
        t0 = time.perf_counter_ns()
        x = await loop.run_in_executor(self._image_pool, model.preprocessor.batch, images)
        decode_ns = time.perf_counter_ns() - t0
        # Looked up again: while the images were decoded the model may have been reloaded (a new batcher).
        model = self._get(name, version)
        if model.preprocessor is None or model.preprocessor.shape != x.shape[1:]:
            raise ModelNotReady(f"model '{name}' was reloaded with other preprocessing meanwhile: send them again")
        step = model.handle.max_batch_size
        chunks = [x[i : i + step] for i in range(0, len(x), step)]
        if len(chunks) == 1:
            results = [await model.batcher.submit(chunks[0])]
        else:
            results = await model.batcher.submit_all(chunks)
        t0 = time.perf_counter_ns()
        logits = np.concatenate([r.outputs[model.logits] for r in results]).reshape(len(x), -1).astype(np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True)
        idx, vals = codecs.top_k(probs, top_k)
        labels = model.handle.labels
        predictions = [
            [
                {"label": labels[i] if i < len(labels) else str(i), "index": int(i), "score": float(v)}
                for i, v in zip(row_idx.tolist(), row_vals.tolist(), strict=True)
            ]
            for row_idx, row_vals in zip(idx, vals, strict=True)
        ]
        output_ns = time.perf_counter_ns() - t0
        for chunk, result in zip(chunks, results, strict=True):
            self._account(model, result, len(chunk), output_ns // len(chunks))
        return {
            "model_name": name,
            "model_version": str(model.handle.version),
            "predictions": predictions,
            "timing_ms": {
                "decode": decode_ns / 1e6,
                "queue": max(r.queue_ns for r in results) / 1e6,
                "compute": sum(r.compute_ns for r in results) / 1e6,
            },
        }
