"""The self-contained HTML report of a run folder: tables and inline SVG plots, no external files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgekd import __version__
from edgekd.report import plots
from edgekd.report.text import fmt_ms, fmt_pct
from edgekd.store import Store


def _label(path: str) -> str:
    p = Path(path)
    return p.parent.name or p.name


def _benchmarks(store: Store) -> list[dict[str, Any]]:
    rows = []
    for b in store.benchmarks():
        r = b["result"]
        lat = r["latency_ms"]
        rows.append(
            {
                "label": _label(b["artifact"]),
                "runtime": b["runtime"],
                "precision": b["precision"],
                "batch": b["batch"],
                "p50_raw": lat["p50"],
                "acc_raw": b["accuracy"],
                "quantiles": r.get("latency_quantiles_ms") or [],
                "p50": fmt_ms(lat["p50"]),
                "p90": fmt_ms(lat["p90"]),
                "p99": fmt_ms(lat["p99"]),
                "mean": fmt_ms(lat["mean"]),
                "std": fmt_ms(lat["std"]),
                "throughput": f"{r['throughput_per_s']:.1f}",
                "accuracy": fmt_pct(b["accuracy"]),
                "front": False,
                "fingerprint": r.get("fingerprint", {}),
            }
        )
    return rows


def _artifacts(store: Store) -> list[dict[str, Any]]:
    rows = []
    for a in store.query("SELECT path, info FROM artifacts ORDER BY id"):
        info = json.loads(a["info"])
        acc, parity = info.get("accuracy") or {}, info.get("parity") or {}
        rows.append(
            {
                "label": _label(a["path"]),
                "target": info.get("target", ""),
                "chain": acc,
                "torch": fmt_pct(acc.get("torch")),
                "onnx": fmt_pct(acc.get("onnx")),
                "artifact": fmt_pct(acc.get("artifact")),
                "diff": f"{parity['max_abs_diff']:.1e}" if "max_abs_diff" in parity else "-",
                "agreement": fmt_pct(parity.get("top1_agreement")),
                "shift": [
                    {"domain": domain, **{stage: fmt_pct(acc.get(stage)) for stage in ("torch", "onnx", "artifact")}}
                    for domain, acc in (info.get("shift") or {}).items()
                ],
            }
        )
    return rows


def _runs(store: Store) -> tuple[list[dict[str, Any]], list[tuple[str, list[float], list[float]]]]:
    rows, curves = [], []
    for run in store.runs():
        metrics = store.metrics(run["id"])
        val = [(m["epoch"], m["value"]) for m in metrics if m["name"] == "val_acc"]
        test = [m["value"] for m in metrics if m["name"] == "test_acc"]
        rows.append(
            {
                "id": run["id"],
                "kind": run["kind"],
                "name": run["name"],
                "epochs": len(val),
                "val": fmt_pct(val[-1][1] if val else None),
                "test": fmt_pct(test[-1] if test else None),
            }
        )
        if val:
            curves.append((run["name"], [e for e, _ in val], [100 * v for _, v in val]))
    return rows, curves


def _selections(store: Store) -> list[dict[str, Any]]:
    """Each `select` run's selection.json, with its plot: every trained candidate at its latency on the
    target (re-measured when finished, screened otherwise) against its last validation accuracy."""
    from edgekd.report.selection import by_outcome, compute_line, headline, screened_latency, screened_ms

    out = []
    for run in store.runs("select"):
        path = json.loads(run["config"]).get("selection")
        try:
            sel = json.loads(Path(path).read_text())
        except (OSError, TypeError, ValueError):
            continue  # the run folder was moved or cleaned: the store still lists the run
        trained = [r for r in sel["candidates"] if r.get("val_acc") is not None]
        latency = [float((r.get("final") or {}).get("p50_ms") or screened_ms(r) or 0.0) for r in trained]
        intervals = [_interval(r) for r in trained]
        floor = (sel.get("floor") or {}).get("median_ms")
        out.append(
            {
                "target": sel["target"]["name"],
                "headline": headline(sel),
                "compute": compute_line(sel),
                "markdown": (sel.get("files") or {}).get("markdown", ""),
                "rows": [
                    {
                        "arch": r["arch"],
                        "params": f"{r['params']:,}",
                        "fate": r["fate"],
                        "why": r["why"],
                        "latency": screened_latency(r),
                        "epochs": r.get("epochs", 0),
                        "val": fmt_pct(r.get("val_acc")),
                    }
                    for r in by_outcome(sel["candidates"])
                ],
                "svg": plots.pareto_plot(
                    [f"{r['arch']} ({r.get('epochs', 0)} ep)" for r in trained],
                    latency,
                    [r["val_acc"] for r in trained],
                    budget_ms=sel["budget_ms"],
                    ylabel="validation accuracy (%)",
                    intervals=intervals,
                    floor_ms=floor,
                )
                if trained
                else "",
            }
        )
    return out


def _interval(row: dict[str, Any]) -> tuple[float, float] | None:
    """The CI (low, high) of a candidate's plotted latency: its final build's, else its screening's."""
    src = row.get("final") or row
    low, high = src.get("ci_low_ms"), src.get("ci_high_ms")
    return None if low is None or high is None else (float(low), float(high))


def render_html(store: Store, title: str) -> str:
    from jinja2 import Environment, PackageLoader, select_autoescape

    benchmarks = _benchmarks(store)
    scored = [b for b in benchmarks if b["acc_raw"] is not None]
    for i in plots.pareto_front([(b["p50_raw"], b["acc_raw"]) for b in scored]):
        scored[i]["front"] = True
    artifacts = _artifacts(store)
    runs, curves = _runs(store)
    fp = benchmarks[0]["fingerprint"] if benchmarks else {}
    context = {
        "title": title,
        "version": __version__,
        "store": store.path.name,
        "machine": f"{fp.get('cpu_model')}, {fp.get('cores')} cores" if fp else "",
        "benchmarks": benchmarks,
        "artifacts": artifacts,
        "runs": runs,
        "selections": _selections(store),
        "pareto_svg": plots.pareto_plot(
            [b["label"] for b in scored], [b["p50_raw"] for b in scored], [b["acc_raw"] for b in scored]
        )
        if scored
        else "",
        "latency_svg": plots.latency_plot([b["label"] for b in benchmarks], [b["quantiles"] for b in benchmarks])
        if any(b["quantiles"] for b in benchmarks)
        else "",
        "chain_svg": plots.chain_plot([a["label"] for a in artifacts], [a["chain"] for a in artifacts])
        if any(a["chain"] for a in artifacts)
        else "",
        "curves_svg": plots.curves_plot(curves, "validation accuracy (%)") if curves else "",
    }
    env = Environment(loader=PackageLoader("edgekd.report", "templates"), autoescape=select_autoescape())
    return env.get_template("report.html.j2").render(**context)
