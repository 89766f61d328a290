"""The latency profile of a space (`edgekd profile`): latency.json, latency.md and latency.png.

Takes the profile's JSON (`edgekd.select.profile.LatencyProfile.to_json`) and turns its numbers into
text and a figure: measured median and CI against FLOPs per family (left), predicted against measured
with the +-10% band (right; held-out candidates filled, probes hollow).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekd._io import write_json, write_text, write_with

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]


def _ms(value: float) -> str:
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def latency_markdown(data: dict[str, Any]) -> str:
    """The table: one row per candidate, fastest first."""
    t = data["target"]
    lines = [
        f"# Latency profile: {data['space']} on {t['name']}",
        "",
        f"{t['runtime']} {t['runtime_version']} {t['precision']} on {t['device']} ({t['cpu_model']}),"
        f" {data['threads']} thread(s), batch {data['batch']}. Untrained candidates measured side by side in"
        f" interleaved rounds (stopped by: {data['stopped_by']}); median over rounds with its 95% CI.",
    ]
    if data.get("floor_ms") is not None:
        lines.append(f"Per-call floor (a null model with the same input and output): {_ms(data['floor_ms'])} ms.")
    pred = data["predictor"]
    padding = ", padding MACs priced on their own" if pred.get("own_padding") else ""
    lines += [
        f"Predictor: per-layer costs fitted on the probes (vector width {pred['vector']}{padding}, per-call overhead"
        f" {_ms(pred['overhead_ms'])} ms); the other candidates are held out.",
        "",
        "| candidate | px | params | MFLOPs | measured ms [95% CI] | predicted ms | error | |",
        "|---|---:|---:|---:|---|---:|---:|---|",
    ]
    for r in data["rows"]:
        ci = f"{_ms(r['measured_ms'])} [{_ms(r['ci_low_ms'])}, {_ms(r['ci_high_ms'])}]"
        lines.append(
            f"| {r['arch']} | {r['image_size']} | {r['params']:,} | {r['flops'] / 1e6:.1f} | {ci} |"
            f" {_ms(r['predicted_ms'])} | {r['error_pct']:+.1f}% | {'probe' if r['probe'] else 'held out'} |"
        )
    held = data.get("held_out")
    if held:
        lines += [
            "",
            f"Held out ({held['n']} candidates): {held['within'] * 100:.0f}% within +-{held['tolerance'] * 100:.0f}%"
            f" of the measurement, MAPE {held['mape_pct']:.1f}%, RMSE {_ms(held['rmse_ms'])} ms,"
            f" Kendall's tau {held['tau']:.2f}.",
        ]
    return "\n".join(lines) + "\n"


def latency_figure(data: dict[str, Any], path: Path) -> None:
    """Measured latency against FLOPs (left) and predicted against measured (right), as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = data["rows"]
    families = sorted({r["family"] for r in rows})
    colour = {f: PALETTE[i % len(PALETTE)] for i, f in enumerate(families)}
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=100)
    for family in families:
        mine = [r for r in rows if r["family"] == family]
        x = [r["flops"] / 1e6 for r in mine]
        y = [r["measured_ms"] for r in mine]
        err = [[r["measured_ms"] - r["ci_low_ms"] for r in mine], [r["ci_high_ms"] - r["measured_ms"] for r in mine]]
        left.errorbar(x, y, yerr=err, fmt="o", color=colour[family], label=family, capsize=2)
        for probe in (True, False):
            sel = [r for r in mine if r["probe"] is probe]
            right.scatter(
                [r["measured_ms"] for r in sel],
                [r["predicted_ms"] for r in sel],
                facecolors="none" if probe else colour[family],
                edgecolors=colour[family],
            )
    left.set(xlabel="MFLOPs (batch 1)", ylabel=f"measured ms (batch {data['batch']})", title="measured, 95% CI")
    left.legend(fontsize=8)
    hi = max(max(r["measured_ms"], r["predicted_ms"]) for r in rows) * 1.1
    right.plot([0, hi], [0, hi], color="grey", lw=1)
    right.fill_between([0, hi], [0, 0.9 * hi], [0, 1.1 * hi], color="grey", alpha=0.15, label="+-10%")
    right.set(xlabel="measured ms", ylabel="predicted ms", title="predictor (filled: held out)", xlim=(0, hi))
    right.set_ylim(0, hi)
    right.legend(fontsize=8)
    for ax in (left, right):
        ax.grid(True, alpha=0.3)
    fig.suptitle(f"{data['space']} on {data['target']['name']}", fontsize=10)
    fig.tight_layout()
    write_with(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)


def write_latency_profile(data: dict[str, Any], out: Path) -> dict[str, Path]:
    """latency.json, latency.md and latency.png in `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = {"json": out / "latency.json", "markdown": out / "latency.md", "plot": out / "latency.png"}
    write_json(files["json"], data)
    write_text(files["markdown"], latency_markdown(data))
    latency_figure(data, files["plot"])
    return files
