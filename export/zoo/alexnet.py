"""AlexNet (Krizhevsky, Sutskever, Hinton 2012) and ZFNet (Zeiler & Fergus 2013)."""

from __future__ import annotations

from torchvision import models as tvm

from export.zoo.registry import register_model
from service.manifest import Paper, Reference

ALEXNET_PAPER = Paper(
    title="ImageNet Classification with Deep Convolutional Neural Networks",
    authors="Krizhevsky, Sutskever, Hinton",
    year=2012,
    url="https://papers.nips.cc/paper/4824",
)


# torchvision's AlexNet is the single-GPU "one weird trick" variant (64-192-384-256-256, no LRN, no
# groups): the reference implementation with published ImageNet weights.
@register_model(
    family="AlexNet",
    paper=ALEXNET_PAPER,
    reference=Reference(params=61_100_840, source="torchvision AlexNet_Weights.IMAGENET1K_V1", exact=True),
    pretrained={"torchvision": "AlexNet_Weights.IMAGENET1K_V1"},
)
def alexnet(**kwargs) -> tvm.AlexNet:
    return tvm.alexnet(**kwargs)
