"""LeNet-5 trained on scikit-learn's digits: accuracy measured through onnxruntime on the held-out split."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from export.training import digits_split, to_tensor
from service.manifest import Manifest


def test_digits_accuracy_through_onnxruntime(export_model):
    entry = export_model("lenet5_digits")
    manifest = Manifest.read(entry)
    assert manifest.weights.source == "trained" and len(manifest.weights.sha256) == 64
    _, _, images, labels = digits_split()
    x = to_tensor(images, manifest.preprocessing).numpy()
    session = ort.InferenceSession(str(manifest.model_path(entry)), providers=["CPUExecutionProvider"])
    predicted = session.run(None, {manifest.input.name: x})[0].argmax(1)
    accuracy = float(np.mean(predicted == labels))
    assert accuracy >= 0.97
    assert abs(accuracy - manifest.metrics["test_accuracy"]) < 1e-6
    assert (entry / "labels.txt").read_text().split() == [str(i) for i in range(10)]
