"""Round statistics and the interleaving driver, on synthetic timings (no runtime, nothing timed)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from edgekd.bench.protocol import LatencyStats as LS
from edgekd.bench.protocol import (
    ProtocolError,
    RoundStats,
    StopRule,
    bootstrap_ci,
    interleaved_rounds,
    round_order,
    typical_round,
)


def stats(p50: float, batch: int = 1, samples: int = 10) -> LS:
    return LS(p50, p50 * 1.2, p50 * 1.5, p50 * 1.05, p50 * 0.1, samples, batch * 1000 / (p50 * 1.05), batch)


class Fake:
    """A model whose rounds have p50s drawn from a known distribution, and that records its calls."""

    def __init__(self, name: str, log: list[str], draw: Callable[[], float]) -> None:
        self.name, self.log, self.draw = name, log, draw

    def __call__(self) -> LS:
        self.log.append(self.name)
        return stats(self.draw())


class FakeClock:
    """A clock the fake models move forward."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def constant(value: float) -> Callable[[], float]:
    return lambda: value


def noisy(median: float, sigma: float, seed: int) -> Callable[[], float]:
    rng = np.random.default_rng(seed)
    return lambda: float(median * np.exp(rng.normal(0.0, sigma)))  # lognormal: median is exactly `median`


# ---- bootstrap_ci ---------------------------------------------------------------------------------


def test_bootstrap_is_deterministic_with_a_seed_and_brackets_the_median() -> None:
    values = np.random.default_rng(0).lognormal(0.0, 0.3, size=25)
    a, b = bootstrap_ci(values, seed=7), bootstrap_ci(values, seed=7)
    assert a == b
    assert a[0] <= float(np.median(values)) <= a[1]


def test_bootstrap_edge_cases() -> None:
    assert bootstrap_ci([3.0]) == (3.0, 3.0)
    assert bootstrap_ci([2.0] * 9) == (2.0, 2.0)
    with pytest.raises(ValueError):
        bootstrap_ci([])


def test_bootstrap_interval_covers_the_true_median() -> None:
    """A 95% interval of a lognormal's median (true median 1.0) covers it in roughly 95% of trials."""
    rng = np.random.default_rng(123)
    trials = 300
    covered = 0
    for trial in range(trials):
        low, high = bootstrap_ci(rng.lognormal(0.0, 0.4, size=30), resamples=1000, seed=trial)
        covered += low <= 1.0 <= high
    assert 0.88 <= covered / trials <= 0.995


def test_bootstrap_narrows_with_more_rounds_and_widens_with_confidence() -> None:
    rng = np.random.default_rng(5)
    few, many = rng.lognormal(0, 0.3, 8), rng.lognormal(0, 0.3, 200)
    width = lambda v, c=0.95: np.subtract(*bootstrap_ci(v, confidence=c)[::-1])  # noqa: E731
    assert width(many) < width(few)
    assert width(many, 0.99) >= width(many, 0.80)


# ---- RoundStats and the typical round -------------------------------------------------------------


def test_round_stats_of_known_p50s() -> None:
    rule = StopRule(rel_width=0.5)
    s = RoundStats.from_p50s([1.0, 2.0, 3.0, 4.0, 5.0], rule, "precision")
    assert s.median_ms == 3.0 and s.rounds == 5 and (s.min_ms, s.max_ms) == (1.0, 5.0)
    assert s.iqr_ms == pytest.approx(2.0) and s.p50s_ms == (1.0, 2.0, 3.0, 4.0, 5.0)
    assert s.ci_low_ms <= 3.0 <= s.ci_high_ms
    assert s.rel_width == pytest.approx((s.ci_high_ms - s.ci_low_ms) / 3.0)
    assert s.met_target == (s.rel_width <= 0.5) and s.confidence == 0.95
    data = s.to_json()
    assert data["p50s_ms"] == [1.0, 2.0, 3.0, 4.0, 5.0] and data["stopped_by"] == "precision"


def test_typical_round_takes_medians_and_sums_samples() -> None:
    rounds = [stats(1.0, batch=2), stats(3.0, batch=2), stats(2.0, batch=2)]
    typical = typical_round(rounds)
    assert typical.p50_ms == 2.0 and typical.p90_ms == pytest.approx(2.4) and typical.samples == 30
    assert typical.throughput_per_s == pytest.approx(2 * 1000 / typical.mean_ms) and typical.batch == 2


@pytest.mark.parametrize(
    "kwargs",
    [{"rel_width": 0.0}, {"confidence": 1.0}, {"min_rounds": 0}, {"min_rounds": 9, "max_rounds": 3}, {"time_cap_s": 0}],
)
def test_bad_stop_rule_is_a_protocol_error(kwargs: dict[str, float]) -> None:
    with pytest.raises(ProtocolError, match="rounds"):
        StopRule(**kwargs)  # type: ignore[arg-type]


