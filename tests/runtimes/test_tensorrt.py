"""TensorRT: the static pre-check, trtexec commands, the Jetson profiles and the behaviour without TensorRT
run everywhere; build/load/run, INT8 calibration and CUDA-event timing need TensorRT and an NVIDIA GPU
and skip with that reason (they are written against the real TensorRT 10 API and never mocked).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from edgekd.config import Precision, Runtime, TargetProfile, load_target
from edgekd.errors import UserError
from edgekd.export.trt_check import Finding, Severity, check_for_tensorrt, report
from edgekd.runtimes import Artifact, get_runtime
from edgekd.runtimes.tensorrt import TensorRT, prepare_offline
from edgekd.runtimes.trt_calibrator import calibration_batches
from edgekd.runtimes.trt_settings import trt_settings
from edgekd.runtimes.trtexec import trtexec_args, trtexec_command

REPO = Path(__file__).resolve().parents[2]
SHAPE = (1, 28, 28)
NO_TRT = "TensorRT is not installed (needs an NVIDIA GPU machine)"
without_trt = pytest.mark.skipif(TensorRT.is_available(), reason="TensorRT is installed here")


def trt_profile(precision: Precision = Precision.FP16, **fields: object) -> TargetProfile:
    base: dict[str, object] = {
        "name": f"test-trt-{precision.value}",
        "runtime": Runtime.TENSORRT,
        "device": "cuda",
        "precision": precision,
    }
    return TargetProfile(**{**base, **fields})


@pytest.fixture(scope="module")
def cnn(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, Path]:
    """The built-in cnn-xs student and its ONNX, exported by edgekd's one export path."""
    torch = pytest.importorskip("torch", reason="torch is needed to export the test model")
    from edgekd.export import export_onnx
    from edgekd.models import build_model, parse_arch

    torch.manual_seed(0)
    model = build_model(parse_arch("cnn-xs")).eval()
    return model, export_onnx(model, SHAPE, tmp_path_factory.mktemp("trt") / "model.onnx")


@pytest.fixture(scope="module")
def cnn_onnx(cnn: tuple[object, Path]) -> Path:
    return cnn[1]


def graph(
    nodes: list[onnx.NodeProto],
    inputs: list[onnx.ValueInfoProto],
    outputs: list[onnx.ValueInfoProto],
    initializers: Sequence[onnx.TensorProto] = (),
    opset: int = 18,
) -> onnx.ModelProto:
    return helper.make_model(
        helper.make_graph(nodes, "g", inputs, outputs, list(initializers)),
        opset_imports=[helper.make_opsetid("", opset)],
    )


def image(name: str = "input", elem: int = TensorProto.FLOAT) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, ["batch", 1, 28, 28])


def by_op(findings: list[Finding], op: str) -> list[Finding]:
    return [f for f in findings if f.op == op]


# --- the static pre-check ---------------------------------------------------------------------------


def test_exported_cnn_has_no_findings(cnn_onnx: Path) -> None:
    assert check_for_tensorrt(cnn_onnx) == []
    assert check_for_tensorrt(cnn_onnx, strict=True) == []


def test_unsupported_operator_is_an_error_with_a_fix() -> None:
    model = graph(
        [helper.make_node("Unique", ["input"], ["u"], name="dedupe")],
        [image()],
        [helper.make_tensor_value_info("u", TensorProto.FLOAT, None)],
    )
    [finding] = check_for_tensorrt(model)
    assert (finding.severity, finding.node, finding.op) == (Severity.ERROR, "dedupe", "Unique")
    assert "not supported by TensorRT" in finding.message and "fix:" in finding.message


