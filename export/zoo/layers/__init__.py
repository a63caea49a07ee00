"""Shared building blocks. Blocks receive them as constructor arguments (`norm_layer=`, `attn_layer=`)."""

from export.zoo.layers.attention import (
    CBAM,
    SCSE,
    ChannelGate,
    CmpeSE,
    SpatialGate,
    SqueezeExcite,
    create_attn,
    get_attn,
)
from export.zoo.layers.conv_norm_act import ConvNormAct, LayerFactory, NormActConv, make_act
from export.zoo.layers.init import damp_residual_branches, he_init, init_weights
from export.zoo.layers.separable import SeparableConv2d
from export.zoo.layers.shuffle import ChannelShuffle, channel_shuffle

__all__ = [
    "CBAM",
    "SCSE",
    "ChannelGate",
    "ChannelShuffle",
    "CmpeSE",
    "ConvNormAct",
    "LayerFactory",
    "NormActConv",
    "SeparableConv2d",
    "SpatialGate",
    "SqueezeExcite",
    "channel_shuffle",
    "create_attn",
    "damp_residual_branches",
    "get_attn",
    "he_init",
    "init_weights",
    "make_act",
]
