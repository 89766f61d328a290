"""A candidate's latency before training: measured once per target and machine (side by side, in rounds,
with an interval and a floor), then read from the store while its interval is narrow enough."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from edgekd.bench import TimingConfig
from edgekd.bench.protocol import RoundStats, StopRule
from edgekd.config import TargetProfile
from edgekd.errors import UserError
from edgekd.runtimes import get_runtime
from edgekd.select import Candidate, latency, lookup, measure_candidate
from edgekd.select.latency import LatencyCache, benchmark_candidates, cache_key, candidate_folder, target_fields
from edgekd.select.space import SearchSpace
from edgekd.store import STORE_NAME, Store

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")

FAST = TimingConfig(warmup_iters=2, warmup_s=0.0, min_iters=20, min_time_s=0.05)
SHORT = StopRule(min_rounds=3, max_rounds=4, time_cap_s=5.0, resamples=200)
LOOSE = StopRule(rel_width=0.5)  # asks a CI within 50% of the median


def record(p50s: list[float]) -> dict[str, Any]:
    """A `bench --json` record with rounds over synthetic per-round p50s, and a floor."""
    stats = RoundStats.from_p50s(p50s, StopRule(), "precision")
    floor = RoundStats.from_p50s([0.004, 0.0041, 0.0042], StopRule(), "precision")
    return {
        "latency_ms": {"p50": stats.median_ms},
        "rounds": stats.to_json(),
        "floor": {"name": "null", **floor.to_json()},
    }


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
        candidates: list[Candidate], profile: TargetProfile, folders: Any, timing: Any = None, rule: Any = None
    ) -> dict[str, Any]:
        out = {}
        for c in candidates:
            calls.append(c.key)
            p = 0.1 * len(calls)
            out[c.key] = record([p, p * 1.01, p * 0.99])  # a CI of about 2% of the median
        return out

    monkeypatch.setattr(latency, "benchmark_candidates", fake)
    return calls


def test_second_measure_is_read_from_the_store(
    tmp_path: Path, candidates: list[Candidate], profile: TargetProfile, fake_bench: list[str]
) -> None:
    store = Store(tmp_path / STORE_NAME)
    first = measure_candidate(candidates[0], profile, tmp_path, store)
    again = measure_candidate(candidates[0], profile, tmp_path, store.path)  # a path to the store works too
    assert (first.cached, again.cached) == (False, True)
    assert again.p50_ms == first.p50_ms == pytest.approx(0.1)
    assert again.stats == first.stats and again.floor is not None and again.floor.median_ms == pytest.approx(0.0041)
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


def test_a_cached_interval_wider_than_asked_is_measured_again(
    tmp_path: Path, candidates: list[Candidate], profile: TargetProfile, fake_bench: list[str]
) -> None:
    store = Store(tmp_path / STORE_NAME)
    assert measure_candidate(candidates[0], profile, tmp_path, store, rule=LOOSE).stats is not None
    assert measure_candidate(candidates[0], profile, tmp_path, store, rule=LOOSE).cached  # ~2% <= 50%
    narrow = StopRule(rel_width=0.001)  # narrower than the cached interval: measured again
    again = measure_candidate(candidates[0], profile, tmp_path, store, rule=narrow)
    assert not again.cached and fake_bench == [candidates[0].key] * 2
    assert LatencyCache(store).count() == 1  # one row per candidate and target


def test_the_cache_keeps_the_narrower_interval(tmp_path: Path, candidates: list[Candidate]) -> None:
    cache, c, fields = LatencyCache(tmp_path / STORE_NAME), candidates[0], {"t": 1}
    cache.put("k", c, fields, record([1.0, 1.01, 0.99]))
    cache.put("k", c, fields, record([1.0, 2.0, 0.5]))  # wider: does not replace
    got = cache.get("k")
    assert got is not None and got.stats is not None and got.stats.ci_high_ms < 1.5
    cache.put("k", c, fields, record([1.0, 1.0, 1.0]))  # narrower: replaces
    got = cache.get("k")
    assert got is not None and got.stats is not None and got.stats.rel_width == 0.0


def test_an_old_row_without_an_interval_counts_as_too_wide(
    tmp_path: Path, candidates: list[Candidate], profile: TargetProfile, fake_bench: list[str]
) -> None:
    path = tmp_path / STORE_NAME
    fields = target_fields(profile, get_runtime(profile.runtime).version())
    key = cache_key(candidates[0], fields)
    with sqlite3.connect(path) as conn:  # the table as it was before intervals
        conn.execute(
            "CREATE TABLE candidate_latency (key TEXT PRIMARY KEY, candidate TEXT NOT NULL, arch TEXT NOT NULL,"
            " spec TEXT NOT NULL, target TEXT NOT NULL, p50_ms REAL NOT NULL, result TEXT NOT NULL,"
            " created REAL NOT NULL)"
        )
        old = json.dumps({"latency_ms": {"p50": 0.5}})
        conn.execute("INSERT INTO candidate_latency VALUES (?, 'c', 'a', '{}', '{}', 0.5, ?, 0)", (key, old))
    old_row = lookup(candidates[0], profile, path)
    assert old_row is not None and old_row.stats is None and old_row.p50_ms == 0.5
    assert not old_row.narrow_enough(StopRule(rel_width=10.0))
    measured = measure_candidate(candidates[0], profile, tmp_path, path, rule=LOOSE)
    assert not measured.cached and measured.stats is not None and fake_bench == [candidates[0].key]
    assert measure_candidate(candidates[0], profile, tmp_path, path, rule=LOOSE).cached  # the new row replaced it


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
    measured = measure_candidate(candidates[0], profile, tmp_path, store, FAST, rule=SHORT)
    assert not measured.cached and measured.p50_ms > 0
    stats = measured.stats
    assert stats is not None and stats.ci_low_ms <= stats.median_ms <= stats.ci_high_ms and 3 <= stats.rounds <= 4
    assert measured.floor is not None and measured.floor.rounds == stats.rounds  # the null model took part
    fingerprint = measured.result["fingerprint"]
    assert (fingerprint["runtime"], fingerprint["threads"], fingerprint["batch"]) == ("onnxruntime", 1, 1)
    assert Path(measured.result["artifact"]).is_file()
    assert measured.result["candidate"]["arch"] == candidates[0].arch
    assert measure_candidate(candidates[0], profile, tmp_path, store, rule=StopRule(rel_width=10.0)).cached
    # re-timing without the cache reuses the build in the candidate's folder
    folder = candidate_folder(candidates[0], profile, tmp_path)
    built = (folder / "model.onnx").stat().st_mtime_ns
    again = benchmark_candidates(candidates[:1], profile, {candidates[0].key: folder}, FAST, SHORT)[candidates[0].key]
    assert again["latency_ms"]["p50"] > 0 and (folder / "model.onnx").stat().st_mtime_ns == built


def test_a_measurement_that_replaced_a_cached_one_remembers_it_and_a_shift_of_all_is_drift(
    tmp_path: Path, candidates: list[Candidate], profile: TargetProfile, fake_bench: list[str]
) -> None:
    store = Store(tmp_path / STORE_NAME)
    first = latency.measure_candidates(candidates, profile, tmp_path, store, rule=LOOSE)  # 0.1 and 0.2 ms
    assert all(r.before is None for r in first.values()) and latency.drift(first.values()) is None
    again = latency.measure_candidates(candidates, profile, tmp_path, store, rule=StopRule(rel_width=0.001))
    assert [again[c.key].before for c in candidates] == [first[c.key].interval for c in candidates]
    moved = latency.drift(again.values())  # 0.3 and 0.4 ms now, both clear of their earlier intervals
    assert moved is not None and (moved["direction"], moved["candidates"]) == ("slower", 2)
    assert (moved["ratio_min"], moved["ratio_max"]) == (pytest.approx(2.0), pytest.approx(3.0))
    assert (
        "all 2 candidates measured again are slower than their cached measurement (2.00-3.00x)"
        in latency.drift_message(moved, "cpu-ort-fp32")
    )


def test_drift_needs_every_re_measured_candidate_moved_the_same_way() -> None:
    from edgekd.select.intervals import Interval

    def moved(new: float, old: float) -> latency.LatencyResult:
        stats = RoundStats.from_p50s([new * 0.99, new, new * 1.01], StopRule(), "precision")
        return latency.LatencyResult(new, False, {}, stats, before=Interval(old, old * 0.99, old * 1.01))

    assert latency.drift([moved(2.0, 1.0), moved(0.5, 1.0)]) is None  # one slower, one faster
    assert latency.drift([moved(2.0, 1.0), moved(1.0, 1.0)]) is None  # one within its earlier interval
    assert latency.drift([moved(2.0, 1.0)]) is None  # one alone says nothing of the machine
    faster = latency.drift([moved(0.5, 1.0), moved(0.6, 1.0)])
    assert faster is not None and faster["direction"] == "faster"


def test_a_move_too_small_to_unsettle_a_budget_is_not_drift() -> None:
    from edgekd.select.intervals import Interval

    def moved(new: float, old: float) -> latency.LatencyResult:
        stats = RoundStats.from_p50s([new * 0.995, new, new * 1.005], StopRule(), "precision")
        return latency.LatencyResult(new, False, {}, stats, before=Interval(old, old * 0.995, old * 1.005))

    # clear of their earlier intervals, all faster, but by 2-5%: under a budget's margin (`DRIFT_MIN`)
    assert latency.DRIFT_MIN == pytest.approx(0.1 * 2 / 3)
    assert latency.drift([moved(0.95, 1.0), moved(0.97, 1.0), moved(0.98, 1.0)]) is None
    assert latency.drift([moved(0.89, 1.0), moved(0.92, 1.0), moved(0.98, 1.0)]) is not None  # median 8%
