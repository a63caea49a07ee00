"""The export pipeline for one model: build -> analyse -> ONNX -> check -> parity -> atomic store write.

A store entry is written only when the ONNX graph passes the checker and onnxruntime agrees with
PyTorch at batch 1 and 2; it is written to a temporary folder and renamed into place, so a reader
never sees half an entry. An entry whose fingerprint (model code, builder arguments, weights, tool
versions) is unchanged is skipped.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import importlib.metadata
import io
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch

from export import weights as weights_mod
from export.analyze import analyze
from export.labels import labels_for
from export.zoo.registry import ModelSpec, get_spec
from service.manifest import (
    LABELS_FILE,
    MODEL_FILE,
    Builder,
    ExportFacts,
    Manifest,
    OnnxFacts,
    TensorSpec,
)
from service.store import render_config_pbtxt

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
PARITY_BATCHES = (1, 2)
VERSION = 1


class ParityError(RuntimeError):
    """onnxruntime's output differs from PyTorch's by more than the tolerance."""


@dataclass
class BuildResult:
    name: str
    status: str  # built | skipped | failed
    seconds: float = 0.0
    num_params: int = 0
    macs: int = 0
    parity: float | None = None
    tolerance: float | None = None
    onnx_bytes: int = 0
    error: str = ""


FINGERPRINT_TOOLS = ("torch", "torchvision", "timm", "onnx", "onnxscript", "onnxruntime")
"""The packages whose versions shape an entry: the exporter, the model libraries, the parity check."""


def fingerprint_files() -> list[Path]:
    """The source files a fingerprint hashes: the export package and the service modules it writes with."""
    import service.manifest
    import service.store

    package = Path(__file__).resolve().parent
    return [*sorted(package.rglob("*.py")), Path(service.manifest.__file__), Path(service.store.__file__)]


def fingerprint(spec: ModelSpec, source: str, seed: int) -> str:
    """Changes when anything that shapes the store entry changes: the source of the whole export package
    (a builder's own module, the family modules it builds on, the shared layers, training, the analysis
    behind the manifest, the weights and labels), the manifest and config writers it uses from the
    service, the model's arguments, weights and seed, and the tools' versions. Any change to the export
    code therefore rebuilds every entry: coarse, never stale."""
    h = hashlib.sha256()
    for f in fingerprint_files():
        h.update(f.relative_to(f.parents[1]).as_posix().encode())
        h.update(f.read_bytes())
    weights_id = source
    if Path(source).is_file():
        weights_id = weights_mod.sha256_file(Path(source))
    versions = {}
    for tool in FINGERPRINT_TOOLS:
        try:
            versions[tool] = importlib.metadata.version(tool)
        except importlib.metadata.PackageNotFoundError:
            versions[tool] = None
    h.update(json.dumps([spec.name, repr(sorted(spec.kwargs.items())), weights_id, seed, versions]).encode())
    return h.hexdigest()


def is_up_to_date(entry: Path, fp: str) -> bool:
    try:
        manifest = Manifest.read(entry)
    except (OSError, ValueError):
        return False
    model = manifest.model_path(entry)
    return manifest.export.fingerprint == fp and model.is_file() and model.stat().st_size == manifest.onnx.bytes


def export_onnx(model: torch.nn.Module, example: torch.Tensor, path: Path, log=print) -> None:
    """Dynamo export, one self-contained file, dynamic batch axis only (H and W stay fixed)."""
    batch = torch.export.Dim("batch", min=1, max=4096)
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured):
            torch.onnx.export(
                model,
                (example,),
                str(path),
                dynamo=True,
                external_data=False,
                dynamic_shapes=({0: batch},),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
            )
    except Exception:
        log(captured.getvalue())
        raise


def check_parity(model: torch.nn.Module, path: Path, spec: ModelSpec, seed: int) -> tuple[float, float]:
    """Max |onnxruntime - torch| over batches 1 and 2, and the tolerance it must stay within."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(seed)
    worst, tol = 0.0, 0.0
    for n in PARITY_BATCHES:
        x = torch.randn(n, *spec.input_size, generator=gen)
        with torch.inference_mode():
            expected = model(x).numpy()
        got = session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0]
        if got.shape != expected.shape:
            raise ParityError(f"batch {n}: onnxruntime output shape {got.shape}, PyTorch {expected.shape}")
        diff = float(np.max(np.abs(got - expected)))
        worst = max(worst, diff)
        tol = max(tol, spec.parity_atol + spec.parity_rtol * float(np.max(np.abs(expected))))
    if not worst <= tol:  # also catches NaN
        raise ParityError(f"max abs diff {worst:.3g} exceeds tolerance {tol:.3g}")
    return worst, tol


