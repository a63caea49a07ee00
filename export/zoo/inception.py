"""The Inception family after GoogLeNet: BN-Inception, Inception-v3, Inception-v4 and Inception-ResNet-v1/v2.

* `bn_inception` (Ioffe & Szegedy 2015, the batch-normalisation paper's network; TF-slim and Keras call it
  "inception_v2"). Not GoogLeNet plus BN: every 5x5 becomes two stacked 3x3s, the 28x28 grid has three modules
  (3a, 3b and a stride-2 3c), 4e is stride 2, there is no max-pool between module groups (3c and 4e reduce the
  grid themselves, their pooling branch is a pass-through max-pool), the pooling branches mix average and
  max (5b uses max), and there is no LRN and no dropout. Built from our own layers after the paper's Figure 5,
  cross-checked against the Caffe port in Cadene's `pretrainedmodels.bninception` (the plain 7x7 stem
  conv, ceil-mode max-pools; TF-slim's stem is a depthwise-separable 7x7 instead, not the paper's).
  Deviation: the Caffe port keeps a bias in every conv before its BN; we leave it out, as the BN paper does
  (the BN shift makes it redundant), which is 10,016 parameters fewer than the port's 11,295,240.
* `inception_v3` (Szegedy et al. 2016, "Rethinking"): torchvision's `Inception3` without the auxiliary head
  and with `transform_input=False`. Its published weights hold the AuxLogits keys: load them with those keys
  dropped (strict=False for aux keys), and feed inputs scaled to [-1, 1] (mean = std = 0.5), which is what
  torchvision's ImageNet normalisation followed by its `transform_input=True` amounts to.
* `inception_v4` and `inception_resnet_v2` (Szegedy et al. 2017): timm's models, exact ports of the released
  TF-slim networks. The released Inception-ResNet-v2 has 10/20/10 residual blocks, not the paper's 5/10/5.
* `inception_resnet_v1` (same paper): no maintained implementation exists, so it is built here from the
  paper's Figures 14 (stem), 10 (Inception-ResNet-A), 7 (Reduction-A with k, l, m, n = 192, 192, 256, 384),
  11 (Inception-ResNet-B), 12 (Reduction-B), 13 (Inception-ResNet-C) and 15 (the 5x/10x/5x schema, average
  pooling, dropout with keep 0.8, softmax). BN follows every conv but not the residual sums (the paper's own
  rule); the linear 1x1 up-projection that closes each residual branch has a bias and no BN, as in TF-slim's
  Inception-ResNet-v2. The paper scales residuals "between 0.1 and 0.3" without fixing the values; we use
  TF-slim's 0.17 (A), 0.10 (B), 0.20 (C).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from functools import partial
from typing import NamedTuple

import timm
import torch
from torch import nn
from torchvision import models as tvm

from export.zoo.layers import ConvNormAct
from export.zoo.layers.conv_norm_act import LayerFactory
from export.zoo.registry import imagenet_preprocessing, register_model
from service.manifest import Paper, Reference

# ----------------------------------------------------------------------------------------------- helpers


class ConvSpec(NamedTuple):
    """One conv-norm-act of a branch. `padding=None` pads "same" (per axis); 0 is the papers' "V" (valid)."""

    out_channels: int
    kernel_size: int | tuple[int, int] = 1
    stride: int = 1
    padding: int | tuple[int, int] | None = None


class PoolSpec(NamedTuple):
    """A module's pooling branch: 3x3 pooling, then a 1x1 projection (a pass-through if `proj` is 0)."""

    kind: str  # "avg" | "max"
    stride: int = 1
    padding: int = 1
    proj: int = 0
    ceil_mode: bool = False


Branch = Sequence[ConvSpec]

_POOLS: dict[str, LayerFactory] = {
    "avg": partial(nn.AvgPool2d, count_include_pad=True),
    "max": nn.MaxPool2d,
}


# ------------------------------------------------------------------------------------------------ blocks


class InceptionModule(nn.Module):
    """Parallel branches over one input (chains of conv-norm-act, and an optional pooling branch),
    concatenated along the channels. Plain modules and grid reductions differ only in their branch data."""

    def __init__(
        self,
        in_channels: int,
        branches: Sequence[Branch],
        pool: PoolSpec | None = None,
        norm_layer: LayerFactory = nn.BatchNorm2d,
        act_layer: LayerFactory = nn.ReLU,
    ) -> None:
        super().__init__()
        self.branches = nn.ModuleList()
        out_channels = 0
        for branch in branches:
            layers: list[nn.Module] = []
            channels = in_channels
            for spec in branch:
                layers.append(
                    ConvNormAct(channels, *spec, norm_layer=norm_layer, act_layer=act_layer),
                )
                channels = spec.out_channels
            self.branches.append(nn.Sequential(*layers))
            out_channels += channels
        if pool is not None:
            layers = [_POOLS[pool.kind](3, pool.stride, pool.padding, ceil_mode=pool.ceil_mode)]
            if pool.proj:
                layers.append(ConvNormAct(in_channels, pool.proj, 1, norm_layer=norm_layer, act_layer=act_layer))
            self.branches.append(nn.Sequential(*layers))
            out_channels += pool.proj or in_channels
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self.branches], dim=1)


