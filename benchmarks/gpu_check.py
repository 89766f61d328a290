"""The GPU path in one run (issue 18): AMP, channels_last, torch.compile, DDP with NCCL, the teacher cache,
exact resume and export parity on CUDA, with images/s of every configuration against the CPU path.

    python -m benchmarks.gpu_check [--data auto|SPEC] [--limit N] [--budget-s S] [--checks A,B] [--out FILE]
        [--cpu-compile]

`bash scripts/gpu_check.sh` runs this and then the test suite's `gpu`-marked tests. Each check runs in its
own process under its own time box (`--check-s`, and never past the run's `--budget-s`), so a hung or
crashed check fails alone. A training row trains cnn-s (teacher) or cnn-xs distilled from that teacher
with kd (student) for 2 epochs; its images/s is the second epoch's (the first pays for cuDNN's choices and
compilation), set beside the CPU fp32 row of the same role, measured in the same run. Rows are named
role/device/precision[+variant]: `contiguous` turns channels_last off, `compile` turns torch.compile on.

Exit status: 0 every check passed; 1 a check failed; 3 CUDA is not available here: the CPU side ran (and
must pass), the CUDA checks did not.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

NO_CUDA = 3
PRECISIONS: dict[str, Literal["float16", "bfloat16"] | None] = {"fp32": None, "bf16": "bfloat16", "fp16": "float16"}
CUDA_ROWS = ["fp32", "bf16", "fp16", "bf16+contiguous", "bf16+compile", "fp32+compile"]
CPU_ROWS = ["fp32", "bf16"]


@dataclass(frozen=True)
class Outcome:
    name: str
    ok: bool
    detail: str
    seconds: float
    images_s: float | None = None
    losses: list[float] = field(default_factory=list)


# -- what one check does (in its own process) ---------------------------------------------------------
def train_row(name: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """role/device/precision[+variant]: 2 epochs; the checkpoint is kept as work/<role>-<device>-<variant>.pt."""
    from benchmarks import env_set
    from edgekd import api
    from edgekd.config import TrainConfig
    from edgekd.distill.task import DistillConfig
    from edgekd.models.layout import LAYOUT_ENV

    role, device, variant = name.split("/")
    precision, _, extra = variant.partition("+")
    amp = PRECISIONS[precision]
    cfg = TrainConfig(
        epochs=2,
        limit=args.limit,
        batch_size=args.batch_size,
        seed=0,
        device=device,
        amp=amp is not None,
        amp_dtype=amp or "float16",
        compile=extra == "compile",
    )
    out = work / f"{name.replace('/', '-')}.pt"
    with env_set(LAYOUT_ENV, "contiguous" if extra == "contiguous" else "auto"):
        if role == "teacher":
            result = api.train_teacher("cnn-s", args.data, out, cfg, progress=False)
        else:
            teacher = work / "teacher-cpu-fp32.pt"
            if not teacher.is_file():
                return {"ok": False, "detail": "no teacher: the row teacher/cpu/fp32 did not finish"}
            result = api.distill(teacher, "cnn-xs", args.data, out, cfg, DistillConfig(method="kd"), progress=False)
    losses = [float(r["train_loss"]) for r in result.history]
    return {
        "ok": all(math.isfinite(v) for v in losses),
        "detail": f"losses {', '.join(f'{v:.4f}' for v in losses)}, val acc {result.val_accuracy:.3f}",
        "images_s": _train_size(args) / float(result.history[-1]["epoch_s"]),
        "losses": losses,
    }


def _train_size(args: argparse.Namespace) -> int:
    from edgekd.data.load import load_data

    return len(load_data(args.data, limit=args.limit, seed=0).train)  # the seed of every row's TrainConfig


def resume_row(device: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Two epochs straight against one epoch, an interruption, and --resume: the same weights, bit for bit."""
    import torch

    from edgekd import api
    from edgekd.config import TrainConfig
    from edgekd.distill.trainer import Trainer
    from edgekd.models import load_model

    torch.use_deterministic_algorithms(True, warn_only=True)  # CUDA kernels that sum atomically would differ
    torch.backends.cudnn.benchmark = False
    cfg = TrainConfig(epochs=2, limit=args.limit, batch_size=args.batch_size, seed=1, device=device)
    straight = api.train_teacher("cnn-xs", args.data, work / "straight.pt", cfg, progress=False)
    real_epoch = Trainer._epoch

    def stop_at_second(self: Trainer, advance: Any) -> None:
        if self.epoch == 1:
            raise KeyboardInterrupt
        real_epoch(self, advance)

    Trainer._epoch = stop_at_second  # type: ignore[method-assign]
    try:
        api.train_teacher("cnn-xs", args.data, work / "resumed.pt", cfg, progress=False)
    except KeyboardInterrupt:
        pass
    finally:
        Trainer._epoch = real_epoch  # type: ignore[method-assign]
    resumed = api.train_teacher("cnn-xs", args.data, work / "resumed.pt", cfg, resume=True, progress=False)
    a, b = load_model(straight.checkpoint)[0].state_dict(), load_model(resumed.checkpoint)[0].state_dict()
    worst = max(float((a[k].double() - b[k].double()).abs().max()) for k in a)
    same_losses = [r["train_loss"] for r in straight.history] == [r["train_loss"] for r in resumed.history]
    return {"ok": worst == 0.0 and same_losses, "detail": f"largest weight difference {worst:.3g}"}


