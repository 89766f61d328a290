"""The ONNX Runtime adapter: build, load, run, and its clear errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgekd.config import Precision, Runtime, TargetProfile
from edgekd.errors import UserError
from edgekd.runtimes import Artifact, get_runtime
from edgekd.runtimes.onnxruntime import ARTIFACT_NAME, OnnxRuntime

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
torch = pytest.importorskip("torch", reason="torch is needed to make the test model")

SHAPE = (1, 28, 28)


def tiny_cnn() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1),
        torch.nn.BatchNorm2d(4),  # folded into the conv by the offline graph rewrite
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(16, 10),
    ).eval()


@pytest.fixture(scope="module")
def model_and_onnx(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path]:
    from edgekd.export import export_onnx

    model = tiny_cnn()
    return model, export_onnx(model, SHAPE, tmp_path_factory.mktemp("ort") / "model.onnx")


def profile(**overrides: object) -> TargetProfile:
    return TargetProfile(name="test-ort", runtime=Runtime.ONNXRUNTIME, **overrides)  # type: ignore[arg-type]


def test_get_runtime_gives_the_adapter() -> None:
    adapter = get_runtime("onnxruntime")
    assert isinstance(adapter, OnnxRuntime) and adapter.is_available()
    assert adapter.version()[0].isdigit()


def test_build_and_run_match_torch(model_and_onnx: tuple[torch.nn.Module, Path], tmp_path: Path) -> None:
    model, onnx_path = model_and_onnx
    artifact = OnnxRuntime().build(onnx_path, profile(threads=1, hint="throughput"), tmp_path)
    assert artifact.path == (tmp_path / ARTIFACT_NAME).resolve() and artifact.path.is_file()
    assert artifact.path.is_absolute()
    assert (artifact.runtime, artifact.precision, artifact.input_shape) == ("onnxruntime", "fp32", SHAPE)
    assert (artifact.threads, artifact.hint, artifact.target) == (1, "throughput", "test-ort")
    assert Artifact.from_json(artifact.to_json()) == artifact
    x = np.random.default_rng(0).random((5, *SHAPE), dtype=np.float32)
    got = OnnxRuntime().load(artifact).run(x)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


def test_session_threads_are_fixed(model_and_onnx: tuple[torch.nn.Module, Path], tmp_path: Path) -> None:
    artifact = OnnxRuntime().build(model_and_onnx[1], profile(threads=1), tmp_path)
    options = OnnxRuntime().load(artifact)._session.get_session_options()
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (1, 1)


@pytest.mark.parametrize("precision", [Precision.FP16, Precision.BF16])
def test_float16_precisions_are_refused(
    model_and_onnx: tuple[torch.nn.Module, Path], tmp_path: Path, precision: Precision
) -> None:
    with pytest.raises(UserError, match="runs fp32 and int8"):
        OnnxRuntime().build(model_and_onnx[1], profile(precision=precision), tmp_path)


def test_profile_input_shape_must_match(model_and_onnx: tuple[torch.nn.Module, Path], tmp_path: Path) -> None:
    with pytest.raises(UserError, match="expects input"):
        OnnxRuntime().build(model_and_onnx[1], profile(input_shape=(3, 32, 32)), tmp_path)


def test_unknown_device_is_a_user_error(model_and_onnx: tuple[torch.nn.Module, Path], tmp_path: Path) -> None:
    with pytest.raises(UserError, match="device"):
        OnnxRuntime().build(model_and_onnx[1], profile(device="npu"), tmp_path)


def test_corrupt_onnx_is_a_user_error(model_and_onnx: tuple[torch.nn.Module, Path], tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(model_and_onnx[1].read_bytes()[:300])
    with pytest.raises(UserError, match="not a valid ONNX model"):
        OnnxRuntime().build(bad, profile(), tmp_path)
    with pytest.raises(UserError, match="cannot load"):
        OnnxRuntime().load(Artifact("onnxruntime", "fp32", bad, SHAPE))


def test_missing_artifact_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found"):
        OnnxRuntime().load(Artifact("onnxruntime", "fp32", tmp_path / "nothing.onnx", SHAPE))


def test_import_is_lazy() -> None:
    code = "import sys, edgekd.runtimes.onnxruntime; print('onnxruntime' in sys.modules)"
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root)
    assert out.stdout.strip() == "False"
