"""A tiny hand-built store for the service's unit tests: no torch, no export, milliseconds to build.

`tiny` is a linear classifier over 1x8x8 grayscale images (3 classes); `tiny_rgb` the same over 3x8x8
RGB images. Their manifests are valid but their facts are placeholders: the export stage's own tests
check real ones.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from service.manifest import (
    LABELS_FILE,
    Builder,
    ExportFacts,
    Manifest,
    OnnxFacts,
    Paper,
    Preprocessing,
    TensorSpec,
    Weights,
)
from service.store import render_config_pbtxt

LABELS = ["zero", "one", "two"]


def tiny_weights(channels: int, size: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((channels * size * size, len(LABELS))).astype(np.float32)
    b = rng.standard_normal(len(LABELS)).astype(np.float32)
    return w, b


def tiny_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    return x.reshape(x.shape[0], -1) @ w + b


def write_tiny_model(store: Path, name: str, color_mode: str = "L", max_batch_size: int = 8, seed: int = 0) -> Path:
    channels = 1 if color_mode == "L" else 3
    size = 8
    w, b = tiny_weights(channels, size, seed)
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["input"], ["flat"], axis=1),
            helper.make_node("MatMul", ["flat", "w"], ["mm"]),
            helper.make_node("Add", ["mm", "b"], ["logits"]),
        ],
        name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", channels, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", len(LABELS)])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    entry = store / name
    (entry / "1").mkdir(parents=True)
    onnx.save(model, entry / "1" / "model.onnx")
    manifest = Manifest(
        name=name,
        family="Tiny",
        paper=Paper(title="A linear classifier", authors="test", year=2024),
        builder=Builder(name="tiny"),
        input=TensorSpec(name="input", shape=[-1, channels, size, size], layout="NCHW"),
        output=TensorSpec(name="logits", shape=[-1, len(LABELS)]),
        preprocessing=Preprocessing(
            color_mode=color_mode, resize=size, crop=size, mean=[0.5] * channels, std=[0.25] * channels
        ),
        num_classes=len(LABELS),
        num_params=int(w.size + b.size),
        macs=int(w.size),
        max_batch_size=max_batch_size,
        layers=[],
        onnx=OnnxFacts(
            file="1/model.onnx",
            opset=17,
            ir_version=8,
            sha256="0" * 64,
            bytes=(entry / "1" / "model.onnx").stat().st_size,
            nodes=3,
        ),
        export=ExportFacts(
            exporter="onnx.helper",
            torch_version="",
            torchvision_version="",
            onnx_version=onnx.__version__,
            onnxscript_version="",
            onnxruntime_version="",
            parity_batch_sizes=[],
            parity_max_abs_diff=0.0,
            parity_tolerance=0.0,
            seconds=0.0,
            exported_at="2024-01-01T00:00:00+00:00",
            fingerprint="tiny",
        ),
        weights=Weights(source="random", seed=seed),
    )
    manifest.write(entry)
    (entry / LABELS_FILE).write_text("\n".join(LABELS) + "\n")
    (entry / "config.pbtxt").write_text(render_config_pbtxt(manifest))
    return entry


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("tiny-store")
    write_tiny_model(store, "tiny", "L")
    write_tiny_model(store, "tiny_rgb", "RGB", seed=1)
    return store
