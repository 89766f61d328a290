"""`edgekd bench --shift/--domain`: accuracy per shifted domain and the mean corruption error."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgekd.cli import cli

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
torch = pytest.importorskip("torch", reason="torch is needed to make the test model")


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgekd.export import export_onnx

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, padding=1), torch.nn.Flatten(), torch.nn.Linear(2 * 784, 10))
    return export_onnx(model.eval(), (1, 28, 28), tmp_path_factory.mktemp("shift") / "m.onnx")


def bench(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["bench", *args, "--quick", "--threads", "1", "--time-cap-s", "1"])
    return result.exit_code, result.output


def test_bench_shift_gives_one_accuracy_per_domain(onnx_file: Path, fmnist: str, tmp_path: Path) -> None:
    store = str(tmp_path / "s.sqlite")
    args = ["--data", "fashion-mnist", "--limit", "64", "--store", store]
    code, output = bench(
        str(onnx_file), *args, "--shift", "blur,invert", "--severity", "all", "--domain", f"own={fmnist}"
    )
    assert code == 0, output
    assert "mean corruption error" in output and "unnormalised" in output and "blur-5" in output  # the report
    code, output = bench(str(onnx_file), *args, "--shift", "blur,invert", "--domain", f"own={fmnist}", "--json")
    assert code == 0, output
    result = json.loads(output)
    assert set(result["shift"]) == {"blur-3", "invert-3", "own"}
    assert all(0.0 <= acc <= 1.0 for acc in result["shift"].values())
    expected = np.mean([1 - result["shift"]["blur-3"], 1 - result["shift"]["invert-3"]])
    assert result["mean_corruption_error"] == pytest.approx(expected)
    assert result["accuracy_samples"] == 64 and "rounds" in result


def test_bench_without_shift_keeps_its_fields(onnx_file: Path) -> None:
    code, output = bench(str(onnx_file), "--json")
    assert code == 0, output
    assert "shift" not in json.loads(output) and "mean_corruption_error" not in json.loads(output)


def test_bad_shift_name_and_wrong_shape_domain_exit_2_with_one_line(onnx_file: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    good = tmp_path / "good.npz"
    np.savez(good, x=rng.integers(0, 256, (40, 28, 28), dtype=np.uint8), y=np.arange(40) % 10)
    code, output = bench(str(onnx_file), "--data", str(good), "--shift", "fog")
    assert code == 2 and len(output.strip().splitlines()) == 1 and "fog" in output, output
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, x=rng.integers(0, 256, (40, 16, 16), dtype=np.uint8), y=np.arange(40) % 10)
    code, output = bench(str(onnx_file), "--data", str(good), "--domain", f"small={wrong}")
    assert code == 2 and len(output.strip().splitlines()) == 1 and "16 x 16" in output, output


def test_domain_with_other_classes_and_bad_severity_exit_2_with_one_line(onnx_file: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    good = tmp_path / "good.npz"
    np.savez(good, x=rng.integers(0, 256, (40, 28, 28), dtype=np.uint8), y=np.arange(40) % 10)
    other = tmp_path / "other.npz"
    np.savez(other, x=rng.integers(0, 256, (40, 28, 28), dtype=np.uint8), y=np.arange(40) % 5)
    code, output = bench(str(onnx_file), "--data", str(good), "--domain", f"cam={other}")
    assert code == 2 and len(output.strip().splitlines()) == 1 and "classes" in output and "cam" in output, output
    for severity in ("0", "6", "x"):
        code, output = bench(str(onnx_file), "--data", str(good), "--shift", "elastic", "--severity", severity)
        assert code == 2 and len(output.strip().splitlines()) == 1 and "severity" in output, output
