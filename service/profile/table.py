"""A profile response as a terminal table (the command-line twin prints this)."""

from __future__ import annotations

from service.profile.schema import ProfileResponse


def _count(n: int) -> str:
    if n >= 1e9:
        return f"{n / 1e9:.2f}G"
    if n >= 1e6:
        return f"{n / 1e6:.2f}M"
    if n >= 1e3:
        return f"{n / 1e3:.1f}k"
    return str(n)


def _shape(shape: list[int] | None) -> str:
    return "x".join(str(d) for d in shape) if shape else ""


def render_table(r: ProfileResponse, *, max_ops: int = 3) -> str:
    head = [
        f"{r.model} v{r.version}: {r.method} on {r.provider}, batch {r.batch_size}, {r.runs} runs "
        f"(+{r.warmup} warm-up), group_by={r.group_by}" + (f" depth={r.depth}" if r.depth else ""),
        f"total per run: mean {r.total_ms.mean:.3f} ms, p50 {r.total_ms.p50:.3f} ms, p90 {r.total_ms.p90:.3f} ms; "
        f"nodes {r.node_sum_ms:.3f} ms + unattributed {r.unattributed_ms:.3f} ms" + (" (cached)" if r.cached else ""),
        f"{_count(r.macs)} MACs/image, {_count(r.params)} params",
    ]
    cols = ["name", "class", "ops", "nodes", "mean ms", "p50 ms", "p90 ms", "share", "MACs", "params", "output",
            "GMAC/s"]  # fmt: skip
    body = []
    for row in r.rows:
        ops = ",".join(row.op_types[:max_ops]) + ("..." if len(row.op_types) > max_ops else "")
        body.append([
            row.name if row.module is None else f"{row.name} [{row.module}]",
            row.module_class or "",
            ops,
            str(row.nodes),
            f"{row.mean_ms:.3f}",
            f"{row.p50_ms:.3f}",
            f"{row.p90_ms:.3f}",
            f"{100 * row.share:.1f}%",
            _count(row.macs),
            _count(row.params),
            _shape(row.output_shape),
            f"{row.gmacs_per_s:.1f}" if row.gmacs_per_s is not None else "",
        ])  # fmt: skip
    widths = [max(len(c), *(len(b[i]) for b in body)) if body else len(c) for i, c in enumerate(cols)]
    right = {3, 4, 5, 6, 7, 8, 9, 11}

    def fmt(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    lines = [*head, "", fmt(cols), fmt(["-" * w for w in widths]), *(fmt(b) for b in body)]
    lines += [f"warning: {w}" for w in r.warnings]
    return "\n".join(line.rstrip() for line in lines)
