"""What a distillation epoch costs: the student alone, with the live teacher, and from the teacher cache.

    python -m benchmarks.distill_epoch [--limit N] [--rounds R] [--student ARCH]
        [--method M] [--teachers ARCH,ARCH] [--threads N] [--json]

For each teacher, one cached distillation epoch builds the teacher cache first (its time is the
"build" column); then each round runs one epoch of each mode, in an order rotated every round so that
drift in the machine's load falls on all modes alike. An epoch's time is the trainer's own `epoch_s`:
`time.perf_counter` around one whole pass over the training split (epoch wall time, not model
latency; the per-epoch validation pass is the student's alone in every mode, so it is left out).
Ratios are medians over rounds divided by the median of the student alone. Teachers are untrained:
a forward pass costs the same whatever the weights, and no teacher has to be trained first. With
`--method hssakd` the teacher gets its default branches, and the student's own work is four rotations
of every batch plus its branches, so even a free teacher leaves the epoch several times the student
alone: compare `cached` with `live` there.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from benchmarks import env_set

MODES = ("alone", "live", "cached")
DEFAULT_TEACHERS = ("resnet(width=32,depth=1)", "resnet(width=38,depth=2)")  # 0.31M and 0.98M parameters


@dataclass(frozen=True)
class EpochTimes:
    """Seconds per epoch of one teacher's modes, every round, and the epoch that built the cache."""

    teacher: str
    params: int
    build_s: float
    times: dict[str, list[float]]

    def median(self, mode: str) -> float:
        return statistics.median(self.times[mode])

    def ratio(self, mode: str) -> float:
        return self.median(mode) / self.median("alone")


def make_teacher(arch: str, out: Path, method: str = "kd") -> int:
    """Save an untrained teacher checkpoint for Fashion-MNIST-shaped input (for `hssakd`, with its default
    branches); returns its parameter count (branches left out)."""
    from edgekd.models import build_model, parse_arch, save_checkpoint
    from edgekd.models.zoo import count_params

    torch.manual_seed(0)
    spec = parse_arch(arch)
    model = build_model(spec)
    save_checkpoint(out, model, spec, {"test_acc": None, "note": "untrained, for timing only"})
    if method == "hssakd":
        from edgekd.distill import hssakd

        shape = (spec.in_channels, spec.image_size, spec.image_size)
        net = hssakd.with_branches(model, hssakd.resolve_branches(model, None, "teacher"), shape, spec.num_classes)
        hssakd.save_branches(out, net)
    return count_params(model)


def one_epoch(mode: str, teacher: Path, args: argparse.Namespace, out: Path) -> tuple[float, float]:
    """(epoch seconds, whether the teacher came from the cache) of one epoch in `mode`."""
    from edgekd import api
    from edgekd.config import TrainConfig
    from edgekd.distill.task import DistillConfig

    cfg = TrainConfig(epochs=1, limit=args.limit, batch_size=args.batch_size, seed=0, device="cpu")
    if mode == "alone":
        result = api.train_teacher(args.student, args.data, out, cfg, progress=False)
    else:
        task = DistillConfig(method=args.method, cache=mode == "cached")
        result = api.distill(teacher, args.student, args.data, out, cfg, task, progress=False)
    row = result.history[0]
    return float(row["epoch_s"]), float(row.get("teacher_cached", 0.0))


def measure(arch: str, args: argparse.Namespace, workdir: Path) -> EpochTimes:
    """Build the cache, then `args.rounds` interleaved rounds of every mode."""
    teacher = workdir / "teacher.pt"
    params = make_teacher(arch, teacher, args.method)
    build_s, cached = one_epoch("cached", teacher, args, workdir / "build.pt")
    if cached:
        raise RuntimeError("the teacher cache existed before the build epoch; use a fresh EDGEKD_CACHE")
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    for r in range(args.rounds):
        for mode in MODES[r % len(MODES) :] + MODES[: r % len(MODES)]:
            seconds, cached = one_epoch(mode, teacher, args, workdir / f"{mode}-{r}.pt")
            if mode == "cached" and not cached:
                raise RuntimeError("a cached epoch ran the teacher live: the cache was not reused")
            times[mode].append(seconds)
            print(f"  {arch}  round {r + 1}  {mode:6s} {seconds:7.2f} s", flush=True)
    return EpochTimes(arch, params, build_s, times)


def table(results: list[EpochTimes], args: argparse.Namespace) -> str:
    """The side-by-side table: median seconds per epoch and ratios to the student alone."""
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    lines = [
        f"student {args.student}, method {args.method}, {args.limit} samples, batch {args.batch_size},"
        f" {args.rounds} rounds, {torch.get_num_threads()} threads, load average {load}",
        f"{'teacher':28s} {'params':>8s} {'alone s':>8s} {'live s':>8s} {'cached s':>8s} {'build s':>8s}"
        f" {'live/alone':>10s} {'cached/alone':>12s} {'build/alone':>11s}",
    ]
    for r in results:
        lines.append(
            f"{r.teacher:28s} {r.params / 1e6:7.2f}M {r.median('alone'):8.2f} {r.median('live'):8.2f}"
            f" {r.median('cached'):8.2f} {r.build_s:8.2f} {r.ratio('live'):10.2f}"
            f" {r.ratio('cached'):12.2f} {r.build_s / r.median('alone'):11.2f}"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.distill_epoch",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--limit", type=int, default=10000, help="training samples (before the val split)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--student", default="cnn-xs")
    parser.add_argument("--method", default="kd")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument(
        "--teachers",
        default=",".join(DEFAULT_TEACHERS),
        help="teacher archs, comma-separated (commas inside parentheses are kept)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads (default: torch's own; 1 on a machine shared with other jobs)",
    )
    parser.add_argument("--json", action="store_true", help="also print the raw times as JSON")
    return parser.parse_args(argv)


def teacher_list(text: str) -> list[str]:
    """`a;b`, or the default `arch(...),arch(...)` split at commas outside parentheses."""
    if ";" in text:
        return [t.strip() for t in text.split(";") if t.strip()]
    out, depth, start = [], 0, 0
    for i, ch in enumerate(text + ","):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            out.append(text[start:i].strip())
            start = i + 1
    return [t for t in out if t]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    results = []
    with tempfile.TemporaryDirectory(prefix="edgekd-distill-epoch-") as tmp:
        with env_set("EDGEKD_CACHE", str(Path(tmp) / "cache")):  # a fresh cache: the build is measured
            for i, arch in enumerate(teacher_list(args.teachers)):
                workdir = Path(tmp) / f"teacher{i}"
                workdir.mkdir()
                results.append(measure(arch, args, workdir))
    print(table(results, args))
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
