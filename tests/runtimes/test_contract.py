"""The contract every runtime adapter passes: build from a float ONNX, load, run any batch size.

Parametrised over every registered runtime (`RUNTIMES`: one module of edgekd/runtimes/ each); a runtime
not installed here skips with the reason.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgekd.config import Runtime, TargetProfile
from edgekd.errors import UserError
from edgekd.runtimes import RUNTIMES, Artifact, RuntimeAdapter, get_runtime

SHAPE = (1, 16, 16)
CLASSES = 7
ROOT = Path(__file__).resolve().parents[2]
DEVICE = {Runtime.TENSORRT: "cuda"}  # the rest run on the CPU


def adapter_module(runtime: str) -> str:
    return str(RUNTIMES.get(runtime).__module__)


def available_adapter(runtime: str) -> RuntimeAdapter:
    """The adapter, or a skip that says why there is none to test."""
    try:
        adapter = get_runtime(runtime, require=False)
    except UserError as err:
        pytest.skip(str(err))
    if not adapter.is_available():
        pytest.skip(f"{runtime} is not installed on this machine")
    return adapter


@pytest.fixture(scope="module")
def model_and_onnx(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, Path]:
    torch = pytest.importorskip("torch", reason="torch is needed to make the test model")
    from edgekd.export import export_onnx

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(16, CLASSES),
    ).eval()
    return model, export_onnx(model, SHAPE, tmp_path_factory.mktemp("contract") / "model.onnx")


@pytest.mark.parametrize("runtime", RUNTIMES.names())
def test_build_load_run(runtime: str, model_and_onnx: tuple[object, Path], tmp_path: Path) -> None:
    import torch

    adapter = available_adapter(runtime)
    model, onnx_path = model_and_onnx
    assert adapter.name == runtime
    assert isinstance(adapter.version(), str) and adapter.version()
    profile = TargetProfile(name=f"contract-{runtime}", runtime=runtime, device=DEVICE.get(runtime, "cpu"))
    artifact = adapter.build(onnx_path, profile, tmp_path)
    assert (artifact.runtime, artifact.precision, tuple(artifact.input_shape)) == (
        runtime,
        "fp32",
        SHAPE,
    )
    assert Path(artifact.path).exists()
    assert Artifact.from_json(json.loads(json.dumps(artifact.to_json()))) == artifact
    session = adapter.load(artifact)
    for n in (1, 3):  # the batch dimension stays dynamic through every build
        x = np.random.default_rng(n).random((n, *SHAPE), dtype=np.float32)
        logits = np.asarray(session.run(x))
        assert logits.shape == (n, CLASSES)
        with torch.no_grad():
            expected = model(torch.from_numpy(x)).numpy()  # type: ignore[operator]
        np.testing.assert_allclose(logits, expected, atol=2e-3, rtol=0)


@pytest.mark.parametrize("runtime", RUNTIMES.names())
def test_import_imports_neither_runtime_nor_torch(runtime: str) -> None:
    module = adapter_module(runtime)
    heavy = [runtime, "torch"]
    code = f"import sys, {module}; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]", f"importing {module} imported {out.stdout.strip()}"


def test_discovery_imports_no_runtime_nor_torch() -> None:
    """The registry's first lookup (a target profile loading) imports every adapter module, and still no runtime."""
    heavy = [*RUNTIMES.names(), "torch"]
    code = (
        "import sys; from edgekd.config import load_target; load_target('cpu-ort-fp32');"
        f" print([m for m in {heavy!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]", f"discovering the runtimes imported {out.stdout.strip()}"
