"""`edgekd bench A [B ...]`: one artifact keeps its record and gains rounds and floor; several compare."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgekd.cli import cli
from edgekd.store import Store

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
torch = pytest.importorskip("torch", reason="torch is needed to make the test models")


@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    from edgekd.export import export_onnx

    folder = tmp_path_factory.mktemp("cli")
    paths = []
    for width in (2, 8):
        torch.manual_seed(0)
        model = torch.nn.Sequential(
            torch.nn.Conv2d(1, width, 3, padding=1), torch.nn.Flatten(), torch.nn.Linear(width * 784, 10)
        ).eval()
        paths.append(export_onnx(model, (1, 28, 28), folder / f"w{width}.onnx"))
    return paths


def bench(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["bench", *args, "--quick", "--threads", "1", "--time-cap-s", "1"])
    return result.exit_code, result.output


def test_one_artifact_keeps_its_fields_and_gains_rounds_and_floor(onnx_files: list[Path], tmp_path: Path) -> None:
    store = tmp_path / "s.sqlite"
    code, output = bench(str(onnx_files[0]), "--json", "--store", str(store))
    assert code == 0, output
    result = json.loads(output)
    assert set(result["latency_ms"]) == {"p50", "p90", "p99", "mean", "std"}
    assert {"throughput_per_s", "batch", "accuracy", "fingerprint"} <= set(result)
    assert result["rounds"]["stopped_by"] in ("precision", "time_cap", "max_rounds")
    assert result["rounds"]["median_ms"] == pytest.approx(result["latency_ms"]["p50"])
    assert result["floor"]["name"] == "null" and result["floor"]["median_ms"] > 0
    [row] = Store(store).benchmarks()
    assert row["result"]["rounds"] == result["rounds"]  # the store keeps the round statistics and floor


def test_several_artifacts_are_compared_in_one_run(onnx_files: list[Path], tmp_path: Path) -> None:
    paths = [str(p) for p in onnx_files]
    code, output = bench(*paths, "--rounds-ci", "0.1", "--json", "--store", str(tmp_path / "s.sqlite"))
    assert code == 0, output
    result = json.loads(output)
    assert [m["name"] for m in result["models"]] == paths and result["rule"]["rel_width"] == 0.1
    assert [f["name"] for f in result["floors"]] == ["null"]
    assert len({m["rounds"]["rounds"] for m in [*result["models"], *result["floors"]]}) == 1
    code, text = bench(*paths, "--store", str(tmp_path / "s.sqlite"))
    assert code == 0 and "null (per-call floor" in text and "95% CI" in text


def test_bad_rounds_settings_are_bad_input(onnx_files: list[Path]) -> None:
    code, output = bench(str(onnx_files[0]), "--rounds-ci", "0")
    assert code == 2 and "--rounds-ci" in output