class InceptionResidual(nn.Module):
    """Inception-ResNet block: act(x + scale * up(concat(branches(x)))).

    `up` is the linear 1x1 conv (bias, no BN, no activation) that brings the concatenated branches back to the
    input width. Scaling the residual by 0.1-0.3 before the sum keeps training stable (paper, section 3.3).
    """

    def __init__(
        self,
        channels: int,
        branches: Sequence[Branch],
        scale: float,
        norm_layer: LayerFactory = nn.BatchNorm2d,
        act_layer: LayerFactory = nn.ReLU,
    ) -> None:
        super().__init__()
        self.mixed = InceptionModule(channels, branches, None, norm_layer, act_layer)
        self.up = ConvNormAct(self.mixed.out_channels, channels, 1, norm_layer=None, act_layer=None)
        self.scale = scale
        self.act = act_layer()
        self.out_channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.up(self.mixed(x)) * self.scale)


# ----------------------------------------------------------------------------------------------- network


class InceptionNet(nn.Module):
    """stem -> blocks -> global average pooling -> dropout -> FC. The factories below fill stem and blocks."""

    def __init__(
        self,
        stem: nn.Module,
        blocks: nn.Module,
        num_features: int,
        num_classes: int = 1000,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.stem = stem
        self.blocks = blocks
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(num_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.blocks(self.stem(x))).flatten(1)
        return self.fc(self.dropout(x))


# ------------------------------------------------------------------------------------- private factories


class BNInceptionRow(NamedTuple):
    """One row of the BN paper's Figure 5: #1x1, #3x3 reduce, #3x3, double #3x3 reduce, double #3x3, pool,
    pool projection (0: pass-through), stride (2 for the grid reductions 3c and 4e)."""

    c1x1: int
    c3x3_reduce: int
    c3x3: int
    d3x3_reduce: int
    d3x3: int
    pool: str
    proj: int
    stride: int = 1


# fmt: off
BN_INCEPTION_ROWS: dict[str, BNInceptionRow] = {
    "inception_3a": BNInceptionRow(64, 64, 64, 64, 96, "avg", 32),
    "inception_3b": BNInceptionRow(64, 64, 96, 64, 96, "avg", 64),
    "inception_3c": BNInceptionRow(0, 128, 160, 64, 96, "max", 0, stride=2),
    "inception_4a": BNInceptionRow(224, 64, 96, 96, 128, "avg", 128),
    "inception_4b": BNInceptionRow(192, 96, 128, 96, 128, "avg", 128),
    "inception_4c": BNInceptionRow(160, 128, 160, 128, 160, "avg", 128),
    "inception_4d": BNInceptionRow(96, 128, 192, 160, 192, "avg", 128),
    "inception_4e": BNInceptionRow(0, 128, 192, 192, 256, "max", 0, stride=2),
    "inception_5a": BNInceptionRow(352, 192, 320, 160, 224, "avg", 128),
    "inception_5b": BNInceptionRow(352, 192, 320, 192, 224, "max", 128),
}
# fmt: on


def _bn_inception_branches(row: BNInceptionRow) -> tuple[list[Branch], PoolSpec]:
    s = row.stride
    branches: list[Branch] = [(ConvSpec(row.c1x1),)] if row.c1x1 else []
    branches.append((ConvSpec(row.c3x3_reduce), ConvSpec(row.c3x3, 3, s)))
    branches.append((ConvSpec(row.d3x3_reduce), ConvSpec(row.d3x3, 3), ConvSpec(row.d3x3, 3, s)))
    # Stride-2 pass-through max-pools are unpadded and ceil-mode, as in the Caffe model (28 -> 14, 14 -> 7).
    pool = PoolSpec(row.pool, stride=s, padding=0 if s > 1 else 1, proj=row.proj, ceil_mode=s > 1)
    return branches, pool


def _bn_inception(
    rows: dict[str, BNInceptionRow] = BN_INCEPTION_ROWS,
    num_classes: int = 1000,
    norm_layer: LayerFactory = nn.BatchNorm2d,
    act_layer: LayerFactory = nn.ReLU,
) -> InceptionNet:
    conv = partial(ConvNormAct, norm_layer=norm_layer, act_layer=act_layer)
    stem = nn.Sequential(
        conv(3, 64, 7, 2),
        nn.MaxPool2d(3, 2, ceil_mode=True),
        conv(64, 64, 1),
        conv(64, 192, 3),
        nn.MaxPool2d(3, 2, ceil_mode=True),
    )
    blocks: OrderedDict[str, nn.Module] = OrderedDict()
    channels = 192
    for name, row in rows.items():
        block = InceptionModule(channels, *_bn_inception_branches(row), norm_layer=norm_layer, act_layer=act_layer)
        blocks[name] = block
        channels = block.out_channels
    return InceptionNet(stem, nn.Sequential(blocks), channels, num_classes)


V = 0  # the papers' "V": valid (unpadded) convolution or pooling

# Inception-ResNet-v1, paper Figures 10, 11, 13 (residual branches) and 7, 12 (reductions).
IR_V1_A: list[Branch] = [
    (ConvSpec(32),),
    (ConvSpec(32), ConvSpec(32, 3)),
    (ConvSpec(32), ConvSpec(32, 3), ConvSpec(32, 3)),
]
IR_V1_B: list[Branch] = [(ConvSpec(128),), (ConvSpec(128), ConvSpec(128, (1, 7)), ConvSpec(128, (7, 1)))]
IR_V1_C: list[Branch] = [(ConvSpec(192),), (ConvSpec(192), ConvSpec(192, (1, 3)), ConvSpec(192, (3, 1)))]


def _reduction_a(k: int, l: int, m: int, n: int) -> list[Branch]:  # noqa: E741 (the paper's names)
    return [(ConvSpec(n, 3, 2, V),), (ConvSpec(k), ConvSpec(l, 3), ConvSpec(m, 3, 2, V))]


IR_V1_REDUCTION_B: list[Branch] = [
    (ConvSpec(256), ConvSpec(384, 3, 2, V)),
    (ConvSpec(256), ConvSpec(256, 3, 2, V)),
    (ConvSpec(256), ConvSpec(256, 3), ConvSpec(256, 3, 2, V)),
]
MAX_POOL_S2 = PoolSpec("max", stride=2, padding=V)


def _inception_resnet_v1(
    repeats: tuple[int, int, int] = (5, 10, 5),
    scales: tuple[float, float, float] = (0.17, 0.10, 0.20),
    num_classes: int = 1000,
    dropout: float = 0.2,
    norm_layer: LayerFactory = nn.BatchNorm2d,
    act_layer: LayerFactory = nn.ReLU,
) -> InceptionNet:
    conv = partial(ConvNormAct, norm_layer=norm_layer, act_layer=act_layer)
    # Figure 14: 299 -> 149 -> 147 -> 147 -> 73 -> 73 -> 71 -> 35 (x 256).
    stem = nn.Sequential(
        conv(3, 32, 3, 2, V),
        conv(32, 32, 3, 1, V),
        conv(32, 64, 3),
        nn.MaxPool2d(3, 2),
        conv(64, 80, 1),
        conv(80, 192, 3, 1, V),
        conv(192, 256, 3, 2, V),
    )
    layers = dict(norm_layer=norm_layer, act_layer=act_layer)
    blocks: OrderedDict[str, nn.Module] = OrderedDict()
    stages = ((256, IR_V1_A, "a"), (896, IR_V1_B, "b"), (1792, IR_V1_C, "c"))
    reductions = {
        "a": InceptionModule(256, _reduction_a(192, 192, 256, 384), MAX_POOL_S2, **layers),  # -> 17 x 896
        "b": InceptionModule(896, IR_V1_REDUCTION_B, MAX_POOL_S2, **layers),  # -> 8 x 1792
    }
    for (channels, branches, tag), repeat, scale in zip(stages, repeats, scales, strict=True):
        for i in range(repeat):
            blocks[f"block_{tag}{i + 1}"] = InceptionResidual(channels, branches, scale, **layers)
        if tag in reductions:
            blocks[f"reduction_{tag}"] = reductions[tag]
    return InceptionNet(stem, nn.Sequential(blocks), 1792, num_classes, dropout)


# ------------------------------------------------------------------------------------ papers, constants

BN_PAPER = Paper(
    title="Batch Normalization: Accelerating Deep Network Training by Reducing Internal Covariate Shift",
    authors="Ioffe, Szegedy",
    year=2015,
    url="https://arxiv.org/abs/1502.03167",
)
V3_PAPER = Paper(
    title="Rethinking the Inception Architecture for Computer Vision",
    authors="Szegedy, Vanhoucke, Ioffe, Shlens, Wojna",
    year=2016,
    url="https://arxiv.org/abs/1512.00567",
)
V4_PAPER = Paper(
    title="Inception-v4, Inception-ResNet and the Impact of Residual Connections on Learning",
    authors="Szegedy, Ioffe, Vanhoucke, Alemi",
    year=2017,
    url="https://arxiv.org/abs/1602.07261",
)
V3_WEIGHTS = "Inception_V3_Weights.IMAGENET1K_V1"
# 27,161,264 (the weights' num_params) less the 3,326,696 of the auxiliary head.
INCEPTION_V3_PARAMS = 23_834_568
# The TF-trained weights (torchvision's and timm's) expect inputs scaled to [-1, 1]: mean = std = 0.5.
INCEPTION_MEAN_STD = dict(mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5])
INPUT_299 = (3, 299, 299)


