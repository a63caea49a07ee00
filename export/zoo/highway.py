"""Highway networks (Srivastava, Greff, Schmidhuber 2015): a fully connected one for MNIST and the
convolutional 19-layer one for CIFAR-10.

A highway layer gates a transform H against its own input: y = H(x) * T(x) + x * (1 - T(x)), with the
transform gate T(x) = sigmoid(W_T x + b_T) and the carry gate coupled as 1 - T. b_T starts negative, so a
fresh layer mostly carries its input and a deep stack starts close to the identity. One `HighwayLayer`
serves both networks: H (a dense or a conv layer with its ReLU) and the gate's affine layer are passed in
as modules.

- `highway_mlp`: the paper's MNIST optimisation networks (Sec. 3.1, Fig. 1): 784 inputs, a plain fully
  connected layer to 50 units, then `depth` highway layers of 50 units, then a 10-way softmax layer. The
  paper counts the plain first layer in the depth, so its "10-layer" network is 1 plain + 9 highway layers:
  `depth=9` is the default; 19, 49 and 99 give its 20-, 50- and 100-layer networks.
- `highway_cifar`: the official Caffe config (flukeskywalker/highway-networks,
  examples/highways/cifar10-19layers): 'same' 3x3 convs; a plain conv+ReLU wherever the width changes
  (3->32, 32->80, 80->128) followed by 4, 5 and 5 highway layers, 2x2 max-pools between the stages, a 1x1
  conv to 100 maps + ReLU, global average pooling, a 10-way classifier; dropout 0.2 on the input, after each
  pool and before the classifier; transform gate bias -2.

Deliberate deviations: the released cifar10 prototxt's classifier has 100 outputs (as in its CIFAR-100
config); ours has the 10 classes of CIFAR-10 (2,256,838 parameters; the paper says ~2.3M). Weights other than
the gate biases start from PyTorch's default initialisation (Caffe's xavier fillers are a training detail).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from export.zoo.layers import ConvNormAct
from export.zoo.layers.conv_norm_act import LayerFactory
from export.zoo.registry import CIFAR_PREPROCESSING, register_model
from service.manifest import Paper, Preprocessing, Reference

# --- blocks ----------------------------------------------------------------------------------------------


class HighwayLayer(nn.Module):
    """y = H(x) * T(x) + x * (1 - T(x)), T(x) = sigmoid(gate(x)).

    `transform` is H, any module (its nonlinearity included) that keeps the shape of x; `gate` is the affine
    part of T (an nn.Linear or nn.Conv2d shaped like H), whose bias is set to `gate_bias` (negative).
    """

    def __init__(self, transform: nn.Module, gate: nn.Linear | nn.Conv2d, gate_bias: float = -2.0) -> None:
        super().__init__()
        if gate_bias >= 0:
            raise ValueError(f"the transform gate bias must start negative (carry first), not {gate_bias}")
        self.transform = transform
        self.gate = gate
        nn.init.constant_(self.gate.bias, gate_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = torch.sigmoid(self.gate(x))
        return self.transform(x) * t + x * (1 - t)


def dense_highway(width: int, gate_bias: float = -2.0, act_layer: LayerFactory = nn.ReLU) -> HighwayLayer:
    """A fully connected highway layer: H = act(W_H x + b_H)."""
    return HighwayLayer(nn.Sequential(nn.Linear(width, width), act_layer()), nn.Linear(width, width), gate_bias)


def conv_highway(
    channels: int, gate_bias: float = -2.0, kernel_size: int = 3, act_layer: LayerFactory = nn.ReLU
) -> HighwayLayer:
    """A convolutional highway layer: H = act(conv(x)), T = sigmoid(conv'(x)), both 'same' padded."""
    transform = ConvNormAct(channels, channels, kernel_size, norm_layer=None, act_layer=act_layer)
    gate = nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2)
    return HighwayLayer(transform, gate, gate_bias)


# --- networks --------------------------------------------------------------------------------------------


class HighwayMLP(nn.Module):
    """Flatten -> plain FC to `width` + act -> `depth` dense highway layers -> FC classifier."""

    def __init__(
        self,
        in_features: int = 28 * 28,
        width: int = 50,
        depth: int = 9,
        num_classes: int = 10,
        gate_bias: float = -2.0,
        act_layer: LayerFactory = nn.ReLU,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Flatten(), nn.Linear(in_features, width), act_layer())
        self.highways = nn.Sequential(*(dense_highway(width, gate_bias, act_layer) for _ in range(depth)))
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.highways(self.stem(x)))


class HighwayConvNet(nn.Module):
    """Stages of (pool, dropout, plain conv to the stage width, highway convs), a 1x1 head, global pooling.

    `stages` lists (width, highway layers) per stage; every stage after the first starts with a 2x2 max-pool.
    """

    def __init__(
        self,
        stages: Sequence[tuple[int, int]] = ((32, 4), (80, 5), (128, 5)),
        head_channels: int = 100,
        num_classes: int = 10,
        in_channels: int = 3,
        gate_bias: float = -2.0,
        dropout: float = 0.2,
        act_layer: LayerFactory = nn.ReLU,
    ) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        prev = in_channels
        for i, (width, depth) in enumerate(stages):
            layers: list[nn.Module] = [nn.MaxPool2d(2)] if i else []
            layers += [nn.Dropout(dropout), ConvNormAct(prev, width, 3, norm_layer=None, act_layer=act_layer)]
            layers += [conv_highway(width, gate_bias, act_layer=act_layer) for _ in range(depth)]
            blocks.append(nn.Sequential(*layers))
            prev = width
        self.stages = nn.Sequential(*blocks)
        self.head = ConvNormAct(prev, head_channels, 1, norm_layer=None, act_layer=act_layer)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(head_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.stages(x)).mean((2, 3))
        return self.classifier(self.dropout(x))


# --- paper and builders ----------------------------------------------------------------------------------

PAPER = Paper(
    title="Training Very Deep Networks",
    authors="Srivastava, Greff, Schmidhuber",
    year=2015,
    url="https://arxiv.org/abs/1507.06228",
)
MNIST_PREPROCESSING = Preprocessing(color_mode="L", resize=28, crop=28, mean=[0.1307], std=[0.3081])
CIFAR_CONFIG = "flukeskywalker/highway-networks examples/highways/cifar10-19layers/cifar10_network.prototxt"


@register_model(
    family="Highway",
    paper=PAPER,
    reference=Reference(
        params=85_660,
        source="computed from the paper's Sec. 3.1 layer definition (784->50 plain FC, "
        "9 highway layers of 50, 50->10 softmax: its 10-layer MNIST network)",
    ),
    input_size=(1, 28, 28),
    num_classes=10,
    labels="mnist",
    preprocessing=MNIST_PREPROCESSING,
    max_batch_size=256,
)
def highway_mlp(depth: int = 9, **kwargs) -> HighwayMLP:
    return HighwayMLP(depth=depth, **kwargs)


@register_model(
    family="Highway",
    paper=PAPER,
    reference=Reference(
        params=2_256_838, source=f"computed from the official Caffe config {CIFAR_CONFIG} (paper: ~2.3M)"
    ),
    input_size=(3, 32, 32),
    num_classes=10,
    labels="cifar10",
    preprocessing=CIFAR_PREPROCESSING,
)
def highway_cifar(**kwargs) -> HighwayConvNet:
    return HighwayConvNet(**kwargs)
