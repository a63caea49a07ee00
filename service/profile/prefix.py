"""The prefix-differences method: device time per group without a device profiler.

onnxruntime's profiler times each node from kernel start to return on the host, which on a GPU is the
launch, not the work (the stock onnxruntime-gpu wheel has no CUPTI). This method times real work:

1. the exported graph's nodes, in order, are cut into contiguous segments by group (block, or module
   path at a depth); nodes computing constants only are left to whichever prefix needs them;
2. prefix k = segments 1..k, extracted with `onnx.utils.Extractor` with every value that crosses the
   cut as an output (one tensor for a chain of blocks, several across a skip connection); the last
   prefix is the model itself, and prefix 0 is an empty run (`Shape` of the input: the fixed cost of a
   Run call);
3. each prefix runs in its own session (same providers and optimisation level as serving, so
   onnxruntime's fusions inside a prefix are kept) with the input and outputs bound on the device
   (IO binding, output buffers allocated once) and is synchronised after every run;
4. prefixes k-1 and k run interleaved, warm-up first, then `runs` pairs; segment k's time per pair is
   T(k) - T(k-1), so slow drifts of the machine cancel in each difference; statistics are taken
   over the pairs (median, mean, p90). Only two sessions live at a time, with thread spinning off
   where they have pools of their own (the command line; in the service all sessions share the global
   pool, whose spinning Python cannot turn off).

The differences sum, by construction, to about T(model) - T(0). A segment whose median difference is
under the noise can come out slightly negative; it is reported, and counted as zero in the shares.

Every segment needs all its pairs, so a profile that runs past its time budget is refused (400, with
what to ask for instead) rather than cut short; the server shutting down abandons it (503).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnx.helper
import onnx.utils
import onnxruntime as ort

from service.errors import BadRequest
from service.profile.mapping import ModuleMap, label
from service.profile.schema import PREFIX
from service.profile.sessions import (
    Deadline,
    Measurement,
    OptionsFactory,
    ProviderSpec,
    Unit,
    create_session,
    input_batch,
    io_device,
)


@dataclass
class Segment:
    key: str  # group key (module path) of its nodes
    nodes: list[int]  # exported-graph node indexes


def constant_nodes(mmap: ModuleMap, initializers: set[str]) -> set[int]:
    """Nodes whose inputs are all initializers or other constant nodes' outputs (folded by onnxruntime)."""
    const_values = set(initializers)
    result: set[int] = set()
    for node in mmap.nodes:
        if all((not i) or i in const_values for i in node.inputs):
            result.add(node.index)
            const_values.update(o for o in node.outputs if o)
    return result


def segment(mmap: ModuleMap, key: Callable[[str], str], skip: set[int]) -> list[Segment]:
    """Maximal runs of consecutive (non-constant) nodes with the same group key."""
    segments: list[Segment] = []
    for node in mmap.nodes:
        if node.index in skip:
            continue
        k = key(node.module)
        if segments and segments[-1].key == k:
            segments[-1].nodes.append(node.index)
        else:
            segments.append(Segment(k, [node.index]))
    return segments


def _overhead_model(model: onnx.ModelProto, input_name: str) -> bytes:
    """A model that only reads the input's shape: one Run call's fixed cost."""
    graph_input = next(i for i in model.graph.input if i.name == input_name)
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Shape", [input_name], ["input_shape"])],
        "run_overhead",
        [graph_input],
        [onnx.helper.make_tensor_value_info("input_shape", onnx.TensorProto.INT64, [None])],
    )
    out = onnx.helper.make_model(graph, opset_imports=list(model.opset_import))
    out.ir_version = model.ir_version
    return out.SerializeToString()


class _Timed:
    """One session with IO binding; calling it runs once, synchronised, and returns nanoseconds."""

    def __init__(self, model: bytes | str, providers, options: ort.SessionOptions, x: np.ndarray, host_outputs=False):
        self.session = create_session(model, providers, options)
        device, device_id = io_device(self.session)
        self.binding = self.session.io_binding()
        self.x = ort.OrtValue.ortvalue_from_numpy(x, device, device_id)
        self.binding.bind_ortvalue_input(self.session.get_inputs()[0].name, self.x)
        names = [o.name for o in self.session.get_outputs()]
        out_device = "cpu" if host_outputs else device
        for name in names:
            self.binding.bind_output(name, out_device, device_id if out_device != "cpu" else 0)
        self.session.run_with_iobinding(self.binding)
        self.binding.synchronize_outputs()
        # Keep the buffers onnxruntime allocated on the first run: no allocation inside the timed runs.
        outputs = self.binding.get_outputs()
        self.binding.clear_binding_outputs()
        for name, value in zip(names, outputs, strict=True):
            self.binding.bind_ortvalue_output(name, value)
        self._outputs = outputs

    def __call__(self) -> int:
        t0 = time.perf_counter_ns()
        self.session.run_with_iobinding(self.binding)
        self.binding.synchronize_outputs()
        return time.perf_counter_ns() - t0

    def providers(self) -> list[str]:
        return self.session.get_providers()

    def close(self) -> None:
        self._outputs = None
        self.binding = None
        self.x = None
        self.session = None


