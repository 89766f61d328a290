"""The OpenVINO adapter against real OpenVINO: parity with torch, stored precision, devices, lazy import."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from edgekd.config import Precision, Runtime, TargetProfile, load_target
from edgekd.errors import UserError
from edgekd.runtimes import Artifact, get_runtime
from edgekd.runtimes.openvino import OpenVino, _compile_config, import_openvino, ir_input_shape

# openvino is imported only through import_openvino(): a plain `import openvino` here would send
# telemetry from the test run itself.
if not OpenVino.is_available():
    pytest.skip("openvino is not installed", allow_module_level=True)
torch = pytest.importorskip("torch", reason="torch is not installed")

from edgekd.export import export_onnx  # noqa: E402  (needs torch)

SHAPE = (3, 16, 16)
REPO = Path(__file__).resolve().parents[2]


class TinyCnn(torch.nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(3, 16, 3, padding=1),
            torch.nn.BatchNorm2d(16),
            torch.nn.ReLU(),
            torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(16, 32, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1),
        )
        self.head = torch.nn.Linear(32, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


@pytest.fixture(scope="module")
def model() -> TinyCnn:
    torch.manual_seed(0)
    return TinyCnn().eval()


@pytest.fixture(scope="module")
def onnx_path(model: TinyCnn, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_onnx(model, SHAPE, tmp_path_factory.mktemp("onnx") / "model.onnx")


def profile(precision: Precision = Precision.FP32, **kw: object) -> TargetProfile:
    fields = {"name": f"test-{precision.value}", "runtime": Runtime.OPENVINO, "precision": precision}
    return TargetProfile(**{**fields, **kw})


def torch_logits(model: TinyCnn, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def const_types(xml: Path) -> set[str]:
    """Element types of the float constants stored in an IR (its weights)."""
    ov = import_openvino()

    ops = ov.Core().read_model(str(xml)).get_ops()
    types = {op.get_element_type().get_type_name() for op in ops if op.get_type_name() == "Constant"}
    return {t for t in types if t.startswith(("f", "bf"))}


def n_weights(model: TinyCnn) -> int:
    """Parameters of the conv and linear layers (the export folds BatchNorm into the conv before it)."""
    layers = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    return sum(p.numel() for m in layers for p in m.parameters())


def test_fp32_build_runs_at_torch_parity(model: TinyCnn, onnx_path: Path, tmp_path: Path) -> None:
    adapter = get_runtime("openvino")
    artifact = adapter.build(onnx_path, load_target("cpu-openvino-fp32"), tmp_path)
    assert (artifact.runtime, artifact.precision, artifact.input_shape) == ("openvino", "fp32", SHAPE)
    assert artifact.path == tmp_path / "model.xml" and ir_input_shape(artifact.path) == SHAPE
    # Weights stay float32: no f16 constant, and the .bin holds at least 4 bytes per parameter.
    assert const_types(artifact.path) == {"f32"}
    assert artifact.path.with_suffix(".bin").stat().st_size >= 4 * n_weights(model)
    session = adapter.load(artifact)
    rng = np.random.default_rng(0)
    for batch in (1, 5):
        x = rng.random((batch, *SHAPE), dtype=np.float32)
        got = session.run(x)
        assert got.shape == (batch, 10) and got.dtype == np.float32
        assert np.abs(got - torch_logits(model, x)).max() < 1e-4


def test_fp16_build_stores_half_weights(model: TinyCnn, onnx_path: Path, tmp_path: Path) -> None:
    adapter = OpenVino()
    fp32 = adapter.build(onnx_path, profile(Precision.FP32), tmp_path / "fp32")
    fp16 = adapter.build(onnx_path, profile(Precision.FP16), tmp_path / "fp16")
    assert fp16.precision == "fp16" and "f16" in const_types(fp16.path)
    size32 = fp32.path.with_suffix(".bin").stat().st_size
    size16 = fp16.path.with_suffix(".bin").stat().st_size
    assert size16 < 0.6 * size32
    x = np.random.default_rng(1).random((64, *SHAPE), dtype=np.float32)
    got = adapter.load(fp16).run(x)
    expected = torch_logits(model, x)
    assert (got.argmax(1) == expected.argmax(1)).mean() >= 0.9
    assert np.abs(got - expected).max() < 1e-2


def test_session_results_survive_the_next_run(onnx_path: Path, tmp_path: Path) -> None:
    adapter = OpenVino()
    session = adapter.load(adapter.build(onnx_path, profile(threads=1, hint="throughput"), tmp_path))
    rng = np.random.default_rng(2)
    first_in, second_in = rng.random((2, 2, *SHAPE), dtype=np.float32)
    first = session.run(first_in)
    kept = first.copy()
    session.run(second_in)
    np.testing.assert_array_equal(first, kept)


def test_artifact_round_trips_through_json(onnx_path: Path, tmp_path: Path) -> None:
    adapter = OpenVino()
    artifact = adapter.build(onnx_path, profile(), tmp_path)
    data = artifact.to_json()
    data["path"] = artifact.path.name
    again = Artifact.from_json(data, base=tmp_path)
    assert again == artifact
    assert adapter.load(again).run(np.zeros((1, *SHAPE), np.float32)).shape == (1, 10)


def test_compile_config_pins_fp32_execution() -> None:
    # The CPU plugin's own default is bf16 on AMX/AVX512-BF16 CPUs and f16 on ARM: FP32 must ask for f32.
    ov = import_openvino()

    core = ov.Core()

    def config(precision: str, device: str = "CPU", **kw: object) -> dict[str, str]:
        artifact = Artifact("openvino", precision, Path("m.xml"), SHAPE, device=device, **kw)  # type: ignore[arg-type]
        return _compile_config(core, device, artifact)

    assert config("fp32", threads=2) == {
        "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": "1",
        "INFERENCE_NUM_THREADS": "2",
        "INFERENCE_PRECISION_HINT": "f32",
    }
    assert config("fp16", hint="throughput") == {"PERFORMANCE_HINT": "THROUGHPUT"}
    # AUTO takes the hint only; CPU-only keys would make its compile fail.
    assert config("fp32", device="AUTO:CPU", threads=2) == {"PERFORMANCE_HINT": "LATENCY"}


def test_bf16_is_refused_clearly(onnx_path: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="fp32, fp16 or int8"):
        OpenVino().build(onnx_path, profile(Precision.BF16), tmp_path)


@pytest.mark.parametrize("device", ["foo", "npu"])
def test_unknown_device_is_a_user_error(device: str, onnx_path: Path, tmp_path: Path) -> None:
    ov = import_openvino()

    if device.upper() in ov.Core().available_devices:
        pytest.skip(f"this machine has an {device.upper()}")
    adapter = OpenVino()
    artifact = adapter.build(onnx_path, profile(device=device), tmp_path)
    with pytest.raises(UserError, match=rf"'{device.upper()}' is not available.*present: .*CPU"):
        adapter.load(artifact)


def test_intel_gpu_profile_without_gpu_fails_at_load(onnx_path: Path, tmp_path: Path) -> None:
    ov = import_openvino()

    if any(d.startswith("GPU") for d in ov.Core().available_devices):
        pytest.skip("this machine has an OpenVINO GPU; the profile would load")
    target = load_target("intel-gpu-openvino-fp16")
    artifact = OpenVino().build(onnx_path, target, tmp_path)  # building needs no GPU
    assert "f16" in const_types(artifact.path)
    with pytest.raises(UserError, match="'GPU' is not available"):
        OpenVino().load(artifact)


def test_target_profiles_load() -> None:
    cpu = load_target("cpu-openvino-fp32")
    gpu = load_target("intel-gpu-openvino-fp16")
    assert (cpu.runtime, cpu.device, cpu.precision) == (Runtime.OPENVINO, "cpu", Precision.FP32)
    assert (cpu.threads, cpu.batch, cpu.hint) == (0, 1, "latency") and cpu.latency_budget_ms is not None
    assert (gpu.runtime, gpu.device, gpu.precision) == (Runtime.OPENVINO, "gpu", Precision.FP16)


def run_python(code: str, home: Path) -> None:
    env = {**os.environ, "HOME": str(home), "PYTHONPATH": str(REPO)}
    env.pop("CI", None)  # CI=true would turn telemetry off by itself and hide a regression
    command = [sys.executable, "-c", textwrap.dedent(code)]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def test_import_does_not_import_openvino(tmp_path: Path) -> None:
    run_python(
        """
        import sys
        from edgekd.runtimes.openvino import OpenVino
        assert OpenVino.is_available() and OpenVino().version()
        assert "openvino" not in sys.modules, "importing the adapter imported openvino"
        """,
        tmp_path,
    )


@pytest.mark.parametrize("openvino_first", [False, True], ids=["edgekd-first", "openvino-first"])
def test_telemetry_is_off(openvino_first: bool, onnx_path: Path, tmp_path: Path) -> None:
    # A fresh HOME without a consent file: the state in which OpenVINO sends telemetry by default.
    home = tmp_path / "home"
    home.mkdir()
    run_python(
        f"""
        {"import openvino" if openvino_first else ""}
        import numpy as np
        from pathlib import Path
        from edgekd.config import TargetProfile
        from edgekd.runtimes.openvino import OpenVino
        profile = TargetProfile(name="t", runtime="openvino")
        adapter = OpenVino()
        session = adapter.load(adapter.build(Path({str(onnx_path)!r}), profile, Path({str(tmp_path)!r})))
        session.run(np.zeros((1, *{SHAPE}), np.float32))
        import openvino.tools.ovc.convert_impl as convert_impl, openvino.tools.ovc.telemetry_utils as utils
        assert utils.tm.__name__.endswith("telemetry_stub"), utils.tm
        assert convert_impl.tm.__name__.endswith("telemetry_stub"), convert_impl.tm
        """,
        home,
    )
    if not openvino_first:  # `import openvino` by itself already wrote its client id
        assert not (home / "intel").exists(), sorted((home / "intel").iterdir())
