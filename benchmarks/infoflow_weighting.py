#!/usr/bin/env python3
"""Which layer weighting makes information-flow KD's intermediate pairs pay (issue 3, item 3).

    python -m benchmarks.infoflow_weighting --teacher TEACHER.pt [--out DIR] [--variants a,b,...]
        [--seeds 0,1,2] [--student cnn-s] [--limit 20000] [--epochs 8] [--threads 1] [--map-samples N]
        [--table]

Every (variant, seed) is one run: the student alone (`alone`) or distilled from the teacher with the
variant's task (`VARIANTS`), with the same training settings otherwise. A finished run writes
`DIR/runs/<variant>-s<seed>.json` atomically (a temporary file renamed into place); a run whose JSON
exists is skipped, so an interrupted sweep resumes where it stopped. Checkpoints and the results store
go to a scratch folder under DIR; the teacher-output cache and auxiliary teachers under
`$EDGEKD_CACHE` (default: `DIR/cache`). At the end (or alone, with `--table`) it prints test accuracy
as mean +- sample std over the seeds of each variant, with the per-seed values, and (with
`--map-samples N`, N > 0) the retrieval mAP of the penultimate representation over the first N test
images, as `benchmarks.kd_comparison` measures it.

Some variants use schedules that exist only here (`SCRIPT_SCHEDULES`): edgekd registers them in this
process before any config is built.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

#: variant -> DistillConfig fields (None: the student alone, on labels)
VARIANTS: dict[str, dict[str, Any] | None] = {
    "alone": None,
    "pkt": {"method": "pkt"},
    "infoflow": {"method": "infoflow"},  # the current default: critical period, raw divergences
    "last-only": {"method": "infoflow", "schedule": "last-only"},
    "cp-x10": {"method": "infoflow", "schedule": "critical-period-x10"},
    "norm-running": {"method": "infoflow", "schedule": "constant", "loss_params": {"normalise": "running"}},
    "norm-first": {"method": "infoflow", "schedule": "constant", "loss_params": {"normalise": "first"}},
    "norm-decay": {"method": "infoflow", "schedule": "linear-decay-x1", "loss_params": {"normalise": "running"}},
    "auxiliary": {"method": "infoflow", "auxiliary": "auto"},
    # through the auxiliary teacher, aimed at the penultimate representation (what retrieval mAP scores)
    "aux-last-only": {"method": "infoflow", "auxiliary": "auto", "schedule": "last-only"},
    "aux-kd3": {"method": "infoflow", "auxiliary": "auto", "kd_weight": 3.0},
    "aux-cp-x10": {"method": "infoflow", "auxiliary": "auto", "schedule": "critical-period-x10"},
}

#: schedules registered by this script only: name -> (schedule class name, constructor arguments)
SCRIPT_SCHEDULES: dict[str, tuple[str, dict[str, float]]] = {
    "critical-period-x10": ("CriticalPeriod", {"initial": 10.0}),  # a tenth of the authors' start
    "linear-decay-x1": ("LinearDecay", {"initial": 1.0}),  # intermediate pairs 1 -> 0, the last 1
}


def register_schedules() -> None:
    """Add `SCRIPT_SCHEDULES` to edgekd's schedule registry (once per process)."""
    from edgekd.distill import schedules

    for name, (cls_name, kwargs) in SCRIPT_SCHEDULES.items():
        if name not in schedules.SCHEDULES:
            cls = getattr(schedules, cls_name)
            schedules.SCHEDULES.register(name)(lambda cls=cls, kwargs=kwargs: cls(**kwargs))


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write `data` to `path` through a temporary file in the same folder, renamed into place."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    os.replace(tmp, path)


