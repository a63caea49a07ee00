"""Depthwise separable convolution: a depthwise k x k conv followed by a pointwise 1 x 1 conv.

MobileNet v1 normalises and activates after both halves (`inner_norm=True`, `act_layer=nn.ReLU`);
Xception has nothing between the halves (`inner_norm=False`) and normalises after the pointwise conv.
"""

from __future__ import annotations

from torch import nn

from export.zoo.layers.conv_norm_act import ConvNormAct, LayerFactory


class SeparableConv2d(nn.Sequential):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        dilation: int = 1,
        inner_norm: bool = True,
        norm_layer: LayerFactory | None = nn.BatchNorm2d,
        act_layer: LayerFactory | None = nn.ReLU,
    ) -> None:
        super().__init__()
        self.depthwise = ConvNormAct(
            in_channels,
            in_channels,
            kernel_size,
            stride,
            groups=in_channels,
            dilation=dilation,
            norm_layer=norm_layer if inner_norm else None,
            act_layer=act_layer if inner_norm else None,
            bias=False,
        )
        self.pointwise = ConvNormAct(in_channels, out_channels, 1, norm_layer=norm_layer, act_layer=act_layer)
        self.out_channels = out_channels
