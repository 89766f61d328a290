"""Markdown and JSON summaries of a run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekd._io import write_json, write_text
from edgekd.errors import UserError
from edgekd.report.text import fmt_ms, fmt_pct
from edgekd.store import STORE_NAME, Store


def _demo_markdown(summary: dict[str, Any]) -> str:
    data = summary.get("recipe", {}).get("data", "fashion-mnist")
    lines = [
        f"# edgekd {summary.get('name', 'demo')}" + (" (quick)" if summary["quick"] else ""),
        "",
        f"Finished in {summary['seconds'] / 60:.1f} min. Teacher and students trained on"
        f" {'Fashion-MNIST' if data == 'fashion-mnist' else data};"
        " latency measured with edgekd's timing protocol, each artifact in its own process.",
        "",
        "| model | method | params | target | torch acc | artifact acc | parity max abs diff | p50 ms"
        " | p90 ms | p99 ms | throughput/s |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in summary["rows"]:
        lat, art = row["bench"]["latency_ms"], row["artifact"]
        lines.append(
            f"| {row['arch']} | {row['method']} | {row['params']:,} | {row['target']} |"
            f" {fmt_pct(row['test_acc_torch'])} | {fmt_pct(row['bench'].get('accuracy'))} |"
            f" {art['parity']['max_abs_diff']:.1e} | {fmt_ms(lat['p50'])} | {fmt_ms(lat['p90'])} |"
            f" {fmt_ms(lat['p99'])} | {row['bench']['throughput_per_s']:.0f} |"
        )
    if summary["rows"]:
        fp = summary["rows"][0]["bench"]["fingerprint"]
        lines += [
            "",
            f"Machine: {fp.get('cpu_model')}, {fp.get('cores')} cores; batch {fp.get('batch')},"
            f" {fp.get('threads')} threads.",
        ]
    lines += _shift_markdown(summary["rows"])
    for sel in summary.get("selections", []):
        lines += _selection_markdown(sel)
    return "\n".join(lines) + "\n"


def _shift_markdown(rows: list[dict[str, Any]]) -> list[str]:
    """Each artifact's accuracy per shifted domain next to its clean accuracy (a recipe's `shift:`), and the
    mean corruption error (mean error over the corruptions, unnormalised)."""
    shifted = [r for r in rows if r["bench"].get("shift")]
    if not shifted:
        return []
    domains = list(dict.fromkeys(d for r in shifted for d in r["bench"]["shift"]))
    lines = [
        "",
        "## Accuracy under domain shift",
        "",
        "Seeded corruptions of the test split (the ImageNet-C idea at this scale) and any user domains, scored"
        " on each built artifact. mCE: mean error over the corruptions, not normalised.",
        "",
        "| model | target | clean | " + " | ".join(domains) + " | mCE |",
        "|---|---|---:|" + "---:|" * len(domains) + "---:|",
    ]
    for r in shifted:
        b = r["bench"]
        cells = " | ".join(fmt_pct(b["shift"].get(d)) for d in domains)
        lines.append(
            f"| {r['arch']} | {r['target']} | {fmt_pct(b.get('accuracy'))} | {cells} |"
            f" {fmt_pct(b.get('mean_corruption_error'))} |"
        )
    return lines


def _ranked_by(sel: dict[str, Any], chosen: dict[str, Any]) -> str:
    """How the finished students were ranked, when not on clean validation accuracy (`rank_by`)."""
    rank_by = sel.get("rank_by") or "clean"
    if rank_by == "clean":
        return ""
    return f" Ranked by validation accuracy under {rank_by}: {fmt_pct(chosen.get('rank_acc'))} for the chosen."


def _selection_markdown(sel: dict[str, Any]) -> list[str]:
    from edgekd.report.selection import (
        by_outcome,
        compute_line,
        drift_lines,
        fmt_floor,
        fmt_latency,
        fmt_rule,
        screened_latency,
        undetermined,
    )

    c = sel["chosen"]
    if sel["met_budget"]:
        verdict = "within the budget"
    elif sel.get("budget_verdict") == "undetermined":
        verdict = f"BUDGET UNDETERMINED: {undetermined(sel)}"
    else:
        verdict = f"BUDGET MISSED by {fmt_ms(sel['missed_by_ms'])} ms: no finished student meets it"
    lines = [
        "",
        f"## Selection for {sel['target']}",
        "",
        f"Budget {fmt_ms(sel['budget_ms'])} ms ({sel['budget_source']}), met when"
        f" {fmt_rule(sel.get('budget_rule'))} is within it; per-call floor {fmt_floor(sel.get('floor'))}."
        f" Chosen: **{c['arch']}**, {fmt_latency(c)} ms (median [95% CI] over rounds), val acc"
        f" {fmt_pct(c['val_acc'])}, test acc {fmt_pct(c['test_acc'])}; {verdict}. Compute: {compute_line(sel)}."
        + _ranked_by(sel, c)
        + f" Full record: {sel['files']['markdown']}.",
        *drift_lines(sel),
        "",
        "| candidate | params | screened ms [95% CI] | val acc | outcome |",
        "|---|---:|---:|---:|---|",
    ]
    lines += [
        f"| {r['arch']} | {r['params']:,} | {screened_latency(r)} | {fmt_pct(r['val_acc'])} | {r['why']} |"
        for r in by_outcome(sel["candidates"])
    ]
    return lines


def write_demo_summary(workdir: Path, summary: dict[str, Any]) -> dict[str, str]:
    md, js = workdir / "summary.md", workdir / "summary.json"
    write_json(js, summary)
    write_text(md, _demo_markdown(summary))
    return {"markdown": str(md), "json": str(js)}


def _store_markdown(store: Store) -> str:
    lines = ["# edgekd run report", "", "## Training runs", "", "| id | kind | name | test acc |", "|---|---|---|---:|"]
    for run in store.runs():
        test = [m["value"] for m in store.metrics(run["id"]) if m["name"] == "test_acc"]
        lines.append(f"| {run['id']} | {run['kind']} | {run['name']} | {fmt_pct(test[-1] if test else None)} |")
    lines += [
        "",
        "## Benchmarks",
        "",
        "| artifact | runtime | precision | batch | p50 ms | mean ms | accuracy |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for b in store.benchmarks():
        lines.append(
            f"| {Path(b['artifact']).parent.name}/{Path(b['artifact']).name} | {b['runtime']} |"
            f" {b['precision']} | {b['batch']} | {fmt_ms(b['p50_ms'])} | {fmt_ms(b['mean_ms'])} |"
            f" {fmt_pct(b['accuracy'])} |"
        )
    return "\n".join(lines) + "\n"


def write_reports(run_dir: Path, formats: list[str]) -> list[Path]:
    """Reports of the results store in `run_dir`, or of the federations in it (`find_federations`)."""
    unknown = set(formats) - {"md", "json", "html"}
    if unknown:
        raise UserError(f"unknown report format(s) {sorted(unknown)}; choose from html, md, json")
    store_path = run_dir / STORE_NAME
    if not store_path.is_file():
        from edgekd.report.federated import find_federations, write_federation_reports

        federations = find_federations(run_dir)
        if federations:  # `edgekd federate --out` folders keep no store: their checkpoints hold each round
            return write_federation_reports(federations, run_dir, formats)
        raise UserError(
            f"{run_dir} holds no results store ({STORE_NAME}) and no federation; give a run folder edgekd wrote"
        )
    store = Store(store_path)
    written = []
    if "json" in formats:
        runs = [{**r, "metrics": store.metrics(r["id"])} for r in store.runs()]
        write_json(run_dir / "report.json", {"runs": runs, "benchmarks": store.benchmarks()})
        written.append(run_dir / "report.json")
    if "html" in formats:
        from edgekd.report.html import render_html

        write_text(run_dir / "report.html", render_html(store, run_dir.resolve().name))
        written.append(run_dir / "report.html")
    if "md" in formats:
        write_text(run_dir / "report.md", _store_markdown(store))
        written.append(run_dir / "report.md")
    return written
