"""Weight initialisation for the architectures implemented here (library-backed models keep their own)."""

from __future__ import annotations

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
