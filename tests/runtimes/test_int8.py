"""INT8 builds against real ONNX Runtime, OpenVINO and NNCF on a small student trained on real Fashion-MNIST.

The accuracy-aware tests use a model that is hard to quantize on purpose: one channel of the stem's
output is scaled up 300x and the next conv scaled down to match. The float function is unchanged, but
that activation's range swamps every other channel at 8 bits (the classic outlier failure), so the
layers around it must stay float to recover accuracy.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgekd import api
from edgekd.cli import cli
from edgekd.config import Runtime, TargetProfile, TrainConfig
from edgekd.errors import UserError
from edgekd.runtimes import get_runtime

onnx = pytest.importorskip("onnx")
torch = pytest.importorskip("torch")

SHAPE = (1, 28, 28)


@pytest.fixture(scope="module")
def student(tmp_path_factory: pytest.TempPathFactory, fmnist_npz: Path) -> Path:
    """cnn-xs after ~170 steps on 900 real Fashion-MNIST images (about 65-70% test accuracy)."""
    out = tmp_path_factory.mktemp("student") / "s.pt"
    cfg = TrainConfig(epochs=6, batch_size=32, lr=3e-3, seed=0)
    api.train_teacher("cnn-xs", str(fmnist_npz), out, cfg, store=out.parent / "s.sqlite", progress=False)
    return out


@pytest.fixture(scope="module")
def outlier_onnx(student: Path) -> Path:
    from edgekd.export import export_onnx
    from edgekd.models import load_model

    model, _, _ = load_model(student)
    with torch.no_grad():  # relu(s * a) = s * relu(a) for s > 0: the float function is unchanged
        bn, conv = model.stem[1], model.stage1[0][0]
        bn.weight[0] *= 300.0
        bn.bias[0] *= 300.0
        conv.weight[:, 0] /= 300.0
    return export_onnx(model, SHAPE, student.parent / "outlier.onnx")


def int8_profile(runtime: str, **options: object) -> TargetProfile:
    return TargetProfile(name=f"test-{runtime}-int8", runtime=Runtime(runtime), precision="int8", options=options)


def dequantized_weights(path: Path) -> dict[str, bool]:
    """Conv/Gemm node name -> whether its weights come out of a DequantizeLinear (i.e. are INT8)."""
    graph = onnx.load(str(path)).graph
    producer = {out: n.op_type for n in graph.node for out in n.output}
    return {n.name: producer.get(n.input[1]) == "DequantizeLinear" for n in graph.node if n.op_type in ("Conv", "Gemm")}


def check_export(info: dict, out: Path) -> dict:
    """What every INT8 artifact.json holds, and small accuracy loss against the PyTorch student."""
    assert info == json.loads((out / "artifact.json").read_text())
    assert info["precision"] == "int8" and (out / info["artifact"]).is_file()
    acc = info["accuracy"]
    assert acc["torch"] > 0.55 and acc["torch"] - acc["artifact"] < 0.02, acc
    assert info["parity"]["artifact"]["top1_agreement"] > 0.9
    q = info["quantization"]
    assert q["calibration_samples"] == 512 and q["recipe"]["dataset"] == "fashion-mnist"
    assert q["validation"]["samples"] == 1000 and q["max_accuracy_drop"] == 0.01
    assert q["test"]["drop"] == pytest.approx(acc["torch"] - acc["artifact"])
    assert q["goal_met"] is (q["validation"]["drop"] <= 0.01 and q["test"]["drop"] <= 0.01)
    assert "quantization" not in info["info"]
    return q


def test_ort_int8_export(student: Path, tmp_path: Path) -> None:
    info = api.export(str(student), "cpu-ort-int8", tmp_path, data="fashion-mnist")
    q = check_export(info, tmp_path)
    assert info["artifact"] == "model.int8.onnx" and info["calibration"] == "fashion-mnist"
    ops = {n.op_type for n in onnx.load(str(tmp_path / info["artifact"])).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    weights = dequantized_weights(tmp_path / info["artifact"])
    assert sorted(name for name, int8 in weights.items() if not int8) == sorted(q["float_layers"])
    assert q["int8_layers"] + len(q["float_layers"]) == len(weights) == 5


def test_openvino_int8_export(student: Path, tmp_path: Path) -> None:
    info = api.export(str(student), "cpu-openvino-int8", tmp_path, data="fashion-mnist")
    q = check_export(info, tmp_path)
    xml = (tmp_path / info["artifact"]).read_text()
    assert 'type="FakeQuantize"' in xml and 'element_type="i8"' in xml
    assert 'element_type="f16"' not in xml  # layers left in float keep float32 weights
    assert q["method"] == "nncf.quantize_with_accuracy_control" and info["info"]["weights"] == "i8"


def test_ort_accuracy_aware_keeps_sensitive_layers_float(outlier_onnx: Path, tmp_path: Path) -> None:
    adapter = get_runtime("onnxruntime")
    plain = adapter.build(outlier_onnx, int8_profile("onnxruntime"), tmp_path / "plain").info["quantization"]
    assert plain["validation"]["drop"] > 0.2 and plain["goal_met"] is None and plain["float_layers"] == []
    art = adapter.build(outlier_onnx, int8_profile("onnxruntime", max_accuracy_drop=0.02), tmp_path / "aware")
    q = art.info["quantization"]
    assert q["goal_met"] is True and q["validation"]["drop"] <= 0.02, q
    # The outlier sits between the first two convs: both must be float for its range not to matter.
    convs = [n for n in dequantized_weights(art.path) if n.startswith("node_Conv")]
    assert set(convs[:2]) <= set(q["float_layers"]) and set(q["float_layers"]) <= set(q["excluded_nodes"])
    assert all(not dequantized_weights(art.path)[name] for name in q["float_layers"])
    assert len(q["attempts"]) >= 2 and q["attempts"][0]["accuracy"] == plain["validation"]["int8"]


def test_openvino_accuracy_control_reverts_layers(outlier_onnx: Path, tmp_path: Path) -> None:
    adapter = get_runtime("openvino")
    art = adapter.build(outlier_onnx, int8_profile("openvino", max_accuracy_drop=0.02), tmp_path)
    q = art.info["quantization"]
    assert q["method"] == "nncf.quantize_with_accuracy_control" and q["goal_met"] is True, q
    assert q["float_layers"] and q["int8_layers"] >= 1
    assert 'type="FakeQuantize"' in art.path.read_text()


def test_goal_out_of_reach_still_writes_the_best_artifact(outlier_onnx: Path, tmp_path: Path) -> None:
    target = tmp_path / "strict.yaml"
    target.write_text("runtime: onnxruntime\nprecision: int8\noptions: {max_accuracy_drop: 0.0, max_float_layers: 1}\n")
    info = api.export(str(outlier_onnx), str(target), tmp_path / "out", data="fashion-mnist")
    q = info["quantization"]
    assert q["goal_met"] is False and (tmp_path / "out" / info["artifact"]).is_file()
    assert re.search(r"points below float .* max_float_layers=1\); wrote the best attempt", q["reason"]), q["reason"]


@pytest.mark.parametrize(
    ("runtime", "options", "message"),
    [
        ("onnxruntime", {"preset": "mixed"}, "option 'preset' does not apply to onnxruntime"),
        ("openvino", {"per_channel": False}, "option 'per_channel' does not apply to openvino"),
        ("onnxruntime", {"max_acuracy_drop": 0.01}, "max_acuracy_drop: Extra inputs are not permitted"),
        ("onnxruntime", {"calibrate_method": "kl"}, "calibrate_method"),
    ],
)
def test_bad_options_are_user_errors(
    outlier_onnx: Path, tmp_path: Path, runtime: str, options: dict, message: str
) -> None:
    with pytest.raises(UserError, match=message):
        get_runtime(runtime).build(outlier_onnx, int8_profile(runtime, **options), tmp_path)


def test_cli_bad_recipe_exits_2_with_one_line(outlier_onnx: Path, tmp_path: Path) -> None:
    recipe = tmp_path / "few.yaml"
    recipe.write_text("dataset: fashion-mnist\nsamples: 8\n")
    args = [
        "export",
        str(outlier_onnx),
        "--target",
        "cpu-ort-int8",
        "--out",
        str(tmp_path / "o"),
        "--calibration",
        str(recipe),
    ]
    result = CliRunner().invoke(cli, args)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert "samples" in lines[0] and "too few" in lines[0] and "at least 32" in lines[0]
    assert not (tmp_path / "o" / "artifact.json").exists()


def test_without_data_the_default_recipe_calibrates(outlier_onnx: Path, tmp_path: Path) -> None:
    target = tmp_path / "plain.yaml"
    target.write_text("runtime: onnxruntime\nprecision: int8\n")
    info = api.export(str(outlier_onnx), str(target), tmp_path / "out")  # no data: checks run on noise
    assert info["calibration"] is None and info["accuracy"]["artifact"] is None
    q = info["quantization"]
    assert q["recipe"]["name"] == "fashion-mnist" and "test" not in q and q["goal_met"] is None
