"""GoogLeNet / Inception v1 (Szegedy et al. 2014), from torchvision, without the auxiliary classifiers.

Nine Inception modules (parallel 1x1, 1x1->3x3, 1x1->"5x5" and pool->1x1 branches, concatenated) over a
7x7/2 stem, ceil-mode max-pools, global average pooling, dropout and one FC layer.

torchvision's GoogLeNet is the one with published weights, and it differs from the paper: batch
normalisation after every conv, no LRN, and a 3x3 instead of a 5x5 in the third branch (a known bug kept for
the weights, pytorch/vision#906). The paper's two auxiliary heads (at 4a and 4d) only help training: they are
left out, so the exported graph has one output and the count is torchvision's weights count without them.

Input: `transform_input=False`, so the graph holds no re-normalisation ops. The published weights expect
inputs scaled to [-1, 1] (torchvision turns ImageNet-normalised input into that when `transform_input=True`),
so the preprocessing normalises with mean = std = 0.5, which gives the weights the input they were trained on.
"""

from __future__ import annotations

from torchvision import models as tvm

from export.zoo.registry import imagenet_preprocessing, register_model
from service.manifest import Paper, Reference

PAPER = Paper(
    title="Going Deeper with Convolutions",
    authors="Szegedy, Liu, Jia, Sermanet, Reed, Anguelov, Erhan, Vanhoucke, Rabinovich",
    year=2014,
    url="https://arxiv.org/abs/1409.4842",
)
WEIGHTS = "GoogLeNet_Weights.IMAGENET1K_V1"


@register_model(
    family="GoogLeNet",
    paper=PAPER,
    reference=Reference(params=6_624_904, source=f"torchvision {WEIGHTS} (auxiliary heads removed)", exact=True),
    preprocessing=imagenet_preprocessing(crop=224, mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5]),
    pretrained={"torchvision": WEIGHTS},
)
def googlenet(*, transform_input: bool = False, **kwargs) -> tvm.GoogLeNet:
    # With weights torchvision builds the aux heads to load them, then drops them (aux_logits must be left
    # unset there); without weights the class default keeps them, so say aux_logits=False.
    if kwargs.get("weights") is None:
        kwargs = {"aux_logits": False, "init_weights": True, **kwargs}
    return tvm.googlenet(transform_input=transform_input, **kwargs)
