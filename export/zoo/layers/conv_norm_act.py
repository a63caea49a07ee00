"""Convolution + normalisation + activation, in both orders (post-activation and pre-activation)."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

LayerFactory = Callable[..., nn.Module]


class ConvNormAct(nn.Sequential):
    """conv -> norm -> act (the original ResNet / Inception / MobileNet unit).

    `norm_layer=None` or `act_layer=None` drop that part; the conv then gets a bias unless told otherwise.
    Padding defaults to "same" for odd kernels (per axis, so (1, 7) kernels work too).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int] = 3,
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | None = None,
        groups: int = 1,
        dilation: int = 1,
        norm_layer: LayerFactory | None = nn.BatchNorm2d,
        act_layer: LayerFactory | None = nn.ReLU,
        bias: bool | None = None,
    ) -> None:
        ks = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
        if padding is None:
            padding = tuple((k - 1) // 2 * dilation for k in ks)
        layers: list[nn.Module] = [
            nn.Conv2d(
                in_channels,
                out_channels,
                ks,
                stride,
                padding,
                dilation=dilation,
                groups=groups,
                bias=norm_layer is None if bias is None else bias,
            )
        ]
        if norm_layer is not None:
            layers.append(norm_layer(out_channels))
        if act_layer is not None:
            layers.append(make_act(act_layer))
        super().__init__(*layers)
        self.out_channels = out_channels


class NormActConv(nn.Sequential):
    """norm -> act -> conv (the pre-activation unit of Identity Mappings, WRN, PyramidNet)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | None = None,
        groups: int = 1,
        norm_layer: LayerFactory = nn.BatchNorm2d,
        act_layer: LayerFactory | None = nn.ReLU,
        bias: bool = False,
    ) -> None:
        layers: list[nn.Module] = [norm_layer(in_channels)]
        if act_layer is not None:
            layers.append(make_act(act_layer))
        pad = (kernel_size - 1) // 2 if padding is None else padding
        layers.append(nn.Conv2d(in_channels, out_channels, kernel_size, stride, pad, groups=groups, bias=bias))
        super().__init__(*layers)
        self.out_channels = out_channels


def make_act(act_layer: LayerFactory) -> nn.Module:
    """An activation module, in place where the class supports it."""
    try:
        return act_layer(inplace=True)
    except TypeError:
        return act_layer()
