"""Federated runs: accuracy per round for each strategy (SVG), and a Markdown table of the finals."""

from __future__ import annotations

import html
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path

from edgekd._io import write_json, write_text, write_with
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


def find_federations(folder: Path) -> dict[str, History]:
    """Accuracy per round of the federations in `folder`: its own `model.pt` and its sub-folders'
    (`edgekd federate --out` folders), labelled by strategy, or by strategy and folder when a strategy repeats."""
    from edgekd.errors import UserError
    from edgekd.models import load_checkpoint

    found: list[tuple[str, str, History]] = []
    for path in [p for p in [folder / "model.pt", *sorted(folder.glob("*/model.pt"))] if p.is_file()]:
        try:
            meta = load_checkpoint(path).get("meta") or {}
        except UserError:  # not an edgekd checkpoint: not a federation
            continue
        if meta.get("kind") == "federated" and meta.get("history"):
            found.append((str(meta["federation"]["strategy"]), path.parent.name, meta["history"]))
    strategies = [strategy for strategy, _, _ in found]
    unique = len(set(strategies)) == len(strategies)
    return {(s if unique else f"{s} ({name})"): history for s, name, history in found}


def _html_table(markdown: str) -> str:
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in markdown.splitlines()]
    head, body = rows[0], rows[2:]
    cells = "".join(f"<th>{html.escape(c)}</th>" for c in head)
    lines = [f"<table><tr>{cells}</tr>"]
    lines += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in body]
    return "\n".join(lines) + "\n</table>"


def write_federation_reports(runs: Mapping[str, History], out: Path, formats: Sequence[str]) -> list[Path]:
    """`edgekd report` on federations: federated.md + federated.svg (md), report.json (every round's
    numbers) and report.html (the accuracy-per-round plot inline, and the table)."""
    written: list[Path] = []
    if "json" in formats:
        write_json(out / "report.json", {"federations": {label: list(h) for label, h in runs.items()}})
        written.append(out / "report.json")
    if "html" in formats:
        table = _html_table(final_table({k: [v] for k, v in runs.items()}))
        page = (
            '<!doctype html>\n<html><head><meta charset="utf-8"><title>Federated runs</title></head><body>\n'
            f"<h1>Federated runs</h1>\n<h2>Test accuracy per round</h2>\n{accuracy_plot(runs)}\n{table}\n"
            "</body></html>\n"
        )
        write_text(out / "report.html", page)
        written.append(out / "report.html")
    if "md" in formats:
        md = write_federated_report(runs, out)
        written += [md, md.with_suffix(".svg")]
    return written
