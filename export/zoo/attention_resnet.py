"""ResNets with attention in the residual branch: SE (Hu et al. 2018), CBAM (Woo et al. 2018), scSE
(Roy et al. 2018) and CMPE-SE (Hu et al. 2018, competitive inner-imaging SE).

One bottleneck, one network. The attention layer is data: a factory from `export.zoo.layers.get_attn`
passed as `attn_layer=`, applied to the residual branch before the addition (every paper puts it there).
Layers whose `uses_shortcut` is True (CMPE-SE) also see the shortcut, after its projection when there is
one. `stride_in_1x1=True` puts a downsampling block's stride on its first 1x1 convolution (ResNet v1, as
in the SE-ResNet Caffe prototxts); False puts it on the 3x3 ("V1.5", torchvision, CBAM's official code).

SE-ResNet-50/101/152 come from timm's `legacy_seresnet*`, the port of the official Caffe models and
weights: the same network as `AttentionResNet(..., attn_layer=get_attn("se"), stride_in_1x1=True)` with
Caffe's ceil-mode stem pooling (same parameter count and layer shapes, and identical logits once timm's
weights are copied in).

Deliberate deviation: the CMPE-SE paper and its official code (scut-aitcm) put the gates on
pre-activation ResNet-164 and WRN-28-10 blocks for CIFAR, combined as `out * s + shortcut` with no ReLU
after the sum. The zoo puts the same gates (all four of the paper's variants) on this post-activation
ImageNet ResNet-50 ("V1.5"), so that they compare with SE, CBAM and scSE on one backbone at 224x224; the
reference parameter counts are therefore computed, not the paper's.
"""

from __future__ import annotations

from collections.abc import Sequence

import timm
import torch
from timm.models.senet import SEResNetBottleneck
from torch import nn

from export.zoo.layers import ConvNormAct, damp_residual_branches, get_attn, he_init
from export.zoo.layers.conv_norm_act import LayerFactory
from export.zoo.registry import imagenet_preprocessing, register_model
from service.manifest import Paper, Reference

# --------------------------------------------------------------------------------------------- blocks