def run_one(variant: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """Train one (variant, seed) and return its record."""
    from edgekd import api
    from edgekd.config import TrainConfig
    from edgekd.distill.task import DistillConfig

    cfg = TrainConfig(
        epochs=args.epochs, limit=args.limit, batch_size=args.batch_size, seed=seed, device="cpu", threads=args.threads
    )
    scratch = args.out / "scratch" / f"{variant}-s{seed}-{uuid.uuid4().hex[:8]}"
    scratch.mkdir(parents=True)
    ckpt, store = scratch / "student.pt", scratch / "store.sqlite"
    task_fields = VARIANTS[variant]
    start = time.perf_counter()
    if task_fields is None:
        result = api.train_teacher(args.student, args.data, ckpt, cfg, store=store, progress=False)
        task = None
    else:
        task = DistillConfig(**task_fields)
        result = api.distill(args.teacher, args.student, args.data, ckpt, cfg, task, store=store, progress=False)
    seconds = time.perf_counter() - start
    mean_ap = None
    if args.map_samples > 0:
        from benchmarks.kd_comparison import measure

        mean_ap = measure(ckpt, args.data, args.map_samples)[0]
    return {
        "variant": variant,
        "seed": seed,
        "test_acc": result.test_accuracy,
        "val_acc": result.val_accuracy,
        "map": mean_ap,
        "map_samples": args.map_samples,
        "seconds": seconds,
        "history": result.history,
        "task": task.model_dump() if task else None,
        "train": cfg.model_dump(),
        "student": args.student,
        "teacher": str(args.teacher),
        "data": args.data,
    }


def load_runs(runs: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(runs.glob("*.json"))]


def mean_std(values: list[float]) -> str:
    """`mean +- sample std` (std nan for one value), in points."""
    std = statistics.stdev(values) if len(values) > 1 else float("nan")
    return f"{statistics.mean(values):6.2f} +- {std:4.2f}"


def table(records: list[dict[str, Any]]) -> str:
    """Test accuracy (%) per variant: mean +- sample std over seeds; the same for the paired difference to
    the student alone (per seed, over the seeds that have both: a seed's split and initialisation are
    shared by every variant, so the paired difference removes their spread); then each seed's value."""
    by_variant: dict[str, dict[int, float]] = {}
    maps: dict[str, list[float]] = {}
    minutes: dict[str, list[float]] = {}
    for r in records:
        by_variant.setdefault(r["variant"], {})[r["seed"]] = 100.0 * r["test_acc"]
        minutes.setdefault(r["variant"], []).append(r["seconds"] / 60.0)
        if r.get("map") is not None:
            maps.setdefault(r["variant"], []).append(100.0 * r["map"])
    order = [v for v in VARIANTS if v in by_variant] + sorted(set(by_variant) - set(VARIANTS))
    alone = by_variant.get("alone", {})
    lines = [
        f"{'variant':14s} {'n':>2s} {'test acc %':>15s} {'minus alone':>15s} {'mAP %':>15s} {'min/run':>7s}  per seed"
    ]
    for v in order:
        accs = by_variant[v]
        paired = [accs[s] - alone[s] for s in sorted(accs) if s in alone]
        diff = mean_std(paired) if paired and v != "alone" else ""
        mean_ap = mean_std(maps[v]) if v in maps else ""
        seeds = ", ".join(f"s{s} {a:.2f}" for s, a in sorted(accs.items()))
        lines.append(
            f"{v:14s} {len(accs):2d} {mean_std(list(accs.values())):>15s} {diff:>15s} {mean_ap:>15s}"
            f" {statistics.mean(minutes[v]):7.1f}  {seeds}"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", type=Path, help="teacher checkpoint (e.g. from edgekd train-teacher)")
    parser.add_argument("--out", type=Path, default=Path("infoflow-weighting"))
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--student", default="cnn-s")
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--limit", type=int, default=20000, help="training samples (before the val split)")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument(
        "--map-samples",
        type=int,
        default=0,
        help="also score retrieval mAP over the first N test images (0: accuracy only)",
    )
    parser.add_argument("--table", action="store_true", help="only print the table of the finished runs")
    args = parser.parse_args(argv)
    args.variant_list = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in args.variant_list if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    args.seed_list = [int(s) for s in args.seeds.split(",") if s.strip()]
    if not args.table and args.teacher is None:
        parser.error("--teacher is required to run")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    runs = args.out / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    if not args.table:
        import torch

        torch.set_num_threads(args.threads)
        os.environ.setdefault("EDGEKD_CACHE", str((args.out / "cache").resolve()))
        register_schedules()
        for seed in args.seed_list:
            for variant in args.variant_list:
                path = runs / f"{variant}-s{seed}.json"
                if path.exists():
                    continue
                print(f"{time.strftime('%H:%M:%S')} {variant} seed {seed} ...", flush=True)
                record = run_one(variant, seed, args)
                write_json_atomic(path, record)
                print(
                    f"{time.strftime('%H:%M:%S')} {variant} seed {seed}: test acc {100 * record['test_acc']:.2f}%"
                    f" in {record['seconds']:.0f} s",
                    flush=True,
                )
    print(table(load_runs(runs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
