"""What the training layout is worth: an epoch in NCHW (`contiguous`) against NHWC (`channels_last`).

    python -m benchmarks.train_layout [--archs A,B,...] [--limit N] [--rounds R] [--threads N]
        [--json]

For each arch, one training epoch on labels (`api.train_teacher`, `--limit` samples) in each layout, the
layout forced by `EDGEKD_MEMORY_FORMAT`; the layouts alternate and the order flips every round, so drift
in the machine's load falls on both alike. An epoch's time is the trainer's own `epoch_s` (one pass over
the training split, the validation pass left out). The ratio is the median channels_last epoch over the
median contiguous one; the table also says which layout the trainer picks by itself (`auto`) and how far
the two runs' validation accuracies are apart (the same seed, so only float rounding separates them).
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

LAYOUTS = ("contiguous", "channels_last")
DEFAULT_ARCHS = ("cnn-xs", "cnn-s", "resnet", "mobilenet-s", "vit-s")


@dataclass(frozen=True)
class LayoutTimes:
    arch: str
    auto: str
    times: dict[str, list[float]]
    val_acc: dict[str, float]

    def median(self, layout: str) -> float:
        return statistics.median(self.times[layout])

    @property
    def ratio(self) -> float:
        return self.median("channels_last") / self.median("contiguous")


def one_epoch(arch: str, layout: str, args: argparse.Namespace, out: Path) -> tuple[float, float]:
    """(epoch seconds, validation accuracy) of one epoch of `arch` trained in `layout`."""
    from edgekd import api
    from edgekd.config import TrainConfig
    from edgekd.models.layout import LAYOUT_ENV

    cfg = TrainConfig(epochs=1, limit=args.limit, batch_size=args.batch_size, seed=0, device="cpu")
    with env_set(LAYOUT_ENV, layout):
        result = api.train_teacher(arch, args.data, out, cfg, progress=False)
    return float(result.history[0]["epoch_s"]), float(result.val_accuracy)


def auto_layout(arch: str) -> str:
    from edgekd.models import build_model, memory_format_for, parse_arch

    chosen = memory_format_for(build_model(parse_arch(arch)))
    return "channels_last" if chosen == torch.channels_last else "contiguous"


def measure(arch: str, args: argparse.Namespace, workdir: Path) -> LayoutTimes:
    times: dict[str, list[float]] = {layout: [] for layout in LAYOUTS}
    accs: dict[str, float] = {}
    for r in range(args.rounds):
        for layout in LAYOUTS if r % 2 == 0 else LAYOUTS[::-1]:
            seconds, accs[layout] = one_epoch(arch, layout, args, workdir / f"{layout}-{r}.pt")
            times[layout].append(seconds)
            print(f"  {arch}  round {r + 1}  {layout:13s} {seconds:7.2f} s", flush=True)
    return LayoutTimes(arch, auto_layout(arch), times, accs)


def table(results: list[LayoutTimes], args: argparse.Namespace) -> str:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    lines = [
        f"{args.limit} samples, batch {args.batch_size}, {args.rounds} rounds, {torch.get_num_threads()}"
        f" threads, load average {load}",
        f"{'arch':14s} {'NCHW s':>8s} {'NHWC s':>8s} {'NHWC/NCHW':>10s} {'auto':>14s} {'val acc diff':>12s}",
    ]
    for r in results:
        diff = abs(r.val_acc["channels_last"] - r.val_acc["contiguous"]) * 100
        lines.append(
            f"{r.arch:14s} {r.median('contiguous'):8.2f} {r.median('channels_last'):8.2f}"
            f" {r.ratio:10.2f} {r.auto:>14s} {diff:11.2f}%"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.train_layout",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--archs", default=",".join(DEFAULT_ARCHS), help="comma-separated model archs")
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--limit", type=int, default=6000, help="training samples (before the val split)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--json", action="store_true", help="also print the raw times as JSON")
    args = parser.parse_args(argv)
    args.archs = [a.strip() for a in args.archs.split(";" if ";" in args.archs else ",") if a.strip()]
    if not args.archs or args.rounds < 1 or args.limit < 1:
        parser.error("give at least one arch, --rounds >= 1 and --limit >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="edgekd-train-layout-") as tmp:
        results = []
        for i, arch in enumerate(args.archs):
            workdir = Path(tmp) / f"arch{i}"
            workdir.mkdir()
            results.append(measure(arch, args, workdir))
    print(table(results, args))
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
