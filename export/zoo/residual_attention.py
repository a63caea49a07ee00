"""Residual Attention Network (Wang et al. 2017): Attention-56 and Attention-92 for ImageNet, 224x224.

Built from the official Caffe deploy prototxts (fwang91/residual-attention-network,
`imagenet_model/Attention-56-deploy.prototxt`, `model/Attention-92-deploy.prototxt`):

* Pre-activation bottleneck units (BN-ReLU-1x1, BN-ReLU-3x3, BN-ReLU-1x1, width out/4). A unit that changes
  shape projects its shortcut with a bias-free 1x1 conv of the pre-activated input; stride sits on the 3x3.
* Stem: 7x7/2 conv-BN-ReLU, 3x3/2 max-pool (Caffe's ceil mode, no padding). One unit to 256 channels, then
  stages of attention modules at 256/512/1024 (1-1-1 modules for 56, 1-2-3 for 92), each stage after the
  first opened by a stride-2 unit; three units at 2048 (the first with stride 2), BN-ReLU, global average
  pool, FC with bias.
* Attention module, p = 1, t = 2, r = 1: one unit, then a trunk of two units and, from the first unit's
  output, a soft-mask branch; (1 + M) * T; one more unit. The mask goes down with 3x3/2 max-pools (ceil
  mode), one unit per level and two at the lowest, and back up with bilinear interpolation (Caffe `Interp`:
  align_corners) to the exact size of the level above; each level but the lowest adds a skip unit of its
  down-path output to the upsampled map, followed by one unit. Then BN-ReLU-1x1-BN-ReLU-1x1-sigmoid.
  Levels per module: 3 in stage 1, 2 in stage 2, 1 in stage 3 (56: 6 Interp layers, 92: 10).

Parameters: 31,810,728 (56; paper 31.9 M) and 52,466,344 (92; the paper says 51.3 M, 2.2 % less). Both
prototxts, regenerated from this structure, come out at exactly the official files' lengths (83,865 and
138,699 characters) and hold exactly these counts.

Deviation: one stored version of `model/Attention-92-deploy.prototxt` ends its masks with TanH; the other
version, the Attention-56 prototxt and the paper use a sigmoid, as here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from export.zoo.layers import ConvNormAct, NormActConv, damp_residual_branches, he_init
from export.zoo.layers.conv_norm_act import LayerFactory
from export.zoo.registry import register_model
from export.zoo.resnet_cifar import PreActBlock
from service.manifest import Paper, Reference

# --------------------------------------------------------------------------------------------- blocks


def preact_bottleneck(
    in_channels: int,
    out_channels: int,
    stride: int = 1,
    norm_layer: LayerFactory = nn.BatchNorm2d,
    act_layer: LayerFactory = nn.ReLU,
) -> PreActBlock:
    """Pre-activation bottleneck (He et al. 2016, Identity Mappings): x + 1x1(3x3(1x1(BN-ReLU(x)))), the
    stride on the 3x3 as in the official prototxts. The shortcut is the identity, or a 1x1 conv of the
    pre-activated input when the shape changes; the output is not activated (the next unit brings its own)."""
    return PreActBlock(
        in_channels, out_channels, stride, kernel_sizes=(1, 3, 1), bottleneck_ratio=0.25, stride_at=1,
        norm_layer=norm_layer, act_layer=act_layer,
    )  # fmt: skip


def _upsample_to(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Bilinear resize to `like`'s height and width, corners aligned (Caffe's `Interp` layer)."""
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=True)


