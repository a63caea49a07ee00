"""CIFAR ResNets: ResNet-110 (He et al. 2016, section 4.2) and the pre-activation bottleneck ResNet-164 and
ResNet-1001 (He et al. 2016, "Identity Mappings in Deep Residual Networks").

Both are three stages at 32, 16 and 8 pixels behind a 3x3 stem conv of 16 maps, then global average pooling
(the papers' 8x8 average pool) and one FC layer, for 32x32 inputs and 10 classes.

ResNet-110 (6n+2 layers, n=18): post-activation basic blocks (conv-BN-ReLU-conv-BN, add, ReLU) at widths
16/32/64 and parameter-free "option A" shortcuts: where the shape changes the shortcut subsamples with
stride 2 and zero-pads the new channels, half in front and half behind (akamaster/pytorch_resnet_cifar10,
whose `resnet110()` this matches parameter for parameter).

Pre-activation ResNet-164/1001 (9n+2 layers, n=18 and 111), after the official Torch code
(KaimingHe/resnet-1k-layers `resnet-pre-act.lua`): bottleneck units BN-ReLU-1x1, BN-ReLU-3x3, BN-ReLU-1x1 at
output widths 64/128/256 with a quarter of that inside; the stride sits on the first 1x1. Where the shape
changes, a 1x1 projection shortcut (with the same stride) takes the *pre-activated* input, so the first
BN-ReLU is shared by both branches; elsewhere the shortcut is the identity. A final BN-ReLU precedes the
pooling. All convolutions are bias-free.

The pre-activation unit here (`PreActBlock`) is data-driven (kernel sizes, bottleneck ratio, dropout) and
is also the wide residual unit of WRN (export/zoo/wrn.py). `ZeroPadShortcut` is shared with PyramidNet.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

from export.zoo.layers import ConvNormAct, NormActConv, damp_residual_branches, he_init
from export.zoo.layers.conv_norm_act import LayerFactory, make_act
from export.zoo.registry import CIFAR_PREPROCESSING, register_model
from export.zoo.resnet import RESNET_PAPER
from service.manifest import Paper, Reference

# --- helpers ---------------------------------------------------------------------------------------------


class ZeroPadShortcut(nn.Module):
    """Parameter-free shortcut: downsample spatially, then append zero channels up to `out_channels`.

    `pool="subsample"` keeps every `stride`-th pixel (ResNet option A); `pool="avg"` averages
    `stride` x `stride` windows with ceil mode (PyramidNet). `pad="both"` puts half the zero channels in
    front and half behind (akamaster's option A), `pad="end"` puts them all behind (PyramidNet).
    Identity when nothing changes.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        pool: Literal["subsample", "avg"] = "subsample",
        pad: Literal["both", "end"] = "both",
    ) -> None:
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(f"a zero-padding shortcut cannot shrink {in_channels} to {out_channels} channels")
        extra = out_channels - in_channels
        self.pad_front = extra // 2 if pad == "both" else 0
        self.pad_back = extra - self.pad_front
        self.stride = stride
        self.pool = nn.AvgPool2d(stride, stride, ceil_mode=True) if pool == "avg" and stride > 1 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool is not None:
            x = self.pool(x)
        elif self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.pad_front or self.pad_back:
            x = F.pad(x, (0, 0, 0, 0, self.pad_front, self.pad_back))
        return x

    def extra_repr(self) -> str:
        return f"stride={self.stride}, pad=({self.pad_front}, {self.pad_back})"


def init_weights(model: nn.Module) -> None:
    """He init N(0, 2/(k*k*out)) for convs and BN at 1/0 (as the reference codes), FC bias 0; then scale
    every residual branch's last layer by 1/sqrt(number of units).

    Deliberate deviation (initialisation only; trained weights replace it): before training, BN running
    statistics are 0/1, so in eval mode every He-initialised branch adds about as much variance as its input
    carries and the activations double in variance per unit: ResNet-110's logits reach ~1e8 and ResNet-1001's
    overflow float32. Scaling the branches (Fixup-style) keeps the exported random model's outputs O(1).
    """
    he_init(model)
    damp_residual_branches([m.residual_last_layer for m in model.modules() if hasattr(m, "residual_last_layer")])


