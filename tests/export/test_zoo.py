"""Every registered model, exported once into the shared store: parity, manifest facts recomputed, paper counts."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from export.analyze import analyze
from export.zoo import get_spec, list_models
from service.manifest import Manifest
from service.store import read_batching_config, read_labels

NAMES = list_models()


@pytest.fixture(scope="module")
def manifest_of(export_model):
    def get(name: str) -> tuple[Manifest, object]:
        entry = export_model(name)
        return Manifest.read(entry), entry

    return get


@pytest.mark.parametrize("name", NAMES)
def test_export_parity_and_manifest(name, manifest_of):
    manifest, entry = manifest_of(name)
    spec = get_spec(name)
    # Parity was measured at batch 1 and 2 and stayed within the recorded tolerance.
    assert manifest.export.parity_batch_sizes == [1, 2]
    assert manifest.export.parity_max_abs_diff <= manifest.export.parity_tolerance
    # The file is the one the manifest describes.
    model_file = manifest.model_path(entry)
    data = model_file.read_bytes()
    assert hashlib.sha256(data).hexdigest() == manifest.onnx.sha256
    assert len(data) == manifest.onnx.bytes
    proto = onnx.load_from_string(data)
    assert not any(init.data_location == onnx.TensorProto.EXTERNAL for init in proto.graph.initializer)
    assert [i.name for i in proto.graph.input] == [manifest.input.name]
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == manifest.input.shape[1:]
    # The output size, recomputed by running the file at a batch size parity did not use.
    session = ort.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((3, *spec.input_size), dtype=np.float32)
    (y,) = session.run(None, {manifest.input.name: x})
    assert y.shape == (3, spec.num_classes) and np.isfinite(y).all()
    assert manifest.output.shape == [-1, spec.num_classes] == [-1, manifest.num_classes]
    # The per-layer table adds up.
    assert sum(r.params for r in manifest.layers) == manifest.num_params
    assert sum(r.macs for r in manifest.layers) == manifest.macs
    assert len(read_labels(entry, manifest)) == manifest.num_classes
    assert read_batching_config(entry).max_batch_size == manifest.max_batch_size


@pytest.mark.parametrize("name", NAMES)
def test_parameter_count_matches_reference(name, manifest_of):
    manifest, _ = manifest_of(name)
    spec = get_spec(name)
    # Recomputed from a fresh build of the registered builder, not read back from the manifest
    # (on the meta device: shapes only, no weights initialised).
    with torch.device("meta"):
        built = sum(p.numel() for p in spec.build().parameters())
    assert built == manifest.num_params
    ref = spec.reference
    if ref.exact:
        assert built == ref.params, f"{built} != {ref.params} ({ref.source})"
    else:
        assert abs(built - ref.params) <= 0.01 * ref.params, f"{built} vs {ref.params} ({ref.source})"


@pytest.mark.parametrize("name", [n for n in NAMES if "torchvision" in get_spec(n).pretrained])
def test_macs_match_torchvision_published_ops(name, manifest_of):
    """Our MAC counter against torchvision's published `_ops` (GMACs) for the same architecture."""
    from torchvision.models import get_weight

    manifest, _ = manifest_of(name)
    published = get_weight(get_spec(name).pretrained["torchvision"]).meta["_ops"] * 1e9
    assert abs(manifest.macs - published) <= 0.01 * published + 1e6


def test_analyze_counts_a_known_network():
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(8 * 4 * 4, 10)
    )
    facts = analyze(net.eval(), (3, 4, 4))
    assert [r.path for r in facts.rows] == ["0", "1", "2", "3"]
    assert facts.rows[0].macs == 8 * 4 * 4 * 3 * 9 and facts.rows[3].macs == 128 * 10
    assert facts.num_params == 3 * 8 * 9 + 8 + 128 * 10 + 10
    assert facts.output_shape == [-1, 10]


def test_zoo_docs_are_current(repo_root):
    from export.docs import model_rows, update_readme, zoo_markdown

    rows = model_rows()
    assert (repo_root / "docs" / "zoo.md").read_text() == zoo_markdown(rows), "docs/zoo.md is stale: run `make docs`"
    readme = (repo_root / "README.md").read_text()
    assert readme == update_readme(readme, rows), "README's model list is stale: run `make docs`"


def test_list_json_matches_registry(run_cli):
    out = run_cli("list", "--json")
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["name"] for r in rows] == NAMES
