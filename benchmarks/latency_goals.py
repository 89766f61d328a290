"""Latency goals of the CPU targets, as ratios measured side by side in one run.

    python -m benchmarks.latency_goals [--checkpoint student.pt] [--rounds 3]

For the built-in small student at batch 1: INT8 against FP32 on each CPU runtime (goal: at most 0.8x
the latency, at most 0.5 points of accuracy lost on the full test split), and every CPU artifact
against PyTorch eager (goal: at most 0.3x). Every measurement uses edgekd's timing protocol in its own
process, PyTorch eager included (timed by the same `measure` loop, in a process of its own).
Without --checkpoint it first trains `cnn-s` for 2 epochs on Fashion-MNIST.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from edgekd import api
from edgekd.bench import TimingConfig, benchmark, resolve_artifact
from edgekd.config import TrainConfig

TARGETS = ("cpu-ort-fp32", "cpu-ort-int8", "cpu-openvino-fp32", "cpu-openvino-int8")

TORCH_EAGER = """
import json, sys
import numpy as np, torch
from edgekd.bench.protocol import TimingConfig, measure
from edgekd.models import load_model
torch.set_num_threads(int(sys.argv[2]))
model, spec, meta = load_model(sys.argv[1])
x = np.random.default_rng(0).random((1, *meta["input_shape"]), dtype=np.float32)

class Eager:
    def run(self, inputs):
        with torch.inference_mode():
            return model(torch.from_numpy(inputs)).numpy()

stats = measure(Eager(), x, TimingConfig(**json.loads(sys.argv[3])))
print(json.dumps({"p50": stats.p50_ms}))
"""


def _torch_eager(ckpt: Path, threads: int, timing: TimingConfig) -> float:
    cmd = [sys.executable, "-c", TORCH_EAGER, str(ckpt), str(threads), json.dumps(timing.to_json())]
    return float(json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)["p50"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="edgekd-goals-"))
    ckpt = args.checkpoint
    if ckpt is None:
        ckpt = workdir / "cnn-s.pt"
        api.train_teacher("cnn-s", "fashion-mnist", ckpt, TrainConfig(epochs=2), progress=False)
    arts = {}
    for target in TARGETS:
        api.export(str(ckpt), target, workdir / target, data="fashion-mnist")
        arts[target] = resolve_artifact(workdir / target)
    brief = TimingConfig(min_iters=10, min_time_s=0.1)
    acc = {
        t: benchmark(a, threads=args.threads, data="fashion-mnist", timing=brief)["accuracy"] for t, a in arts.items()
    }
    timing = TimingConfig(warmup_iters=50, warmup_s=1.0, min_iters=500, min_time_s=3.0)
    p50: dict[str, list[float]] = {t: [] for t in (*TARGETS, "torch-eager")}
    for r in range(args.rounds):  # interleaved, so drift of the machine hits every runtime alike
        p50["torch-eager"].append(_torch_eager(ckpt, args.threads, timing))
        for target, art in arts.items():
            p50[target].append(benchmark(art, threads=args.threads, timing=timing)["latency_ms"]["p50"])
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.4f} ms" for k, v in p50.items()))
    med = {k: statistics.median(v) for k, v in p50.items()}
    print(f"\nmodel {ckpt.name}, batch 1, {args.threads} threads; medians of {args.rounds} rounds")
    for runtime in ("ort", "openvino"):
        fp32, int8 = f"cpu-{runtime}-fp32", f"cpu-{runtime}-int8"
        ratio, drop = med[int8] / med[fp32], 100 * (acc[fp32] - acc[int8])
        print(
            f"{runtime:9s} INT8/FP32 latency {ratio:.2f} (goal <= 0.80: {'met' if ratio <= 0.8 else 'MISSED'}),"
            f" accuracy {100 * acc[fp32]:.2f} -> {100 * acc[int8]:.2f} (lost {drop:.2f} points, goal <= 0.5:"
            f" {'met' if drop <= 0.5 else 'MISSED'})"
        )
    for target in TARGETS:
        ratio = med[target] / med["torch-eager"]
        print(f"{target:18s} / torch eager {ratio:.2f} (goal <= 0.30: {'met' if ratio <= 0.3 else 'MISSED'})")


if __name__ == "__main__":
    main()
