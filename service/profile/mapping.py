"""Which PyTorch module each ONNX node came from, and which ONNX node each executed onnxruntime node is.

The exporter records the module hierarchy per node (dynamo: `pkg.torch.onnx.name_scopes` and
`pkg.torch.onnx.class_hierarchy` in `NodeProto.metadata_props`; TorchScript: the scope path in the node
name). onnxruntime then rewrites the graph it runs, and its profiler reports the rewritten names:

- fusions that keep the anchor's name (`FusedConv` keeps the Conv's name): found by name;
- NCHWc convolutions renamed after their output value (`<value>_nchwc`): the value's producer, walked
  back through the fused activation / Add / Sum to the node of the same operator (the convolution);
- Conv+BatchNorm folded by the exporter's optimizer carries the BatchNorm's scope: a MAC-bearing node
  (Conv, Gemm, MatMul) whose weight initializer is `<module>.weight` belongs to `<module>`, the conv;
- nodes onnxruntime adds or inlines without a name (`ReorderInput`, `ReorderOutput_token_N`, a
  function body such as HardSwish -> HardSigmoid + Mul reported as `HardSigmoid_180`): layout
  reorders go to the node they feed (input side) or drain (output side); inlined bodies go to the
  original node that sits between their executed neighbours and never ran under its own name.

Nothing here imports torch: the metadata are strings in the ONNX file.
"""

from __future__ import annotations

import ast
import contextlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from service.manifest import Manifest

ROOT = ""  # the module path of the model itself (functional ops called in its own forward)
ROOT_LABEL = "(root)"

NAME_SCOPES = "pkg.torch.onnx.name_scopes"
CLASS_HIERARCHY = "pkg.torch.onnx.class_hierarchy"

# onnxruntime's fused/contrib kernels and the plain operator they are anchored on.
_BASE_OP = {
    "FusedConv": "Conv",
    "NhwcConv": "Conv",
    "NhwcFusedConv": "Conv",
    "FusedGemm": "Gemm",
    "FusedMatMul": "MatMul",
    "QLinearConv": "Conv",
    "ConvInteger": "Conv",
}
MAC_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})
# Nodes onnxruntime inserts around a kernel: the ones on the input side belong to the node they feed,
# the ones on the output side to the node they drain.
INPUT_SIDE_OPS = frozenset({"ReorderInput", "MemcpyFromHost"})
OUTPUT_SIDE_OPS = frozenset({"ReorderOutput", "MemcpyToHost"})
CONTAINER_CLASSES = frozenset({"Sequential", "ModuleList", "ModuleDict"})
_RENAMED_SUFFIX = re.compile(r"(_nchwc|_token_\d+)$")


def base_op(op_type: str) -> str:
    return _BASE_OP.get(op_type, op_type)


def depth_of(path: str) -> int:
    return 0 if path == ROOT else path.count(".") + 1


def truncate(path: str, depth: int | None) -> str:
    """`layer3.1.conv2` at depth 2 is `layer3.1`; None keeps the full path."""
    if depth is None or path == ROOT:
        return path
    return ".".join(path.split(".")[:depth])


def is_within(path: str, group: str) -> bool:
    """Whether module `path` is `group` or inside it (the root holds everything)."""
    return group == ROOT or path == group or path.startswith(group + ".")


def label(path: str) -> str:
    return ROOT_LABEL if path == ROOT else path


def _short_class(qualified: str) -> str:
    return qualified.rsplit(".", 1)[-1]


def _common_path(paths: Sequence[str]) -> str:
    """The deepest module path containing every one of `paths`."""
    if not paths:
        return ROOT
    parts = [p.split(".") if p else [] for p in paths]
    common: list[str] = []
    for items in zip(*parts, strict=False):
        if all(i == items[0] for i in items):
            common.append(items[0])
        else:
            break
    return ".".join(common)


def _torchscript_scope(name: str) -> str | None:
    """`/layer1/layer1.0/conv1/Conv` -> `layer1.0.conv1` (a component starting with `prev.` replaces it)."""
    if not name.startswith("/"):
        return None
    comps = [c for c in name.split("/")[1:-1] if c]
    path: list[str] = []
    for c in comps:
        if path and c.startswith(".".join(path) + "."):
            path = c.split(".")
        else:
            path.extend(c.split("."))
    return ".".join(path)


@dataclass(frozen=True)
class OnnxNode:
    index: int  # position in the exported graph (onnxruntime's node_index for nodes it kept)
    name: str
    op_type: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    module: str  # module path, ROOT for the model's own forward
    how: str  # weight | batchnorm | metadata | torchscript | neighbours


@dataclass(frozen=True)
class Attribution:
    """Where one executed onnxruntime node's time goes."""

    module: str
    node: OnnxNode | None  # the exported node it is (or is anchored on); None for inserted nodes
    how: str  # name | renamed | input-side | output-side | inlined | neighbour | unmapped


