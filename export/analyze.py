"""Static facts about a module, measured by running it once: per-layer params, MACs and output shapes.

MACs are multiply-accumulates for one image, counted for convolutions and linear layers (the
convention of torchvision's `_ops` and of the papers' "FLOPs"/"mult-adds"); a module with a
`macs_per_image(output)` method counts its own. A row is recorded for every leaf module that runs in
`forward`, and for any non-leaf module owning parameters directly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from service.manifest import LayerRow


@dataclass
class Analysis:
    rows: list[LayerRow]
    num_params: int
    macs: int
    output_shape: list[int]


def _macs(module: nn.Module, inputs: tuple, output: torch.Tensor) -> int:
    own = getattr(module, "macs_per_image", None)
    if callable(own):  # a layer that knows its own count (e.g. LeNet's sparsely connected C3)
        return int(own(output))
    per_image = output.numel() // max(1, output.shape[0])
    if isinstance(module, nn.modules.conv._ConvNd):
        k = 1
        for d in module.kernel_size:
            k *= d
        return per_image * (module.in_channels // module.groups) * k
    if isinstance(module, nn.Linear):
        return per_image * module.in_features
    return 0


def analyze(model: nn.Module, input_size: tuple[int, ...]) -> Analysis:
    """Run one image through `model` (eval mode) and tabulate its layers in execution order.

    Works on the "meta" device too (shapes only, no arithmetic): `with torch.device("meta"): build()`
    gives the same table in a fraction of the time, without allocating or initialising any weights.
    """
    device = next(model.parameters()).device
    found: dict[str, dict] = {}
    order: list[str] = []
    handles = []

    def hook(name: str):
        def fn(module: nn.Module, inputs: tuple, output) -> None:
            out = output[0] if isinstance(output, (tuple, list)) else output
            if not isinstance(out, torch.Tensor):
                return
            row = found.get(name)
            if row is None:
                row = found[name] = {
                    "path": name,
                    "module_class": type(module).__name__,
                    "params": sum(p.numel() for p in module.parameters(recurse=False)),
                    "macs": 0,
                }
                order.append(name)
            row["macs"] += _macs(module, inputs, out)
            row["output_shape"] = [-1, *out.shape[1:]]

        return fn

    for name, module in model.named_modules():
        is_leaf = next(module.children(), None) is None
        owns_params = next(module.parameters(recurse=False), None) is not None
        if name and (is_leaf or owns_params):
            handles.append(module.register_forward_hook(hook(name)))
    try:
        with torch.inference_mode():
            out = model(torch.zeros(1, *input_size, device=device))
    finally:
        for h in handles:
            h.remove()
    rows = [LayerRow(**found[n]) for n in order]
    return Analysis(
        rows=rows,
        num_params=sum(p.numel() for p in model.parameters()),
        macs=sum(r.macs for r in rows),
        output_shape=[-1, *out.shape[1:]],
    )
