"""Xception (Chollet 2017), from timm's `legacy_xception`: the port of the author's Keras model and weights.

Depthwise separable convolutions all the way: an entry flow (two plain 3x3 convs, then three separable
blocks at 128-256-728 with 1x1 stride-2 conv+BN shortcuts), a middle flow of eight residual blocks of three
ReLU-separable conv-BN at 728, and an exit flow (728->1024 block, separable 1536 and 2048), global average
pooling and one FC layer. No activation between the depthwise and the pointwise halves, no auxiliary head.
299x299 input. timm's `xception41/65/71` are DeepLab's "aligned" variants, not this network.
"""

from __future__ import annotations

import timm
from torch import nn

from export.zoo.registry import imagenet_preprocessing, register_model
from service.manifest import Paper, Reference

PAPER = Paper(
    title="Xception: Deep Learning with Depthwise Separable Convolutions",
    authors="Chollet",
    year=2017,
    url="https://arxiv.org/abs/1610.02357",
)
# The weights' own evaluation transform: mean = std = 0.5, crop_pct 0.8975 (299 / 333), bicubic.
PREPROCESSING = imagenet_preprocessing(
    crop=299, resize=333, mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5], interpolation="bicubic"
)


@register_model(
    family="Xception",
    paper=PAPER,
    reference=Reference(
        params=22_855_952, source="paper Table 3 (22,855,952), equal to timm legacy_xception", exact=True
    ),
    input_size=(3, 299, 299),
    preprocessing=PREPROCESSING,
    pretrained={"timm": "legacy_xception.tf_in1k"},
)
def xception(**kwargs) -> nn.Module:
    return timm.create_model("legacy_xception", pretrained=False, **kwargs)
