"""Plots for the reports, rendered with matplotlib's Agg backend to inline SVG (self-contained HTML)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]


def _figure(width: float = 6.4, height: float = 3.6) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width, height), dpi=100)
    ax.grid(True, alpha=0.3)
    return fig, ax


def _svg(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.StringIO()
    fig.tight_layout()
    fig.savefig(buf, format="svg")
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg") :]  # drop the XML prolog: the SVG is inlined into HTML


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points (latency, accuracy) that no other point beats on both (lower, higher)."""
    front = []
    for i, (lat, acc) in enumerate(points):
        dominated = any(
            lat2 <= lat and acc2 >= acc and (lat2 < lat or acc2 > acc)
            for j, (lat2, acc2) in enumerate(points)
            if j != i
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def pareto_plot(
    labels: Sequence[str],
    latency_ms: Sequence[float],
    accuracy: Sequence[float],
    budget_ms: float | None = None,
    ylabel: str = "accuracy (%)",
    intervals: Sequence[tuple[float, float] | None] | None = None,
    floor_ms: float | None = None,
) -> str:
    """Accuracy against latency with the Pareto front; `intervals` (CI low, high per point) become
    horizontal error bars, `budget_ms` and `floor_ms` (the per-call floor) vertical lines."""
    fig, ax = _figure()
    if budget_ms is not None:
        ax.axvline(budget_ms, color="#c0392b", linestyle="--", linewidth=1, label=f"budget {budget_ms:.3g} ms")
    if floor_ms is not None:
        ax.axvline(floor_ms, color="#555555", linestyle=":", linewidth=1, label=f"per-call floor {floor_ms:.2g} ms")
    points = list(zip(latency_ms, accuracy, strict=True))
    front = pareto_front(points)
    if intervals is not None and any(iv is not None for iv in intervals):
        spans = [iv or (lat, lat) for iv, lat in zip(intervals, latency_ms, strict=True)]
        xerr = [
            [max(0.0, lat - lo) for (lo, _), lat in zip(spans, latency_ms, strict=True)],
            [max(0.0, hi - lat) for (_, hi), lat in zip(spans, latency_ms, strict=True)],
        ]
        ys = [100 * a for a in accuracy]
        ax.errorbar(latency_ms, ys, xerr=xerr, fmt="none", ecolor="#888888", capsize=3, zorder=1, label="95% CI")
    ax.scatter(latency_ms, [100 * a for a in accuracy], color="#888888", zorder=2)
    ax.plot(
        [points[i][0] for i in front],
        [100 * points[i][1] for i in front],
        "-o",
        color=PALETTE[1],
        zorder=3,
        label="Pareto front",
    )
    for label, lat, acc in zip(labels, latency_ms, accuracy, strict=True):
        ax.annotate(label, (lat, 100 * acc), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel("latency (ms, median over rounds)" if intervals is not None else "p50 latency (ms)")
    ax.set_ylabel(ylabel)
    ax.legend(loc="lower right", fontsize=8)
    return _svg(fig)


def latency_plot(labels: Sequence[str], quantiles_ms: Sequence[Sequence[float]]) -> str:
    """Latency distributions as CDFs from each benchmark's 101 percentiles."""
    fig, ax = _figure()
    for k, (label, q) in enumerate(zip(labels, quantiles_ms, strict=True)):
        if q:
            ax.plot(q, [i for i in range(len(q))], label=label, color=PALETTE[k % len(PALETTE)])
    ax.set_xscale("log")
    ax.set_xlabel("latency per batch (ms, log scale)")
    ax.set_ylabel("percentile")
    ax.legend(fontsize=7, loc="lower right")
    return _svg(fig)


def curves_plot(runs: Sequence[tuple[str, Sequence[float], Sequence[float]]], ylabel: str) -> str:
    """One line per run: (label, epochs, values)."""
    fig, ax = _figure()
    for k, (label, epochs, values) in enumerate(runs):
        ax.plot(epochs, values, "-o", markersize=3, label=label, color=PALETTE[k % len(PALETTE)])
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7)
    return _svg(fig)


def chain_plot(labels: Sequence[str], chains: Sequence[dict[str, float | None]]) -> str:
    """Grouped bars: accuracy of torch -> ONNX -> artifact for each built artifact."""
    fig, ax = _figure(6.4, 3.2)
    stages = ["torch", "onnx", "artifact"]
    width = 0.8 / len(stages)
    for s, stage in enumerate(stages):
        xs = [i + (s - 1) * width for i in range(len(labels))]
        ys = [100 * (c.get(stage) or 0.0) for c in chains]
        ax.bar(xs, ys, width, label=stage, color=PALETTE[s])
    values = [100 * v for c in chains for v in c.values() if v is not None]
    if values:
        ax.set_ylim(max(0.0, min(values) - 2), min(100.0, max(values) + 1))
    ax.set_xticks(range(len(labels)), labels, rotation=20, ha="right", fontsize=7)
    ax.set_ylabel("accuracy (%)")
    ax.legend(fontsize=7, ncol=3)
    return _svg(fig)
