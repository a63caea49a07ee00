"""PyramidNet (Han, Kim, Kim 2017, "Deep Pyramidal Residual Networks") for CIFAR.

After the author's PyTorch code (dyhan0920/PyramidNet-PyTorch `PyramidNet.py`): instead of doubling the
width at each downsampling, every residual unit widens a little. With N = 3n units, the additive rule adds
alpha/N channels per unit to a running float that starts at 16 and is *rounded* (not floored, as the paper's
formula writes) to give each unit's width, so the last units are 16+alpha wide (times 4 for bottlenecks).
The multiplicative rule (the author's Torch `mulpyramidnet.lua`) multiplies the running float by
alpha^(1/N) instead, so there alpha is the ratio of the last width to the first.

Unit: BN-conv3x3-BN-ReLU-conv3x3-BN (basic, depth 6n+2) or BN-1x1-BN-ReLU-3x3-BN-ReLU-1x1-BN with 4x
output (bottleneck, depth 9n+2); no ReLU at the entry, a BN at the end, the stride on the 3x3. The shortcut
is the identity with zero channels appended, behind a 2x2 average pool (ceil mode) on stride-2 units. Stem:
3x3 conv + BN without ReLU; head: BN-ReLU, global average pool (8x8), FC.

The author's code builds the padding with `torch.cuda` tensors and a batch size read from the input; here it
is `F.pad`, so the graph runs on any device and keeps a dynamic batch axis. The running float accumulates
exactly as the author's does and rounds half away from zero (Python 2's `round`, Lua's floor(x+0.5)).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from export.zoo.layers import ConvNormAct, NormActConv
from export.zoo.layers.conv_norm_act import LayerFactory, make_act
from export.zoo.registry import register_model
from export.zoo.resnet_cifar import CIFAR_SPEC, ZeroPadShortcut, init_weights
from service.manifest import Paper, Reference

# --- helpers ---------------------------------------------------------------------------------------------

Widening = Literal["additive", "multiplicative"]


def pyramid_widths(num_units: int, alpha: float, start: int = 16, widening: Widening = "additive") -> list[int]:
    """Each unit's width: a running float grown by alpha/N (additive) or alpha^(1/N) (multiplicative)."""
    if widening not in ("additive", "multiplicative"):
        raise ValueError(f"widening must be 'additive' or 'multiplicative', not {widening!r}")
    step = alpha / num_units if widening == "additive" else alpha ** (1 / num_units)
    dim, widths = float(start), []
    for _ in range(num_units):
        dim = dim + step if widening == "additive" else dim * step
        widths.append(math.floor(dim + 0.5))
    return widths


# --- blocks ----------------------------------------------------------------------------------------------


