"""ShuffleNet v1 (Zhang et al. 2018) and ShuffleNet v2 (Ma et al. 2018).

v2 comes from torchvision, which implements it exactly and publishes ImageNet weights. v1 is not in
torchvision or timm; it is built here from the paper (Table 1, 1x, g = 1, 2, 3, 4, 8) and megvii's
reference code (megvii-model/ShuffleNet-Series, `ShuffleNetV1/`, g = 3 and 8), composed from the shared
`ConvNormAct` and `channel_shuffle`.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision import models as tvm

from export.zoo.layers import ConvNormAct, channel_shuffle, init_weights
from export.zoo.layers.conv_norm_act import LayerFactory
from export.zoo.registry import imagenet_preprocessing, register_model
from service.manifest import Paper, Reference

# --------------------------------------------------------------------------------------------- blocks


class ShuffleUnit(nn.Module):
    """The ShuffleNet v1 unit (paper Fig. 2 b/c): 1x1 GConv -> shuffle -> 3x3 DWConv -> 1x1 GConv.

    BN after every convolution, ReLU after the first 1x1 only (none after the depthwise conv, none on the
    second 1x1 before the merge). Bottleneck width is `out_channels // 4`.
    Stride 1: out = act(branch(x) + x). Stride 2: the branch gives `out - in` channels and is concatenated
    after a 3x3/2 average-pooled shortcut (megvii's order). The paper's ReLU after the concat is applied to
    the branch half only, as megvii does: the pooled half averages the previous unit's ReLU output, so it is
    already non-negative and the result is identical with fewer elements activated.
    `first_groups` sets the groups of the first 1x1 conv (1 for the first unit of stage 2, whose input has
    only 24 channels). The channel shuffle follows it only when that conv is grouped: after a dense conv a
    fixed permutation is redundant (the conv's output channels absorb it), so the op is left out of the graph.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        groups: int,
        stride: int = 1,
        first_groups: int | None = None,
        norm_layer: LayerFactory = nn.BatchNorm2d,
        act_layer: LayerFactory = nn.ReLU,
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, not {stride}")
        if stride == 1 and in_channels != out_channels:
            raise ValueError("a stride-1 unit needs as many output channels as input channels")
        first_groups = groups if first_groups is None else first_groups
        mid = out_channels // 4
        branch_out = out_channels - in_channels if stride == 2 else out_channels
        self.shuffle_groups = groups if first_groups > 1 else 1
        self.compress = ConvNormAct(
            in_channels, mid, 1, groups=first_groups, norm_layer=norm_layer, act_layer=act_layer
        )
        self.depthwise = ConvNormAct(mid, mid, 3, stride, groups=mid, norm_layer=norm_layer, act_layer=None)
        self.expand = ConvNormAct(mid, branch_out, 1, groups=groups, norm_layer=norm_layer, act_layer=None)
        self.shortcut = nn.AvgPool2d(3, 2, padding=1) if stride == 2 else None
        self.act = act_layer(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.compress(x)
        if self.shuffle_groups > 1:
            out = channel_shuffle(out, self.shuffle_groups)
        out = self.expand(self.depthwise(out))
        if self.shortcut is None:
            return self.act(out + x)
        return torch.cat([self.shortcut(x), self.act(out)], dim=1)


# --------------------------------------------------------------------------------------------- network


class ShuffleNetV1(nn.Module):
    """ShuffleNet v1: conv 3x3/2 + max-pool 3x3/2, three stages of shuffle units, global pool, FC.

    The first unit of each stage has stride 2. The classifier has no bias (megvii). Global pooling is a
    mean over H and W (megvii's `AvgPool2d(7)` would bake the input size into the graph).
    """

    def __init__(
        self,
        groups: int,
        stage_channels: tuple[int, int, int],
        stage_repeats: tuple[int, int, int] = (4, 8, 4),
        stem_channels: int = 24,
        num_classes: int = 1000,
        in_channels: int = 3,
        norm_layer: LayerFactory = nn.BatchNorm2d,
        act_layer: LayerFactory = nn.ReLU,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            ConvNormAct(in_channels, stem_channels, 3, 2, norm_layer=norm_layer, act_layer=act_layer),
            nn.MaxPool2d(3, 2, padding=1),
        )
        stages: list[nn.Module] = []
        channels = stem_channels
        for index, (out_channels, repeats) in enumerate(zip(stage_channels, stage_repeats, strict=True)):
            units = []
            for i in range(repeats):
                units.append(
                    ShuffleUnit(
                        channels,
                        out_channels,
                        groups,
                        stride=2 if i == 0 else 1,
                        first_groups=1 if index == 0 and i == 0 else groups,
                        norm_layer=norm_layer,
                        act_layer=act_layer,
                    )
                )
                channels = out_channels
            stages.append(nn.Sequential(*units))
        self.stages = nn.Sequential(*stages)
        self.classifier = nn.Linear(channels, num_classes, bias=False)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        return self.classifier(x.mean((2, 3)))  # global average pool: one ReduceMean, no reshape


# --------------------------------------------------------------------------------------------- factory

# Output channels of stages 2-4 for the 1x model, per group count (paper Table 1).
V1_STAGE_CHANNELS: dict[int, tuple[int, int, int]] = {
    1: (144, 288, 576),
    2: (200, 400, 800),
    3: (240, 480, 960),
    4: (272, 544, 1088),
    8: (384, 768, 1536),
}


def _shufflenet_v1(groups: int, **kwargs) -> ShuffleNetV1:
    return ShuffleNetV1(groups, V1_STAGE_CHANNELS[groups], **kwargs)


# --------------------------------------------------------------------------------------------- papers

V1_PAPER = Paper(
    title="ShuffleNet: An Extremely Efficient Convolutional Neural Network for Mobile Devices",
    authors="Zhang, Zhou, Lin, Sun",
    year=2018,
    url="https://arxiv.org/abs/1707.01083",
)
V2_PAPER = Paper(
    title="ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture Design",
    authors="Ma, Zhang, Zheng, Sun",
    year=2018,
    url="https://arxiv.org/abs/1807.11164",
)


def _v1(params: int, megvii: str = "") -> dict:
    source = "computed from the paper's Table 1 layer definition (1x)"
    return dict(
        family="ShuffleNet",
        paper=V1_PAPER,
        reference=Reference(params=params, source=f"{source}; {megvii}" if megvii else source),
    )


def _v2(params: int, weights: str, resize: int = 256) -> dict:
    return dict(
        family="ShuffleNet",
        paper=V2_PAPER,
        reference=Reference(params=params, source=f"torchvision {weights}", exact=True),
        preprocessing=imagenet_preprocessing(crop=224, resize=resize),
        pretrained={"torchvision": weights},
    )


# --------------------------------------------------------------------------------------------- builders


@register_model(**_v1(1_530_936))
def shufflenet_v1_g1(**kwargs) -> ShuffleNetV1:
    return _shufflenet_v1(1, **kwargs)


@register_model(**_v1(1_732_848))
def shufflenet_v1_g2(**kwargs) -> ShuffleNetV1:
    return _shufflenet_v1(2, **kwargs)


@register_model(**_v1(1_864_728, "megvii ShuffleNet-Series README: 1.9M"))
def shufflenet_v1_g3(**kwargs) -> ShuffleNetV1:
    return _shufflenet_v1(3, **kwargs)


@register_model(**_v1(1_967_344))
def shufflenet_v1_g4(**kwargs) -> ShuffleNetV1:
    return _shufflenet_v1(4, **kwargs)


@register_model(**_v1(2_433_768, "megvii ShuffleNet-Series README: 2.4M"))
def shufflenet_v1_g8(**kwargs) -> ShuffleNetV1:
    return _shufflenet_v1(8, **kwargs)


@register_model(**_v2(1_366_792, "ShuffleNet_V2_X0_5_Weights.IMAGENET1K_V1"))
def shufflenet_v2_x0_5(**kwargs) -> tvm.ShuffleNetV2:
    return tvm.shufflenet_v2_x0_5(**kwargs)


@register_model(**_v2(2_278_604, "ShuffleNet_V2_X1_0_Weights.IMAGENET1K_V1"))
def shufflenet_v2_x1_0(**kwargs) -> tvm.ShuffleNetV2:
    return tvm.shufflenet_v2_x1_0(**kwargs)


# The 1.5x and 2.0x torchvision weights were trained with the newer recipe: evaluated at resize 232.
@register_model(**_v2(3_503_624, "ShuffleNet_V2_X1_5_Weights.IMAGENET1K_V1", resize=232))
def shufflenet_v2_x1_5(**kwargs) -> tvm.ShuffleNetV2:
    return tvm.shufflenet_v2_x1_5(**kwargs)


@register_model(**_v2(7_393_996, "ShuffleNet_V2_X2_0_Weights.IMAGENET1K_V1", resize=232))
def shufflenet_v2_x2_0(**kwargs) -> tvm.ShuffleNetV2:
    return tvm.shufflenet_v2_x2_0(**kwargs)