class OverBudget(Exception):
    """The profile ran past its time budget."""


def _time_pair(a: _Timed, b: _Timed, runs: int, warmup: int, deadline: Deadline) -> tuple[np.ndarray, np.ndarray]:
    for _ in range(warmup):
        a()
        b()
    ta = np.empty(runs)
    tb = np.empty(runs)
    for r in range(runs):
        if deadline.passed():
            raise OverBudget
        if r % 2:
            tb[r] = b()
            ta[r] = a()
        else:
            ta[r] = a()
            tb[r] = b()
    return ta / 1e3, tb / 1e3  # microseconds


def measure_prefix(
    model_path: Path,
    mmap: ModuleMap,
    input_name: str,
    input_shape: Sequence[int],
    providers: Sequence[ProviderSpec],
    options_factory: OptionsFactory,
    *,
    key: Callable[[str], str],
    batch_size: int,
    runs: int,
    warmup: int,
    max_segments: int = 256,
    deadline: Deadline | None = None,
) -> Measurement:
    start = time.perf_counter()
    deadline = deadline or Deadline(None)
    model = onnx.load(str(model_path))
    initializers = {t.name for t in model.graph.initializer}
    segments = segment(mmap, key, constant_nodes(mmap, initializers))
    if not segments:
        raise BadRequest("the model has no nodes to time")
    if len(segments) > max_segments:
        raise BadRequest(
            f"method=prefix would cut {len(segments)} prefixes (limit {max_segments}): "
            "use group_by=block or a smaller depth"
        )

    cuts: list[list[str]] = []
    members: set[int] = set()
    for seg in segments:
        members.update(seg.nodes)
        cuts.append(mmap.group_outputs(members))
    cuts[-1] = list(mmap.graph_outputs)

    # Every value a cut exposes needs a value_info for the extractor; the exporter writes most of them.
    known = {vi.name for vi in [*model.graph.value_info, *model.graph.input, *model.graph.output]}
    missing = sorted({v for cut in cuts for v in cut} - known)
    for name in missing:
        model.graph.value_info.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    extractor = onnx.utils.Extractor(model)
    x = input_batch(input_shape, batch_size)

    def prefix_bytes(k: int) -> bytes:
        if k == len(segments) - 1:
            return model.SerializeToString()
        sub = extractor.extract_model([input_name], cuts[k])
        sub.ir_version = model.ir_version
        return sub.SerializeToString()

    def options() -> ort.SessionOptions:
        # Two sessions alternate: with per-session thread pools, the idle one's spinning workers would steal
        # the cores from the running one (on a GPU the host threads are idle anyway).
        so = options_factory()
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return so

    diffs = np.zeros((runs, len(segments)))
    overhead: np.ndarray | None = None
    totals = np.zeros(runs)
    used: list[str] = []
    prev = _Timed(_overhead_model(model, input_name), providers, options(), x, host_outputs=True)
    k = 0
    try:
        for k in range(len(segments)):
            cur = _Timed(prefix_bytes(k), providers, options(), x)
            prev, old = cur, prev  # from here on `prev` (closed in finally) is the newest session
            old_t, totals = _time_pair(old, cur, runs, warmup, deadline)
            old.close()
            diffs[:, k] = totals - old_t
            if k == 0:
                overhead = old_t
                used = cur.providers()
    except OverBudget:
        raise BadRequest(
            f"method=prefix ran past its time budget of {deadline.seconds} s after {k} of {len(segments)} "
            "segments: ask for fewer runs or warm-up runs, a smaller batch, or fewer groups (group_by=block "
            "or a smaller depth)"
        ) from None
    finally:
        prev.close()

    units = []
    for seg in segments:
        ops = sorted({mmap.nodes[i].op_type for i in seg.nodes})
        units.append(Unit(label(seg.key), seg.key, tuple(ops), len(seg.nodes), used[0] if used else "", "segment"))
    warnings = []
    below = [u.name for u, d in zip(units, np.median(diffs, axis=0), strict=True) if d < 0]
    if below:
        warnings.append(
            f"{len(below)} segment(s) below the timing noise (negative median difference, counted as 0 in "
            f"shares): {', '.join(below[:8])}{' ...' if len(below) > 8 else ''}"
        )
    if missing:
        warnings.append(f"{len(missing)} cut value(s) had no shape information; typed FLOAT without shape")
    return Measurement(
        method=PREFIX,
        provider=used[0] if used else "",
        providers=list(used),
        batch_size=batch_size,
        runs=runs,
        warmup=warmup,
        units=units,
        durations_us=diffs,
        totals_us=totals,
        seconds=round(time.perf_counter() - start, 3),
        overhead_us=overhead,
        warnings=warnings,
    )
