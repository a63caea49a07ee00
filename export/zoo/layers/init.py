"""Weight initialisation for the architectures implemented here (library-backed models keep their own)."""

from __future__ import annotations

import torch
from torch import nn


def init_weights(model: nn.Module) -> None:
    """He-normal convs with fan-out counted per group (k*k*out/groups, as timm does), unit BN, N(0, 0.01) FC.

    PyTorch's own fan-out ignores groups, which shrinks depthwise kernels by sqrt(channels) and makes the
    activations of random-weight models vanish layer by layer; the per-group fan-out keeps them in scale.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
            nn.init.normal_(m.weight, 0, (2.0 / fan_out) ** 0.5)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def he_init(model: nn.Module) -> None:
    """He-normal (fan-out) convolutions, BN at weight 1 and bias 0, linear biases 0: the residual papers' init."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)


def damp_residual_branches(last_layers: list[nn.Module]) -> None:
    """Scale the last layer (conv or BN) of each of the network's residual branches by 1/sqrt(branches).

    A deliberate deviation for random weights only (published or trained weights replace them): before
    training, BN's running statistics are 0/1, so in eval mode every He-initialised branch adds about as
    much variance as its input carries and the activations double in variance per unit. Deep random
    ResNets then reach logits of 1e4 to 1e8 (ResNet-1001 overflows float32), too ill-conditioned for any
    export to match PyTorch. Damped branches (the Fixup idea) keep the random model's outputs O(1).
    """
    with torch.no_grad():
        for layer in last_layers:
            layer.weight.mul_(len(last_layers) ** -0.5)
