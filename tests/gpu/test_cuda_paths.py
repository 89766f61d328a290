"""The GPU path (issue 18): each CUDA path once, marked `gpu` and skipped with the reason without CUDA;
the CPU versions where they mean something (bfloat16 autocast, torch.compile, one-process DDP, the
`benchmarks.gpu_check` fallback). `bash scripts/gpu_check.sh` runs the `gpu` ones on a CUDA machine."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from edgekd import api
from edgekd.cli import cli
from edgekd.config import TrainConfig
from edgekd.distill.task import DistillConfig
from edgekd.distill.trainer import TrainResult
from edgekd.models import load_model

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs CUDA: torch.cuda.is_available() is False")
ROOT = Path(__file__).resolve().parents[2]


def _cfg(device: str, **kw: object) -> TrainConfig:
    return TrainConfig.model_validate({"epochs": 1, "batch_size": 64, "seed": 0, "device": device, **kw})


def _losses(result: TrainResult) -> list[float]:
    return [float(r["train_loss"]) for r in result.history]


def _teacher_and_student(tmp_path: Path, data: str, cfg: TrainConfig, cache: bool = True) -> TrainResult:
    teacher = api.train_teacher("cnn-s", data, tmp_path / "t.pt", cfg, progress=False)
    task = DistillConfig(method="kd", cache=cache)
    return api.distill(teacher.checkpoint, "cnn-xs", data, tmp_path / f"s-{cache}.pt", cfg, task, progress=False)


def _torchrun_one(args: list[str], device: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env |= {"EDGEKD_DDP": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1", "-m", "edgekd.cli"]
    cmd += [*args, "--epochs", "1", "--batch-size", "32", "--device", device]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


# -- CUDA ------------------------------------------------------------------------------------------------
@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("amp_dtype", ["bfloat16", "float16"])
def test_amp_teacher_and_student_epochs_on_cuda(tmp_path: Path, fmnist: str, amp_dtype: str) -> None:
    student = _teacher_and_student(tmp_path, fmnist, _cfg("cuda", amp_dtype=amp_dtype))
    assert all(math.isfinite(v) for v in _losses(student)) and student.val_accuracy > 0.2


@pytest.mark.gpu
@needs_cuda
def test_channels_last_matches_contiguous_on_cuda(tmp_path: Path, fmnist: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgekd.models.layout import LAYOUT_ENV

    losses = {}
    for layout in ("contiguous", "channels_last"):
        monkeypatch.setenv(LAYOUT_ENV, layout)
        losses[layout] = _losses(api.train_teacher("cnn-s", fmnist, tmp_path / f"{layout}.pt", _cfg("cuda", amp=False)))
    assert losses["channels_last"][0] == pytest.approx(losses["contiguous"][0], rel=1e-2)


@pytest.mark.gpu
@needs_cuda
def test_compiled_and_eager_agree_on_cuda(tmp_path: Path, fmnist: str) -> None:
    runs = {
        c: api.train_teacher("cnn-s", fmnist, tmp_path / f"{c}.pt", _cfg("cuda", amp=False, compile=c))
        for c in (False, True)
    }
    assert _losses(runs[True])[0] == pytest.approx(_losses(runs[False])[0], rel=1e-2)
    assert (
        load_model(runs[True].checkpoint)[0].state_dict().keys()
        == load_model(runs[False].checkpoint)[0].state_dict().keys()
    )


@pytest.mark.gpu
@needs_cuda
def test_ddp_on_one_gpu_through_torchrun_with_nccl(tmp_path: Path, fmnist: str) -> None:
    proc = _torchrun_one(
        ["train-teacher", "--arch", "cnn-xs", "--data", fmnist, "--out", str(tmp_path / "t.pt")], "cuda"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert load_model(tmp_path / "t.pt")[2]["val_acc"] > 0.2


@pytest.mark.gpu
@needs_cuda
def test_teacher_cache_filled_on_cuda_equals_live_teacher(tmp_path: Path, fmnist: str) -> None:
    cfg = _cfg("cuda", amp=False, epochs=2)
    cached, live = (_teacher_and_student(tmp_path, fmnist, cfg, cache=c) for c in (True, False))
    assert list((tmp_path / "cache").rglob("meta.json"))  # conftest points EDGEKD_CACHE at tmp_path/cache
    assert _losses(cached) == pytest.approx(_losses(live), rel=1e-3)


@pytest.mark.gpu
@needs_cuda
def test_resume_is_exact_on_cuda(tmp_path: Path, fmnist: str) -> None:
    env = {**os.environ, "CUBLAS_WORKSPACE_CONFIG": ":4096:8"}  # a fresh process: cuBLAS reads it at start
    cmd = [sys.executable, "-m", "benchmarks.gpu_check", "--checks", "resume/cuda", "--data", fmnist, "--limit", "400"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "PASS  resume/cuda" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-2000:]


@pytest.mark.gpu
@needs_cuda
def test_cuda_trained_student_exports_with_parity(tmp_path: Path, fmnist: str) -> None:
    from edgekd.data import to_float
    from edgekd.data.load import load_data
    from edgekd.export.onnx import check_parity, export_onnx

    student = _teacher_and_student(tmp_path, fmnist, _cfg("cuda", amp_dtype="bfloat16"))
    model, spec, _ = load_model(student.checkpoint)
    onnx_path = export_onnx(model, (spec.in_channels, spec.image_size, spec.image_size), tmp_path / "s.onnx")
    parity = check_parity(model, onnx_path, to_float(load_data(fmnist).test.x[:128]))
    assert parity.max_abs_diff < 1e-3 and parity.top1_agreement >= 0.999


# -- the CPU versions ------------------------------------------------------------------------------------
def test_bf16_autocast_epoch_on_cpu_through_the_cli(tmp_path: Path, fmnist: str) -> None:
    args = ["--data", fmnist, "--epochs", "1", "--batch-size", "64", "--device", "cpu", "--json"]
    fp32 = CliRunner().invoke(cli, ["train-teacher", "--arch", "cnn-xs", *args, "--out", str(tmp_path / "a.pt")])
    bf16 = CliRunner().invoke(
        cli, ["train-teacher", "--arch", "cnn-xs", *args, "--amp-dtype", "bfloat16", "--out", str(tmp_path / "b.pt")]
    )
    assert fp32.exit_code == 0 and bf16.exit_code == 0, bf16.output
    a, b = (load_model(tmp_path / n)[2] for n in ("a.pt", "b.pt"))
    assert b["train"]["amp_dtype"] == "bfloat16" and a["train"]["amp_dtype"] == "float16"
    la, lb = a["history"][0]["train_loss"], b["history"][0]["train_loss"]
    assert math.isfinite(lb) and lb != la and lb == pytest.approx(la, rel=2e-2)  # autocast ran; bf16 rounding only


def test_default_amp_on_cpu_stays_float32(tmp_path: Path, fmnist: str) -> None:
    """float16 is the default AMP dtype, and on the CPU it means no autocast at all, as before."""
    default = api.train_teacher("cnn-xs", fmnist, tmp_path / "a.pt", _cfg("cpu"), progress=False)
    off = api.train_teacher("cnn-xs", fmnist, tmp_path / "b.pt", _cfg("cpu", amp=False), progress=False)
    assert _losses(default) == _losses(off)


@pytest.mark.slow  # torch.compile takes about 50 s on this project's 2-core CPU
def test_compiled_and_eager_agree_on_cpu(tmp_path: Path, fmnist: str) -> None:
    runs = {c: api.train_teacher("cnn-xs", fmnist, tmp_path / f"{c}.pt", _cfg("cpu", compile=c)) for c in (False, True)}
    assert _losses(runs[True])[0] == pytest.approx(_losses(runs[False])[0], rel=1e-3)
    eager, compiled = (load_model(runs[c].checkpoint)[0].state_dict() for c in (False, True))
    assert compiled.keys() == eager.keys()  # the plain module's keys: no `_orig_mod.` prefix


def test_ddp_one_process_through_torchrun_with_gloo(tmp_path: Path, fmnist: str) -> None:
    """EDGEKD_DDP=1: the DDP path with one process (what a one-GPU machine runs with NCCL)."""
    proc = _torchrun_one(
        ["train-teacher", "--arch", "cnn-xs", "--data", fmnist, "--out", str(tmp_path / "t.pt")], "cpu"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "teacher-output cache" not in proc.stdout and (tmp_path / "t.pt").is_file()


@pytest.mark.skipif(CUDA, reason="checks the fallback of a machine without CUDA")
def test_gpu_check_without_cuda_runs_the_cpu_side_and_exits_3(tmp_path: Path, fmnist: str) -> None:
    record = tmp_path / "gpu_check.json"
    cmd = [sys.executable, "-m", "benchmarks.gpu_check", "--checks", "teacher/cpu/fp32,teacher/cpu/bf16"]
    cmd += ["--data", fmnist, "--limit", "300", "--out", str(record)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 3, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "CUDA is not available here" in proc.stdout and "PASS  teacher/cpu/bf16" in proc.stdout
    got = json.loads(record.read_text())
    assert got["cuda"] is False and [c["name"] for c in got["checks"]] == ["teacher/cpu/fp32", "teacher/cpu/bf16"]
    assert all(c["ok"] and c["images_s"] > 0 for c in got["checks"])
