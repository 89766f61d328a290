"""Is budgeted selection as good as training every in-budget candidate fully, at a third of the compute?

    python -m benchmarks.selection_vs_exhaustive [--target cpu-ort-fp32] [--space SPACE]
        [--budget-ms X] [--epochs 10] [--limit 6000] [--teacher CKPT] [--workdir DIR] [--json]

Side by side in one run, on one machine, with one teacher, one data split and the same training
settings and seed for every student:
- exhaustive: every candidate measured at or below the budget is distilled for the full epochs, and
  the one with the best validation accuracy is picked;
- selection: `edgekd.select.pipeline.select`, the `edgekd select` command (latency screening, the
  Optuna study with successive halving, finishing, the final build and re-measurement).
Both pick on validation accuracy; the comparison is on the test split. Compute is counted in
student-epochs (one student trained one epoch on the same data), in FLOP-weighted epochs, in training
wall time and in this process's CPU time (less sensitive to other load on a shared machine); screening
latency is shared (the candidates are measured once, into the store both read). Goal: the chosen
student within 0.3 points of the exhaustive pick's test accuracy, at no more than a third of its
student-epochs.

Without --budget-ms the budget is set between the two slowest candidates' measured p50, so that one
candidate is over budget and the best in-budget student is not simply the largest of the space.
Without --teacher one is trained first (cnn-m, 3 epochs; not counted on either side).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from edgekd.bench import TimingConfig
from edgekd.config import TrainConfig, load_target
from edgekd.distill.task import DistillConfig
from edgekd.errors import UserError
from edgekd.select import Candidate, SearchSpace, load_space, measure_candidate
from edgekd.store import STORE_NAME, Store

DEFAULT_SPACE = {"name": "cnn-widths", "family": "cnn", "width": [4, 6, 8, 12, 16, 24], "depth": [1]}
TIMING = TimingConfig(warmup_iters=10, warmup_s=0.2, min_iters=50, min_time_s=0.5)


def budget_between(latency: dict[str, float]) -> float:
    """Halfway between the two slowest candidates: all but the slowest are in budget."""
    slowest = sorted(latency.values())[-2:]
    return (slowest[0] + slowest[1]) / 2 if len(slowest) == 2 else slowest[0] * 1.01


def exhaustive(
    teacher: Path,
    survivors: list[Candidate],
    data: str,
    cfg: TrainConfig,
    task: DistillConfig,
    workdir: Path,
    store: Path,
) -> dict[str, Any]:
    """Every in-budget candidate distilled for the full epochs; the best validation accuracy wins."""
    from edgekd import api

    rows, started, cpu = [], time.perf_counter(), time.process_time()
    for c in survivors:
        result = api.distill(
            teacher, c.arch, data, workdir / "exhaustive" / c.key / "student.pt", cfg, task, store=store, progress=False
        )
        rows.append(
            {
                "arch": c.arch,
                "val_acc": result.val_accuracy,
                "test_acc": result.test_accuracy,
                "seconds": result.seconds,
                "flops": c.flops,
            }
        )
    best = max(rows, key=lambda r: r["val_acc"])
    return {
        "rows": rows,
        "chosen": best,
        "best_test": max(rows, key=lambda r: r["test_acc"]),
        "student_epochs": len(rows) * cfg.epochs,
        "train_s": time.perf_counter() - started,
        "train_cpu_s": time.process_time() - cpu,
        "flop_epochs": sum(r["flops"] for r in rows) * cfg.epochs,
    }


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from edgekd import api
    from edgekd.select.pipeline import SelectConfig, select

    started = time.perf_counter()
    profile = load_target(args.target)
    space = load_space(args.space) if args.space else SearchSpace.model_validate(DEFAULT_SPACE)
    store = Store(workdir / STORE_NAME)
    teacher = args.teacher
    if teacher is None:
        teacher = workdir / "teacher.pt"
        api.train_teacher(
            "cnn-m",
            args.data,
            teacher,
            TrainConfig(epochs=3, limit=args.limit, seed=args.seed),
            store=store.path,
            progress=False,
        )
    candidates = space.candidates()
    latency = {c.key: measure_candidate(c, profile, workdir / "candidates", store, TIMING).p50_ms for c in candidates}
    budget = args.budget_ms or budget_between(latency)
    survivors = [c for c in candidates if latency[c.key] <= budget]
    if not survivors:
        raise UserError(f"no candidate measures within {budget:g} ms; give a larger --budget-ms")
    cfg = TrainConfig(epochs=args.epochs, limit=args.limit, seed=args.seed)
    task = DistillConfig(method=args.method)
    t0, cpu = time.perf_counter(), time.process_time()
    out = workdir / "selection"
    shutil.rmtree(out, ignore_errors=True)
    sel = select(
        teacher,
        space,
        args.target,
        args.data,
        out,
        cfg,
        task,
        SelectConfig(budget_ms=budget),
        timing=TIMING,
        store=store.path,
        progress=False,
    )
    sel_cpu = time.process_time() - cpu
    sel_wall = time.perf_counter() - t0
    # the selection runs first: it pays for filling the teacher-output cache that both then read
    full = exhaustive(teacher, survivors, args.data, cfg, task, workdir, store.path)
    seconds = sel["compute"]["seconds"]
    chosen = sel["chosen"]
    return {
        "target": profile.name,
        "space": space.name,
        "candidates": len(candidates),
        "in_budget": len(survivors),
        "budget_ms": budget,
        "epochs": args.epochs,
        "limit": args.limit,
        "data": args.data,
        "latency_ms": {c.arch: latency[c.key] for c in candidates},
        "exhaustive": full,
        "selection": {
            "chosen": chosen,
            "student_epochs": sel["compute"]["student_epochs"],
            "train_s": seconds.get("search", 0.0) + seconds.get("finish", 0.0),
            "wall_s": sel_wall,
            "cpu_s": sel_cpu,
            "fates": {r["arch"]: r["why"] for r in sel["candidates"]},
        },
        "gap_points": 100 * (full["chosen"]["test_acc"] - (chosen["test_acc"] or 0.0)),
        "epoch_ratio": sel["compute"]["student_epochs"] / full["student_epochs"],
        # an epoch of a larger student costs more: the same ratio weighted by each student's FLOPs
        "flop_ratio": sum(r["flops"] * r.get("epochs", 0) for r in sel["candidates"]) / full["flop_epochs"],
        "time_ratio": (seconds.get("search", 0.0) + seconds.get("finish", 0.0)) / full["train_s"],
        # CPU time of this process (all its threads): less sensitive to other load on a shared machine;
        # the selection's includes its final export and build, so it is an upper bound
        "cpu_ratio": sel_cpu / full["train_cpu_s"],
        "wall_s": time.perf_counter() - started,
    }


def show(r: dict[str, Any]) -> None:
    ex, sel = r["exhaustive"], r["selection"]
    print(
        f"target {r['target']}, space {r['space']}: {r['candidates']} candidates, {r['in_budget']} within the"
        f" {r['budget_ms']:.4f} ms budget; {r['epochs']} epochs per finished student, data {r['data']}"
        f" (limit {r['limit']})"
    )
    print("\ncandidate latency (p50, ms): " + ", ".join(f"{a} {v:.4f}" for a, v in r["latency_ms"].items()))
    print(f"\n{'exhaustive: every in-budget candidate':40s} {'val acc':>8s} {'test acc':>9s} {'train s':>8s}")
    for row in ex["rows"]:
        print(f"  {row['arch']:38s} {100 * row['val_acc']:7.2f}% {100 * row['test_acc']:8.2f}% {row['seconds']:8.1f}")
    c = sel["chosen"]
    print(f"\n{'':26s} {'chosen':28s} {'val acc':>8s} {'test acc':>9s} {'student-epochs':>15s} {'train s':>8s}")
    print(
        f"{'exhaustive':26s} {ex['chosen']['arch']:28s} {100 * ex['chosen']['val_acc']:7.2f}%"
        f" {100 * ex['chosen']['test_acc']:8.2f}% {ex['student_epochs']:15d} {ex['train_s']:8.1f}"
    )
    print(
        f"{'selection (edgekd select)':26s} {c['arch']:28s} {100 * c['val_acc']:7.2f}%"
        f" {100 * (c['test_acc'] or 0):8.2f}% {sel['student_epochs']:15d} {sel['train_s']:8.1f}"
    )
    print("\nwhy the others lost (selection):")
    for arch, why in sel["fates"].items():
        print(f"  {arch}: {why}")

    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    print(f"\ntest accuracy gap {r['gap_points']:+.2f} points (goal <= 0.3: {verdict(r['gap_points'] <= 0.3)})")
    print(
        "compute against exhaustive (goal <= 33%): "
        + ", ".join(
            f"{name} {100 * r[key]:.0f}% ({verdict(r[key] <= 1 / 3)})"
            for name, key in (
                ("student-epochs", "epoch_ratio"),
                ("FLOP-weighted epochs", "flop_ratio"),
                ("training wall time", "time_ratio"),
                ("CPU time", "cpu_ratio"),
            )
        )
        + f"; suite wall {r['wall_s']:.0f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", default="cpu-ort-fp32")
    parser.add_argument("--space", default=None, help="a space YAML or built-in name (default: 6 cnn widths)")
    parser.add_argument("--budget-ms", type=float, default=None, help="default: between the two slowest")
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--limit", type=int, default=6000, help="training samples (the first N)")
    parser.add_argument("--epochs", type=int, default=10, help="full epochs per finished student")
    parser.add_argument("--method", default="kd")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--teacher", type=Path, default=None, help="teacher checkpoint (default: train cnn-m)")
    parser.add_argument("--workdir", type=Path, default=None, help="keep students, builds and the store here")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    try:
        with tempfile.TemporaryDirectory(prefix="edgekd-selection-") as tmp:
            workdir = args.workdir or Path(tmp)
            workdir.mkdir(parents=True, exist_ok=True)
            report = run(args, workdir)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        show(report)


if __name__ == "__main__":
    main()
