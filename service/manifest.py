"""The model store contract: the manifest schema, shared by the export stage (writer) and the service (reader).

This module is torch-free and cheap to import: the export stage imports it to write `model.json`, the
service imports it to read it. Never rename a field: add new ones (with defaults) and bump nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1
MANIFEST_FILE = "model.json"
CONFIG_FILE = "config.pbtxt"
LABELS_FILE = "labels.txt"
MODEL_FILE = "model.onnx"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Paper(_Model):
    title: str
    authors: str
    year: int
    url: str = ""


class TensorSpec(_Model):
    name: str
    datatype: Literal["FP32"] = "FP32"
    shape: list[int] = Field(description="-1 marks the dynamic batch axis")
    layout: str = ""


class Preprocessing(_Model):
    """How an image becomes the input tensor: decode, convert, resize, crop, scale, normalise."""

    color_mode: Literal["RGB", "L"] = "RGB"
    resize: int = Field(description="shorter side is resized to this many pixels before the centre crop")
    crop: int = Field(description="square centre crop, equal to the input's height and width")
    interpolation: Literal["bilinear", "bicubic", "nearest"] = "bilinear"
    scale: float = Field(1 / 255, description="pixel values are multiplied by this before normalising")
    mean: list[float]
    std: list[float]
    invert: bool = Field(False, description="1 - x after scaling (dark strokes on a light background)")


class Builder(_Model):
    name: str
    kwargs: dict[str, object] = {}


class Reference(_Model):
    """The published parameter count this build is checked against."""

    params: int
    source: str
    exact: bool = False


class LayerRow(_Model):
    path: str
    module_class: str
    params: int
    macs: int
    output_shape: list[int]


class OnnxFacts(_Model):
    file: str
    opset: int
    ir_version: int
    sha256: str
    bytes: int
    nodes: int


class ExportFacts(_Model):
    exporter: str
    torch_version: str
    torchvision_version: str
    onnx_version: str
    onnxscript_version: str
    onnxruntime_version: str
    parity_batch_sizes: list[int]
    parity_max_abs_diff: float
    parity_tolerance: float
    seconds: float
    exported_at: str
    fingerprint: str


class Weights(_Model):
    source: Literal["random", "trained", "torchvision", "timm", "file"]
    seed: int | None = None
    name: str = ""
    sha256: str = ""


class Manifest(_Model):
    schema_version: int = SCHEMA_VERSION
    name: str
    version: int = 1
    family: str
    paper: Paper
    builder: Builder
    input: TensorSpec
    output: TensorSpec
    preprocessing: Preprocessing
    labels_file: str = LABELS_FILE
    num_classes: int
    num_params: int
    macs: int = Field(description="multiply-accumulates for one image")
    reference: Reference | None = None
    max_batch_size: int
    layers: list[LayerRow]
    onnx: OnnxFacts
    export: ExportFacts
    weights: Weights
    metrics: dict[str, float] = Field(default_factory=dict, description="e.g. test_accuracy for trained models")

    @classmethod
    def read(cls, model_dir: Path) -> Manifest:
        return cls.model_validate_json((model_dir / MANIFEST_FILE).read_bytes())

    def write(self, model_dir: Path) -> None:
        (model_dir / MANIFEST_FILE).write_text(self.model_dump_json(indent=2) + "\n")

    def model_path(self, model_dir: Path) -> Path:
        return model_dir / self.onnx.file
