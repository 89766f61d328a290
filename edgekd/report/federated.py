"""Federated runs: accuracy per round for each strategy (SVG), and a Markdown table of the finals."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path

from edgekd._io import write_with
from edgekd.report.plots import PALETTE, _figure, _svg

History = Sequence[Mapping[str, float]]


def accuracy_plot(runs: Mapping[str, History]) -> str:
    """One line per run: test accuracy (%) against the round."""
    fig, ax = _figure()
    for i, (label, history) in enumerate(sorted(runs.items())):
        rounds = [int(row["round"]) for row in history]
        ax.plot(rounds, [100 * row["test_acc"] for row in history], color=PALETTE[i % len(PALETTE)], label=label)
    ax.set_xlabel("round")
    ax.set_ylabel("test accuracy (%)")
    ax.legend(fontsize=8)
    return _svg(fig)


def _mean_std(values: Sequence[float]) -> str:
    if len(values) < 2:
        return f"{100 * values[0]:.2f}" if values else "-"
    return f"{100 * statistics.mean(values):.2f} ± {100 * statistics.stdev(values):.2f}"


def final_table(groups: Mapping[str, Sequence[History]]) -> str:
    """Markdown: per group (e.g. strategy at an alpha), runs, rounds, final accuracy (mean ± std over runs)
    and the mean bytes sent per round (server to clients, clients to server)."""
    lines = [
        "| run | n | rounds | final test acc (%) | down / round (kB) | up / round (kB) |",
        "|---|---|---|---|---|---|",
    ]
    for label, histories in groups.items():
        done = [h for h in histories if h]
        finals = [h[-1]["test_acc"] for h in done]
        rows = [row for h in done for row in h]
        down = statistics.mean(row.get("bytes_down", 0.0) for row in rows) / 1e3 if rows else 0.0
        up = statistics.mean(row.get("bytes_up", 0.0) for row in rows) / 1e3 if rows else 0.0
        rounds = max((len(h) for h in done), default=0)
        lines.append(f"| {label} | {len(done)} | {rounds} | {_mean_std(finals)} | {down:.1f} | {up:.1f} |")
    return "\n".join(lines) + "\n"


def _write(path: Path, text: str) -> None:
    path.write_text(text)


def write_federated_report(runs: Mapping[str, History], out: Path) -> Path:
    """`<out>/federated.md` (the table) beside `<out>/federated.svg` (accuracy per round); returns the .md."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    svg, md = out / "federated.svg", out / "federated.md"
    plot = accuracy_plot(runs)
    write_with(svg, lambda tmp: _write(tmp, plot))
    table = final_table({k: [v] for k, v in runs.items()})
    write_with(md, lambda tmp: _write(tmp, f"# Federated runs\n\n{table}\n![accuracy per round]({svg.name})\n"))
    return md
