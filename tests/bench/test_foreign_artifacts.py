"""Models built outside edgekd, with dynamic dimensions: `--input-shape C,H,W` and `--batch` on `bench`
and `export` (issue 13, item 5). The ONNX is written with onnx.helper, the IR with OpenVINO's own API."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgekd.bench import resolve_artifact
from edgekd.bench.artifacts import parse_input_shape
from edgekd.cli import cli
from edgekd.errors import UserError

onnx = pytest.importorskip("onnx", reason="onnx is needed to write the test model")
pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")

CLASSES = 10


def write_onnx(path: Path, dims: list[str | int]) -> Path:
    """Conv 1->4, global average pool, Gemm 4->10: runs at any H, W; `dims` is the N x C x H x W input."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = [
        numpy_helper.from_array(rng.standard_normal((4, 1, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.standard_normal((4, CLASSES)).astype(np.float32), "fc"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "fc"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "foreign",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", CLASSES])],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def dynamic_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Batch, H and W all dynamic."""
    return write_onnx(tmp_path_factory.mktemp("foreign") / "dyn.onnx", ["N", 1, "H", "W"])


@pytest.fixture(scope="module")
def dynamic_ir(dynamic_onnx: Path) -> dict[str, Path]:
    """OpenVINO IRs made by OpenVINO itself: one with a dynamic batch only, one with H and W dynamic too."""
    pytest.importorskip("openvino", reason="openvino is not installed")
    from edgekd.runtimes._openvino_import import import_openvino

    ov = import_openvino()
    irs = {}
    for name, shape in (("batch", [-1, 1, 28, 28]), ("hw", [-1, 1, -1, -1])):
        model = ov.convert_model(str(dynamic_onnx))
        model.reshape({0: ov.PartialShape(shape)})
        irs[name] = dynamic_onnx.with_name(f"ir-{name}.xml")
        ov.save_model(model, str(irs[name]), compress_to_fp16=False)
    return irs


def factory(num_classes: int = CLASSES, in_channels: int = 1) -> object:
    """A `module:factory` model (`test_foreign_artifacts:factory`) with no shape of its own."""
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(in_channels, 4, 3, padding=1),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, num_classes),
    ).eval()


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def bench(*args: str) -> tuple[int, str]:
    return invoke("bench", *args, "--quick", "--threads", "1", "--time-cap-s", "1", "--json")


@pytest.mark.parametrize("text", ["1,28,28", "1x28x28", "[1, 28, 28]"])
def test_input_shape_spellings(text: str) -> None:
    assert parse_input_shape(text) == (1, 28, 28)


@pytest.mark.parametrize("text", ["1,28", "0,28,28", "a,b,c"])
def test_bad_input_shape_is_bad_input(text: str) -> None:
    with pytest.raises(UserError, match="three fixed sizes"):
        parse_input_shape(text)


def test_dynamic_onnx_needs_input_shape(dynamic_onnx: Path) -> None:
    with pytest.raises(UserError, match="pass --input-shape C,H,W"):
        resolve_artifact(dynamic_onnx)
    assert resolve_artifact(dynamic_onnx, input_shape=(1, 20, 24)).input_shape == (1, 20, 24)
    with pytest.raises(UserError, match="expects input 3,20,24"):  # C is fixed at 1 in the file
        resolve_artifact(dynamic_onnx, input_shape=(3, 20, 24))


def test_dynamic_ir_dims_are_read_and_filled(dynamic_ir: dict[str, Path]) -> None:
    assert resolve_artifact(dynamic_ir["batch"]).input_shape == (1, 28, 28)
    with pytest.raises(UserError, match="pass --input-shape C,H,W"):
        resolve_artifact(dynamic_ir["hw"])
    assert resolve_artifact(dynamic_ir["hw"], input_shape=(1, 32, 32)).input_shape == (1, 32, 32)


def test_bench_cli_measures_dynamic_onnx_at_the_given_shape(dynamic_onnx: Path, tmp_path: Path) -> None:
    store = str(tmp_path / "s.sqlite")
    code, output = bench(str(dynamic_onnx), "--store", store)
    assert code == 2 and "--input-shape" in output and len(output.strip().splitlines()) == 1, output
    code, output = bench(str(dynamic_onnx), "--input-shape", "1,20,20", "--batch", "3", "--store", store)
    assert code == 0, output
    assert json.loads(output)["batch"] == 3


@pytest.mark.parametrize("which", ["batch", "hw"])
def test_bench_cli_measures_dynamic_ir(which: str, dynamic_ir: dict[str, Path], tmp_path: Path) -> None:
    code, output = bench(
        str(dynamic_ir[which]), "--input-shape", "1,28,28", "--batch", "2", "--store", str(tmp_path / "s.sqlite")
    )
    assert code == 0, output
    record = json.loads(output)
    assert record["batch"] == 2 and record["latency_ms"]["p50"] > 0


@pytest.mark.parametrize("target", ["cpu-ort-fp32", "cpu-openvino-fp32"])
def test_export_dynamic_onnx_with_input_shape(target: str, dynamic_onnx: Path, tmp_path: Path) -> None:
    if "openvino" in target:
        pytest.importorskip("openvino", reason="openvino is not installed")
    out = tmp_path / "out"
    code, output = invoke("export", str(dynamic_onnx), "--target", target, "--out", str(out))
    assert code == 2 and "--input-shape" in output, output
    args = ["export", str(dynamic_onnx), "--target", target, "--out", str(out), "--input-shape", "1,20,20"]
    code, output = invoke(*args, "--batch", "4", "--store", str(tmp_path / "s.sqlite"))
    assert code == 0, output
    info = json.loads((out / "artifact.json").read_text())
    assert info["input_shape"] == [1, 20, 20] and info["batch"] == 4
    artifact = resolve_artifact(out)
    assert artifact.info["batch"] == 4
    with pytest.raises(UserError, match="exported for input 1,20,20"):
        resolve_artifact(out, input_shape=(1, 28, 28))


def test_export_module_factory_with_input_shape_needs_no_target_shape(tmp_path: Path) -> None:
    pytest.importorskip("torch", reason="torch is needed for a module:factory model")
    out = tmp_path / "out"
    args = ["export", "test_foreign_artifacts:factory", "--target", "cpu-ort-fp32", "--out", str(out)]
    code, output = invoke(*args, "--input-shape", "1,16,16", "--store", str(tmp_path / "s.sqlite"))
    assert code == 0, output
    assert json.loads((out / "artifact.json").read_text())["input_shape"] == [1, 16, 16]
