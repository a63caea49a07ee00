"""Wide Residual Networks for CIFAR (Zagoruyko & Komodakis 2016): WRN-16-8, WRN-28-10, WRN-40-4.

After the official PyTorch code (szagoruyko/wide-residual-networks `pytorch/resnet.py`): WRN-d-k has depth
d = 6n+4, a 3x3 stem conv of 16 maps, three groups of n pre-activation B(3,3) units at widths 16k, 32k, 64k
(stride 1, 2, 2 on each group's first conv), a final BN-ReLU, an 8x8 average pool and an FC layer. Where the
width changes, the shortcut is a 1x1 projection of the pre-activated input. All convolutions are bias-free;
the FC has a bias. Dropout (the paper's WRN-28-10-dropout uses 0.3) sits between the two convs, after the
second BN-ReLU; it is off by default and does nothing in the exported (eval-mode) graph.

The unit and the network are the pre-activation ResNet's (export/zoo/resnet_cifar.py); a WRN is data: a
depth, a widening factor and a dropout rate. The ImageNet WRN-50-2 is `wide_resnet50_2` in resnet.py.
"""

from __future__ import annotations

import functools

from export.zoo.registry import register_model
from export.zoo.resnet import WRN_PAPER
from export.zoo.resnet_cifar import CIFAR_SPEC, CifarResNet, PreActBlock
from service.manifest import Reference

# --- private factory -------------------------------------------------------------------------------------


def _wide_resnet_cifar(depth: int, widen_factor: int, drop_rate: float = 0.0, **kwargs) -> CifarResNet:
    """WRN-depth-widen_factor: (depth-4)/6 basic pre-activation units per group at 16k/32k/64k."""
    if (depth - 4) % 6:
        raise ValueError(f"WRN depth must be 6n+4, not {depth}")
    n = (depth - 4) // 6
    block = functools.partial(PreActBlock, kernel_sizes=(3, 3), drop_rate=drop_rate)
    widths = [16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
    return CifarResNet(block, [n] * 3, widths, preact=True, stem_width=16, **kwargs)


# --- spec ------------------------------------------------------------------------------------------------


def _wrn(params: int, paper_millions: float) -> dict:
    source = f"computed from szagoruyko/wide-residual-networks pytorch/resnet.py (paper: {paper_millions}M)"
    return dict(family="Wide ResNet", paper=WRN_PAPER, reference=Reference(params=params, source=source), **CIFAR_SPEC)


# --- public builders -------------------------------------------------------------------------------------


@register_model(**_wrn(10_961_370, 11.0))
def wrn_16_8(**kwargs) -> CifarResNet:
    return _wide_resnet_cifar(16, 8, **kwargs)


@register_model(**_wrn(36_479_194, 36.5))
def wrn_28_10(**kwargs) -> CifarResNet:
    return _wide_resnet_cifar(28, 10, **kwargs)


@register_model(**_wrn(8_949_210, 8.9))
def wrn_40_4(**kwargs) -> CifarResNet:
    return _wide_resnet_cifar(40, 4, **kwargs)