# ------------------------------------------------------------------------------------------------ builders


@register_model(
    family="Inception",
    paper=BN_PAPER,
    reference=Reference(
        params=11_295_240,
        source="Cadene pretrainedmodels bninception (Caffe port), computed; includes conv biases before BN "
        "(10,016) that we leave out. The paper says 13.6M",
    ),
)
def bn_inception(**kwargs) -> InceptionNet:
    return _bn_inception(**kwargs)


@register_model(
    family="Inception",
    paper=V3_PAPER,
    reference=Reference(
        params=INCEPTION_V3_PARAMS,
        source=f"torchvision {V3_WEIGHTS} num_params 27,161,264 less the auxiliary head (3,326,696); "
        "timm inception_v3 23.83M",
        exact=True,
    ),
    input_size=INPUT_299,
    # torchvision's transform (resize 342, crop 299, ImageNet mean/std) followed by its `transform_input`
    # re-normalisation is exactly (x - 0.5) / 0.5: we normalise so and export with transform_input=False.
    preprocessing=imagenet_preprocessing(crop=299, resize=342, **INCEPTION_MEAN_STD),
    pretrained={"torchvision": V3_WEIGHTS},
)
def inception_v3(*, transform_input: bool = False, **kwargs) -> tvm.Inception3:
    """torchvision Inception-v3 without the auxiliary head (eval graphs never use it)."""
    if kwargs.get("weights") is None:
        return tvm.inception_v3(
            transform_input=transform_input, **{"aux_logits": False, "init_weights": True, **kwargs}
        )
    # The published weights hold AuxLogits: torchvision must build the head to load them; drop it after.
    model = tvm.inception_v3(transform_input=transform_input, **kwargs)
    model.aux_logits, model.AuxLogits = False, None
    return model