def build(
    name: str | ModelSpec,
    store: Path,
    *,
    weights: str = "default",
    seed: int = 0,
    force: bool = False,
    log=print,
) -> BuildResult:
    """Export `name` (a registered name, or a spec built elsewhere, e.g. by a benchmark) into `store`
    unless an up-to-date entry is there. Raises on failure."""
    spec = name if isinstance(name, ModelSpec) else get_spec(name)
    name = spec.name
    start = time.perf_counter()
    entry = store / name
    fp = fingerprint(spec, weights_mod.resolve_source(spec, weights), seed)
    if not force and is_up_to_date(entry, fp):
        m = Manifest.read(entry)
        return BuildResult(
            name, "skipped", 0.0, m.num_params, m.macs, m.export.parity_max_abs_diff,
            m.export.parity_tolerance, m.onnx.bytes,
        )  # fmt: skip

    loaded = weights_mod.load(spec, weights, seed, log=log)
    model = loaded.model
    facts = analyze(model, spec.input_size)
    labels = labels_for(spec.labels, spec.num_classes)

    store.mkdir(parents=True, exist_ok=True)
    remove_leftovers(store, name)
    tmp = store / f".{name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        onnx_rel = f"{VERSION}/{MODEL_FILE}"
        onnx_path = tmp / onnx_rel
        onnx_path.parent.mkdir(parents=True)
        log(f"    exporting {name} ({facts.num_params / 1e6:.2f} M params, {facts.macs / 1e6:.1f} M MACs)")
        export_onnx(model, torch.randn(2, *spec.input_size), onnx_path, log)
        proto = onnx.load(str(onnx_path))
        onnx.checker.check_model(proto)
        parity, tol = check_parity(model, onnx_path, spec, seed)
        manifest = _manifest(spec, loaded, facts, labels, proto, onnx_path, onnx_rel, parity, tol, fp, start)
        manifest.write(tmp)
        (tmp / LABELS_FILE).write_text("\n".join(labels) + "\n")
        (tmp / "config.pbtxt").write_text(render_config_pbtxt(manifest))
        _replace(tmp, entry)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return BuildResult(
        name, "built", manifest.export.seconds, facts.num_params, facts.macs, parity, tol, manifest.onnx.bytes
    )


def _manifest(spec, loaded, facts, labels, proto, onnx_path, onnx_rel, parity, tol, fp, start) -> Manifest:
    import onnxruntime
    import onnxscript
    import torchvision

    c, h, w = spec.input_size
    return Manifest(
        name=spec.name,
        version=VERSION,
        family=spec.family,
        paper=spec.paper,
        builder=Builder(name=spec.builder.__name__, kwargs=spec.kwargs),
        input=TensorSpec(name=INPUT_NAME, shape=[-1, c, h, w], layout="NCHW"),
        output=TensorSpec(name=OUTPUT_NAME, shape=facts.output_shape),
        preprocessing=loaded.preprocessing,
        num_classes=len(labels),
        num_params=facts.num_params,
        macs=facts.macs,
        reference=spec.reference,
        max_batch_size=spec.max_batch_size,
        layers=facts.rows,
        onnx=OnnxFacts(
            file=onnx_rel,
            opset=next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")),
            ir_version=proto.ir_version,
            sha256=weights_mod.sha256_file(onnx_path),
            bytes=onnx_path.stat().st_size,
            nodes=len(proto.graph.node),
        ),
        export=ExportFacts(
            exporter="torch.onnx.export(dynamo=True)",
            torch_version=torch.__version__,
            torchvision_version=torchvision.__version__,
            onnx_version=onnx.__version__,
            onnxscript_version=onnxscript.__version__,
            onnxruntime_version=onnxruntime.__version__,
            parity_batch_sizes=list(PARITY_BATCHES),
            parity_max_abs_diff=parity,
            parity_tolerance=tol,
            seconds=round(time.perf_counter() - start, 2),
            exported_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            fingerprint=fp,
        ),
        weights=loaded.weights,
        metrics=loaded.metrics,
    )


def _replace(tmp: Path, entry: Path) -> None:
    """Swap the finished temporary folder into place: a reader sees the old entry or the new one."""
    old = entry.with_name(f".{entry.name}.old-{os.getpid()}")
    if entry.exists():
        entry.rename(old)
    try:
        tmp.rename(entry)
    except OSError:
        if old.exists() and not entry.exists():
            old.rename(entry)  # the previous entry stays, rather than vanishing from the store
        raise
    shutil.rmtree(old, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def remove_leftovers(store: Path, name: str) -> None:
    """The folders a build of `name` killed mid-way left behind (`.name.tmp-PID`, `.name.old-PID` of a
    process that is gone): a temporary one is removed; a replaced entry is put back if the swap never
    finished, else removed."""
    entry = store / name
    for folder in sorted(store.glob(f".{name}.*-*")):
        kind, _, pid = folder.name.removeprefix(f".{name}.").partition("-")
        if kind not in ("tmp", "old") or not pid.isdigit() or _alive(int(pid)):
            continue
        if kind == "old" and not entry.exists():
            folder.rename(entry)
        else:
            shutil.rmtree(folder, ignore_errors=True)


def build_quietly(name: str, store: Path, weights: str = "default", seed: int = 0, force: bool = False) -> BuildResult:
    """`build` for a worker process: one intra-op thread (the workers share the cores), errors as results."""
    torch.set_num_threads(1)
    try:
        return build(name, store, weights=weights, seed=seed, force=force, log=lambda *_: None)
    except Exception as exc:
        return BuildResult(name, "failed", error=f"{type(exc).__name__}: {exc}".strip())


def worker_pool(jobs: int):
    """Processes for building several models at once. Spawned, not forked: torch's threads do not survive a
    fork. (No max_tasks_per_child: with it, Python 3.11's pool stops handing out work once the first worker
    retires, and the waiting caller hangs.)"""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"))