class Bottleneck(nn.Module):
    """1x1 -> 3x3 -> 1x1 (x4 expansion) with BN-ReLU, an optional attention layer on the residual branch,
    then `relu(attn(branch) + shortcut)`.

    `downsample` projects the shortcut (1x1 conv + BN) when the shape changes. The attention layer is built
    for the block's output width: `attn_layer(planes * 4)`.
    """

    expansion = 4

    def __init__(
        self,
        in_channels: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        attn_layer: LayerFactory | None = None,
        stride_in_1x1: bool = False,
        norm_layer: LayerFactory = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        out_channels = planes * self.expansion
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = ConvNormAct(in_channels, planes, 1, stride_1x1, norm_layer=norm_layer)
        self.conv2 = ConvNormAct(planes, planes, 3, stride_3x3, norm_layer=norm_layer)
        self.conv3 = ConvNormAct(planes, out_channels, 1, norm_layer=norm_layer, act_layer=None)
        self.attn = attn_layer(out_channels) if attn_layer is not None else nn.Identity()
        self.attn_uses_shortcut = bool(getattr(self.attn, "uses_shortcut", False))
        self.downsample = downsample
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.conv3(self.conv2(self.conv1(x)))
        out = self.attn(out, shortcut) if self.attn_uses_shortcut else self.attn(out)
        return self.act(out + shortcut)


# --------------------------------------------------------------------------------------------- network


class AttentionResNet(nn.Module):
    """ImageNet ResNet: 7x7/2 conv + 3x3/2 max-pool stem, four stages (64-128-256-512 x4), global average
    pooling, FC. Every block gets `attn_layer`; stages 2-4 downsample in their first block.
    """

    def __init__(
        self,
        layers: Sequence[int],
        attn_layer: LayerFactory | None = None,
        stride_in_1x1: bool = False,
        block: type[Bottleneck] = Bottleneck,
        num_classes: int = 1000,
        in_channels: int = 3,
        norm_layer: LayerFactory = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            ConvNormAct(in_channels, 64, 7, 2, norm_layer=norm_layer),
            nn.MaxPool2d(3, 2, padding=1),
        )
        stages: list[nn.Module] = []
        channels = 64
        for index, (planes, depth) in enumerate(zip((64, 128, 256, 512), layers, strict=True)):
            stride = 1 if index == 0 else 2
            out_channels = planes * block.expansion
            blocks = []
            for i in range(depth):
                downsample = None
                if i == 0 and (stride != 1 or channels != out_channels):
                    downsample = ConvNormAct(channels, out_channels, 1, stride, norm_layer=norm_layer, act_layer=None)
                blocks.append(
                    block(
                        channels,
                        planes,
                        stride if i == 0 else 1,
                        downsample,
                        attn_layer=attn_layer,
                        stride_in_1x1=stride_in_1x1,
                        norm_layer=norm_layer,
                    )
                )
                channels = out_channels
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(channels, num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        return self.fc(x.mean((2, 3)))  # global average pool


def _init_weights(model: nn.Module) -> None:
    """He-normal (fan-out) convolutions and unit-scale BN (torchvision's ResNet initialisation), then every
    residual branch's last BN weight set to 1/sqrt(number of blocks).

    Deliberate deviation, for random weights only (published or trained weights replace it): with BN's
    initial running statistics (0/1) every branch adds as much variance as its input carries, and a random
    SE-ResNet-152 reaches logits of ~1e4 whose float32 and float64 evaluations differ by ~4e3, so no export
    could match it. Damped branches keep the random model's outputs O(1) (the Fixup idea).
    """
    he_init(model)
    damp_residual_branches([m.conv3[-1] for m in model.modules() if isinstance(m, Bottleneck)])


# --------------------------------------------------------------------------------------------- factory

RESNET50_LAYERS = (3, 4, 6, 3)


def _resnet50(attn_layer: LayerFactory, **kwargs) -> AttentionResNet:
    return AttentionResNet(RESNET50_LAYERS, attn_layer=attn_layer, **kwargs)


def _legacy_seresnet(name: str, **kwargs) -> nn.Module:
    """timm's Caffe-faithful SE-ResNet, its random init damped as ours (see `_init_weights`)."""
    model = timm.create_model(name, pretrained=False, **kwargs)
    damp_residual_branches([m.bn3 for m in model.modules() if isinstance(m, SEResNetBottleneck)])
    return model


def _cmpe_se(mode: str) -> LayerFactory:
    """CMPE-SE with the official pair-view filter count: bottleneck width / 16 = C / 64 (`channels /
    cmpe_se_ratio` in `cmpese_resnetv2_block.py`, where `channels` is the bottleneck width), the layer's default."""
    return get_attn("cmpe_se", mode=mode)


# --------------------------------------------------------------------------------------------- papers

SE_PAPER = Paper(
    title="Squeeze-and-Excitation Networks",
    authors="Hu, Shen, Sun",
    year=2018,
    url="https://arxiv.org/abs/1709.01507",
)
CBAM_PAPER = Paper(
    title="CBAM: Convolutional Block Attention Module",
    authors="Woo, Park, Lee, Kweon",
    year=2018,
    url="https://arxiv.org/abs/1807.06521",
)
SCSE_PAPER = Paper(
    title="Concurrent Spatial and Channel 'Squeeze & Excitation' in Fully Convolutional Networks",
    authors="Roy, Navab, Wachinger",
    year=2018,
    url="https://arxiv.org/abs/1803.02579",
)
CMPE_SE_PAPER = Paper(
    title="Competitive Inner-Imaging Squeeze and Excitation for Residual Network",
    authors="Hu, Wen, Luo, Dai, Ma, Yu",
    year=2018,
    url="https://arxiv.org/abs/1807.08920",
)

_COMPUTED = "computed from the layer definition: torchvision ResNet-50 (25,557,032)"


def _se(params: int, timm_name: str) -> dict:
    return dict(
        family="SENet",
        paper=SE_PAPER,
        reference=Reference(params=params, source=f"timm {timm_name} ({params / 1e6:.2f} M)", exact=False),
        preprocessing=imagenet_preprocessing(crop=224, interpolation="bilinear"),
        pretrained={"timm": f"{timm_name}.in1k"},
    )


def _cmpe(params: int, mode: str) -> dict:
    return dict(
        family="CMPE-SE",
        paper=CMPE_SE_PAPER,
        reference=Reference(
            params=params,
            source=f"{_COMPUTED} + CMPE-SE ({mode}) in each bottleneck (the paper's gates on ResNet-50, not its "
            "CIFAR backbones)",
        ),
    )


# --------------------------------------------------------------------------------------------- builders


@register_model(**_se(28_090_000, "legacy_seresnet50"))
def se_resnet50(**kwargs) -> nn.Module:
    """SE-ResNet-50: r = 16, SE (with biases) on the residual branch, stride on the first 1x1 (Caffe)."""
    return _legacy_seresnet("legacy_seresnet50", **kwargs)


@register_model(**_se(49_330_000, "legacy_seresnet101"))
def se_resnet101(**kwargs) -> nn.Module:
    """SE-ResNet-101, as SE-ResNet-50 with (3, 4, 23, 3) blocks."""
    return _legacy_seresnet("legacy_seresnet101", **kwargs)


@register_model(**_se(66_820_000, "legacy_seresnet152"))
def se_resnet152(**kwargs) -> nn.Module:
    """SE-ResNet-152, as SE-ResNet-50 with (3, 8, 36, 3) blocks."""
    return _legacy_seresnet("legacy_seresnet152", **kwargs)


@register_model(
    family="CBAM",
    paper=CBAM_PAPER,
    reference=Reference(params=28_090_000, source="paper, ImageNet table: ResNet50 + CBAM, 28.09 M"),
)
def cbam_resnet50(**kwargs) -> AttentionResNet:
    """ResNet-50 (V1.5) + CBAM: channel gate (shared MLP r = 16 with biases over average- and max-pooled
    descriptors), then spatial gate ([max, mean] -> 7x7 conv -> BN -> sigmoid), before the addition."""
    return _resnet50(get_attn("cbam"), **kwargs)


@register_model(
    family="scSE",
    paper=SCSE_PAPER,
    reference=Reference(params=45_714_360, source=f"{_COMPUTED} + scSE (r = 2) in each bottleneck"),
)
def scse_resnet50(**kwargs) -> AttentionResNet:
    """ResNet-50 (V1.5) + scSE before the addition. scSE is a segmentation block: this classifier is ours.
    cSE with the official reduction 2 (adds 20.2 M parameters at ResNet-50 widths), element-wise max merge."""
    return _resnet50(get_attn("scse", merge="max"), **kwargs)


@register_model(**_cmpe(28_991_244, "3x3 inner imaging, fold 16"))
def cmpe_se_resnet50(**kwargs) -> AttentionResNet:
    """ResNet-50 (V1.5) + CMPE-SE, the paper's namesake variant: the residual and shortcut descriptors are
    folded into a (2C/16, 16) inner image, 3x3 valid conv + BN, mean over filters, FC C/16 -> FC C."""
    return _resnet50(_cmpe_se("3x3"), **kwargs)


@register_model(**_cmpe(30_586_920, "double FC"))
def cmpe_se_resnet50_fc(**kwargs) -> AttentionResNet:
    """ResNet-50 (V1.5) + CMPE-SE with double FC squeezes: each descriptor -> C/16, concatenated -> C."""
    return _resnet50(_cmpe_se("fc"), **kwargs)


@register_model(**_cmpe(28_072_920, "conv 2x1 pair-view"))
def cmpe_se_resnet50_conv2x1(**kwargs) -> AttentionResNet:
    """ResNet-50 (V1.5) + CMPE-SE, conv "2x1" pair-view: a (1, 2) kernel across each channel's pair."""
    return _resnet50(_cmpe_se("conv2x1"), **kwargs)


@register_model(**_cmpe(29_330_156, "conv 1x1 pair-view"))
def cmpe_se_resnet50_conv1x1(**kwargs) -> AttentionResNet:
    """ResNet-50 (V1.5) + CMPE-SE, conv 1x1 pair-view: a 1x1 conv over the (C, 2) pair map."""
    return _resnet50(_cmpe_se("conv1x1"), **kwargs)
