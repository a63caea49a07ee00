"""LeNet-5 (LeCun, Bottou, Bengio, Haffner 1998), faithful to the paper.

32x32 grayscale input; C1 (6@5x5) - S2 - C3 (16@5x5, partial connection table) - S4 - C5 (120@5x5)
- F6 (84) - output. Squashing function 1.7159 * tanh(2a/3). S2/S4 are trainable subsampling layers
(2x2 average times a per-map coefficient, plus a per-map bias). C3 connects only 60 of the 6 x 16
S2->C3 map pairs (the paper's Table 1): its parameters are the 60 connected 5x5 kernels and 16 biases,
the paper's 1,516. The output layer is a Euclidean RBF against fixed +-1 codes (not trained); the logits
are the negative squared distances. The paper's codes are 7x12 bitmaps of drawn characters, not
published in machine-readable form: ours are fixed +-1 codes from a seeded generator. Trainable
parameters: 60,000, the paper's "about 60,000".

Computed for speed, with the same function and parameters: C3 runs as one dense 6->16 convolution whose
kernel is the connected kernels scattered into zeros, and each subsampling layer as a 2x2 stride-2
depthwise convolution with kernel coefficient / 4. Both kernels are functions of parameters only, so the
exported graph holds them as constants and onnxruntime runs three plain convolutions, each fused with
its tanh. Measured in onnxruntime on one core at batch 32: 26 us per image, against 84 us with C3 as
grouped convolutions over gathered maps and subsampling as AveragePool.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from export.zoo.registry import register_model
from service.manifest import Paper, Preprocessing, Reference

PAPER = Paper(
    title="Gradient-Based Learning Applied to Document Recognition",
    authors="LeCun, Bottou, Bengio, Haffner",
    year=1998,
    url="https://doi.org/10.1109/5.726791",
)
REFERENCE = Reference(params=60_000, source="paper (about 60,000 trainable parameters); C3 table, Table 1")
# The paper maps the background to -0.1 and the ink to 1.175: x' = (x - 0.0784) / 0.784 with x = 1 for ink,
# i.e. light digits on a dark background, as MNIST and scikit-learn's digits store them. Dark-on-light images
# need `invert` in the preprocessing.
PREPROCESSING = Preprocessing(color_mode="L", resize=32, crop=32, mean=[0.0784], std=[0.7843])

# S2 maps feeding each C3 map (paper Table 1), grouped by how many inputs each map takes.
C3_TABLE: tuple[tuple[tuple[int, ...], ...], ...] = (
    ((0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (4, 5, 0), (5, 0, 1)),
    ((0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (3, 4, 5, 0), (4, 5, 0, 1), (5, 0, 1, 2)),
    ((0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5)),
    ((0, 1, 2, 3, 4, 5),),
)


class ScaledTanh(nn.Module):
    """f(a) = A tanh(S a) with A = 1.7159 and S = 2/3 (Appendix A of the paper)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 1.7159 * torch.tanh(x * (2.0 / 3.0))


class Subsampling(nn.Module):
    """2x2 average times a trainable coefficient plus a trainable bias, per feature map; computed as a 2x2
    stride-2 depthwise convolution whose kernel is coefficient / 4."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.weight.numel()
        kernel = (self.weight * 0.25).reshape(c, 1, 1, 1).expand(c, 1, 2, 2)
        return nn.functional.conv2d(x, kernel, self.bias, stride=2, groups=c)


class PartialConv(nn.Module):
    """C3: each output map sees only the input maps of its row in the connection table.

    The parameters are the connected kernels only (`weight[k]` for the k-th (output, input) pair, in table
    order) and one bias per output map, initialised as a convolution with that map's fan-in would be. The
    forward pass scatters them into a dense (out, in, k, k) kernel, zeros elsewhere, and runs one
    convolution."""

    def __init__(self, table=C3_TABLE, in_channels: int = 6, kernel_size: int = 5) -> None:
        super().__init__()
        rows = [r for group in table for r in group]
        pairs = [(o, i) for o, r in enumerate(rows) for i in r]
        self.out_channels, self.in_channels, self.kernel_size = len(rows), in_channels, kernel_size
        self.weight = nn.Parameter(torch.empty(len(pairs), kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.empty(len(rows)))
        scatter = torch.zeros(len(rows) * in_channels, len(pairs))
        for k, (o, i) in enumerate(pairs):
            scatter[o * in_channels + i, k] = 1.0
        self.register_buffer("scatter", scatter, persistent=False)  # derived from the table, not learned
        with torch.no_grad():
            k = 0
            for o, r in enumerate(rows):
                bound = 1.0 / math.sqrt(len(r) * kernel_size * kernel_size)
                self.weight[k : k + len(r)].uniform_(-bound, bound)
                self.bias[o].uniform_(-bound, bound)
                k += len(r)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.kernel_size
        kernel = (self.scatter @ self.weight.reshape(-1, k * k)).reshape(self.out_channels, self.in_channels, k, k)
        return nn.functional.conv2d(x, kernel, self.bias)

    def macs_per_image(self, output: torch.Tensor) -> int:
        """Multiply-accumulates of the connected kernels only (the dense kernel's zeros are not counted)."""
        return output.shape[-2] * output.shape[-1] * self.weight.numel()


class RBFOutput(nn.Module):
    """Euclidean radial basis units: y_i = -sum_j (x_j - w_ij)^2, with fixed +-1 codes w."""

    def __init__(self, in_features: int = 84, num_classes: int = 10, seed: int = 1998) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        codes = torch.randint(0, 2, (num_classes, in_features), generator=g).float() * 2 - 1
        self.register_buffer("codes", codes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -((x[:, None, :] - self.codes[None]) ** 2).sum(-1)


class LeNet5(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(1, 6, 5)
        self.act1 = ScaledTanh()
        self.s2 = Subsampling(6)
        self.act2 = ScaledTanh()
        self.c3 = PartialConv()
        self.act3 = ScaledTanh()
        self.s4 = Subsampling(16)
        self.act4 = ScaledTanh()
        self.c5 = nn.Conv2d(16, 120, 5)
        self.act5 = ScaledTanh()
        self.f6 = nn.Linear(120, 84)
        self.act6 = ScaledTanh()
        self.output = RBFOutput(84, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act2(self.s2(self.act1(self.c1(x))))
        x = self.act4(self.s4(self.act3(self.c3(x))))
        x = self.act5(self.c5(x)).flatten(1)
        return self.output(self.act6(self.f6(x)))


_LENET = dict(
    family="LeNet",
    paper=PAPER,
    reference=REFERENCE,
    input_size=(1, 32, 32),
    num_classes=10,
    labels="digits",
    preprocessing=PREPROCESSING,
    max_batch_size=256,
)


@register_model(**_LENET)
def lenet5(**kwargs) -> LeNet5:
    return LeNet5(**kwargs)


def _train_on_digits(model: nn.Module, seed: int) -> dict[str, float]:
    from export.training import train_digits

    return train_digits(model, seed=seed, preprocessing=PREPROCESSING)


@register_model(**_LENET, trainer=_train_on_digits, default_weights="trained")
def lenet5_digits(**kwargs) -> LeNet5:
    """LeNet-5 trained on scikit-learn's handwritten digits (8x8 scans upscaled to 32x32)."""
    return LeNet5(**kwargs)