# --- blocks ----------------------------------------------------------------------------------------------


class BasicBlock(nn.Module):
    """The original residual unit: conv3x3-BN-ReLU, conv3x3-BN, add the shortcut, ReLU.

    The stride sits on the first conv; where the shape changes the shortcut is option A (zero padding).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        norm_layer: LayerFactory = nn.BatchNorm2d,
        act_layer: LayerFactory = nn.ReLU,
    ) -> None:
        super().__init__()
        self.conv1 = ConvNormAct(in_channels, out_channels, 3, stride, norm_layer=norm_layer, act_layer=act_layer)
        self.conv2 = ConvNormAct(out_channels, out_channels, 3, norm_layer=norm_layer, act_layer=None)
        self.shortcut = ZeroPadShortcut(in_channels, out_channels, stride, pool="subsample", pad="both")
        self.act = make_act(act_layer)

    @property
    def residual_last_layer(self) -> nn.Module:
        return self.conv2[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv2(self.conv1(x)) + self.shortcut(x))


class PreActBlock(nn.Module):
    """Pre-activation residual unit: BN-ReLU-conv for each kernel size, added to the shortcut (no act after).

        `kernel_sizes=(1, 3, 1)` with `bottleneck_ratio=0.25` is the Identity Mappings bottleneck; `(3, 3)` with
        ratio 1 is the basic pre-activation unit, WRN's B(3,3). The stride sits on the first conv (`stride_at=0`,
    as in the official Torch code; the Residual Attention Network's prototxts put it on the 3x3). Where the
        shape changes, a bias-free 1x1 projection with the same stride takes the pre-activated input (the first
        BN-ReLU is shared by both branches); otherwise the shortcut is the identity. `drop_rate` adds dropout
        after the BN-ReLU of every conv but the first (WRN's dropout between the convs).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        kernel_sizes: Sequence[int] = (3, 3),
        bottleneck_ratio: float = 1.0,
        drop_rate: float = 0.0,
        stride_at: int = 0,
        norm_layer: LayerFactory = nn.BatchNorm2d,
        act_layer: LayerFactory = nn.ReLU,
    ) -> None:
        super().__init__()
        mid = int(out_channels * bottleneck_ratio)
        widths = [in_channels] + [mid] * (len(kernel_sizes) - 1) + [out_channels]
        strides = [stride if i == stride_at else 1 for i in range(len(kernel_sizes))]
        self.preact = nn.Sequential(norm_layer(in_channels), make_act(act_layer))
        k = kernel_sizes[0]
        self.conv1 = nn.Conv2d(in_channels, widths[1], k, strides[0], (k - 1) // 2, bias=False)
        convs = []
        for c_in, c_out, k, s in zip(widths[1:-1], widths[2:], kernel_sizes[1:], strides[1:], strict=True):
            unit = NormActConv(c_in, c_out, k, s, norm_layer=norm_layer, act_layer=act_layer)
            if drop_rate > 0:
                unit.insert(len(unit) - 1, nn.Dropout(drop_rate))
            convs.append(unit)
        self.convs = nn.Sequential(*convs)
        project = stride != 1 or in_channels != out_channels
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride, bias=False) if project else None

    @property
    def residual_last_layer(self) -> nn.Module:
        return self.convs[-1][-1] if len(self.convs) else self.conv1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.preact(x)
        shortcut = x if self.shortcut is None else self.shortcut(pre)
        return self.convs(self.conv1(pre)) + shortcut


# --- network ---------------------------------------------------------------------------------------------