class SoftMaskBranch(nn.Module):
    """Bottom-up max-pools and units, top-down bilinear upsampling with skip units, then the mask head."""

    def __init__(self, channels: int, levels: int, unit: Callable[..., nn.Module] = preact_bottleneck) -> None:
        super().__init__()
        if levels < 1:
            raise ValueError(f"a soft mask needs at least one level, not {levels}")
        self.pool = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.down = nn.ModuleList(unit(channels, channels) for _ in range(levels))
        self.bottom = unit(channels, channels)  # the second unit at the lowest resolution
        # skip[i] and up[i] belong to level i + 1 (level 1 is the first pooled one).
        self.skip = nn.ModuleList(unit(channels, channels) for _ in range(levels - 1))
        self.up = nn.ModuleList(unit(channels, channels) for _ in range(levels - 1))
        self.head = nn.Sequential(
            NormActConv(channels, channels, 1),
            NormActConv(channels, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor, trunk: torch.Tensor) -> torch.Tensor:
        skips: list[torch.Tensor] = []
        out = x
        for level, down in enumerate(self.down):
            out = down(self.pool(out))
            if level < len(self.skip):
                skips.append(out)
        out = self.bottom(out)
        for level in reversed(range(len(self.skip))):
            below = skips[level]
            out = self.up[level](self.skip[level](below) + _upsample_to(out, below))
        return self.head(_upsample_to(out, trunk))


class AttentionModule(nn.Module):
    """p = 1 unit, then trunk T (t = 2 units) and soft mask M from the same input, (1 + M) * T, p = 1 unit."""

    def __init__(self, channels: int, levels: int, unit: Callable[..., nn.Module] = preact_bottleneck) -> None:
        super().__init__()
        self.first = unit(channels, channels)
        self.trunk = nn.Sequential(unit(channels, channels), unit(channels, channels))
        self.mask = SoftMaskBranch(channels, levels, unit)
        self.last = unit(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first(x)
        trunk = self.trunk(x)
        return self.last((1 + self.mask(x, trunk)) * trunk)


# --------------------------------------------------------------------------------------------- network


class ResidualAttentionNet(nn.Module):
    """Stem, then per stage (256/512/1024 channels) one unit (stride 2 after the first stage) and
    `modules_per_stage[i]` attention modules with `levels[i]` mask levels, then three 2048 units."""

    def __init__(
        self,
        modules_per_stage: Sequence[int],
        levels: Sequence[int] = (3, 2, 1),
        num_classes: int = 1000,
        in_channels: int = 3,
        unit: Callable[..., nn.Module] = preact_bottleneck,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(ConvNormAct(in_channels, 64, 7, 2), nn.MaxPool2d(3, 2, ceil_mode=True))
        stages: list[nn.Module] = []
        channels = 64
        for index, (out_channels, count, depth) in enumerate(
            zip((256, 512, 1024), modules_per_stage, levels, strict=True)
        ):
            layers: list[nn.Module] = [unit(channels, out_channels, stride=1 if index == 0 else 2)]
            layers += [AttentionModule(out_channels, depth, unit) for _ in range(count)]
            stages.append(nn.Sequential(*layers))
            channels = out_channels
        stages.append(nn.Sequential(unit(channels, 2048, stride=2), unit(2048, 2048), unit(2048, 2048)))
        self.stages = nn.Sequential(*stages)
        self.head_act = nn.Sequential(nn.BatchNorm2d(2048), nn.ReLU(inplace=True))
        self.fc = nn.Linear(2048, num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head_act(self.stages(self.stem(x)))
        return self.fc(x.mean((2, 3)))  # global average pool (the prototxt's 7x7 average pool at 224)


def _init_weights(model: nn.Module) -> None:
    """He-normal (fan-out) convolutions and unit-scale BN, then every unit's last conv scaled by
    1/sqrt(number of units).

    Deliberate deviation, for random weights only: undamped, the pre-activation units and (1 + M) products of
    a random Attention-92 reach logits of ~6e4, too ill-conditioned for any export to match in float32.
    Damped residual branches (the Fixup idea) keep the random model's outputs O(1).
    """
    he_init(model)
    damp_residual_branches([m.residual_last_layer for m in model.modules() if isinstance(m, PreActBlock)])


# --------------------------------------------------------------------------------------------- factory


def _residual_attention(modules_per_stage: Sequence[int], **kwargs) -> ResidualAttentionNet:
    return ResidualAttentionNet(modules_per_stage, **kwargs)


# --------------------------------------------------------------------------------------------- papers

PAPER = Paper(
    title="Residual Attention Network for Image Classification",
    authors="Wang, Jiang, Qian, Yang, Li, Zhang, Wang, Tang",
    year=2017,
    url="https://arxiv.org/abs/1704.06904",
)


ATTENTION56_REFERENCE = Reference(params=31_900_000, source="paper, ImageNet table: Attention-56, 31.9 M")
# The paper's 51.3 M is 2.2 % below what the official prototxt defines; the build follows the prototxt.
ATTENTION92_REFERENCE = Reference(
    params=52_466_344,
    source="computed from the official deploy prototxt (model/Attention-92-deploy.prototxt); paper: 51.3 M",
)


def _ran(reference: Reference) -> dict:
    return dict(family="Residual Attention Network", paper=PAPER, reference=reference)


# --------------------------------------------------------------------------------------------- builders


@register_model(**_ran(ATTENTION56_REFERENCE))
def residual_attention56(**kwargs) -> ResidualAttentionNet:
    """Attention-56: one attention module per stage (prototxt AttentionA_1, B_1, C_1)."""
    return _residual_attention((1, 1, 1), **kwargs)


@register_model(**_ran(ATTENTION92_REFERENCE))
def residual_attention92(**kwargs) -> ResidualAttentionNet:
    """Attention-92: 1-2-3 attention modules (prototxt AttentionA_1; B_1-2; C_1-3)."""
    return _residual_attention((1, 2, 3), **kwargs)
