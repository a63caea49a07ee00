"""VGG (Simonyan & Zisserman 2014), configurations D (VGG-16) and E (VGG-19), from torchvision.

Stacks of 3x3 convolutions (stride 1, padding 1) with ReLU, five 2x2 max-pools, then FC 4096-4096-1000 with
dropout 0.5. No LRN in D and E (the paper found it did not help). torchvision adds an AdaptiveAvgPool2d(7x7)
before the classifier: at the paper's 224x224 input the feature map is already 7x7, so it is an identity and
exports as one.
"""

from __future__ import annotations

from torchvision import models as tvm

from export.zoo.registry import register_model
from service.manifest import Paper, Reference

PAPER = Paper(
    title="Very Deep Convolutional Networks for Large-Scale Image Recognition",
    authors="Simonyan, Zisserman",
    year=2014,
    url="https://arxiv.org/abs/1409.1556",
)


def _tv(params: int, weights: str) -> dict:
    return dict(
        family="VGG",
        paper=PAPER,
        reference=Reference(params=params, source=f"torchvision {weights}", exact=True),
        pretrained={"torchvision": weights},
    )


@register_model(**_tv(138_357_544, "VGG16_Weights.IMAGENET1K_V1"))
def vgg16(**kwargs) -> tvm.VGG:
    return tvm.vgg16(**kwargs)


@register_model(**_tv(143_667_240, "VGG19_Weights.IMAGENET1K_V1"))
def vgg19(**kwargs) -> tvm.VGG:
    return tvm.vgg19(**kwargs)
