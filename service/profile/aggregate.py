"""From a measurement (per run, per executed node or segment) to rows grouped by layer, block, op type or node.

Per-run times of a group are the sums of its units' times in that run; mean, p50 and p90 are over runs.
MACs and parameters come from the manifest's static per-layer table: for layer/block rows, the manifest
rows inside the group; for op-type/node rows, each manifest layer's numbers go to the executed node it
is attributed to (its convolution or matmul when it has one).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from service.manifest import Manifest
from service.profile.mapping import MAC_OPS, ModuleMap, base_op, is_within, label
from service.profile.schema import METHOD_NOTES, PREFIX, ProfileResponse, ProfileRow, Stats
from service.profile.sessions import Measurement


def _stats_ms(samples_us: np.ndarray) -> tuple[float, float, float]:
    if samples_us.size == 0:
        return 0.0, 0.0, 0.0
    mean, p50, p90 = samples_us.mean(), np.percentile(samples_us, 50), np.percentile(samples_us, 90)
    return float(mean) / 1e3, float(p50) / 1e3, float(p90) / 1e3


def _round(x: float, digits: int = 4) -> float:
    return float(round(x, digits))


def _key_function(mmap: ModuleMap, group_by: str, depth: int | None) -> Callable[[str], str]:
    return lambda module: mmap.group_key(module, group_by, depth)


def _static_by_module_group(
    manifest: Manifest, key: Callable[[str], str]
) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
    """MACs and params per group key from the manifest, and each key's manifest position (execution order)."""
    macs: dict[str, int] = {}
    params: dict[str, int] = {}
    position: dict[str, int] = {}
    for i, row in enumerate(manifest.layers):
        k = key(row.path)
        macs[k] = macs.get(k, 0) + row.macs
        params[k] = params.get(k, 0) + row.params
        position.setdefault(k, i)
    return macs, params, position


def _static_by_unit(manifest: Manifest, measurement: Measurement) -> tuple[np.ndarray, np.ndarray]:
    """Each manifest layer's MACs and params on one executed unit: the MAC-bearing unit attributed to the
    layer's module, else any unit of that module, else of its nearest ancestor, else of a descendant."""
    units = measurement.units
    macs = np.zeros(len(units), dtype=np.int64)
    params = np.zeros(len(units), dtype=np.int64)
    by_module: dict[str, list[int]] = {}
    for i, u in enumerate(units):
        by_module.setdefault(u.module, []).append(i)

    def pick(candidates: list[int]) -> int:
        return next((i for i in candidates if base_op(units[i].op_types[0]) in MAC_OPS), candidates[0])

    def parent(path: str) -> str:
        return path.rsplit(".", 1)[0] if "." in path else ""

    last: tuple[str, int] | None = None  # (path, unit) of the last manifest layer that ran a node
    for row in manifest.layers:
        target = None
        if row.path in by_module:
            target = pick(by_module[row.path])
            last = (row.path, target)
        elif last is not None and parent(last[0]) == parent(row.path):
            # Folded into the layer before it (BatchNorm into its conv, an activation into the conv).
            target = last[1]
        else:
            parts = row.path.split(".")
            for d in range(len(parts) - 1, -1, -1):
                anc = ".".join(parts[:d])
                if anc in by_module:
                    target = pick(by_module[anc])
                    break
            if target is None:
                inside = [i for i, u in enumerate(units) if is_within(u.module, row.path)]
                target = pick(inside) if inside else None
        if target is not None:
            macs[target] += row.macs
            params[target] += row.params
    return macs, params


def _output_shape(
    mmap: ModuleMap, layers: dict[str, list[int]], key: str, members: set[int], batch: int
) -> list[int] | None:
    """The group's output shape: the manifest's for a module it lists (`layers`: path -> output shape),
    else the graph's when the group has one output."""
    if key in layers:
        shape = list(layers[key])
    else:
        outs = mmap.group_outputs(members) if members else []
        if len(outs) != 1 or outs[0] not in mmap.value_shapes:
            return None
        shape = list(mmap.value_shapes[outs[0]])
    if shape and shape[0] == -1:
        shape[0] = batch
    return shape


