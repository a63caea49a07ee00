"""ResNet (He et al. 2016) for ImageNet, from torchvision (V1.5: stride on the 3x3), and its widened
and aggregated relatives built on the same classes: Wide ResNet-50-2, ResNeXt.

Wide ResNet-50-2 (Zagoruyko & Komodakis 2016, ImageNet section) doubles only the bottleneck's inner width
(the 3x3), e.g. 2048-1024-2048 in the last block; it is not the pre-activation CIFAR WRN (wrn.py). ResNeXt
(Xie et al. 2017) replaces the bottleneck's 3x3 by a grouped one: 32 groups of 4 channels in the first stage
("32x4d", inner width 128), doubling per stage; the stride sits on the grouped 3x3. torchvision has no
ResNeXt-101 32x4d builder, so it is torchvision's ResNet class with those settings; its state dict is key
for key and shape for shape timm's `resnext101_32x4d`, whose weights it therefore loads.
CIFAR ResNets live in resnet_cifar.py.
"""

from __future__ import annotations

from torchvision import models as tvm
from torchvision.models.resnet import Bottleneck

from export.zoo.registry import register_model
from service.manifest import Paper, Reference

RESNET_PAPER = Paper(
    title="Deep Residual Learning for Image Recognition",
    authors="He, Zhang, Ren, Sun",
    year=2016,
    url="https://arxiv.org/abs/1512.03385",
)
WRN_PAPER = Paper(
    title="Wide Residual Networks",
    authors="Zagoruyko, Komodakis",
    year=2016,
    url="https://arxiv.org/abs/1605.07146",
)
RESNEXT_PAPER = Paper(
    title="Aggregated Residual Transformations for Deep Neural Networks",
    authors="Xie, Girshick, Dollár, Tu, He",
    year=2017,
    url="https://arxiv.org/abs/1611.05431",
)


def _tv(params: int, weights: str, family: str = "ResNet", paper: Paper = RESNET_PAPER) -> dict:
    return dict(
        family=family,
        paper=paper,
        reference=Reference(params=params, source=f"torchvision {weights}", exact=True),
        pretrained={"torchvision": weights},
    )


@register_model(**_tv(11_689_512, "ResNet18_Weights.IMAGENET1K_V1"))
def resnet18(**kwargs) -> tvm.ResNet:
    return tvm.resnet18(**kwargs)


@register_model(**_tv(21_797_672, "ResNet34_Weights.IMAGENET1K_V1"))
def resnet34(**kwargs) -> tvm.ResNet:
    return tvm.resnet34(**kwargs)


@register_model(**_tv(25_557_032, "ResNet50_Weights.IMAGENET1K_V2"))
def resnet50(**kwargs) -> tvm.ResNet:
    return tvm.resnet50(**kwargs)


@register_model(**_tv(44_549_160, "ResNet101_Weights.IMAGENET1K_V2"))
def resnet101(**kwargs) -> tvm.ResNet:
    return tvm.resnet101(**kwargs)


@register_model(**_tv(60_192_808, "ResNet152_Weights.IMAGENET1K_V2"))
def resnet152(**kwargs) -> tvm.ResNet:
    return tvm.resnet152(**kwargs)


@register_model(**_tv(68_883_240, "Wide_ResNet50_2_Weights.IMAGENET1K_V2", "Wide ResNet", WRN_PAPER))
def wide_resnet50_2(**kwargs) -> tvm.ResNet:
    return tvm.wide_resnet50_2(**kwargs)


@register_model(**_tv(25_028_904, "ResNeXt50_32X4D_Weights.IMAGENET1K_V2", "ResNeXt", RESNEXT_PAPER))
def resnext50_32x4d(**kwargs) -> tvm.ResNet:
    return tvm.resnext50_32x4d(**kwargs)


@register_model(
    family="ResNeXt",
    paper=RESNEXT_PAPER,
    reference=Reference(params=44_180_000, source="timm resnext101_32x4d (44.18M; paper Table 3: 44.2M)"),
    pretrained={"timm": "resnext101_32x4d.gluon_in1k"},
)
def resnext101_32x4d(**kwargs) -> tvm.ResNet:
    return tvm.ResNet(Bottleneck, [3, 4, 23, 3], groups=32, width_per_group=4, **kwargs)
