"""The model registry: a dict of specs filled by the `@register_model(...)` decorator on builders.

A builder is a function `(**kwargs) -> nn.Module` whose name is the published model name; its spec carries
everything the export stage needs beside the module: family, paper, input, labels, preprocessing,
the reference parameter count and where it comes from, and which published weights exist.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from service.manifest import Paper, Preprocessing, Reference

Builder = Callable[..., nn.Module]

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
CIFAR10_MEAN = [0.4914, 0.4822, 0.4465]
CIFAR10_STD = [0.2470, 0.2435, 0.2616]


def imagenet_preprocessing(crop: int = 224, resize: int | None = None, mean=None, std=None, **kw) -> Preprocessing:
    """The usual ImageNet evaluation transform: resize the shorter side to crop/0.875, centre crop."""
    return Preprocessing(
        resize=resize or round(crop / 0.875),
        crop=crop,
        mean=mean or IMAGENET_MEAN,
        std=std or IMAGENET_STD,
        **kw,
    )


CIFAR_PREPROCESSING = Preprocessing(resize=32, crop=32, mean=CIFAR10_MEAN, std=CIFAR10_STD)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    builder: Builder
    family: str
    paper: Paper
    reference: Reference
    input_size: tuple[int, int, int] = (3, 224, 224)
    num_classes: int = 1000
    labels: str = "imagenet"  # imagenet | cifar10 | digits | mnist
    preprocessing: Preprocessing = field(default_factory=imagenet_preprocessing)
    kwargs: dict = field(default_factory=dict)
    # Published weights: {"torchvision": "ResNet50_Weights.IMAGENET1K_V1"} or {"timm": "inception_v4.tf_in1k"}.
    pretrained: dict[str, str] = field(default_factory=dict)
    # For models trained as part of their build (see export/training.py): a callable (model, seed) -> metrics.
    trainer: Callable[..., dict[str, float]] | None = None
    max_batch_size: int = 32
    # Parity tolerance: |onnxruntime - torch| <= atol + rtol * max|torch|.
    parity_atol: float = 1e-6
    parity_rtol: float = 1e-4
    default_weights: str = "random"

    def build(self, **overrides) -> nn.Module:
        return self.builder(**{**self.kwargs, **overrides})

    @property
    def module(self) -> str:
        return self.builder.__module__


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(name: str | None = None, **spec_fields) -> Callable[[Builder], Builder]:
    """Register the decorated builder under its function name (or `name`). Duplicate names raise."""

    def wrapper(fn: Builder) -> Builder:
        key = name or fn.__name__
        if key in _REGISTRY:
            raise ValueError(f"a model is already registered under the name {key!r}")
        _REGISTRY[key] = ModelSpec(name=key, builder=fn, **spec_fields)
        return fn

    return wrapper


class UnknownModelError(KeyError):
    def __init__(self, name: str) -> None:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        super().__init__(f"unknown model {name!r}.{hint} Valid names: {', '.join(sorted(_REGISTRY))}")

    def __str__(self) -> str:
        return self.args[0]


def list_models() -> list[str]:
    _load_families()
    return list(_REGISTRY)


def get_spec(name: str) -> ModelSpec:
    _load_families()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownModelError(name) from None


def build_model(name: str, **overrides) -> nn.Module:
    return get_spec(name).build(**overrides)


_NOT_FAMILIES = {"registry", "layers"}
# The survey's taxonomy (spatial, depth, multi-path and width, feature-map and attention, light): the order
# of `list_models()`. A family module not named here is still loaded, after these.
_FAMILY_ORDER = (
    "lenet", "alexnet", "vgg", "googlenet", "highway", "resnet", "resnet_cifar", "inception", "wrn",
    "pyramidnet", "xception", "attention_resnet", "cb_cnn", "residual_attention", "mobilenet", "shufflenet",
)  # fmt: skip


def _load_families() -> None:
    """Import every family module of this package once: their decorators fill the registry."""
    import importlib
    import pkgutil

    import export.zoo as package

    found = [m.name for m in pkgutil.iter_modules(package.__path__)]
    found = [m for m in found if m not in _NOT_FAMILIES and not m.startswith("_")]
    for name in sorted(found, key=lambda m: (_FAMILY_ORDER.index(m) if m in _FAMILY_ORDER else len(_FAMILY_ORDER), m)):
        importlib.import_module(f"{package.__name__}.{name}")
