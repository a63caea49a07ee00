"""MobileNet v1 (Howard et al. 2017), v2 (Sandler et al. 2018) and v3 (Howard et al. 2019).

v2 and v3 come from torchvision, which implements them exactly and publishes ImageNet weights. v1 is not in
torchvision; it is built here from the paper (Table 1) with the shared `ConvNormAct` and `SeparableConv2d`:
a standard 3x3/2 convolution to 32 channels, 13 depthwise-separable units with BN + ReLU after both the
depthwise and the pointwise convolution, global average pooling and a fully connected classifier.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision import models as tvm

from export.zoo.layers import ConvNormAct, SeparableConv2d, init_weights
from export.zoo.layers.conv_norm_act import LayerFactory
from export.zoo.registry import register_model
from service.manifest import Paper, Reference

# --------------------------------------------------------------------------------------------- helpers


def _scaled(channels: int, width_mult: float, min_channels: int = 8) -> int:
    """TF-slim's `depth()`: channels x width multiplier, truncated, never below `min_channels`."""
    return max(int(channels * width_mult), min_channels)


# --------------------------------------------------------------------------------------------- network


# MobileNet v1 body after the stem (paper Table 1): (output channels, stride) of each depthwise-separable
# unit. Table 1 prints the last depthwise conv as stride 2 on a 7x7 input, a typo: it is stride 1 (the
# TF-slim reference and the 7x7 input of the 7x7 average pool agree).
V1_UNITS: tuple[tuple[int, int], ...] = (
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    *((512, 1),) * 5,
    (1024, 2),
    (1024, 1),
)


class MobileNetV1(nn.Module):
    """MobileNet v1: conv 3x3/2 -> 13 depthwise-separable units -> global average pool -> FC.

    `width_mult` is the paper's width multiplier alpha (applied to every layer, as in TF-slim, with at
    least 8 channels). The paper uses ReLU, not the ReLU6 of the TF-slim code and timm's `mobilenetv1_100`.
    Dropout is left out: the paper trains MobileNets with little regularisation and names none.
    """

    def __init__(
        self,
        num_classes: int = 1000,
        width_mult: float = 1.0,
        in_channels: int = 3,
        stem_channels: int = 32,
        units: tuple[tuple[int, int], ...] = V1_UNITS,
        norm_layer: LayerFactory = nn.BatchNorm2d,
        act_layer: LayerFactory = nn.ReLU,
    ) -> None:
        super().__init__()
        channels = _scaled(stem_channels, width_mult)
        layers: list[nn.Module] = [
            ConvNormAct(in_channels, channels, 3, stride=2, norm_layer=norm_layer, act_layer=act_layer)
        ]
        for out_channels, stride in units:
            out_channels = _scaled(out_channels, width_mult)
            layers.append(
                SeparableConv2d(channels, out_channels, 3, stride=stride, norm_layer=norm_layer, act_layer=act_layer)
            )
            channels = out_channels
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(channels, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        return self.classifier(x.mean((2, 3)))  # global average pool: one ReduceMean, no reshape


# --------------------------------------------------------------------------------------------- papers

V1_PAPER = Paper(
    title="MobileNets: Efficient Convolutional Neural Networks for Mobile Vision Applications",
    authors="Howard, Zhu, Chen, Kalenichenko, Wang, Weyand, Andreetto, Adam",
    year=2017,
    url="https://arxiv.org/abs/1704.04861",
)
V2_PAPER = Paper(
    title="MobileNetV2: Inverted Residuals and Linear Bottlenecks",
    authors="Sandler, Howard, Zhu, Zhmoginov, Chen",
    year=2018,
    url="https://arxiv.org/abs/1801.04381",
)
V3_PAPER = Paper(
    title="Searching for MobileNetV3",
    authors="Howard, Sandler, Chu, Chen, Chen, Tan, Wang, Zhu, Pang, Vasudevan, Le, Adam",
    year=2019,
    url="https://arxiv.org/abs/1905.02244",
)


def _tv(paper: Paper, params: int, weights: str) -> dict:
    return dict(
        family="MobileNet",
        paper=paper,
        reference=Reference(params=params, source=f"torchvision {weights}", exact=True),
        pretrained={"torchvision": weights},
    )


# --------------------------------------------------------------------------------------------- builders


@register_model(
    family="MobileNet",
    paper=V1_PAPER,
    reference=Reference(
        params=4_231_976,
        source="computed from the paper's Table 1 layer definition (1000 classes); paper: 4.2M for "
        "1.0 MobileNet-224; TF-slim checkpoint: 4.24M",
    ),
)
def mobilenet_v1(width_mult: float = 1.0, **kwargs) -> MobileNetV1:
    return MobileNetV1(width_mult=width_mult, **kwargs)


@register_model(**_tv(V2_PAPER, 3_504_872, "MobileNet_V2_Weights.IMAGENET1K_V1"))
def mobilenet_v2(**kwargs) -> tvm.MobileNetV2:
    return tvm.mobilenet_v2(**kwargs)


@register_model(**_tv(V3_PAPER, 5_483_032, "MobileNet_V3_Large_Weights.IMAGENET1K_V1"))
def mobilenet_v3_large(**kwargs) -> tvm.MobileNetV3:
    return tvm.mobilenet_v3_large(**kwargs)


@register_model(**_tv(V3_PAPER, 2_542_856, "MobileNet_V3_Small_Weights.IMAGENET1K_V1"))
def mobilenet_v3_small(**kwargs) -> tvm.MobileNetV3:
    return tvm.mobilenet_v3_small(**kwargs)
