"""The CLI contract: commands exist, bad input exits 2 with one clear line and no traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgekd import api
from edgekd.cli import cli
from edgekd.config import TrainConfig

CONTRACT = ["demo", "run", "train-teacher", "distill", "export", "bench", "select", "report", "package", "ingest"]


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def assert_bad_input(args: list[str], *needles: str) -> None:
    code, output = run(*args)
    lines = [line for line in output.splitlines() if line.strip()]
    assert code == 2, output
    assert "Traceback" not in output
    message = lines[-1]
    for needle in needles:
        assert needle in output, output
    assert message.startswith(("edgekd: error:", "Error:")), output


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory, fmnist_npz: Path) -> Path:
    out = tmp_path_factory.mktemp("teacher") / "t.pt"
    api.train_teacher("cnn-xs", str(fmnist_npz), out, TrainConfig(epochs=1, limit=200), progress=False)
    return out


def test_help_lists_the_contract() -> None:
    code, output = run("--help")
    assert code == 0
    for name in CONTRACT:
        assert name in output
    for name in CONTRACT:
        code, output = run(name, "--help")
        assert code == 0 and "Usage" in output


def test_missing_teacher_file(tmp_path: Path) -> None:
    assert_bad_input(
        ["distill", "--teacher", str(tmp_path / "none.pt"), "--student", "cnn-xs", "--out", str(tmp_path / "s.pt")],
        "checkpoint not found",
    )


def test_unknown_model_name(tmp_path: Path, fmnist: str) -> None:
    assert_bad_input(
        ["train-teacher", "--arch", "vgg16", "--data", fmnist, "--out", str(tmp_path / "t.pt")],
        "unknown model 'vgg16'",
        "cnn-s",
    )


def test_unknown_method(tmp_path: Path, teacher: Path) -> None:
    assert_bad_input(
        [
            "distill",
            "--teacher",
            str(teacher),
            "--student",
            "cnn-xs",
            "--method",
            "nope",
            "--out",
            str(tmp_path / "s.pt"),
        ],
        "unknown distillation method 'nope'",
        "kd",
    )


def test_unknown_target(tmp_path: Path, teacher: Path) -> None:
    assert_bad_input(
        ["export", str(teacher), "--target", "cpu-nothing", "--out", str(tmp_path / "b")],
        "unknown targets 'cpu-nothing'",
        "cpu-ort-fp32",
    )


def test_malformed_yaml_target(tmp_path: Path, teacher: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("runtime: onnxruntime\nprecision: [fp32\n")
    assert_bad_input(
        ["export", str(teacher), "--target", str(bad), "--out", str(tmp_path / "b")], "malformed YAML", "line"
    )


def test_invalid_target_field(tmp_path: Path, teacher: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("runtime: onnxruntime\nprecision: fp64\n")
    assert_bad_input(["export", str(teacher), "--target", str(bad), "--out", str(tmp_path / "b")], "precision")


def test_data_of_the_wrong_shape(tmp_path: Path, teacher: Path) -> None:
    data = tmp_path / "rgb.npz"
    np.savez(data, x=np.zeros((40, 3, 32, 32), np.uint8), y=np.arange(40) % 10)
    assert_bad_input(
        [
            "distill",
            "--teacher",
            str(teacher),
            "--student",
            "cnn-xs",
            "--data",
            str(data),
            "--out",
            str(tmp_path / "s.pt"),
        ],
        "(1, 28, 28)",
        "(3, 32, 32)",
    )


def test_wrong_number_of_classes(tmp_path: Path, teacher: Path) -> None:
    data = tmp_path / "three.npz"
    np.savez(data, x=np.zeros((30, 28, 28), np.uint8), y=np.arange(30) % 3)
    assert_bad_input(
        [
            "distill",
            "--teacher",
            str(teacher),
            "--student",
            "cnn-xs",
            "--data",
            str(data),
            "--out",
            str(tmp_path / "s.pt"),
        ],
        "10 outputs",
        "3 classes",
    )


def test_missing_data(tmp_path: Path) -> None:
    assert_bad_input(
        ["train-teacher", "--arch", "cnn-xs", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "t.pt")],
        "data not found",
    )


def test_bad_option_value(tmp_path: Path) -> None:
    assert_bad_input(
        ["train-teacher", "--arch", "cnn-xs", "--epochs", "0", "--out", str(tmp_path / "t.pt")], "--epochs"
    )


def test_export_and_bench_json_contract(tmp_path: Path, teacher: Path, fmnist: str) -> None:
    out = tmp_path / "build"
    code, output = run(
        "export", str(teacher), "--target", "cpu-ort-fp32", "--out", str(out), "--data", fmnist, "--json"
    )
    assert code == 0, output
    info = json.loads((out / "artifact.json").read_text())
    assert (out / "model.onnx").is_file() and (out / info["artifact"]).is_file()
    assert info["runtime"] == "onnxruntime" and info["precision"] == "fp32"
    assert info["input_shape"] == [1, 28, 28]
    assert info["parity"]["max_abs_diff"] < 1e-3 and info["parity"]["top1_agreement"] == 1.0
    code, output = run("bench", str(out), "--data", fmnist, "--quick", "--json")
    assert code == 0, output
    result = json.loads(output)
    assert set(result["latency_ms"]) >= {"p50", "p90", "p99", "mean", "std"}
    assert result["throughput_per_s"] > 0 and result["batch"] == 1
    assert result["accuracy"] == pytest.approx(info["accuracy"]["artifact"])
    assert result["fingerprint"]["runtime"] == "onnxruntime" and result["fingerprint"]["cores"] >= 1


def test_corrupt_onnx_bench(tmp_path: Path) -> None:
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"\x08\x07garbage")
    assert_bad_input(["bench", str(bad)], "not a valid ONNX model")


def test_real_entry_point_exit_code(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgekd.cli",
            "export",
            str(tmp_path / "x.pt"),
            "--target",
            "cpu-ort-fp32",
            "--out",
            str(tmp_path / "b"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"edgekd: error: model not found: {tmp_path / 'x.pt'};"
        " give an edgekd checkpoint, an .onnx file or module:factory"
    ]
