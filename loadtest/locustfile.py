"""Load test ZooServe over HTTP with Locust.

    .venv/bin/locust -f loadtest/locustfile.py --host http://127.0.0.1:8000 --headless -u 16 -r 4 -t 60s \
        --only-summary

ZOOSERVE_LOAD_MODEL picks the model (default lenet5_digits). Users mix the three hot paths: binary-tensor
infer (Triton's extension), JSON infer, and image classification; the input shape comes from the
model's metadata, the image is a synthetic PNG of the model's input size.
"""

from __future__ import annotations

import io
import json
import os

import numpy as np
from locust import HttpUser, between, events, task
from PIL import Image

MODEL = os.environ.get("ZOOSERVE_LOAD_MODEL", "lenet5_digits")
_payloads: dict[str, bytes | str] = {}


@events.test_start.add_listener
def _prepare(environment, **_):
    import urllib.request

    with urllib.request.urlopen(f"{environment.host}/v2/models/{MODEL}") as r:
        meta = json.load(r)
    spec = meta["inputs"][0]
    shape = [1, *spec["shape"][1:]]
    x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    header = json.dumps(
        {
            "inputs": [{"name": spec["name"], "shape": shape, "datatype": "FP32",
                        "parameters": {"binary_data_size": x.nbytes}}],
            "outputs": [{"name": meta["outputs"][0]["name"], "parameters": {"binary_data": True}}],
        }
    ).encode()  # fmt: skip
    _payloads["binary"] = header + x.tobytes()
    _payloads["header_length"] = str(len(header))
    _payloads["json"] = json.dumps(
        {"inputs": [{"name": spec["name"], "shape": shape, "datatype": "FP32", "data": x.ravel().tolist()}]}
    ).encode()
    mode = "L" if shape[1] == 1 else "RGB"
    pixels = np.random.default_rng(1).integers(0, 256, (shape[2], shape[3], shape[1]), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels.squeeze(-1) if mode == "L" else pixels, mode).save(buf, format="PNG")
    _payloads["png"] = buf.getvalue()


class ZooServeUser(HttpUser):
    wait_time = between(0, 0.01)

    @task(4)
    def infer_binary(self):
        self.client.post(
            f"/v2/models/{MODEL}/infer",
            data=_payloads["binary"],
            headers={
                "Content-Type": "application/octet-stream",
                "Inference-Header-Content-Length": _payloads["header_length"],
            },
            name="infer (binary)",
        )

    @task(2)
    def infer_json(self):
        self.client.post(
            f"/v2/models/{MODEL}/infer",
            data=_payloads["json"],
            headers={"Content-Type": "application/json"},
            name="infer (json)",
        )

    @task(2)
    def classify(self):
        self.client.post(f"/v2/models/{MODEL}/classify?top_k=3", data=_payloads["png"], name="classify")