class CifarResNet(nn.Module):
    """Stem 3x3 conv, three stages (stride 1, 2, 2) of `block`s, global average pool, FC.

    `preact=False`: the stem is conv-BN-ReLU and nothing follows the last block (original ResNet).
    `preact=True`: the stem is a bare conv and a final BN-ReLU follows the last block (pre-activation
    ResNet, WRN). `block(in_channels, out_channels, stride, norm_layer=, act_layer=)` builds one unit.
    """

    def __init__(
        self,
        block: Callable[..., nn.Module],
        layers: Sequence[int],
        widths: Sequence[int],
        preact: bool = False,
        stem_width: int = 16,
        num_classes: int = 10,
        in_channels: int = 3,
        norm_layer: LayerFactory = nn.BatchNorm2d,
        act_layer: LayerFactory = nn.ReLU,
    ) -> None:
        super().__init__()
        self.stem = ConvNormAct(
            in_channels,
            stem_width,
            3,
            norm_layer=None if preact else norm_layer,
            act_layer=None if preact else act_layer,
            bias=False,
        )
        stages, channels = [], stem_width
        for i, (count, width) in enumerate(zip(layers, widths, strict=True)):
            units = []
            for j in range(count):
                stride = 2 if i > 0 and j == 0 else 1
                units.append(block(channels, width, stride, norm_layer=norm_layer, act_layer=act_layer))
                channels = width
            stages.append(nn.Sequential(*units))
        self.stages = nn.Sequential(*stages)
        self.final = nn.Sequential(norm_layer(channels), make_act(act_layer)) if preact else nn.Identity()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.final(self.stages(self.stem(x)))
        return self.fc(self.pool(x).flatten(1))


# --- private factories -----------------------------------------------------------------------------------


def _cifar_resnet(depth: int, **kwargs) -> CifarResNet:
    """Original CIFAR ResNet, depth 6n+2: n basic blocks per stage at 16/32/64, option A shortcuts."""
    if (depth - 2) % 6:
        raise ValueError(f"CIFAR ResNet depth must be 6n+2, not {depth}")
    n = (depth - 2) // 6
    return CifarResNet(BasicBlock, [n] * 3, [16, 32, 64], preact=False, **kwargs)


def _preact_resnet(depth: int, **kwargs) -> CifarResNet:
    """Pre-activation bottleneck CIFAR ResNet, depth 9n+2: n units per stage at 64/128/256, inner 16/32/64."""
    if (depth - 2) % 9:
        raise ValueError(f"pre-activation bottleneck ResNet depth must be 9n+2, not {depth}")
    n = (depth - 2) // 9
    block = functools.partial(PreActBlock, kernel_sizes=(1, 3, 1), bottleneck_ratio=0.25)
    return CifarResNet(block, [n] * 3, [64, 128, 256], preact=True, **kwargs)


# --- paper -----------------------------------------------------------------------------------------------

PREACT_PAPER = Paper(
    title="Identity Mappings in Deep Residual Networks",
    authors="He, Zhang, Ren, Sun",
    year=2016,
    url="https://arxiv.org/abs/1603.05027",
)
CIFAR_SPEC = dict(
    input_size=(3, 32, 32),
    num_classes=10,
    labels="cifar10",
    preprocessing=CIFAR_PREPROCESSING,
    max_batch_size=128,
)

# --- public builders -------------------------------------------------------------------------------------


@register_model(
    family="ResNet",
    paper=RESNET_PAPER,
    reference=Reference(
        params=1_727_962, source="computed from akamaster/pytorch_resnet_cifar10 resnet110() (paper: 1.7M)"
    ),
    **CIFAR_SPEC,
)
def resnet110_cifar(**kwargs) -> CifarResNet:
    return _cifar_resnet(110, **kwargs)


@register_model(
    family="ResNet",
    paper=PREACT_PAPER,
    reference=Reference(
        params=1_703_258, source="computed from KaimingHe/resnet-1k-layers resnet-pre-act.lua (paper: 1.7M)"
    ),
    **CIFAR_SPEC,
)
def preact_resnet164_cifar(**kwargs) -> CifarResNet:
    return _preact_resnet(164, **kwargs)


@register_model(
    family="ResNet",
    paper=PREACT_PAPER,
    reference=Reference(
        params=10_327_706, source="computed from KaimingHe/resnet-1k-layers resnet-pre-act.lua (paper: 10.2M)"
    ),
    **CIFAR_SPEC,
)
def preact_resnet1001_cifar(**kwargs) -> CifarResNet:
    return _preact_resnet(1001, **kwargs)