def test_stop_rule_round_trips() -> None:
    rule = StopRule(rel_width=0.02, time_cap_s=9.0)
    assert StopRule.from_json(rule.to_json()) == rule
    with pytest.raises(ProtocolError, match="unknown field"):
        StopRule.from_json({"width": 1})


# ---- the interleaving driver ----------------------------------------------------------------------


def test_rotation_interleaves_every_round() -> None:
    log: list[str] = []
    models = {n: Fake(n, log, constant(1.0)) for n in "abc"}
    result = interleaved_rounds(models, StopRule(min_rounds=3, max_rounds=3))
    assert log == list("abcbcacab")
    assert all(r.stats.rounds == 3 for r in result.values())


def test_shuffle_is_seeded() -> None:
    names = ["a", "b", "c", "d"]
    orders = lambda seed: [round_order(names, i, "shuffle", np.random.default_rng(seed)) for i in range(5)]  # noqa: E731
    assert orders(1) == orders(1)
    assert all(sorted(o) == names for o in orders(1))
    with pytest.raises(ProtocolError, match="order"):
        interleaved_rounds({"a": lambda: stats(1.0)}, order="random")


def test_constant_timings_stop_on_precision_at_min_rounds() -> None:
    log: list[str] = []
    result = interleaved_rounds({"a": Fake("a", log, constant(2.0))}, StopRule(min_rounds=4))
    s = result["a"].stats
    assert (s.stopped_by, s.rounds, s.median_ms, s.rel_width, s.met_target) == ("precision", 4, 2.0, 0.0, True)
    assert result["a"].typical().p50_ms == 2.0


def test_wide_noise_hits_the_round_cap() -> None:
    result = interleaved_rounds({"a": Fake("a", [], noisy(1.0, 1.0, 0))}, StopRule(min_rounds=3, max_rounds=6))
    s = result["a"].stats
    assert s.stopped_by == "max_rounds" and s.rounds == 6 and not s.met_target


def test_time_cap_stops_and_is_recorded() -> None:
    clock = FakeClock()

    def slow() -> LS:
        clock.now += 1.0
        return stats(float(np.random.default_rng(int(clock.now)).lognormal(0, 1.0)))

    result = interleaved_rounds({"a": slow, "b": slow}, StopRule(min_rounds=2, time_cap_s=5.0), clock=clock)
    assert {r.stats.stopped_by for r in result.values()} == {"time_cap"}
    assert [r.stats.rounds for r in result.values()] == [3, 3]  # 2 s per round: capped after the third


def test_only_watched_models_must_narrow() -> None:
    """A jittery null model takes part in every round but does not hold the run open."""
    models = {"model": Fake("model", [], constant(5.0)), "null": Fake("null", [], noisy(0.01, 1.0, 1))}
    rule = StopRule(min_rounds=5, max_rounds=40)
    result = interleaved_rounds(models, rule, watch=["model"])
    assert result["model"].stats.stopped_by == "precision" and result["model"].stats.rounds == 5
    assert result["null"].stats.rounds == 5 and not result["null"].stats.met_target
    with pytest.raises(ProtocolError, match="watched"):
        interleaved_rounds(models, rule, watch=["other"])


def test_noisy_models_narrow_to_the_target_near_their_medians() -> None:
    models = {
        "fast": Fake("fast", [], noisy(1.0, 0.05, 2)),
        "slow": Fake("slow", [], noisy(3.0, 0.05, 3)),
    }
    result = interleaved_rounds(models, StopRule(rel_width=0.05, max_rounds=200))
    for name, true_median in (("fast", 1.0), ("slow", 3.0)):
        s = result[name].stats
        assert s.stopped_by == "precision" and s.met_target and s.rel_width <= 0.05
        assert abs(s.median_ms - true_median) <= 0.05 * true_median  # coverage itself: the test above
    assert result["fast"].stats.rounds == result["slow"].stats.rounds


def test_same_seed_same_result() -> None:
    def run() -> dict[str, RoundStats]:
        models = {n: Fake(n, [], noisy(1.0 + i, 0.2, i)) for i, n in enumerate("xyz")}
        rounds = interleaved_rounds(models, StopRule(max_rounds=30), order="shuffle", seed=4)
        return {n: r.stats for n, r in rounds.items()}

    assert run() == run()


def test_on_round_reports_progress() -> None:
    seen: list[int] = []
    interleaved_rounds(
        {"a": lambda: stats(1.0)}, StopRule(min_rounds=3), on_round=lambda done, elapsed: seen.append(done)
    )
    assert seen == [1, 2, 3]
