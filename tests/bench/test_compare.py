"""compare(): warm workers, interleaved rounds and the null floor, end to end (no timed assertions)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgekd.bench.compare import compare
from edgekd.bench.null_model import write_null_onnx
from edgekd.bench.protocol import StopRule, TimingConfig
from edgekd.bench.worker import WarmWorker
from edgekd.config import Runtime, TargetProfile
from edgekd.errors import UserError
from edgekd.runtimes import Artifact

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
torch = pytest.importorskip("torch", reason="torch is needed to make the test models")

SHAPE = (1, 28, 28)
FAST = TimingConfig(warmup_iters=2, warmup_s=0.0, min_iters=5, min_time_s=0.02)
FEW = StopRule(min_rounds=2, max_rounds=3, time_cap_s=60.0)
ROOT = Path(__file__).resolve().parents[2]


def cnn(width: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, width, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * width, 10),
    ).eval()


def build(model: torch.nn.Module, folder: Path, runtime: Runtime = Runtime.ONNXRUNTIME) -> Artifact:
    from edgekd.export import export_onnx
    from edgekd.runtimes import get_runtime

    onnx_path = export_onnx(model, SHAPE, folder / "model.onnx")
    return get_runtime(runtime).build(onnx_path, TargetProfile(name="t", runtime=runtime), folder)


@pytest.fixture(scope="module")
def two(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Artifact]:
    root = tmp_path_factory.mktemp("compare")
    return {"small": build(cnn(2), root / "small"), "large": build(cnn(16), root / "large")}


@pytest.mark.parametrize(("shape", "classes"), [((1, 28, 28), 10), ((1, 2, 2), 10), ((3, 8, 8), 5)])
def test_null_model_keeps_the_shapes_and_does_nothing(tmp_path: Path, shape: tuple[int, ...], classes: int) -> None:
    path = write_null_onnx(tmp_path / "null.onnx", shape, classes)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((3, *shape), dtype=np.float32)
    (y,) = session.run(None, {session.get_inputs()[0].name: x})
    assert y.shape == (3, classes)
    flat = np.tile(x.reshape(3, -1), (1, -(-classes // x[0].size)))
    assert np.array_equal(y, flat[:, :classes])  # a copy of the input: no arithmetic at all


def test_compare_measures_models_and_the_floor_in_the_same_rounds(two: dict[str, Artifact]) -> None:
    done: list[int] = []
    result = compare(two, threads=1, timing=FAST, rule=FEW, on_round=lambda n, s: done.append(n))
    assert [m.name for m in result.models] == ["small", "large"] and [f.name for f in result.floors] == ["null"]
    rounds = {m.name: m.rounds.stats.rounds for m in (*result.models, *result.floors)}
    assert len(set(rounds.values())) == 1 and done == list(range(1, rounds["null"] + 1))
    out = result.to_json()
    assert out["stopped_by"] in ("precision", "time_cap", "max_rounds")
    for record in out["models"]:
        r = record["rounds"]
        assert r["ci_low_ms"] <= r["median_ms"] <= r["ci_high_ms"] and r["confidence"] == 0.95
        assert len(r["p50s_ms"]) == r["rounds"] and r["min_ms"] <= r["median_ms"] <= r["max_ms"]
        assert record["latency_ms"]["p50"] == pytest.approx(r["median_ms"])  # the typical round
        assert set(record["latency_ms"]) == {"p50", "p90", "p99", "mean", "std"}
        assert record["floor"]["name"] == "null" and record["floor"]["rounds"] == r["rounds"]
        assert record["fingerprint"]["threads"] == 1 and record["torch_loaded"] is False
        assert record["throughput_per_s"] > 0 and record["batch"] == 1 and record["accuracy"] is None
    json.dumps(out)  # plain JSON throughout


def test_compare_scores_accuracy_once_per_model(two: dict[str, Artifact], tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.integers(0, 255, (60, *SHAPE), dtype=np.uint8), y=np.arange(60) % 10)
    result = compare({"small": two["small"]}, data=str(tmp_path / "d.npz"), batch=2, timing=FAST, rule=FEW)
    record = result.models[0].to_json()
    assert 0.0 <= record["accuracy"] <= 1.0 and record["accuracy_samples"] == 6 and record["batch"] == 2
    assert result.floors[0].to_json()["batch"] == 2  # the floor takes the same batch


def test_compare_without_null(two: dict[str, Artifact]) -> None:
    result = compare({"large": two["large"]}, timing=FAST, rule=FEW, null=False)
    assert result.floors == () and result.models[0].to_json()["floor"] is None


def test_compare_refuses_bad_input(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="nothing to compare"):
        compare({})
    gone = Artifact("onnxruntime", "fp32", tmp_path / "gone.onnx", SHAPE)
    with pytest.raises(UserError, match="not found"):
        compare({"gone": gone}, timing=FAST, rule=FEW)


def test_warm_worker_answers_one_line_per_round_and_exits_on_eof(two: dict[str, Artifact]) -> None:
    request = {"artifact": two["small"].to_json(), "batch": 1, "threads": 1, "timing": FAST.to_json()}
    with WarmWorker(request, 1) as worker:
        assert worker.ready()["output_shape"] == [1, 10]
        first, second = worker.round(), worker.round()
        assert first.samples >= FAST.min_iters and second.samples >= FAST.min_iters
    proc = subprocess.run(
        [sys.executable, "-m", "edgekd.bench.worker", "--serve"],
        input=json.dumps(request) + "\n" + json.dumps({"op": "round"}) + "\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert proc.returncode == 0 and len(lines) == 2 and "stats" in lines[1] and "output_shape" in lines[0]


def test_openvino_models_get_an_openvino_floor(tmp_path: Path) -> None:
    pytest.importorskip("openvino", reason="openvino is not installed")
    art = build(cnn(4), tmp_path / "ov", Runtime.OPENVINO)
    result = compare({"ov": art}, threads=1, timing=FAST, rule=FEW)
    floor = result.floors[0].to_json()
    assert floor["fingerprint"]["runtime"] == "openvino" and floor["artifact"].endswith("null.onnx")
    assert result.models[0].to_json()["floor"]["median_ms"] > 0
