"""Attention layers that re-weight a feature map, plugged into blocks through `attn_layer=`.

One implementation each: SE (Hu et al. 2018), CBAM (Woo et al. 2018), scSE (Roy et al. 2018) and
CMPE-SE (Hu et al. 2018, competitive squeeze-excitation over the residual and identity branches).
`create_attn("se", channels)` builds one by name, from a dict (as timm's create_attn does).
CMPE-SE needs the shortcut too: its `uses_shortcut` is True and blocks call `attn(out, shortcut)`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import nn

from export.zoo.layers.conv_norm_act import LayerFactory


def _reduced(channels: int, rd_ratio: float, divisor: int = 1) -> int:
    return max(divisor, int(channels * rd_ratio + divisor / 2) // divisor * divisor)


class SqueezeExcite(nn.Module):
    """Global average pool -> 1x1 reduce -> act -> 1x1 expand -> gate -> rescale."""

    uses_shortcut = False

    def __init__(
        self,
        channels: int,
        rd_ratio: float = 1 / 16,
        rd_channels: int | None = None,
        act_layer: LayerFactory = nn.ReLU,
        gate_layer: LayerFactory = nn.Sigmoid,
        bias: bool = True,
    ) -> None:
        super().__init__()
        rd = rd_channels or _reduced(channels, rd_ratio)
        self.fc1 = nn.Conv2d(channels, rd, 1, bias=bias)
        self.act = act_layer(inplace=True)
        self.fc2 = nn.Conv2d(rd, channels, 1, bias=bias)
        self.gate = gate_layer()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * self.gate(self.fc2(self.act(self.fc1(s))))


class ChannelGate(nn.Module):
    """CBAM channel attention: a shared MLP over the average- and max-pooled descriptors, summed."""

    def __init__(self, channels: int, rd_ratio: float = 1 / 16) -> None:
        super().__init__()
        rd = _reduced(channels, rd_ratio)
        self.mlp = nn.Sequential(nn.Linear(channels, rd), nn.ReLU(inplace=True), nn.Linear(rd, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = self.mlp(x.mean((2, 3)))
        mx = self.mlp(x.amax((2, 3)))
        return x * torch.sigmoid(avg + mx)[:, :, None, None]


class SpatialGate(nn.Module):
    """CBAM spatial attention: [max, mean] over channels -> 7x7 conv -> BN -> sigmoid."""

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(1, eps=1e-5, momentum=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.amax(1, keepdim=True), x.mean(1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.bn(self.conv(pooled)))


class CBAM(nn.Module):
    """Convolutional Block Attention Module: channel gate, then spatial gate."""

    uses_shortcut = False

    def __init__(self, channels: int, rd_ratio: float = 1 / 16, kernel_size: int = 7) -> None:
        super().__init__()
        self.channel = ChannelGate(channels, rd_ratio)
        self.spatial = SpatialGate(kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spatial(self.channel(x))


class SCSE(nn.Module):
    """Concurrent spatial and channel squeeze-excitation.

    cSE is an SE with reduction 2 (fully connected, with biases); sSE is a 1x1 conv to one map and a sigmoid.
    The official code merges the two recalibrated maps with an element-wise max (`merge="max"`); the MICCAI
    paper adds them (`merge="add"`).
    """

    uses_shortcut = False

    def __init__(self, channels: int, rd_ratio: float = 1 / 2, merge: str = "max") -> None:
        super().__init__()
        if merge not in ("max", "add"):
            raise ValueError(f"merge must be 'max' or 'add', not {merge!r}")
        rd = _reduced(channels, rd_ratio)
        self.cse = nn.Sequential(nn.Linear(channels, rd), nn.ReLU(inplace=True), nn.Linear(rd, channels))
        self.sse = nn.Conv2d(channels, 1, 1)
        self.merge = merge

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x * torch.sigmoid(self.cse(x.mean((2, 3))))[:, :, None, None]
        s = x * torch.sigmoid(self.sse(x))
        return torch.maximum(c, s) if self.merge == "max" else c + s


class CmpeSE(nn.Module):
    """Competitive squeeze-excitation: the gate for the residual branch sees both branches' descriptors.

    Modes, after the official MXNet code (scut-aitcm/Competitive-Inner-Imaging-SENet):
      "fc"       double FC: each descriptor -> 1x1 to C/r + ReLU, concatenated -> 1x1 to C -> sigmoid;
      "conv1x1"  pair-view: the two descriptors stacked as a (C, 2) map, a 1x1 conv with `filters`
                 channels (default C/64: the bottleneck width / 16 of a x4 bottleneck) + BN, mean over
                 filters, flatten (2C) -> FC C/r -> ReLU -> FC C -> sigmoid;
      "conv2x1"  pair-view with a (1, 2) kernel across the pair, giving (C, 1) -> FC C/r -> FC C;
      "3x3"      inner imaging: the (C, 2) map folded to (2C/k, k), each group of k channels giving one
                 row of residual descriptors then one row of identity descriptors; 3x3 valid conv + BN,
                 mean over filters, flatten -> FC C/r -> FC C.
    The SE fully connected layers have no biases. Output: out * gate (the block adds the shortcut).
    """

    uses_shortcut = True

    def __init__(
        self,
        channels: int,
        mode: str = "3x3",
        rd_ratio: float = 1 / 16,
        filters: int | None = None,
        fold: int = 16,
    ) -> None:
        super().__init__()
        if mode not in ("fc", "conv1x1", "conv2x1", "3x3"):
            raise ValueError(f"unknown CMPE-SE mode {mode!r}")
        self.mode = mode
        rd = _reduced(channels, rd_ratio)
        filters = filters or max(1, channels // 64)
        self.fold = fold
        if mode == "fc":
            self.squeeze_out = nn.Sequential(nn.Conv2d(channels, rd, 1, bias=False), nn.ReLU(inplace=True))
            self.squeeze_id = nn.Sequential(nn.Conv2d(channels, rd, 1, bias=False), nn.ReLU(inplace=True))
            self.excite = nn.Conv2d(2 * rd, channels, 1, bias=False)
            return
        if mode == "conv1x1":
            kernel, flat = (1, 1), 2 * channels
        elif mode == "conv2x1":
            kernel, flat = (1, 2), channels
        else:
            if (2 * channels) % fold:
                raise ValueError(f"2 x channels ({2 * channels}) must be divisible by fold ({fold})")
            kernel, flat = (3, 3), (2 * channels // fold - 2) * (fold - 2)
        self.pair_conv = nn.Sequential(nn.Conv2d(1, filters, kernel, bias=False), nn.BatchNorm2d(filters))
        self.fc = nn.Sequential(
            nn.Linear(flat, rd, bias=False), nn.ReLU(inplace=True), nn.Linear(rd, channels, bias=False)
        )

    def forward(self, x: torch.Tensor, shortcut: torch.Tensor) -> torch.Tensor:
        if self.mode == "fc":
            s_out = self.squeeze_out(x.mean((2, 3), keepdim=True))
            s_id = self.squeeze_id(shortcut.mean((2, 3), keepdim=True))
            return x * torch.sigmoid(self.excite(torch.cat([s_out, s_id], dim=1)))
        pair = torch.stack([x.mean((2, 3)), shortcut.mean((2, 3))], dim=-1)  # (N, C, 2)
        pair = pair.unsqueeze(1)  # (N, 1, C, 2)
        if self.mode == "3x3":
            n, _, c, _ = pair.shape
            # Fold re-imaging: per group of `fold` channels, a row of residual then a row of identity values.
            pair = pair.reshape(n, c // self.fold, self.fold, 2).transpose(2, 3)
            pair = pair.reshape(n, 1, 2 * c // self.fold, self.fold)
        imaged = self.pair_conv(pair).mean(1)  # mean over filters
        gate = torch.sigmoid(self.fc(imaged.flatten(1)))
        return x * gate[:, :, None, None]


_ATTN_LAYERS: dict[str, Callable[..., nn.Module]] = {
    "se": SqueezeExcite,
    "cbam": CBAM,
    "scse": SCSE,
    "cmpe_se": CmpeSE,
}


def get_attn(name: str | None, **kwargs) -> LayerFactory | None:
    """A factory `f(channels) -> module` for the named attention layer, or None for no attention."""
    if name is None:
        return None
    try:
        cls = _ATTN_LAYERS[name]
    except KeyError:
        raise ValueError(f"unknown attention layer {name!r}; valid: {sorted(_ATTN_LAYERS)}") from None
    return functools.partial(cls, **kwargs)


def create_attn(name: str | None, channels: int, **kwargs) -> nn.Module | None:
    factory = get_attn(name, **kwargs)
    return None if factory is None else factory(channels)