class PyramidUnit(nn.Module):
    """BN-conv, then BN-ReLU-conv for each further kernel size, then BN; plus a zero-padded identity.

    `kernel_sizes=(3, 3), expansion=1` is the basic pyramidal unit, `(1, 3, 1), 4` the bottleneck one.
    The stride sits on the (first) 3x3 conv.
    """

    def __init__(
        self,
        in_channels: int,
        planes: int,
        stride: int = 1,
        kernel_sizes: Sequence[int] = (3, 3),
        expansion: int = 1,
        norm_layer: LayerFactory = nn.BatchNorm2d,
        act_layer: LayerFactory = nn.ReLU,
    ) -> None:
        super().__init__()
        out_channels = planes * expansion
        widths = [in_channels] + [planes] * (len(kernel_sizes) - 1) + [out_channels]
        strided = list(kernel_sizes).index(3)
        layers: list[nn.Module] = [
            NormActConv(
                c_in,
                c_out,
                k,
                stride if i == strided else 1,
                norm_layer=norm_layer,
                act_layer=None if i == 0 else act_layer,
            )
            for i, (c_in, c_out, k) in enumerate(zip(widths[:-1], widths[1:], kernel_sizes, strict=True))
        ]
        layers.append(norm_layer(out_channels))
        self.residual = nn.Sequential(*layers)
        self.shortcut = ZeroPadShortcut(in_channels, out_channels, stride, pool="avg", pad="end")
        self.out_channels = out_channels

    @property
    def residual_last_layer(self) -> nn.Module:
        return self.residual[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.residual(x) + self.shortcut(x)


# --- network ---------------------------------------------------------------------------------------------


class PyramidNet(nn.Module):
    """Stem conv+BN, three stages (stride 1, 2, 2) of pyramidal units, BN-ReLU, global average pool, FC.

    `stage_widths[i]` lists the `planes` of every unit of stage i.
    """

    def __init__(
        self,
        stage_widths: Sequence[Sequence[int]],
        kernel_sizes: Sequence[int] = (3, 3),
        expansion: int = 1,
        stem_width: int = 16,
        num_classes: int = 10,
        in_channels: int = 3,
        norm_layer: LayerFactory = nn.BatchNorm2d,
        act_layer: LayerFactory = nn.ReLU,
    ) -> None:
        super().__init__()
        self.stem = ConvNormAct(in_channels, stem_width, 3, norm_layer=norm_layer, act_layer=None)
        stages, channels = [], stem_width
        for i, planes_list in enumerate(stage_widths):
            units = []
            for j, planes in enumerate(planes_list):
                stride = 2 if i > 0 and j == 0 else 1
                unit = PyramidUnit(channels, planes, stride, kernel_sizes, expansion, norm_layer, act_layer)
                units.append(unit)
                channels = unit.out_channels
            stages.append(nn.Sequential(*units))
        self.stages = nn.Sequential(*stages)
        self.final = nn.Sequential(norm_layer(channels), make_act(act_layer))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.final(self.stages(self.stem(x)))
        return self.fc(self.pool(x).flatten(1))


# --- private factory -------------------------------------------------------------------------------------

# unit kind -> (kernel sizes, expansion, layers per unit)
_UNITS: dict[str, tuple[tuple[int, ...], int, int]] = {
    "basic": ((3, 3), 1, 2),
    "bottleneck": ((1, 3, 1), 4, 3),
}


def _pyramidnet(depth: int, alpha: float, unit: str = "basic", widening: Widening = "additive", **kwargs) -> PyramidNet:
    """PyramidNet-depth with widening alpha: depth = 3 * (layers per unit) * n + 2, n units per stage."""
    kernel_sizes, expansion, per_unit = _UNITS[unit]
    if (depth - 2) % (3 * per_unit):
        raise ValueError(f"{unit} PyramidNet depth must be {3 * per_unit}n+2, not {depth}")
    n = (depth - 2) // (3 * per_unit)
    widths = pyramid_widths(3 * n, alpha, widening=widening)
    stage_widths = [widths[i * n : (i + 1) * n] for i in range(3)]
    return PyramidNet(stage_widths, kernel_sizes, expansion, **kwargs)


# --- paper -----------------------------------------------------------------------------------------------

PAPER = Paper(
    title="Deep Pyramidal Residual Networks",
    authors="Han, Kim, Kim",
    year=2017,
    url="https://arxiv.org/abs/1610.02915",
)


def _spec(params: int, readme_millions: float) -> dict:
    source = f"computed from dyhan0920/PyramidNet-PyTorch PyramidNet.py (README: {readme_millions}M)"
    return dict(family="PyramidNet", paper=PAPER, reference=Reference(params=params, source=source), **CIFAR_SPEC)


# --- public builders -------------------------------------------------------------------------------------


@register_model(**_spec(1_772_706, 1.7))
def pyramidnet110_a48(**kwargs) -> PyramidNet:
    return _pyramidnet(110, 48, "basic", **kwargs)


@register_model(**_spec(3_904_446, 3.8))
def pyramidnet110_a84(**kwargs) -> PyramidNet:
    return _pyramidnet(110, 84, "basic", **kwargs)


@register_model(**_spec(28_485_477, 28.3))
def pyramidnet110_a270(**kwargs) -> PyramidNet:
    return _pyramidnet(110, 270, "basic", **kwargs)


@register_model(**_spec(27_216_021, 27.0))
def pyramidnet164_bottleneck_a270(**kwargs) -> PyramidNet:
    return _pyramidnet(164, 270, "bottleneck", **kwargs)
