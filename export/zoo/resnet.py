"""ResNet (He et al. 2016) for ImageNet, from torchvision (V1.5: stride on the 3x3), and its widened
and aggregated relatives built on the same classes: Wide ResNet-50-2, ResNeXt."""

from __future__ import annotations

from torchvision import models as tvm

from export.zoo.registry import register_model
from service.manifest import Paper, Reference

RESNET_PAPER = Paper(
    title="Deep Residual Learning for Image Recognition",
    authors="He, Zhang, Ren, Sun",
    year=2016,
    url="https://arxiv.org/abs/1512.03385",
)


def _tv(params: int, weights: str) -> dict:
    return dict(
        family="ResNet",
        paper=RESNET_PAPER,
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