def cache_row(device: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """A student distilled with the teacher cache (filled in epoch 1, read in epoch 2) against the live teacher."""
    from edgekd import api
    from edgekd.config import TrainConfig, cache_dir
    from edgekd.distill.task import DistillConfig

    teacher = work / "teacher-cpu-fp32.pt"
    if not teacher.is_file():
        return {"ok": False, "detail": "no teacher: the row teacher/cpu/fp32 did not finish"}
    cfg = TrainConfig(epochs=2, limit=args.limit, batch_size=args.batch_size, seed=0, device=device, amp=False)
    losses = {}
    for cache in (True, False):
        task = DistillConfig(method="kd", cache=cache)
        result = api.distill(teacher, "cnn-xs", args.data, work / f"cache-{cache}.pt", cfg, task, progress=False)
        losses[cache] = [float(r["train_loss"]) for r in result.history]
    filled = any(cache_dir().rglob("meta.json"))
    worst = max(abs(a - b) / abs(b) for a, b in zip(losses[True], losses[False], strict=True))
    return {"ok": filled and worst < 1e-3, "detail": f"cache written: {filled}; largest loss difference {worst:.2g}"}


def export_row(device: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """The student trained on `device` (row student/<device>/fp32), exported to ONNX, against ORT on the CPU."""
    from edgekd.data import to_float
    from edgekd.data.load import load_data
    from edgekd.export.onnx import check_parity, export_onnx
    from edgekd.models import load_model

    ckpt = work / f"student-{device}-fp32.pt"
    if not ckpt.is_file():
        return {"ok": False, "detail": f"no student: the row student/{device}/fp32 did not finish"}
    model, spec, _ = load_model(ckpt)
    shape = (spec.in_channels, spec.image_size, spec.image_size)
    onnx_path = export_onnx(model, shape, work / "student.onnx")
    inputs = to_float(load_data(args.data, limit=args.limit, seed=0).test.x[:256])
    parity = check_parity(model, onnx_path, inputs)
    return {"ok": True, "detail": f"max abs diff {parity.max_abs_diff:.2g}, top-1 agreement {parity.top1_agreement}"}


def ddp_row(device: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """One process under torchrun with EDGEKD_DDP=1: the student in DDP, nccl on CUDA, gloo on the CPU."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["EDGEKD_DDP"] = "1"
    out = work / "ddp.pt"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1"]
    cmd += ["-m", "edgekd.cli", "train-teacher", "--arch", "cnn-xs", "--data", args.data, "--epochs", "1"]
    cmd += ["--limit", str(args.limit), "--batch-size", str(args.batch_size), "--device", device, "--out", str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [""]
    backend = "nccl" if device == "cuda" else "gloo"
    return {"ok": proc.returncode == 0 and out.is_file(), "detail": f"{backend}, exit {proc.returncode} {tail[0]}"}


def run_one(name: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    kind, device = name.split("/")[:2]
    if kind in ("teacher", "student"):
        return train_row(name, args, work)
    rows = {"resume": resume_row, "cache": cache_row, "export": export_row, "ddp": ddp_row}
    return rows[kind](device, args, work)


# -- the run: every check in its own process, within the budget ------------------------------------------
def plan(cuda: bool, args: argparse.Namespace) -> list[str]:
    """The checks in order: rows a later check reads (the CPU teacher, each device's fp32 student) come first."""
    names = [f"teacher/cpu/{v}" for v in CPU_ROWS] + [f"student/cpu/{v}" for v in CPU_ROWS]
    if args.cpu_compile:
        names += ["teacher/cpu/fp32+compile", "student/cpu/fp32+compile"]
    names += ["resume/cpu", "cache/cpu", "export/cpu", "ddp/cpu"]
    if cuda:
        names += [f"{role}/cuda/{v}" for role in ("teacher", "student") for v in CUDA_ROWS]
        names += ["resume/cuda", "cache/cuda", "export/cuda", "ddp/cuda"]
    if args.checks:
        names = [n for n in names if n in args.checks]
    return names


def spawn(name: str, args: argparse.Namespace, work: Path, limit_s: float) -> Outcome:
    """Run one check in a fresh process, killed after `limit_s`."""
    result_file = work / "results" / f"{name.replace('/', '-')}.json"
    cmd = [sys.executable, "-m", "benchmarks.gpu_check", "--one", name, "--workdir", str(work), "--data", args.data]
    cmd += ["--limit", str(args.limit), "--batch-size", str(args.batch_size)]
    env = {**os.environ, "EDGEKD_CACHE": str(work / "cache" / name.replace("/", "-"))}
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=max(1.0, limit_s))
    except subprocess.TimeoutExpired:
        return Outcome(name, False, f"timed out after {limit_s:.0f} s", time.perf_counter() - start)
    seconds = time.perf_counter() - start
    if not result_file.is_file():
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        return Outcome(name, False, f"crashed (exit {proc.returncode}): {last[:200]}", seconds)
    got = json.loads(result_file.read_text())
    return Outcome(name, bool(got["ok"]), got["detail"], seconds, got.get("images_s"), got.get("losses", []))


def compile_agreement(outcomes: dict[str, Outcome]) -> list[Outcome]:
    """torch.compile against eager, same seed and precision: the first epoch's losses within 2%."""
    found = []
    for name, compiled in outcomes.items():
        eager = outcomes.get(name.replace("+compile", ""))
        if "+compile" not in name or eager is None or not (compiled.losses and eager.losses):
            continue
        diff = abs(compiled.losses[0] - eager.losses[0]) / abs(eager.losses[0])
        label = name.replace("+compile", "") + " compiled vs eager"
        found.append(Outcome(label, diff < 0.02, f"epoch-1 loss differs by {diff:.2%}", 0.0))
    return found


def table(outcomes: list[Outcome]) -> str:
    """A pass/fail line per check; training rows with images/s against the CPU fp32 row of their role."""
    lines = []
    for o in outcomes:
        speed = ""
        if o.images_s is not None:
            base = next((b.images_s for b in outcomes if b.name == o.name.split("/")[0] + "/cpu/fp32"), None)
            ratio = f" ({o.images_s / base:.2f}x CPU fp32)" if base else ""
            speed = f"  {o.images_s:9.0f} images/s{ratio}"
        lines.append(f"{'PASS' if o.ok else 'FAIL'}  {o.name:28s}{speed}  [{o.seconds:.0f} s] {o.detail}")
    return "\n".join(lines)


def resolve_data(spec: str, work: Path) -> str:
    """`auto`: Fashion-MNIST when installed, else a synthetic .npz (images/s are then still meaningful)."""
    if spec != "auto":
        return spec
    from edgekd.data.formats.fashion_mnist import data_dir

    if (data_dir() / "train-images-idx3-ubyte.gz").is_file():
        return "fashion-mnist"
    import numpy as np

    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 8000)
    x = (rng.random((8000, 28, 28)) * 64 + y[:, None, None] * 19).astype(np.uint8)  # learnable: class = brightness
    np.savez(work / "synthetic.npz", x=x, y=y)
    print("Fashion-MNIST is not installed here: using synthetic 28x28 images", flush=True)
    return str(work / "synthetic.npz")


def run_all(args: argparse.Namespace, work: Path) -> int:
    import torch

    cuda = torch.cuda.is_available()
    device = torch.cuda.get_device_name(0) if cuda else "none"
    print(f"torch {torch.__version__}, CUDA device: {device}", flush=True)
    if not cuda:
        print("CUDA is not available here: running the CPU side only; the CUDA checks did NOT run", flush=True)
    args.data = resolve_data(args.data, work)
    (work / "results").mkdir(parents=True, exist_ok=True)
    start, outcomes = time.perf_counter(), {}
    for name in plan(cuda, args):
        left = args.budget_s - (time.perf_counter() - start)
        if left < 5:
            outcomes[name] = Outcome(name, False, "not run: the time budget is spent", 0.0)
            continue
        outcomes[name] = spawn(name, args, work, min(args.check_s * (2 if "compile" in name else 1), left))
        print(table([outcomes[name]]), flush=True)
    everything = [*outcomes.values(), *compile_agreement(outcomes)]
    print("\n" + table(everything))
    record = {"cuda": cuda, "device": device, "torch": torch.__version__, "data": args.data, "limit": args.limit}
    record |= {"seconds": time.perf_counter() - start, "checks": [asdict(o) for o in everything]}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    failed = [o.name for o in everything if not o.ok]
    print(
        f"{len(everything) - len(failed)}/{len(everything)} checks passed" + (f"; failed: {failed}" if failed else "")
    )
    return 1 if failed else (0 if cuda else NO_CUDA)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.gpu_check", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default="auto", help="auto (Fashion-MNIST, else synthetic) or a data spec")
    parser.add_argument("--limit", type=int, default=6000, help="training samples (before the val split)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--budget-s", type=float, default=420.0, help="the whole run's time budget")
    parser.add_argument("--check-s", type=float, default=90.0, help="one check's time box (twice this to compile)")
    parser.add_argument("--checks", default="", help="comma-separated check names (default: all)")
    parser.add_argument("--cpu-compile", action="store_true", help="also torch.compile on the CPU (slow)")
    parser.add_argument("--out", default="", help="write the JSON record here")
    parser.add_argument("--one", default="", help=argparse.SUPPRESS)  # a check's own process
    parser.add_argument("--workdir", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.checks = [c.strip() for c in args.checks.split(",") if c.strip()]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.one:
        work = Path(args.workdir)
        got = run_one(args.one, args, work)
        (work / "results" / f"{args.one.replace('/', '-')}.json").write_text(json.dumps(got))
        return 0
    with tempfile.TemporaryDirectory(prefix="edgekd-gpu-check-") as tmp:
        return run_all(args, Path(tmp))


if __name__ == "__main__":
    raise SystemExit(main())