def test_types_tensorrt_does_not_take() -> None:
    model = graph(
        [helper.make_node("Identity", ["input"], ["out"], name="id")],
        [image("input", TensorProto.DOUBLE)],
        [helper.make_tensor_value_info("out", TensorProto.INT64, None)],
        [helper.make_tensor("names", TensorProto.STRING, [1], [b"cat"])],
    )
    found = {(f.op, f.node): f for f in check_for_tensorrt(model)}
    assert found["input", "input"].severity is Severity.ERROR and "DOUBLE" in found["input", "input"].message
    assert found["output", "out"].severity is Severity.WARNING and "INT64" in found["output", "out"].message
    assert found["initializer", "names"].severity is Severity.ERROR
    assert "STRING has no TensorRT equivalent" in found["initializer", "names"].message


def test_restrictions_of_supported_operators() -> None:
    nodes = [
        helper.make_node("MaxPool", ["input"], ["p", "idx"], name="pool", kernel_shape=[2, 2]),
        helper.make_node("Resize", ["p", "", "scales"], ["r"], name="up", mode="cubic"),
        helper.make_node("ReduceMean", ["r", "dyn_axes"], ["m"], name="mean"),
        helper.make_node("TopK", ["m", "k"], ["v", "i"], name="top", sorted=0),
    ]
    inputs = [image(), helper.make_tensor_value_info("dyn_axes", TensorProto.INT64, [1])]
    inits = [
        helper.make_tensor("scales", TensorProto.FLOAT, [4], [1, 1, 2, 2]),
        helper.make_tensor("k", TensorProto.INT64, [1], [5]),
    ]
    model = graph(nodes, inputs, [helper.make_tensor_value_info("v", TensorProto.FLOAT, None)], inits)
    findings = check_for_tensorrt(model)
    assert all(f.severity is Severity.ERROR for f in findings if f.op != "input")
    assert "Indices output is not supported" in by_op(findings, "MaxPool")[0].message
    assert "mode 'cubic'" in by_op(findings, "Resize")[0].message
    assert "'axes' must be a build-time constant" in by_op(findings, "ReduceMean")[0].message
    assert "sorted must be 1" in by_op(findings, "TopK")[0].message


def test_custom_domain_and_caveats_and_newer_operators() -> None:
    nodes = [
        helper.make_node("FusedConv", ["input"], ["a"], name="ort_fused", domain="com.microsoft"),
        helper.make_node("NonZero", ["a"], ["b"], name="nz"),
        helper.make_node("RMSNormalization", ["a", "scale"], ["c"], name="rms"),
    ]
    model = helper.make_model(
        helper.make_graph(
            nodes,
            "g",
            [image()],
            [helper.make_tensor_value_info("c", TensorProto.FLOAT, None)],
            [helper.make_tensor("scale", TensorProto.FLOAT, [1], [1.0])],
        ),
        opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("com.microsoft", 1)],
    )
    findings = check_for_tensorrt(model)
    assert by_op(findings, "FusedConv")[0].severity is Severity.ERROR
    assert "com.microsoft::FusedConv is not a standard ONNX operator" in by_op(findings, "FusedConv")[0].message
    assert by_op(findings, "NonZero")[0].severity is Severity.WARNING
    assert "needs TensorRT >= 10.15" in by_op(findings, "RMSNormalization")[0].message


def test_subgraphs_are_checked() -> None:
    branch = helper.make_graph(
        [helper.make_node("Unique", ["input"], ["y"], name="inner")],
        "then",
        [],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    other = helper.make_graph(
        [helper.make_node("Identity", ["input"], ["z"])],
        "else",
        [],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)],
    )
    node = helper.make_node("If", ["cond"], ["out"], name="branch", then_branch=branch, else_branch=other)
    model = graph(
        [node],
        [image(), helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)],
    )
    findings = check_for_tensorrt(model)
    assert by_op(findings, "If")[0].severity is Severity.WARNING  # the branches' caveat
    assert by_op(findings, "Unique")[0].node == "inner"


def test_opset_range() -> None:
    identity = [helper.make_node("Identity", ["input"], ["out"])]
    out = [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)]
    assert check_for_tensorrt(graph(identity, [image()], out, opset=17)) == []
    [newer] = check_for_tensorrt(graph(identity, [image()], out, opset=22))
    assert newer.severity is Severity.WARNING and "up to 20" in newer.message
    [older] = check_for_tensorrt(graph(identity, [image()], out, opset=7))
    assert older.severity is Severity.ERROR


