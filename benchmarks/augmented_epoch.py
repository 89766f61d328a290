"""What an augmented distillation epoch costs: the student alone, from the K-view teacher cache, and online.

    python -m benchmarks.augmented_epoch [--limit N] [--rounds R] [--views K] [--student ARCH]
        [--teacher ARCH] [--threads N] [--accuracy-epochs E] [--seeds S] [--json]

Every mode trains on the same augmented views (`--augment standard`): `alone` is the student alone,
`cached` distils from the teacher's outputs for K views per sample (FKD's soft labels per crop), read
from the cache after one build (its seconds: the "build" column, K teacher passes over the data plus one
epoch), `online` runs the teacher live on each augmented batch. Each round runs one epoch of each mode in
an order rotated every round; an epoch's time is the trainer's `epoch_s` (one pass over the training
split; the teacher cache's fill happens before it and is counted in "build"). Ratios: medians over
rounds divided by the median of `alone`; the spread is (min-max) over rounds. The teacher is untrained
for timing (a forward pass costs the same whatever the weights).

With `--accuracy-epochs E > 0`, a short accuracy check follows: a teacher trained on the same slice,
then for each seed one cached and one online distillation of E epochs each; test accuracy of both. A
small slice and few epochs: it shows whether the two modes agree, not what either reaches.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

import torch

from benchmarks import env_set
from benchmarks.distill_epoch import make_teacher

MODES = ("alone", "cached", "online")


def train_cfg(args: argparse.Namespace, epochs: int, seed: int = 0) -> Any:
    from edgekd.config import TrainConfig

    return TrainConfig(
        epochs=epochs,
        limit=args.limit,
        batch_size=args.batch_size,
        seed=seed,
        device="cpu",
        augment=args.augment,
        views=args.views,
    )


def one_run(mode: str, teacher: Path, args: argparse.Namespace, out: Path, epochs: int = 1, seed: int = 0) -> Any:
    """The TrainResult of one run in `mode`."""
    from edgekd import api
    from edgekd.distill.task import DistillConfig

    cfg = train_cfg(args, epochs, seed)
    if mode == "alone":
        return api.train_teacher(args.student, args.data, out, cfg, progress=False)
    task = DistillConfig(method="kd", cache=mode == "cached", loss_params={"temperature": 1.0})
    return api.distill(teacher, args.student, args.data, out, cfg, task, progress=False)


def timing(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    teacher = workdir / "teacher.pt"
    params = make_teacher(args.teacher, teacher)
    build = one_run("cached", teacher, args, workdir / "build.pt")
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    for r in range(args.rounds):
        for mode in MODES[r % len(MODES) :] + MODES[: r % len(MODES)]:
            row = one_run(mode, teacher, args, workdir / f"{mode}-{r}.pt").history[0]
            if mode == "cached" and not row.get("teacher_cached"):
                raise RuntimeError("a cached epoch ran the teacher live: the cache was not reused")
            times[mode].append(float(row["epoch_s"]))
            print(f"  round {r + 1}  {mode:6s} {row['epoch_s']:7.2f} s", flush=True)
    return {"teacher_params": params, "build_s": build.seconds, "times": times}


def accuracy(args: argparse.Namespace, workdir: Path) -> dict[str, list[float]]:
    from edgekd import api
    from edgekd.config import TrainConfig

    cfg = TrainConfig(epochs=args.teacher_epochs, limit=args.limit, batch_size=args.batch_size, device="cpu")
    teacher = api.train_teacher(args.teacher, args.data, workdir / "trained.pt", cfg, progress=False)
    print(f"  teacher {args.teacher}: test accuracy {teacher.test_accuracy:.4f}", flush=True)
    acc: dict[str, list[float]] = {"teacher": [teacher.test_accuracy], "cached": [], "online": []}
    for seed in range(args.seeds):
        for mode in ("cached", "online"):
            result = one_run(
                mode, teacher.checkpoint, args, workdir / f"acc-{mode}-{seed}.pt", args.accuracy_epochs, seed
            )
            acc[mode].append(result.test_accuracy)
            print(f"  seed {seed}  {mode:6s} test accuracy {result.test_accuracy:.4f}", flush=True)
    return acc


def report(t: dict[str, Any], acc: dict[str, list[float]] | None, args: argparse.Namespace) -> str:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    med = {m: statistics.median(v) for m, v in t["times"].items()}
    lines = [
        f"student {args.student}, teacher {args.teacher} ({t['teacher_params'] / 1e6:.2f}M, untrained), augment"
        f" {args.augment}, {args.views} views, {args.limit} samples, batch {args.batch_size}, {args.rounds} rounds,"
        f" {torch.get_num_threads()} threads, load average {load}",
        f"{'mode':8s} {'median s':>9s} {'min-max s':>13s} {'x alone':>8s}",
    ]
    for m in MODES:
        lines.append(
            f"{m:8s} {med[m]:9.2f} {min(t['times'][m]):6.2f}-{max(t['times'][m]):<6.2f} {med[m] / med['alone']:8.2f}"
        )
    lines.append(f"cache build (K teacher passes + 1 epoch): {t['build_s']:.2f} s = {t['build_s'] / med['alone']:.1f}x")
    lines.append(f"goal cached <= 1.1x alone: {'met' if med['cached'] <= 1.1 * med['alone'] else 'missed'}")
    if acc:
        c, o = statistics.mean(acc["cached"]), statistics.mean(acc["online"])
        lines.append(
            f"accuracy ({args.seeds} seed(s), {args.accuracy_epochs} epochs): cached {100 * c:.2f}%, online"
            f" {100 * o:.2f}%, difference {100 * (c - o):+.2f} points (goal within 0.3); teacher"
            f" {100 * acc['teacher'][0]:.2f}%"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.augmented_epoch",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--limit", type=int, default=4000, help="training samples (before the val split)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument("--augment", default="standard")
    parser.add_argument("--student", default="cnn-xs")
    parser.add_argument("--teacher", default="resnet(width=32,depth=1)")
    parser.add_argument("--teacher-epochs", type=int, default=3, help="for the accuracy check")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--accuracy-epochs", type=int, default=0, help="0 = timing only")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (1 on a shared machine)")
    parser.add_argument("--json", action="store_true", help="also print the raw times as JSON")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    acc = None
    with tempfile.TemporaryDirectory(prefix="edgekd-augmented-epoch-") as tmp:
        with env_set("EDGEKD_CACHE", str(Path(tmp) / "cache")):  # a fresh cache: the build is measured
            t = timing(args, Path(tmp))
            if args.accuracy_epochs > 0:
                acc = accuracy(args, Path(tmp))
    print(report(t, acc, args))
    if args.json:
        print(json.dumps({"timing": t, "accuracy": acc}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
