"""Class names for the data sets the zoo is built for."""

from __future__ import annotations

CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
DIGITS = [str(i) for i in range(10)]


def labels_for(dataset: str, num_classes: int) -> list[str]:
    if dataset == "imagenet":
        from torchvision.models._meta import _IMAGENET_CATEGORIES

        names = list(_IMAGENET_CATEGORIES)
    elif dataset == "cifar10":
        names = CIFAR10
    elif dataset in ("digits", "mnist"):
        names = DIGITS
    else:
        raise ValueError(f"unknown label set {dataset!r}")
    if len(names) != num_classes:
        raise ValueError(f"label set {dataset!r} has {len(names)} classes, the model {num_classes}")
    return names