def test_strict_raises_one_line_user_error(tmp_path: Path) -> None:
    model = graph(
        [helper.make_node("Unique", ["input"], ["u"], name="a"), helper.make_node("Det", ["u"], ["d"], name="b")],
        [image()],
        [helper.make_tensor_value_info("d", TensorProto.FLOAT, None)],
    )
    path = tmp_path / "bad.onnx"
    onnx.save(model, str(path))
    with pytest.raises(UserError) as err:
        check_for_tensorrt(path, strict=True)
    message = str(err.value)
    assert "\n" not in message and "Unique 'a'" in message and "(and 1 more error(s))" in message
    assert report(check_for_tensorrt(path))["errors"] == 2


def test_missing_and_corrupt_files_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found"):
        check_for_tensorrt(tmp_path / "nope.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"\x00not an onnx model\xff")
    with pytest.raises(UserError, match="not a readable ONNX model"):
        check_for_tensorrt(tmp_path / "junk.onnx")


# --- profiles, settings and trtexec ------------------------------------------------------------------

COMMON_TAIL = (
    "--memPoolSize=workspace:1024M --timingCacheFile=timing.cache --shapes=input:1x1x28x28"
    " --warmUp=500 --iterations=50 --duration=2 --avgRuns=100 --percentile=50,90,99 --noDataTransfers"
    " --useCudaGraph --exportTimes=trtexec_times.json --exportProfile=trtexec_profile.json"
    " --separateProfileRun"
)
COMMON_HEAD = (
    "trtexec --onnx=model.onnx --saveEngine=model.engine --minShapes=input:1x1x28x28"
    " --optShapes=input:1x1x28x28 --maxShapes=input:32x1x28x28"
)


@pytest.mark.parametrize(
    "name, precision", [("jetson-orin-trt-fp16", Precision.FP16), ("jetson-orin-trt-int8", Precision.INT8)]
)
def test_jetson_profiles_load(name: str, precision: Precision) -> None:
    profile = load_target(name)
    assert (profile.runtime, profile.device, profile.precision, profile.batch) == (
        Runtime.TENSORRT,
        "cuda",
        precision,
        1,
    )
    assert profile.input_shape == SHAPE
    settings = trt_settings(profile)
    assert (settings.min_batch, settings.opt_batch, settings.max_batch) == (1, 1, 32)
    if precision is Precision.INT8:
        assert profile.calibration == "fashion-mnist" and settings.calibration_batch == 32


def test_trtexec_command_fp16() -> None:
    assert trtexec_command(load_target("jetson-orin-trt-fp16")) == f"{COMMON_HEAD} --fp16 {COMMON_TAIL}"


def test_trtexec_command_int8() -> None:
    assert trtexec_command(load_target("jetson-orin-trt-int8")) == (
        f"{COMMON_HEAD} --int8 --fp16 --calib=calibration.cache --optShapesCalib=input:32x1x28x28 {COMMON_TAIL}"
    )


def test_trtexec_follows_the_profile() -> None:
    profile = trt_profile(
        Precision.FP32,
        device="cuda:1",
        batch=4,
        input_shape=(3, 32, 32),
        options={"min_batch": 2, "max_batch": 8, "workspace_mb": 512, "builder_optimization_level": 5},
    )
    args = trtexec_args(profile, "student.onnx", input_name="images")
    for flag in (
        "--onnx=student.onnx",
        "--minShapes=images:2x3x32x32",
        "--optShapes=images:4x3x32x32",
        "--maxShapes=images:8x3x32x32",
        "--shapes=images:4x3x32x32",
        "--noTF32",
        "--memPoolSize=workspace:512M",
        "--builderOptimizationLevel=5",
        "--device=1",
    ):
        assert flag in args
    assert not {"--fp16", "--int8"} & set(args)
    assert shlex.split(trtexec_command(profile, "my model.onnx"))[1] == "--onnx=my model.onnx"


def test_trtexec_needs_a_shape() -> None:
    with pytest.raises(UserError, match="no input_shape"):
        trtexec_command(trt_profile())
    assert "--optShapes=input:1x3x8x8" in trtexec_args(trt_profile(), input_shape=(3, 8, 8))


@pytest.mark.parametrize(
    "fields, match",
    [
        ({"device": "cpu"}, "device must be cuda or cuda:N"),
        ({"options": {"max_batchsize": 8}}, "unknown TensorRT option"),
        ({"options": {"max_batch": "8"}}, "must be an integer"),
        ({"batch": 8, "options": {"max_batch": 4}}, r"min_batch \(1\) <= batch \(8\) <= max_batch \(4\)"),
        ({"options": {"builder_optimization_level": 9}}, "0-5"),
    ],
)
def test_bad_profiles_are_user_errors(fields: dict[str, object], match: str) -> None:
    with pytest.raises(UserError, match=match):
        trt_settings(trt_profile(**fields))


def test_default_batch_range_grows_with_the_batch() -> None:
    assert trt_settings(trt_profile(batch=64)).max_batch == 64


def test_calibration_batches() -> None:
    samples = np.random.default_rng(0).random((70, *SHAPE), dtype=np.float32)
    batches = calibration_batches(samples, 32, SHAPE)
    assert batches.shape == (2, 32, *SHAPE) and batches.flags.c_contiguous
    np.testing.assert_array_equal(batches[1, 0], samples[32])
    assert calibration_batches(samples[:10], 32, SHAPE).shape == (1, 10, *SHAPE)
    with pytest.raises(UserError, match="model takes"):
        calibration_batches(samples, 32, (3, 28, 28))


# --- without TensorRT ---------------------------------------------------------------------------------


@without_trt
def test_get_runtime_says_tensorrt_is_not_installed() -> None:
    with pytest.raises(UserError) as err:
        get_runtime("tensorrt")
    assert str(err.value).startswith("runtime tensorrt is not installed on this machine; ")
    assert "\n" not in str(err.value)
    assert get_runtime("tensorrt", require=False).name is Runtime.TENSORRT


@without_trt
def test_cli_export_to_a_trt_target_exits_2_with_one_line(tmp_path: Path, cnn_onnx: Path) -> None:
    from click.testing import CliRunner

    from edgekd.cli import cli

    result = CliRunner().invoke(
        cli, ["export", str(cnn_onnx), "--target", "jetson-orin-trt-fp16", "--out", str(tmp_path / "out")]
    )
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert lines == [
        "edgekd: error: runtime tensorrt is not installed on this machine; install TensorRT on the"
        " device (pip install 'edgekd[tensorrt]' on an NVIDIA machine), or add --offline to export"
        " the ONNX and trtexec.sh to build there"
    ], result.output


@without_trt
def test_cli_export_offline_prepares_the_device_build(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from edgekd.cli import cli
    from edgekd.models import build_model, parse_arch, save_checkpoint

    spec = parse_arch("cnn-xs")
    save_checkpoint(tmp_path / "m.pt", build_model(spec).eval(), spec, {"input_shape": [1, 28, 28]})
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli,
        [
            "export",
            str(tmp_path / "m.pt"),
            "--target",
            "jetson-orin-trt-fp16",
            "--out",
            str(out),
            "--offline",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    info = json.loads((out / "offline.json").read_text())
    assert info["built"] is False and info["errors"] == 0 and info["target"] == "jetson-orin-trt-fp16"
    assert info["parity"]["onnx"]["max_abs_diff"] < 1e-3
    assert (out / "model.onnx").is_file() and os.access(out / "trtexec.sh", os.X_OK)
    assert "--fp16" in (out / "trtexec.sh").read_text() and not (out / "artifact.json").exists()
    result = CliRunner().invoke(
        cli, ["export", str(tmp_path / "m.pt"), "--target", "cpu-ort-fp32", "--out", str(tmp_path / "o2"), "--offline"]
    )
    assert result.exit_code == 2 and "TensorRT targets only" in result.output


def test_prepare_offline_writes_command_and_report(tmp_path: Path, cnn_onnx: Path) -> None:
    profile = load_target("jetson-orin-trt-int8")
    out = prepare_offline(cnn_onnx, profile, tmp_path / "bundle")
    folder = tmp_path / "bundle"
    assert (folder / "model.onnx").is_file() and os.access(folder / "trtexec.sh", os.X_OK)
    assert out["command"] == trtexec_command(profile) and out["errors"] == 0
    script = (folder / "trtexec.sh").read_text()
    assert script.startswith("#!/bin/sh") and "calibration.cache" in script
    assert " ".join(script.replace("\\\n", " ").split()).endswith(out["command"])
    check = json.loads((folder / "trt_check.json").read_text())
    assert check == {**report([]), "onnx": "model.onnx", "target": "jetson-orin-trt-int8"}
    again = prepare_offline(folder / "model.onnx", profile, folder)  # the ONNX already in the folder
    assert again["command"] == out["command"]


def test_prepare_offline_reports_errors_without_failing(tmp_path: Path) -> None:
    model = graph(
        [helper.make_node("Unique", ["input"], ["u"], name="dedupe")],
        [image()],
        [helper.make_tensor_value_info("u", TensorProto.FLOAT, ["n"])],
    )
    onnx.checker.check_model(model)
    path = tmp_path / "bad.onnx"
    onnx.save(model, str(path))
    out = prepare_offline(path, load_target("jetson-orin-trt-fp16"), tmp_path / "bundle")
    assert out["errors"] == 1 and out["findings"][0]["op"] == "Unique"
    assert "the pre-check found errors" in (tmp_path / "bundle" / "trtexec.sh").read_text()


def test_prepare_offline_refuses_a_mismatched_shape(tmp_path: Path, cnn_onnx: Path) -> None:
    with pytest.raises(UserError, match="expects input"):
        prepare_offline(cnn_onnx, trt_profile(input_shape=(3, 32, 32)), tmp_path)


@pytest.mark.parametrize(
    "module",
    [
        "edgekd.runtimes.tensorrt",
        "edgekd.runtimes.trtexec",
        "edgekd.runtimes.trt_calibrator",
        "edgekd.runtimes.trt_session",
        "edgekd.export.trt_check",
        "edgekd.bench.cuda_events",
    ],
)
def test_import_imports_no_tensorrt_cuda_or_torch(module: str) -> None:
    code = (
        f"import sys, {module}; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorrt', 'cuda', 'torch')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]", f"importing {module} imported {out.stdout.strip()}"


# --- with TensorRT and an NVIDIA GPU ------------------------------------------------------------------


def torch_logits(model: object, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()  # type: ignore[operator, no-any-return]


@pytest.mark.usefixtures("gpu")
class TestWithTensorRT:
    """Real builds on a real GPU; the whole class skips, with the reason, where either is missing."""

    pytestmark = [pytest.mark.tensorrt, pytest.mark.skipif(not TensorRT.is_available(), reason=NO_TRT)]

    @pytest.fixture
    def gpu(self) -> str:
        from edgekd.runtimes.cudart import select_device

        try:
            return select_device(0)
        except UserError as err:
            pytest.skip(str(err))

    @pytest.mark.parametrize("precision, atol", [(Precision.FP32, 1e-3), (Precision.FP16, 2e-2)])
    def test_build_load_run(self, precision: Precision, atol: float, cnn: tuple[object, Path], tmp_path: Path) -> None:
        model, onnx_path = cnn
        adapter = TensorRT()
        artifact = adapter.build(onnx_path, trt_profile(precision, input_shape=SHAPE), tmp_path)
        assert artifact.path == tmp_path.resolve() / "model.engine" and artifact.path.is_file()
        assert (tmp_path / "timing.cache").stat().st_size > 0
        assert (artifact.info["min_batch"], artifact.info["opt_batch"], artifact.info["max_batch"]) == (1, 1, 32)
        assert Artifact.from_json(json.loads(json.dumps(artifact.to_json()))) == artifact
        session = adapter.load(artifact)
        for n in (1, 7, 32, 70):  # 70: above max_batch, run as engine-sized chunks
            x = np.random.default_rng(n).random((n, *SHAPE), dtype=np.float32)
            np.testing.assert_allclose(session.run(x), torch_logits(model, x), atol=atol, rtol=0)
        with pytest.raises(UserError, match="outside the engine's range"):
            session.stage(np.zeros((33, *SHAPE), np.float32))
        session.close()

    def test_cli_export_builds_the_engine(self, cnn_onnx: Path, tmp_path: Path) -> None:
        from click.testing import CliRunner

        from edgekd.cli import cli

        out = tmp_path / "out"
        result = CliRunner().invoke(
            cli, ["export", str(cnn_onnx), "--target", "jetson-orin-trt-fp16", "--out", str(out), "--json"]
        )
        assert result.exit_code == 0, result.output
        info = json.loads((out / "artifact.json").read_text())
        assert (info["runtime"], info["precision"], info["artifact"]) == ("tensorrt", "fp16", "model.engine")
        assert info["parity"]["artifact"]["top1_agreement"] > 0.95

    def test_timing_cache_is_reused(self, cnn_onnx: Path, tmp_path: Path) -> None:
        adapter = TensorRT()
        adapter.build(cnn_onnx, trt_profile(), tmp_path)
        first = (tmp_path / "timing.cache").read_bytes()
        adapter.build(cnn_onnx, trt_profile(), tmp_path)
        assert len((tmp_path / "timing.cache").read_bytes()) >= len(first)

    @pytest.mark.usefixtures("fmnist")
    def test_int8_build_calibrates_on_the_recipe(self, cnn_onnx: Path, tmp_path: Path) -> None:
        artifact = TensorRT().build(cnn_onnx, load_target("jetson-orin-trt-int8"), tmp_path)
        assert (tmp_path / "calibration.cache").stat().st_size > 0
        assert artifact.info["calibration_recipe"] == "fashion-mnist"
        assert artifact.info["calibration_samples"] == 512
        x = np.random.default_rng(0).random((16, *SHAPE), dtype=np.float32)
        logits = TensorRT().load(artifact).run(x)
        assert logits.shape == (16, 10) and np.isfinite(logits).all()

    def test_entropy_calibrator_feeds_every_batch(self, tmp_path: Path) -> None:
        from edgekd.runtimes.tensorrt import import_tensorrt
        from edgekd.runtimes.trt_calibrator import entropy_calibrator

        batches = calibration_batches(np.zeros((64, *SHAPE), np.float32), 32, SHAPE)
        calibrator = entropy_calibrator(import_tensorrt(), batches, tmp_path / "calibration.cache")
        assert calibrator.get_batch_size() == 32 and calibrator.read_calibration_cache() is None
        assert [calibrator.get_batch(["input"]) is not None for _ in range(3)] == [True, True, False]
        calibrator.write_calibration_cache(b"scales")
        assert (tmp_path / "calibration.cache").read_bytes() == b"scales"
        calibrator.release()

    def test_cuda_event_timing(self, cnn_onnx: Path, tmp_path: Path) -> None:
        from edgekd.bench.cuda_events import measure_gpu
        from edgekd.bench.protocol import TimingConfig

        session = TensorRT().load(TensorRT().build(cnn_onnx, trt_profile(), tmp_path))
        config = TimingConfig(warmup_iters=3, warmup_s=0.0, min_iters=20, min_time_s=0.0)
        x = np.random.default_rng(0).random((4, *SHAPE), dtype=np.float32)
        for graph_mode in (True, False):
            stats = measure_gpu(session, x, config, cuda_graph=graph_mode)
            assert stats.samples == 20 and stats.batch == 4 and 0 < stats.p50_ms < 1000
        session.close()
