"""A candidate's latency before training: measured once per target and machine, then read from the store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edgekd.bench import TimingConfig
from edgekd.config import TargetProfile
from edgekd.errors import UserError
from edgekd.runtimes import get_runtime
from edgekd.select import Candidate, latency, lookup, measure_candidate
from edgekd.select.latency import LatencyCache, benchmark_candidate, candidate_folder
from edgekd.select.space import SearchSpace
from edgekd.store import STORE_NAME, Store

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")

FAST = TimingConfig(warmup_iters=2, warmup_s=0.0, min_iters=20, min_time_s=0.05)


@pytest.fixture(scope="module")
def candidates() -> list[Candidate]:
    return SearchSpace.model_validate({"family": "cnn", "width": [2, 4], "image_size": [8]}).candidates()


@pytest.fixture
def profile() -> TargetProfile:
    return TargetProfile(name="test-ort", runtime="onnxruntime", threads=1)


@pytest.fixture
def fake_bench(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Replace export + build + benchmark by a stub that records which candidates it measured."""
    calls: list[str] = []

    def fake(
        candidate: Candidate, profile: TargetProfile, folder: Path, timing: Any = None, *, repeats: int = 1
    ) -> dict[str, Any]:
        calls.append(candidate.key)
        return {"latency_ms": {"p50": 0.1 * len(calls)}, "p50_runs": [0.1 * len(calls)] * repeats}

    monkeypatch.setattr(latency, "benchmark_candidate", fake)
    return calls


def test_second_measure_is_read_from_the_store(
    tmp_path: Path, candidates: list[Candidate], profile: TargetProfile, fake_bench: list[str]
) -> None:
    store = Store(tmp_path / STORE_NAME)
    first = measure_candidate(candidates[0], profile, tmp_path, store)
    again = measure_candidate(candidates[0], profile, tmp_path, store.path)  # a path to the store works too
    assert (first.cached, again.cached) == (False, True)
    assert again.p50_ms == first.p50_ms == pytest.approx(0.1)
    assert fake_bench == [candidates[0].key]  # measured once
    assert LatencyCache(store).count() == 1
    assert lookup(candidates[0], profile, store) == again
    assert lookup(candidates[1], profile, store) is None


def test_another_candidate_or_target_setting_is_measured_again(
    tmp_path: Path, candidates: list[Candidate], profile: TargetProfile, fake_bench: list[str]
) -> None:
    store = Store(tmp_path / STORE_NAME)
    measure_candidate(candidates[0], profile, tmp_path, store)
    measure_candidate(candidates[1], profile, tmp_path, store)
    measure_candidate(candidates[0], profile.model_copy(update={"threads": 2}), tmp_path, store)
    measure_candidate(candidates[0], profile.model_copy(update={"batch": 8}), tmp_path, store)
    # the profile's name and budget do not change latency: same cache entry
    renamed = profile.model_copy(update={"name": "other", "latency_budget_ms": 3.0})
    assert measure_candidate(candidates[0], renamed, tmp_path, store).cached
    assert len(fake_bench) == 4
    assert LatencyCache(store).count() == 4


def test_absent_runtime_fails_before_any_work(
    tmp_path: Path, candidates: list[Candidate], fake_bench: list[str]
) -> None:
    if get_runtime("tensorrt", require=False).is_available():
        pytest.skip("TensorRT is installed here")
    trt = TargetProfile(name="jetson", runtime="tensorrt", device="cuda", precision="fp16")
    with pytest.raises(UserError, match="runtime tensorrt is not installed on this machine"):
        measure_candidate(candidates[0], trt, tmp_path, tmp_path / STORE_NAME)
    assert fake_bench == []


def test_target_input_shape_must_match_the_candidate(tmp_path: Path, candidates: list[Candidate]) -> None:
    profile = TargetProfile(name="t", runtime="onnxruntime", input_shape=(1, 28, 28))
    with pytest.raises(UserError, match=r"takes input \[1, 28, 28\] but candidate cnn\(width=2\) takes \[1, 8, 8\]"):
        measure_candidate(candidates[0], profile, tmp_path, tmp_path / STORE_NAME)


def test_real_measurement_exports_builds_and_benchmarks(
    tmp_path: Path, candidates: list[Candidate], profile: TargetProfile
) -> None:
    store = Store(tmp_path / STORE_NAME)
    measured = measure_candidate(candidates[0], profile, tmp_path, store, FAST, repeats=2)
    assert not measured.cached and measured.p50_ms > 0
    assert measured.p50_ms == min(measured.result["p50_runs"]) and len(measured.result["p50_runs"]) == 2
    fingerprint = measured.result["fingerprint"]
    assert (fingerprint["runtime"], fingerprint["threads"], fingerprint["batch"]) == ("onnxruntime", 1, 1)
    assert Path(measured.result["artifact"]).is_file()
    assert measured.result["candidate"]["arch"] == candidates[0].arch
    assert measure_candidate(candidates[0], profile, tmp_path, store).cached
    # re-timing without the cache reuses the build in the candidate's folder
    folder = candidate_folder(candidates[0], profile, tmp_path)
    built = (folder / "model.onnx").stat().st_mtime_ns
    again = benchmark_candidate(candidates[0], profile, folder, FAST)
    assert again["latency_ms"]["p50"] > 0 and (folder / "model.onnx").stat().st_mtime_ns == built
