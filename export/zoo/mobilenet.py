"""MobileNet v1 (Howard et al. 2017), v2 (Sandler et al. 2018) and v3 (Howard et al. 2019)."""

from __future__ import annotations

from torchvision import models as tvm

from export.zoo.registry import register_model
from service.manifest import Paper, Reference

V2_PAPER = Paper(
    title="MobileNetV2: Inverted Residuals and Linear Bottlenecks",
    authors="Sandler, Howard, Zhu, Zhmoginov, Chen",
    year=2018,
    url="https://arxiv.org/abs/1801.04381",
)


@register_model(
    family="MobileNet",
    paper=V2_PAPER,
    reference=Reference(params=3_504_872, source="torchvision MobileNet_V2_Weights.IMAGENET1K_V1", exact=True),
    pretrained={"torchvision": "MobileNet_V2_Weights.IMAGENET1K_V1"},
)
def mobilenet_v2(**kwargs) -> tvm.MobileNetV2:
    return tvm.mobilenet_v2(**kwargs)