@dataclass
class ModuleMap:
    nodes: list[OnnxNode]
    classes: dict[str, str]  # module path -> class name (short)
    value_shapes: dict[str, list[int]] = field(default_factory=dict)  # -1 for symbolic dims
    graph_outputs: list[str] = field(default_factory=list)
    # indexes built in __post_init__
    by_name: dict[str, OnnxNode] = field(init=False)
    producer: dict[str, OnnxNode] = field(init=False)
    consumers: dict[str, list[OnnxNode]] = field(init=False)

    def __post_init__(self) -> None:
        self.by_name = {n.name: n for n in self.nodes if n.name}
        self.producer = {o: n for n in self.nodes for o in n.outputs if o}
        self.consumers = {}
        for n in self.nodes:
            for i in n.inputs:
                if i:
                    self.consumers.setdefault(i, []).append(n)

    # --- construction ------------------------------------------------------------------------------

    @classmethod
    def load(cls, path: Path, manifest: Manifest | None = None) -> ModuleMap:
        return cls.from_model(onnx.load(str(path), load_external_data=False), manifest)

    @classmethod
    def from_model(cls, model: onnx.ModelProto, manifest: Manifest | None = None) -> ModuleMap:
        graph = model.graph
        inits = {t.name: t for t in graph.initializer}
        classes: dict[str, str] = {}
        if manifest is not None:
            classes.update({row.path: row.module_class for row in manifest.layers})
        scopes: list[tuple[str | None, str]] = []
        for node in graph.node:
            md = {p.key: p.value for p in node.metadata_props}
            scope, how = None, ""
            if NAME_SCOPES in md:
                try:
                    names = ast.literal_eval(md[NAME_SCOPES])
                    hier = ast.literal_eval(md.get(CLASS_HIERARCHY, "[]"))
                except (ValueError, SyntaxError):
                    names, hier = [], []
                if names:
                    scope, how = (names[-2] if len(names) >= 2 else ROOT), "metadata"
                    for path, qualified in zip(names[:-1], hier[:-1], strict=False):
                        classes.setdefault(path, _short_class(qualified))
            elif node.name.startswith("/"):
                scope, how = _torchscript_scope(node.name), "torchscript"
            scopes.append((scope, how))
        known = set(classes)
        # For a conv whose fused weight lost its `<module>.weight` name: the layer just before a BatchNorm.
        conv_before: dict[str, str] = {}
        if manifest is not None:
            for before, row in zip(manifest.layers, manifest.layers[1:], strict=False):
                if row.module_class.startswith("BatchNorm") and before.module_class.startswith("Conv"):
                    conv_before[row.path] = before.path

        nodes: list[OnnxNode] = []
        for index, (node, (scope, how)) in enumerate(zip(graph.node, scopes, strict=True)):
            module = scope
            if node.op_type in MAC_OPS and len(node.input) > 1 and node.input[1] in inits:
                weight = node.input[1]
                owner = weight[: -len(".weight")] if weight.endswith(".weight") else None
                if owner and (owner in known or owner.rpartition(".")[0] in known):
                    module, how = owner, "weight"
                elif scope in conv_before:
                    module, how = conv_before[scope], "batchnorm"
            nodes.append(
                OnnxNode(index, node.name, node.op_type, tuple(node.input), tuple(node.output), module or ROOT, how)
            )
        # Nodes without any scope (made by an optimizer, e.g. the Split of a chunk): the module that holds
        # all their consumers (else producers). Resolved in a few passes, as such nodes can chain.
        missing = {n.index for n in nodes if not n.how}
        producer = {o: n for n in nodes for o in n.outputs if o}
        consumers: dict[str, list[OnnxNode]] = {}
        for n in nodes:
            for i in n.inputs:
                consumers.setdefault(i, []).append(n)
        for _ in range(4):
            if not missing:
                break
            for idx in sorted(missing):
                n = nodes[idx]
                near = [c for o in n.outputs for c in consumers.get(o, []) if c.index not in missing]
                if not near:
                    near = [producer[i] for i in n.inputs if i in producer and producer[i].index not in missing]
                if near:
                    nodes[idx] = OnnxNode(
                        n.index, n.name, n.op_type, n.inputs, n.outputs,
                        _common_path([c.module for c in near]), "neighbours",
                    )  # fmt: skip
                    missing.discard(idx)
        for idx in missing:
            n = nodes[idx]
            nodes[idx] = OnnxNode(n.index, n.name, n.op_type, n.inputs, n.outputs, ROOT, "neighbours")

        root_class = ""
        for node in graph.node:
            md = {p.key: p.value for p in node.metadata_props}
            if CLASS_HIERARCHY in md:
                with contextlib.suppress(ValueError, SyntaxError, IndexError):
                    root_class = _short_class(ast.literal_eval(md[CLASS_HIERARCHY])[0])
                break
        classes[ROOT] = root_class or (manifest.builder.name if manifest is not None else "")

        shapes: dict[str, list[int]] = {}
        for vi in [*graph.input, *graph.value_info, *graph.output]:
            t = vi.type.tensor_type
            if t.HasField("shape"):
                shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
        return cls(
            nodes=nodes,
            classes=classes,
            value_shapes=shapes,
            graph_outputs=[o.name for o in graph.output],
        )

    # --- grouping ----------------------------------------------------------------------------------

    def class_of(self, path: str) -> str:
        return self.classes.get(path, "")

    def block_of(self, path: str) -> str:
        """The outermost module on `path` that is not a plain container (Sequential, ModuleList): a
        ResNet's `layer1.0`, MobileNet's `features.3`, a top-level leaf such as `conv1` or `fc`."""
        if path == ROOT:
            return ROOT
        parts = path.split(".")
        for i in range(1, len(parts) + 1):
            prefix = ".".join(parts[:i])
            if self.classes.get(prefix, "") not in CONTAINER_CLASSES:
                return prefix
        return path

    def group_key(self, module: str, group_by: str, depth: int | None) -> str:
        if group_by == "block":
            return self.block_of(module)
        return truncate(module, depth)

    # --- executed nodes -> modules -----------------------------------------------------------------

    def resolve(self, name: str, op_type: str) -> tuple[OnnxNode | None, str]:
        """The exported node an executed node is, by its name or by the value it was renamed after."""
        node = self.by_name.get(name)
        if node is not None:
            return node, "name"
        stripped = name
        while True:
            shorter = _RENAMED_SUFFIX.sub("", stripped)
            if shorter == stripped:
                break
            stripped = shorter
            node = self.by_name.get(stripped)
            if node is not None:
                return node, "renamed"
            prod = self.producer.get(stripped)
            if prod is not None:
                return self._anchor(prod, base_op(op_type)), "renamed"
        return None, "unmapped"

    def _anchor(self, node: OnnxNode, op: str) -> OnnxNode:
        """Walk back from a fused pattern's last node (Relu, Add, HardSigmoid) to its `op` node."""
        cur: OnnxNode | None = node
        for _ in range(6):
            if cur is None:
                break
            if cur.op_type == op:
                return cur
            data = [i for i in cur.inputs if i in self.producer]
            cur = self.producer[data[0]] if data else None
        return node

    def attribute(self, executed: Sequence[tuple[str, str]]) -> list[Attribution]:
        """Attribute one run's executed nodes, given in execution order as (name, op_type)."""
        resolved = [self.resolve(name, op) for name, op in executed]
        ran = {n.index for n, _ in resolved if n is not None}
        out: list[Attribution] = []
        for i, ((_, op), (node, how)) in enumerate(zip(executed, resolved, strict=True)):
            if node is not None:
                out.append(Attribution(node.module, node, how))
                continue
            prev = next((resolved[j][0] for j in range(i - 1, -1, -1) if resolved[j][0] is not None), None)
            nxt = next((resolved[j][0] for j in range(i + 1, len(resolved)) if resolved[j][0] is not None), None)
            if op in INPUT_SIDE_OPS and (nxt or prev):
                target = nxt or prev
                out.append(Attribution(target.module, target, "input-side"))
                continue
            if op in OUTPUT_SIDE_OPS and (prev or nxt):
                target = prev or nxt
                out.append(Attribution(target.module, target, "output-side"))
                continue
            if prev is None and nxt is None:
                out.append(Attribution(ROOT, None, "unmapped"))
                continue
            lo = prev.index if prev is not None else -1
            hi = nxt.index if nxt is not None else len(self.nodes)
            gap = [n for n in self.nodes[lo + 1 : hi] if n.index not in ran and n.op_type != "Constant" and n.inputs]
            if gap:
                pick = next((n for n in gap if n.op_type == op), gap[0])
                out.append(Attribution(pick.module, pick, "inlined"))
            else:
                target = prev or nxt
                out.append(Attribution(target.module, target, "neighbour"))
        return out

    # --- static facts ------------------------------------------------------------------------------

    def group_outputs(self, members: set[int]) -> list[str]:
        """Values produced by the nodes `members` and used outside them (or graph outputs)."""
        outs = self.graph_outputs
        result = []
        for idx in sorted(members):
            node = self.nodes[idx]
            if node.op_type == "Constant":
                continue
            for o in node.outputs:
                if not o:
                    continue
                if o in outs or any(c.index not in members for c in self.consumers.get(o, [])):
                    result.append(o)
        return result