def aggregate(
    measurement: Measurement,
    mmap: ModuleMap,
    manifest: Manifest,
    *,
    group_by: str,
    depth: int | None,
    sort: str = "execution",
    cached: bool = False,
) -> ProfileResponse:
    m = measurement
    units = m.units
    runs = m.durations_us.shape[0]
    layer_like = group_by in ("layer", "block")
    key = _key_function(mmap, group_by, depth)

    # Group key of every unit.
    if group_by == "op_type":
        keys = [u.op_types[0] if len(u.op_types) == 1 else "+".join(u.op_types) for u in units]
    elif group_by == "node":
        keys = [u.name for u in units]
    else:
        keys = [key(u.module) for u in units]

    order: dict[str, int] = {}
    for i, k in enumerate(keys):
        order.setdefault(k, i)
    members_of: dict[str, list[int]] = {}
    for i, k in enumerate(keys):
        members_of.setdefault(k, []).append(i)

    if layer_like:
        s_macs, s_params, position = _static_by_module_group(manifest, key)
        # Groups that hold layers but ran no node of their own (BatchNorm folded into its conv, an
        # activation fused into the conv before it): rows with zero time, placed after the group that
        # precedes them in the manifest.
        ordered_static = sorted(position, key=position.get)
        last = -1.0
        for k in ordered_static:
            if k in order:
                last = order[k]
            else:
                last += 1e-3
                order[k] = last
                members_of[k] = []
    else:
        u_macs, u_params = _static_by_unit(manifest, m)

    group_names = sorted(order, key=order.get)
    per_run = {
        k: (m.durations_us[:, members_of[k]].sum(axis=1) if members_of[k] else np.zeros(runs)) for k in group_names
    }
    # Profiler: per-node times add up, so shares are of means. Prefix: a group's time is a difference
    # of two noisy run times, so the median is the robust centre.
    statistic = "p50" if m.method == PREFIX else "mean"
    center = np.median if statistic == "p50" else np.mean
    centers = {k: float(center(v)) if runs else 0.0 for k, v in per_run.items()}
    positive_total = sum(max(v, 0.0) for v in centers.values())

    # Exported-graph nodes per module group, for output shapes of groups that are not manifest rows.
    graph_members: dict[str, set[int]] = {}
    layer_shapes = {r.path: r.output_shape for r in manifest.layers}
    if layer_like:
        for n in mmap.nodes:
            graph_members.setdefault(key(n.module), set()).add(n.index)

    rows: list[ProfileRow] = []
    for k in group_names:
        idx = members_of[k]
        mean, p50, p90 = _stats_ms(per_run[k])
        ops = sorted({op for i in idx for op in units[i].op_types})
        if layer_like:
            macs, params = s_macs.get(k, 0), s_params.get(k, 0)
            name, cls, module = label(k), mmap.class_of(k) or None, None
            shape = _output_shape(mmap, layer_shapes, k, graph_members.get(k, set()), m.batch_size)
        else:
            macs, params = int(u_macs[idx].sum()), int(u_params[idx].sum())
            if group_by == "node":
                u = units[idx[0]]
                name, cls, module = k, mmap.class_of(u.module) or None, label(u.module)
            else:
                name, cls, module = k, None, None
            shape = None
        seconds = centers[k] / 1e6
        gmacs = macs * m.batch_size / seconds / 1e9 if seconds > 0 and macs > 0 else None
        rows.append(
            ProfileRow(
                name=name,
                module_class=cls,
                module=module,
                op_types=ops,
                nodes=sum(units[i].nodes for i in idx),
                mean_ms=_round(mean),
                p50_ms=_round(p50),
                p90_ms=_round(p90),
                share=_round(max(centers[k], 0.0) / positive_total, 5) if positive_total > 0 else 0.0,
                macs=int(macs),
                params=int(params),
                output_shape=shape,
                gmacs_per_s=_round(gmacs, 2) if gmacs is not None else None,
            )
        )
    if sort == "time":
        rows.sort(key=lambda r: -r.mean_ms)

    total_mean, total_p50, total_p90 = _stats_ms(m.totals_us)
    total_center = total_p50 if statistic == "p50" else total_mean
    node_sum = sum(centers.values()) / 1e3
    providers: dict[str, int] = {}
    for u in units:
        providers[u.provider] = providers.get(u.provider, 0) + u.nodes
    return ProfileResponse(
        model=manifest.name,
        version=manifest.version,
        method=m.method,  # type: ignore[arg-type]
        method_note=METHOD_NOTES[m.method],
        provider=m.provider,
        providers=m.providers,
        node_providers=providers,
        batch_size=m.batch_size,
        runs=m.runs,
        warmup=m.warmup,
        group_by=group_by,  # type: ignore[arg-type]
        depth=depth if group_by == "layer" else None,
        sort=sort,  # type: ignore[arg-type]
        statistic=statistic,  # type: ignore[arg-type]
        total_ms=Stats(mean=_round(total_mean), p50=_round(total_p50), p90=_round(total_p90)),
        node_sum_ms=_round(node_sum),
        unattributed_ms=_round(total_center - node_sum),
        macs=manifest.macs,
        params=manifest.num_params,
        rows=rows,
        warnings=list(m.warnings),
        cached=cached,
        measured_at=m.measured_at,
        seconds=m.seconds,
    )
