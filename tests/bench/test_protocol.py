"""The timing loop itself, driven by fake sessions whose cost is known (no runtime involved)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from edgekd.bench.protocol import LatencyStats, ProtocolError, TimingConfig, measure


class SleepSession:
    """Sleeps `seconds` per run and records when each run started and ended, and what it was given."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.seconds = seconds
        self.spans: list[tuple[float, float]] = []
        self.input_ids: set[int] = set()

    def run(self, inputs: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        self.input_ids.add(id(inputs))
        if self.seconds:
            time.sleep(self.seconds)
        self.spans.append((start, time.perf_counter()))
        return np.zeros((len(inputs), 10), dtype=np.float32)


X = np.zeros((4, 1, 8, 8), dtype=np.float32)


def test_count_rules_when_runs_are_instant() -> None:
    session = SleepSession()
    stats = measure(session, X, TimingConfig(warmup_iters=5, warmup_s=0.0, min_iters=7, min_time_s=0.0))
    assert stats.samples == 7
    assert len(session.spans) == 5 + 7  # warm-up count, then exactly min_iters timed runs
    assert session.input_ids == {id(X)}  # the same array every run


def test_warm_up_lasts_its_minimum_time() -> None:
    session = SleepSession(0.005)
    config = TimingConfig(warmup_iters=1, warmup_s=0.1, min_iters=3, min_time_s=0.0)
    stats = measure(session, X, config)
    warm = session.spans[: len(session.spans) - stats.samples]
    assert len(warm) > 1
    assert warm[-1][1] - warm[0][0] >= config.warmup_s


def test_timed_runs_last_their_minimum_time() -> None:
    session = SleepSession(0.005)
    config = TimingConfig(warmup_iters=1, warmup_s=0.0, min_iters=3, min_time_s=0.1)
    stats = measure(session, X, config)
    timed = session.spans[-stats.samples :]
    assert stats.samples > config.min_iters
    assert timed[-1][1] - timed[0][0] >= config.min_time_s
    assert stats.p50_ms >= 5.0  # each sample covers the whole run


def test_max_iters_caps_the_timed_runs() -> None:
    stats = measure(
        SleepSession(),
        X,
        TimingConfig(warmup_iters=0, warmup_s=0.0, min_iters=5, min_time_s=60.0, max_iters=20),
    )
    assert stats.samples == 20


def test_stats_from_known_samples() -> None:
    samples_ns = np.arange(1, 101, dtype=np.int64) * 1_000_000  # 1 ms .. 100 ms
    stats = LatencyStats.from_samples(samples_ns, batch=8)
    assert stats.samples == 100
    assert stats.p50_ms == pytest.approx(50.5)
    assert stats.p90_ms == pytest.approx(90.1)
    assert stats.p99_ms == pytest.approx(99.01)
    assert stats.mean_ms == pytest.approx(50.5)
    assert stats.std_ms == pytest.approx(np.std(np.arange(1, 101), ddof=1))
    assert stats.throughput_per_s == pytest.approx(8 * 1000 / 50.5)
    assert all(isinstance(v, float) for v in stats.to_json().values())
    assert set(stats.to_json()) == {"p50", "p90", "p99", "mean", "std"}


def test_single_sample_has_zero_std() -> None:
    stats = LatencyStats.from_samples(np.array([2_000_000]), batch=1)
    assert stats.std_ms == 0.0 and stats.p99_ms == pytest.approx(2.0)


@pytest.mark.parametrize(
    "kwargs",
    [{"min_iters": 0}, {"min_iters": 10, "max_iters": 5}, {"warmup_s": -1.0}, {"min_time_s": -0.1}],
)
def test_bad_timing_config_is_a_protocol_error(kwargs: dict[str, float]) -> None:
    with pytest.raises(ProtocolError, match="timing"):
        TimingConfig(**kwargs)  # type: ignore[arg-type]


def test_timing_config_round_trips_and_rejects_unknown_fields() -> None:
    config = TimingConfig(warmup_iters=3, min_time_s=0.25)
    assert TimingConfig.from_json(config.to_json()) == config
    with pytest.raises(ProtocolError, match="unknown field"):
        TimingConfig.from_json({"warmup": 3})
