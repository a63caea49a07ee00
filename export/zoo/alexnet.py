"""AlexNet (Krizhevsky, Sutskever, Hinton 2012) and ZFNet (Zeiler & Fergus 2013).

ZFNet is AlexNet re-tuned after visualising its features (the paper's Fig. 3): a 7x7 stride-2 first layer
(AlexNet: 11x11 stride 4) and a stride-2 second layer, so that the first layers keep more mid frequencies and
alias less; a single dense network (no 2-GPU groups). Shapes at 224x224: conv1 (padding 1) 110 -> pool 55 ->
conv2 26 -> pool 13 -> conv3-5 13 -> pool 6, then FC 4096-4096-1000. The pools are Caffe-style ceil-mode
3x3/2 (110 -> 55 and 26 -> 13 need the ceil). Contrast normalisation across feature maps follows pool 1
and pool 2. Variant (b) of the paper's Table 2 widens layers 3, 4, 5 to 512, 1024, 512 maps.

Deliberate deviations: the paper gives no parameters for its contrast normalisation; ours is AlexNet's local
response normalisation (n=5, alpha=1e-4, beta=0.75, k=2). Weights start from PyTorch's default
initialisation (the paper's N(0, 1e-2) and its filter-RMS renormalisation are training details).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torchvision import models as tvm

from export.zoo.layers import ConvNormAct
from export.zoo.layers.conv_norm_act import LayerFactory
from export.zoo.registry import register_model
from service.manifest import Paper, Reference

# --- helpers ---------------------------------------------------------------------------------------------


def contrast_norm(channels: int) -> nn.LocalResponseNorm:
    """AlexNet's local response normalisation across 5 adjacent maps, as a `norm_layer(channels)` factory.

    The paper's b = a / (k + alpha * sum a^2)^beta with alpha=1e-4; PyTorch divides alpha by the size,
    so it gets alpha * size.
    """
    del channels  # normalises across whatever maps it is given
    size = 5
    return nn.LocalResponseNorm(size, alpha=1e-4 * size, beta=0.75, k=2.0)


# --- network ---------------------------------------------------------------------------------------------


class ZFNet(nn.Module):
    """Five conv layers (ReLU) and three fully connected layers; `widths` are the five conv widths."""

    def __init__(
        self,
        widths: Sequence[int] = (96, 256, 384, 384, 256),
        num_classes: int = 1000,
        dropout: float = 0.5,
        norm_layer: LayerFactory = contrast_norm,
    ) -> None:
        super().__init__()
        c1, c2, c3, c4, c5 = widths
        self.features = nn.Sequential(
            ConvNormAct(3, c1, 7, stride=2, padding=1, norm_layer=None),  # 224 -> 110
            nn.MaxPool2d(3, stride=2, ceil_mode=True),  # -> 55
            norm_layer(c1),
            ConvNormAct(c1, c2, 5, stride=2, padding=0, norm_layer=None),  # -> 26
            nn.MaxPool2d(3, stride=2, ceil_mode=True),  # -> 13
            norm_layer(c2),
            ConvNormAct(c2, c3, 3, norm_layer=None),
            ConvNormAct(c3, c4, 3, norm_layer=None),
            ConvNormAct(c4, c5, 3, norm_layer=None),
            nn.MaxPool2d(3, stride=2, ceil_mode=True),  # -> 6
        )
        self.classifier = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(c5 * 6 * 6, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


def _zfnet(widths: Sequence[int], **kwargs) -> ZFNet:
    return ZFNet(widths=widths, **kwargs)


# --- papers and builders ---------------------------------------------------------------------------------

ALEXNET_PAPER = Paper(
    title="ImageNet Classification with Deep Convolutional Neural Networks",
    authors="Krizhevsky, Sutskever, Hinton",
    year=2012,
    url="https://papers.nips.cc/paper/4824",
)
ZFNET_PAPER = Paper(
    title="Visualizing and Understanding Convolutional Networks",
    authors="Zeiler, Fergus",
    year=2013,
    url="https://arxiv.org/abs/1311.2901",
)


# torchvision's AlexNet is the single-GPU "one weird trick" variant (64-192-384-256-256, no LRN, no
# groups): the reference implementation with published ImageNet weights.
@register_model(
    family="AlexNet",
    paper=ALEXNET_PAPER,
    reference=Reference(
        params=61_100_840,
        source="torchvision AlexNet_Weights.IMAGENET1K_V1 (the single-GPU variant, not the paper's 2-GPU grouped net)",
        exact=True,
    ),
    pretrained={"torchvision": "AlexNet_Weights.IMAGENET1K_V1"},
)
def alexnet(**kwargs) -> tvm.AlexNet:
    return tvm.alexnet(**kwargs)


@register_model(
    family="ZFNet",
    paper=ZFNET_PAPER,
    reference=Reference(
        params=62_357_608,
        source="computed from the paper's Fig. 3 layer definition (conv 96-256-384-384-256, FC 4096-4096-1000)",
    ),
)
def zfnet(**kwargs) -> ZFNet:
    return _zfnet((96, 256, 384, 384, 256), **kwargs)


@register_model(
    family="ZFNet",
    paper=ZFNET_PAPER,
    reference=Reference(
        params=107_627_624,
        source="computed from the paper's Fig. 3 layer definition with layers 3-5 at 512-1024-512 (Table 2)",
    ),
)
def zfnet_wide(**kwargs) -> ZFNet:
    """The paper's variant (b): layers 3, 4, 5 widened to 512, 1024, 512 maps."""
    return _zfnet((96, 256, 512, 1024, 512), **kwargs)
