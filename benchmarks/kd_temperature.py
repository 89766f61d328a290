"""Does Hinton KD help the smallest students, and at which temperature? Students x temperatures x seeds.

    python -m benchmarks.kd_temperature --teacher T.pt [--students A,B] [--temperatures 4,2,1]
        [--low-weight 0.1] [--seeds 0,1,2] [--epochs 10] [--limit 6000] [--data D] [--out DIR] [--threads N]

Every student trains with the same `TrainConfig` (`--epochs`, `--limit` training samples, the seed) in
each variant: `alone` (labels only), `kd` at each `--temperatures` with the default weights (0.5 CE,
0.5 KD), and `kd` at T = 4 with a small KD weight (`--low-weight`, the rest on CE). A seed gives every
variant the same split and initialisation, so "minus alone" is paired by seed. One JSON per run under
`<out>/runs/` (written atomically; a rerun skips what is done), the table to `<out>/results.md`.

Why: in the ensemble comparison, `kd` at the default T = 4 cost the 826-parameter width 13 points
against training alone. This measures whether that is the temperature, the weight, or KD itself.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from benchmarks.distill_epoch import teacher_list
from benchmarks.kd_comparison import csv, fmt, safe, stats, write_json

DEFAULT_STUDENTS = ("cnn(depth=1,stem=12,width=2)", "cnn(depth=1,stem=12,width=5)")  # 0.2, 0.4 of cnn-s
HINTON_T = 4.0


def variants(args: argparse.Namespace) -> dict[str, Any]:
    """name -> DistillConfig (None: the student alone)."""
    from edgekd.distill.task import DistillConfig

    out: dict[str, Any] = {"alone": None}
    for t in args.temperatures:
        out[f"kd T={t:g}"] = DistillConfig(method="kd", loss_params={"temperature": t})
    w = args.low_weight
    out[f"kd T={HINTON_T:g}, weight {w:g}"] = DistillConfig(method="kd", ce_weight=1 - w, kd_weight=w)
    return out


def run_one(student: str, name: str, task: Any, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    from edgekd import api
    from edgekd.config import TrainConfig

    folder = args.out / "runs" / safe(student) / safe(name)
    record = folder / f"seed{seed}.json"
    if record.is_file():
        return dict(json.loads(record.read_text()))
    cfg = TrainConfig(epochs=args.epochs, seed=seed, limit=args.limit, batch_size=args.batch_size)
    ckpt = folder / f"seed{seed}.pt"
    t0 = time.perf_counter()
    if task is None:
        result = api.train_teacher(student, args.data, ckpt, cfg, progress=False, resume=True)
    else:
        result = api.distill(args.teacher, student, args.data, ckpt, cfg, task, progress=False, resume=True)
    info = {
        "student": student,
        "variant": name,
        "seed": seed,
        "epochs": args.epochs,
        "limit": args.limit,
        "test_accuracy": float(result.test_accuracy),
        "val_accuracy": float(result.val_accuracy),
        "seconds": time.perf_counter() - t0,
    }
    write_json(record, info)
    return info


def table(runs: list[dict[str, Any]], args: argparse.Namespace, names: list[str]) -> str:
    from edgekd.models import build_model, parse_arch
    from edgekd.models.zoo import count_params

    lines = [
        "# KD temperature on small students",
        "",
        f"Teacher {args.teacher}; data {args.data}, first {args.limit} training samples; {args.epochs} epochs;"
        f" seeds {','.join(map(str, args.seeds))}. Test accuracy %, mean ± sample std over seeds; minus"
        f" alone is paired by seed.",
        "",
    ]
    for student in args.students:
        params = count_params(build_model(parse_arch(student)))
        lines += [
            f"## {student} ({params:,} parameters)",
            "",
            "| variant | n | test acc | minus alone |",
            "|---|---:|---:|---:|",
        ]
        mine = [r for r in runs if r["student"] == student]
        alone = {r["seed"]: r["test_accuracy"] for r in mine if r["variant"] == "alone"}
        for name in names:
            rs = [r for r in mine if r["variant"] == name]
            acc = stats([r["test_accuracy"] for r in rs])
            diffs = [r["test_accuracy"] - alone[r["seed"]] for r in rs if r["seed"] in alone]
            mean, std = stats(diffs)
            delta = "-" if name == "alone" or not diffs else ("+" if mean > 0 else "") + fmt(mean, std, 100, 2)
            lines.append(f"| {name} | {len(rs)} | {fmt(*acc, 100, 2)} | {delta} |")
        lines.append("")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.kd_temperature",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--teacher", type=Path, required=True, help="a trained teacher checkpoint")
    parser.add_argument(
        "--students", default=",".join(DEFAULT_STUDENTS), help="archs: a;b, or a,b (commas inside parentheses kept)"
    )
    parser.add_argument("--temperatures", default="4,2,1")
    parser.add_argument("--low-weight", type=float, default=0.1, help="the KD weight of the low-weight variant")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--limit", type=int, default=6000, help="training samples (the 10pct regime)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("kd-temperature"))
    args = parser.parse_args(argv)
    if not args.teacher.is_file():
        parser.error(f"--teacher: {args.teacher} is not a file; give a checkpoint from `edgekd train-teacher`")
    args.students = teacher_list(args.students)  # arch lists split alike in both suites
    try:
        args.temperatures = [float(t) for t in csv(args.temperatures)]
        args.seeds = [int(s) for s in csv(args.seeds)]
    except ValueError as err:
        parser.error(f"--temperatures/--seeds: {err}")
    if any(t <= 0 for t in args.temperatures) or not 0 < args.low_weight < 1:
        parser.error("temperatures must be positive and --low-weight in (0, 1)")
    if min(args.epochs, args.limit, args.batch_size) < 1 or not args.seeds or not args.students:
        parser.error("--epochs, --limit and --batch-size must be at least 1; give seeds and students")
    return args


def main(argv: list[str] | None = None) -> int:
    import torch

    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    tasks = variants(args)
    runs = []
    for student in args.students:
        for seed in args.seeds:
            for name, task in tasks.items():
                r = run_one(student, name, task, seed, args)
                runs.append(r)
                print(f"{student} {name} seed {seed}: {r['test_accuracy'] * 100:.2f}%", flush=True)
    text = table(runs, args, list(tasks))
    write_json(args.out / "results.json", {"runs": runs, "mean_s": statistics.fmean(r["seconds"] for r in runs)})
    (args.out / "results.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
