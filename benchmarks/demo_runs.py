#!/usr/bin/env python3
"""Does `edgekd demo` meet its budget on both targets, run after run? (issue 13, item 6)

    python -m benchmarks.demo_runs --out DIR [--runs 5] [--quick] [--fresh-teacher] [--table-only]

Each run is a fresh `edgekd demo` in a process of its own with its own output folder: a new workdir,
and a new EDGEKD_CACHE (with `--fresh-teacher`, also a new teacher; without it, every run copies the
teacher that the first run trained into its empty cache, so runs differ in what is measured and
distilled, not in the teacher's training). A run's budget, chosen student, its latency interval, the
null model's floor and whether the budget was met are read from its summary.json and written to
`DIR/runs/run<k>.json` as soon as it finishes, so an interrupted suite resumes where it stopped. The
table gives, per target, how many runs met their budget (goal: every one) and each run's numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

TEACHERS = "teachers"


def cpu_line() -> str:
    from edgekd.bench.protocol import cpu_model

    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    isa = [f for f in ("avx512_vnni", "avx512_bf16", "amx_tile", "avx2") if f in flags]
    name = cpu_model() or platform.processor() or "unknown CPU"
    return f"{name} ({', '.join(isa) or 'no AVX2'}), {os.cpu_count()} cores"


def one_run(k: int, args: argparse.Namespace) -> dict[str, Any]:
    """Run demo number `k` in its own process and folder; its record."""
    work = args.out / "work" / f"run{k}"
    shutil.rmtree(work, ignore_errors=True)
    cache = work / "cache"
    first_teachers = args.out / "work" / "run0" / "cache" / TEACHERS
    if not args.fresh_teacher and k > 0 and first_teachers.is_dir():
        shutil.copytree(first_teachers, cache / TEACHERS)
    cache.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, EDGEKD_CACHE=str(cache))
    command = [sys.executable, "-m", "edgekd.cli", "demo", "--workdir", str(work / "demo")]
    if args.quick:
        command.append("--quick")
    start = time.perf_counter()
    with open(work / "demo.log", "w") as log:
        proc = subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT, check=False)
    seconds = time.perf_counter() - start
    record: dict[str, Any] = {"run": k, "exit": proc.returncode, "seconds": seconds, "quick": args.quick}
    summary_path = work / "demo" / "summary.json"
    if proc.returncode != 0 or not summary_path.is_file():
        record["error"] = (work / "demo.log").read_text()[-2000:]
        return record
    summary = json.loads(summary_path.read_text())
    record["selections"] = [
        {
            "target": sel["target"],
            "budget_ms": sel["budget_ms"],
            "budget_rule": sel["budget_rule"],
            "met_budget": sel["met_budget"],
            "budget_verdict": sel.get("budget_verdict"),
            "drift": sel.get("drift"),  # the machine's speed changed between the budget stage and the screening
            "chosen": _chosen(sel),
            "floor_ms": (sel.get("floor") or {}).get("median_ms"),
        }
        for sel in summary["selections"]
    ]
    return record


def _chosen(sel: dict[str, Any]) -> dict[str, Any] | None:
    """The chosen student's arch, size, final latency and its 95% interval, as the selection wrote them."""
    chosen = sel.get("chosen")
    if not chosen:
        return None
    keep = (
        "arch",
        "params",
        "p50_ms",
        "ci_low_ms",
        "ci_high_ms",
        "rounds",
        "stopped_by",
        "passes",
        "val_acc",
        "test_acc",
    )
    return {k: chosen.get(k) for k in keep}


def table(records: list[dict[str, Any]]) -> str:
    lines = [
        "| run | target | budget (ms) | chosen | latency [95% CI] (ms) | floor (ms) | met |",
        "|---|---|---|---|---|---|---|",
    ]
    met: dict[str, list[bool]] = {}
    for rec in records:
        if "error" in rec:
            lines.append(f"| {rec['run']} | - | - | demo failed (exit {rec['exit']}) | - | - | no |")
            met.setdefault("(failed runs)", []).append(False)
            continue
        for sel in rec["selections"]:
            ch = sel["chosen"] or {}
            p50, low, high = ch.get("p50_ms"), ch.get("ci_low_ms"), ch.get("ci_high_ms")
            latency = f"{p50:.4f} [{low:.4f}-{high:.4f}]" if None not in (p50, low, high) else "-"
            floor = f"{sel['floor_ms']:.4f}" if sel["floor_ms"] is not None else "-"
            lines.append(
                f"| {rec['run']} | {sel['target']} | {sel['budget_ms']:.4f} | {ch.get('arch', 'none')} | {latency}"
                f" | {floor} | {_met(sel)} |"
            )
            met.setdefault(sel["target"], []).append(bool(sel["met_budget"]))
    lines.append("")
    for target, flags in met.items():
        lines.append(f"- {target}: {sum(flags)} of {len(flags)} runs met the budget (goal: all)")
    return "\n".join(lines)


def _met(sel: dict[str, Any]) -> str:
    """yes or NO; "undetermined" when the budget was inside the chosen's interval even after a second
    pass, and the drift the screening saw (the machine's speed changed within the run)."""
    met = "yes" if sel["met_budget"] else "NO"
    if sel.get("budget_verdict") == "undetermined":
        met += " (undetermined)"
    moved = sel.get("drift")
    if moved:
        met += f"; machine {moved['direction']} {moved['ratio_min']:.2f}-{moved['ratio_max']:.2f}x"
    return met


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="edgekd demo --quick (a smoke test, not the goal)")
    parser.add_argument("--fresh-teacher", action="store_true", help="train a new teacher in every run")
    parser.add_argument("--table-only", action="store_true", help="run nothing: the table of the records there are")
    args = parser.parse_args(argv)
    if args.runs < 1:
        print("--runs must be >= 1", file=sys.stderr)
        return 2
    runs = args.out / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    records = []
    for k in range(args.runs):
        path = runs / f"run{k}.json"
        if not path.is_file() and not args.table_only:
            record = one_run(k, args) | {"cpu": cpu_line(), "date": time.strftime("%Y-%m-%d")}
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(record, indent=2))
            tmp.replace(path)
        if path.is_file():
            records.append(json.loads(path.read_text()))
    text = f"# edgekd demo, {len(records)} fresh runs{' (--quick)' if args.quick else ''}\n\n{table(records)}\n"
    (args.out / "results.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
