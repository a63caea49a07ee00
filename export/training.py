"""Training as part of a build: LeNet-5 on scikit-learn's bundled handwritten digits.

The 8x8 scans (values 0-16) are turned into 8-bit grayscale images and go through the same steps the
service applies to an uploaded image (Pillow bilinear resize to 32x32, scale, normalise), so the model
is trained on exactly what it is served. The split is fixed by its seed; `digits_split` is public so the
end-to-end tests can send the same test images over HTTP.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from PIL import Image
from torch import nn

from service.manifest import Preprocessing

TEST_FRACTION = 0.25
SPLIT_SEED = 0


def digits_images() -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 digits as uint8 8x8 images (white ink on black, like the scans) and their labels."""
    from sklearn.datasets import load_digits

    data = load_digits()
    images = np.clip(np.rint(data.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    return images, data.target.astype(np.int64)


def digits_split(seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train_images, train_labels, test_images, test_labels), stratified, fixed by `seed`."""
    from sklearn.model_selection import train_test_split

    images, labels = digits_images()
    x_tr, x_te, y_tr, y_te = train_test_split(
        images, labels, test_size=TEST_FRACTION, random_state=seed, stratify=labels
    )
    return x_tr, y_tr, x_te, y_te


def to_tensor(images: np.ndarray, pre: Preprocessing) -> torch.Tensor:
    """uint8 (N, h, w) -> float (N, 1, crop, crop): the service's decode path, in bulk."""
    size = (pre.resize, pre.resize)
    resized = np.stack([np.asarray(Image.fromarray(im, "L").resize(size, Image.BILINEAR)) for im in images])
    x = resized.astype(np.float32) * pre.scale
    x = (x - pre.mean[0]) / pre.std[0]
    return torch.from_numpy(x[:, None])


def train_digits(
    model: nn.Module, seed: int, preprocessing: Preprocessing, epochs: int = 40, log=print
) -> dict[str, float]:
    """Train `model` in place; returns its test accuracy and the split that measured it."""
    threads = torch.get_num_threads()
    # LeNet's layers are far too small to gain from intra-op threads, and busy-waiting threads on a loaded
    # machine slow training down many times over.
    torch.set_num_threads(1)
    try:
        return _train(model, seed, preprocessing, epochs, log)
    finally:
        torch.set_num_threads(threads)


def _train(model: nn.Module, seed: int, preprocessing: Preprocessing, epochs: int, log) -> dict[str, float]:
    torch.manual_seed(seed)
    x_tr, y_tr, x_te, y_te = digits_split()
    xs, ys = to_tensor(x_tr, preprocessing), torch.from_numpy(y_tr)
    xt, yt = to_tensor(x_te, preprocessing), torch.from_numpy(y_te)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    loss_fn = nn.CrossEntropyLoss()
    start = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(xs))
        for i in range(0, len(xs), 32):
            idx = perm[i : i + 32]
            # Random shifts of up to 2 pixels: the scans are not centred consistently.
            dx, dy = torch.randint(-2, 3, (2,)).tolist()
            batch = torch.roll(xs[idx], shifts=(dy, dx), dims=(2, 3))
            opt.zero_grad()
            loss = loss_fn(model(batch) / 10.0, ys[idx])
            loss.backward()
            opt.step()
        sched.step()
        if (epoch + 1) % 10 == 0:
            log(f"    epoch {epoch + 1}/{epochs}: loss {loss.item():.4f}, accuracy {_accuracy(model, xt, yt):.4f}")
    accuracy = _accuracy(model, xt, yt)
    return {
        "test_accuracy": accuracy,
        "test_images": float(len(yt)),
        "train_images": float(len(ys)),
        "split_seed": float(SPLIT_SEED),
        "train_seconds": round(time.perf_counter() - start, 1),
    }


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.inference_mode():
        return float((model(x).argmax(1) == y).float().mean())