@register_model(
    family="Inception",
    paper=V4_PAPER,
    reference=Reference(params=42_680_000, source="timm results-imagenet.csv inception_v4 param_count 42.68M"),
    input_size=INPUT_299,
    # timm inception_v4.tf_in1k: crop_pct 0.875 (floor(299 / 0.875) = 341), bicubic, mean = std = 0.5.
    preprocessing=imagenet_preprocessing(crop=299, resize=341, interpolation="bicubic", **INCEPTION_MEAN_STD),
    pretrained={"timm": "inception_v4.tf_in1k"},
)
def inception_v4(**kwargs) -> nn.Module:
    return timm.create_model("inception_v4", pretrained=False, **kwargs)


@register_model(
    family="Inception",
    paper=V4_PAPER,
    reference=Reference(
        params=22_756_328,
        source="computed from the paper's Figures 14, 10, 7, 11, 12, 13 and 15 (no published count)",
    ),
    input_size=INPUT_299,
    preprocessing=imagenet_preprocessing(crop=299, resize=342, **INCEPTION_MEAN_STD),
)
def inception_resnet_v1(**kwargs) -> InceptionNet:
    return _inception_resnet_v1(**kwargs)


@register_model(
    family="Inception",
    paper=V4_PAPER,
    reference=Reference(params=55_840_000, source="timm results-imagenet.csv inception_resnet_v2 param_count 55.84M"),
    input_size=INPUT_299,
    # timm inception_resnet_v2.tf_in1k: crop_pct 0.8975 (299 / 333), bicubic, mean = std = 0.5.
    preprocessing=imagenet_preprocessing(crop=299, resize=333, interpolation="bicubic", **INCEPTION_MEAN_STD),
    pretrained={"timm": "inception_resnet_v2.tf_in1k"},
)
def inception_resnet_v2(**kwargs) -> nn.Module:
    return timm.create_model("inception_resnet_v2", pretrained=False, **kwargs)
