"""benchmark() end to end through its worker process, and resolving what the user passes to `bench`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgekd.bench import TimingConfig, benchmark, resolve_artifact
from edgekd.config import Runtime, TargetProfile
from edgekd.data import load_data, to_float
from edgekd.errors import UserError
from edgekd.runtimes import Artifact
from edgekd.runtimes.onnxruntime import OnnxRuntime

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
torch = pytest.importorskip("torch", reason="torch is needed to make the test model")

SHAPE = (1, 28, 28)
FAST = TimingConfig(warmup_iters=2, warmup_s=0.05, min_iters=10, min_time_s=0.1)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path, Artifact]:
    """A tiny CNN, its ONNX export, and the onnxruntime artifact built from it."""
    from edgekd.export import export_onnx

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(16, 10),
    ).eval()
    with torch.no_grad():  # sharper logits, so predictions differ between images and accuracy means something
        model[4].weight.mul_(20)
    folder = tmp_path_factory.mktemp("bench")
    onnx_path = export_onnx(model, SHAPE, folder / "model.onnx")
    artifact = OnnxRuntime().build(onnx_path, TargetProfile(name="t", runtime=Runtime.ONNXRUNTIME), folder)
    return model, onnx_path, artifact


def write_npz(path: Path, x: np.ndarray, y: np.ndarray) -> str:
    np.savez(path, x=x, y=y)
    return str(path)


def test_benchmark_gives_sane_stats(built: tuple[torch.nn.Module, Path, Artifact]) -> None:
    result = benchmark(built[2], batch=4, threads=1, timing=FAST)
    latency = result["latency_ms"]
    assert set(latency) == {"p50", "p90", "p99", "mean", "std"}
    assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"]
    assert result["samples"] >= FAST.min_iters and result["batch"] == 4
    assert result["throughput_per_s"] == pytest.approx(4 * 1000 / latency["mean"], rel=1e-9)
    assert result["accuracy"] is None and result["accuracy_samples"] is None
    fp = result["fingerprint"]
    assert (fp["runtime"], fp["precision"], fp["threads"], fp["batch"]) == ("onnxruntime", "fp32", 1, 4)
    assert fp["cpu_model"] and fp["cores"] >= 1 and fp["runtime_version"]
    assert result["artifact"] == str(built[2].path)


def test_worker_never_loads_torch(built: tuple[torch.nn.Module, Path, Artifact]) -> None:
    assert benchmark(built[2], timing=FAST)["torch_loaded"] is False


def test_accuracy_on_npz_matches_direct_argmax(built: tuple[torch.nn.Module, Path, Artifact], tmp_path: Path) -> None:
    model = built[0]
    rng = np.random.default_rng(1)
    # Noise whose brightness differs per quadrant: the pooled features, and so the predictions, vary.
    quadrants = np.kron(rng.random((800, 1, 2, 2)), np.ones((14, 14)))
    x = (rng.random((800, *SHAPE)) * quadrants * 255).astype(np.uint8)
    with torch.no_grad():
        predicted = model(torch.from_numpy(to_float(x))).argmax(1).numpy()
    assert len(set(predicted.tolist())) > 2
    # Half the labels agree with the model, so the accuracy is neither 0 nor 1 by accident.
    y = np.where(np.arange(800) % 2 == 0, predicted, rng.integers(0, 10, size=800))
    spec = write_npz(tmp_path / "data.npz", x, y)
    test = load_data(spec, seed=0).test
    with torch.no_grad():
        expected = (model(torch.from_numpy(to_float(test.x))).argmax(1).numpy() == test.y).mean()
    result = benchmark(built[2], batch=3, data=spec, timing=FAST)
    assert result["accuracy_samples"] == len(test) == 80  # one full batch of 64 and a padded tail
    assert result["accuracy"] == pytest.approx(float(expected), abs=1e-12)
    limited = benchmark(built[2], data=spec, limit=7, timing=FAST)
    head = test.head(7)
    with torch.no_grad():
        expected7 = (model(torch.from_numpy(to_float(head.x))).argmax(1).numpy() == head.y).mean()
    assert limited["accuracy_samples"] == 7 and limited["accuracy"] == pytest.approx(float(expected7), abs=1e-12)


def test_data_of_another_shape_is_a_user_error(built: tuple[torch.nn.Module, Path, Artifact], tmp_path: Path) -> None:
    spec = write_npz(tmp_path / "rgb.npz", np.zeros((40, 3, 32, 32), np.uint8), np.arange(40) % 10)
    with pytest.raises(UserError, match=r"shape 3 x 32 x 32 but .* takes 1 x 28 x 28"):
        benchmark(built[2], data=spec, timing=FAST)


def test_data_with_more_classes_than_outputs_is_a_user_error(
    built: tuple[torch.nn.Module, Path, Artifact], tmp_path: Path
) -> None:
    spec = write_npz(tmp_path / "many.npz", np.zeros((120, *SHAPE), np.uint8), np.arange(120) % 12)
    with pytest.raises(UserError, match="12 classes but the model gives 10 outputs"):
        benchmark(built[2], data=spec, timing=FAST)


def test_missing_artifact_file_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found"):
        benchmark(Artifact("onnxruntime", "fp32", tmp_path / "gone.onnx", SHAPE), timing=FAST)


def test_worker_reports_bad_input_as_one_json_line(tmp_path: Path) -> None:
    request = {
        "artifact": Artifact("onnxruntime", "fp32", tmp_path / "gone.onnx", SHAPE).to_json(),
        "batch": 1,
    }
    proc = subprocess.run(
        [sys.executable, "-m", "edgekd.bench.worker"],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 2
    assert len(proc.stdout.splitlines()) == 1
    assert json.loads(proc.stdout)["kind"] == "user"


# ---- resolve_artifact -------------------------------------------------------------------------


def test_export_folder_and_its_manifest(built: tuple[torch.nn.Module, Path, Artifact]) -> None:
    folder = built[2].path.parent
    manifest = {
        "runtime": "onnxruntime",
        "precision": "fp32",
        "artifact": built[2].path.name,
        "input_shape": [1, 28, 28],
        "threads": 1,
        "device": "cpu",
        "hint": "latency",
        "target": "cpu-ort-fp32",
        "batch": 2,
        "parity": {"max_abs_diff": 1e-6, "top1_agreement": 1.0},
    }
    (folder / "artifact.json").write_text(json.dumps(manifest))
    for given in (folder, folder / "artifact.json"):
        artifact = resolve_artifact(given)
        assert (artifact.runtime, artifact.path, artifact.input_shape) == (
            "onnxruntime",
            built[2].path,
            SHAPE,
        )
        assert (artifact.threads, artifact.target, artifact.info["parity"]["top1_agreement"]) == (
            1,
            "cpu-ort-fp32",
            1.0,
        )
    assert benchmark(resolve_artifact(folder), timing=FAST)["batch"] == 2  # the manifest's batch
    with pytest.raises(UserError, match="built for onnxruntime, not openvino"):
        resolve_artifact(folder, runtime="openvino")


def test_manifest_naming_a_missing_file(tmp_path: Path) -> None:
    (tmp_path / "artifact.json").write_text(
        json.dumps({"runtime": "onnxruntime", "precision": "fp32", "artifact": "x.onnx", "input_shape": [1, 28, 28]})
    )
    with pytest.raises(UserError, match="is missing"):
        resolve_artifact(tmp_path)


def test_bare_onnx(built: tuple[torch.nn.Module, Path, Artifact]) -> None:
    artifact = resolve_artifact(built[1])
    assert (artifact.runtime, artifact.precision, artifact.input_shape) == ("onnxruntime", "fp32", SHAPE)


def test_corrupt_onnx_is_a_user_error(built: tuple[torch.nn.Module, Path, Artifact], tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(built[1].read_bytes()[:200])
    with pytest.raises(UserError, match="not a valid ONNX model"):
        resolve_artifact(bad)


def test_openvino_ir(built: tuple[torch.nn.Module, Path, Artifact], tmp_path: Path) -> None:
    ov = pytest.importorskip("openvino", reason="openvino is not installed")
    xml = tmp_path / "model.xml"
    ov.save_model(ov.convert_model(str(built[1])), str(xml))
    artifact = resolve_artifact(xml)
    assert (artifact.runtime, artifact.precision, artifact.input_shape, artifact.path) == (
        "openvino",
        "fp32",
        SHAPE,
        xml,
    )
    xml.with_suffix(".bin").unlink()
    with pytest.raises(UserError, match="no weights file"):
        resolve_artifact(xml)


@pytest.mark.parametrize("name", ["nothing-here", "model.pt", "folder"])
def test_unusable_paths_are_user_errors(tmp_path: Path, name: str) -> None:
    target = tmp_path / name
    if name == "model.pt":
        target.write_bytes(b"x")
    if name == "folder":
        target.mkdir()
    with pytest.raises(UserError, match="give a folder written by `edgekd export`"):
        resolve_artifact(target)
