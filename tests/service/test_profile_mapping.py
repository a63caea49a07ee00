"""Mapping onnxruntime's executed nodes back to modules, on a small hand-made graph that carries the dynamo
exporter's metadata and triggers every rewrite onnxruntime does on the CPU: NCHWc convolutions renamed after
their output value, inserted ReorderOutput nodes, a Conv+BatchNorm fused by the exporter (carrying the BN's
scope), a Split without metadata, and HardSwish inlined as unnamed HardSigmoid + Mul."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper
from onnx import helper as oh

from service.manifest import LayerRow
from service.profile.mapping import ROOT, ModuleMap, depth_of, is_within, label, truncate
from service.profile.sessions import default_session_options
from service.profile.trace import KERNEL_SUFFIX, profile_session, split_runs

NET = "tests.Net"
SEQ = "torch.nn.modules.container.Sequential"
ACT = "torch.nn.modules.activation"


def _node(op, inputs, outputs, name, scopes=None, classes=None, **attrs) -> onnx.NodeProto:
    node = oh.make_node(op, inputs, outputs, name=name, **attrs)
    if scopes is not None:
        for key, value in (("pkg.torch.onnx.name_scopes", scopes), ("pkg.torch.onnx.class_hierarchy", classes)):
            prop = node.metadata_props.add()
            prop.key, prop.value = key, repr(value)
    return node


def synthetic_model() -> onnx.ModelProto:
    rng = np.random.default_rng(0)

    def weight(shape, name):
        return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)

    inits = [
        weight((8, 3, 3, 3), "stem.conv.weight"),
        weight((4, 4, 1, 1), "block.conv.weight"),
        weight((16, 8), "fc.weight"),
        weight((10, 16), "out.weight"),
        numpy_helper.from_array(np.array([4, 4], dtype=np.int64), "split_sizes"),
    ]
    linear = "torch.nn.modules.linear.Linear"
    nodes = [
        # Conv+BatchNorm fused by the exporter's optimizer: the node carries the BatchNorm's scope.
        _node("Conv", ["input", "stem.conv.weight"], ["getitem"], "node_Conv_1",
              ["", "stem", "stem.bn", "bn"], [NET, SEQ, "torch.nn.modules.batchnorm.BatchNorm2d", "aten.bn"],
              pads=[1, 1, 1, 1]),
        _node("Relu", ["getitem"], ["relu"], "node_relu", ["", "stem", "stem.act", "relu"],
              [NET, SEQ, f"{ACT}.ReLU", "aten.relu"]),
        _node("Split", ["relu", "split_sizes"], ["a", "b"], "node_Split_9", axis=1),  # no metadata
        _node("Conv", ["a", "block.conv.weight"], ["c"], "node_conv2d", ["", "block", "block.conv", "conv2d"],
              [NET, "tests.Block", "torch.nn.modules.conv.Conv2d", "aten.conv2d"]),
        _node("Concat", ["c", "b"], ["cat"], "node_cat", ["", "block", "cat"], [NET, "tests.Block", "aten.cat"],
              axis=1),
        _node("GlobalAveragePool", ["cat"], ["g"], "node_mean", ["", "pool", "mean"],
              [NET, "torch.nn.modules.pooling.AdaptiveAvgPool2d", "aten.mean"]),
        _node("Flatten", ["g"], ["f"], "node_Reshape_3", ["", "view"], [NET, "aten.view"]),
        _node("Gemm", ["f", "fc.weight"], ["lin"], "node_linear", ["", "fc", "linear"], [NET, linear, "aten.linear"],
              transB=1),
        _node("HardSwish", ["lin"], ["hs"], "n0", ["", "act", "hardswish"], [NET, f"{ACT}.Hardswish", "aten.hs"]),
        _node("Gemm", ["hs", "out.weight"], ["logits"], "node_linear_1", ["", "out", "linear_1"],
              [NET, linear, "aten.linear"], transB=1),
    ]  # fmt: skip
    graph = oh.make_graph(
        nodes,
        "synthetic",
        [oh.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 16, 16])],
        [oh.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        initializer=inits,
    )
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 20)])
    model.ir_version = 10
    onnx.checker.check_model(model)
    return onnx.shape_inference.infer_shapes(model)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> tuple[Path, ModuleMap]:
    path = tmp_path_factory.mktemp("synthetic") / "model.onnx"
    onnx.save(synthetic_model(), str(path))
    return path, ModuleMap.load(path)


EXPECTED_STATIC = {
    "node_Conv_1": "stem.conv",  # the conv owning the weight, not the BatchNorm of its scope
    "node_relu": "stem.act",
    "node_Split_9": "block",  # no metadata: the module holding all its consumers
    "node_conv2d": "block.conv",
    "node_cat": "block",
    "node_mean": "pool",
    "node_Reshape_3": ROOT,  # a functional op in the model's own forward
    "node_linear": "fc",
    "n0": "act",
    "node_linear_1": "out",
}


def test_exported_nodes_map_to_modules(synthetic):
    _, mmap = synthetic
    assert {n.name: n.module for n in mmap.nodes} == EXPECTED_STATIC
    assert mmap.class_of("block") == "Block"
    assert mmap.class_of(ROOT) == "Net"
    assert mmap.class_of("act") == "Hardswish"


def test_onnxruntime_rewrites_are_attributed(synthetic):
    """Profile the model for real: every executed node lands on the right module, none unmapped."""
    path, mmap = synthetic
    events, used, warmed = profile_session(
        path, "input", [-1, 3, 16, 16], ["CPUExecutionProvider"], default_session_options,
        batch_size=2, runs=2, warmup=1,
    )  # fmt: skip
    assert used[0] == "CPUExecutionProvider" and warmed == 1
    # kept slim: what the aggregation and a Chrome trace use, not onnxruntime's thread and allocator stats
    node = next(e for e in events if e.get("cat") == "Node")
    assert {"op_name", "provider"} <= set(node["args"]) and "thread_scheduling_stats" not in node["args"]
    timed, per_run = split_runs(events, warmup=1)
    assert len(timed) == 2 and all(per_run)
    sequence = [(e["name"][: -len(KERNEL_SUFFIX)], e["args"]["op_name"]) for e in per_run[0]]
    attributed = mmap.attribute(sequence)
    got = {name: a.module for (name, _), a in zip(sequence, attributed, strict=True)}
    assert all(a.how != "unmapped" for a in attributed)
    # Whatever onnxruntime renamed or inserted, the executed nodes cover exactly the modules that compute.
    assert set(got.values()) == {"stem.conv", "block", "block.conv", "pool", ROOT, "fc", "act", "out"}
    renamed = [n for n in got if n.endswith("_nchwc")]
    assert renamed, "expected NCHWc convolutions on the CPU provider"
    assert {got[n] for n in renamed} == {"stem.conv", "block.conv"}
    for (name, op), a in zip(sequence, attributed, strict=True):
        if op in ("HardSigmoid", "Mul", "HardSwish"):
            assert a.module == "act", name  # inlined HardSwish body
        if op.startswith("Reorder"):
            assert a.module in ("stem.conv", "block.conv"), name


@pytest.mark.parametrize(
    ("sequence", "expected"),
    [
        # renamed conv fused with its ReLU: walk back from the ReLU's output to the Conv
        ([("relu_nchwc", "Conv")], ["stem.conv"]),
        # inserted reorders: input side -> the node fed, output side -> the node drained
        ([("ReorderInput", "ReorderInput"), ("c_nchwc", "Conv"), ("ReorderOutput_token_7", "ReorderOutput")],
         ["block.conv", "block.conv", "block.conv"]),
        # an unnamed inlined body between two executed nodes -> the exported node in between that never ran
        ([("node_linear", "Gemm"), ("HardSigmoid_40", "HardSigmoid"), ("Mul_41", "Mul"), ("node_linear_1", "Gemm")],
         ["fc", "act", "act", "out"]),
        # FusedConv keeps the conv's name
        ([("node_conv2d", "FusedConv")], ["block.conv"]),
    ],
)  # fmt: skip
def test_attribution_rules(synthetic, sequence, expected):
    _, mmap = synthetic
    assert [a.module for a in mmap.attribute(sequence)] == expected


def test_nothing_mappable_is_reported_unmapped(synthetic):
    _, mmap = synthetic
    (a,) = mmap.attribute([("Mystery_3", "Mystery")])
    assert a.how == "unmapped" and a.module == ROOT


def test_grouping_helpers(synthetic):
    _, mmap = synthetic
    assert truncate("layer3.1.conv2", 2) == "layer3.1"
    assert truncate("layer3.1.conv2", None) == "layer3.1.conv2"
    assert truncate(ROOT, 1) == ROOT
    assert depth_of("layer3.1") == 2 and depth_of(ROOT) == 0
    assert is_within("layer3.1.conv2", "layer3.1") and not is_within("layer3.10", "layer3.1")
    assert is_within("anything", ROOT)
    assert label(ROOT) == "(root)" and label("fc") == "fc"
    # block: the outermost module that is not a plain container
    assert mmap.block_of("stem.conv") == "stem.conv"  # stem is a Sequential
    assert mmap.block_of("block.conv") == "block"
    assert mmap.block_of(ROOT) == ROOT
    assert mmap.group_key("block.conv", "layer", 1) == "block"
    assert mmap.group_key("block.conv", "block", None) == "block"


def test_group_outputs_cross_the_cut(synthetic):
    _, mmap = synthetic
    first_two = {0, 1, 2}  # conv, relu, split: both split outputs are used later
    assert sorted(mmap.group_outputs(first_two)) == ["a", "b"]
    assert mmap.group_outputs(set(range(len(mmap.nodes)))) == ["logits"]


def test_fused_conv_with_a_renamed_weight_goes_to_the_conv_before_its_batchnorm():
    """When the fused weight no longer carries `<module>.weight`, the manifest's layer order decides."""
    model = synthetic_model()
    for init in model.graph.initializer:
        if init.name == "stem.conv.weight":
            init.name = "val_7"
    model.graph.node[0].input[1] = "val_7"
    rows = [
        LayerRow(path="stem.conv", module_class="Conv2d", params=216, macs=55296, output_shape=[-1, 8, 16, 16]),
        LayerRow(path="stem.bn", module_class="BatchNorm2d", params=16, macs=0, output_shape=[-1, 8, 16, 16]),
    ]
    mmap = ModuleMap.from_model(model, SimpleNamespace(layers=rows, builder=SimpleNamespace(name="net")))
    assert mmap.nodes[0].module == "stem.conv" and mmap.nodes[0].how == "batchnorm"
    assert ModuleMap.from_model(model).nodes[0].module == "stem.bn"  # without the manifest: the scope
