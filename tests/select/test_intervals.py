"""Decisions that respect the noise, on synthetic round statistics: interval maths, the tie rule, the
budget rule, the floor and the separable budget."""

from __future__ import annotations

import pytest

from edgekd.bench.protocol import RoundStats, StopRule
from edgekd.errors import UserError
from edgekd.select.intervals import (
    BudgetRule,
    Interval,
    Verdict,
    check_floor,
    choose,
    clearly_faster,
    dominates,
    fastest_tied,
    front,
    meets,
    missed_by,
    overlaps,
    reachable_budget,
    separable_budget,
    stats_from_json,
    undecided,
    verdict,
)

RULE = StopRule(resamples=500)


def rounds(*p50s: float) -> RoundStats:
    return RoundStats.from_p50s(list(p50s), RULE, "precision")


def iv(low: float, high: float) -> Interval:
    return Interval((low + high) / 2, low, high)


def test_interval_of_round_stats_brackets_the_median_and_round_trips_through_json() -> None:
    stats = rounds(1.0, 1.1, 0.9, 1.05, 0.95, 1.2, 0.8)
    i = Interval.of(stats)
    assert i.low_ms <= i.median_ms <= i.high_ms and i.median_ms == pytest.approx(1.0)
    assert 0.8 <= i.low_ms and i.high_ms <= 1.2 and i.rel_width == pytest.approx(stats.rel_width)
    assert stats_from_json(stats.to_json()) == stats
    assert Interval.of(rounds(2.0)) == Interval.point(2.0)  # one round: zero width at it


def test_overlap_is_a_tie_and_only_disjoint_intervals_order() -> None:
    a, b, c = iv(1.0, 1.2), iv(1.1, 1.4), iv(1.3, 1.5)
    assert overlaps(a, b) and overlaps(b, a) and overlaps(b, c)
    assert not overlaps(a, c) and clearly_faster(a, c) and not clearly_faster(c, a)
    assert not clearly_faster(a, b)  # a's median is lower, but the intervals overlap
    assert overlaps(iv(1.0, 1.2), iv(1.2, 1.3))  # touching ends share a point


def test_budget_rule_upper_needs_the_whole_interval_p50_the_median() -> None:
    lat = Interval(1.0, 0.9, 1.15)
    assert meets(lat, 1.1, BudgetRule.P50) and not meets(lat, 1.1, BudgetRule.UPPER)
    assert meets(lat, 1.15, BudgetRule.UPPER)
    assert missed_by(lat, 1.1, BudgetRule.UPPER) == pytest.approx(0.05)
    assert missed_by(lat, 1.1, BudgetRule.P50) == pytest.approx(-0.1)


def test_a_budget_inside_the_interval_is_undetermined_by_either_rule() -> None:
    lat = Interval(1.0, 0.9, 1.15)
    assert verdict(lat, 1.2, BudgetRule.UPPER) is Verdict.MET
    assert verdict(lat, 1.1, BudgetRule.UPPER) is Verdict.UNDETERMINED and undecided(lat, 1.1)
    assert verdict(lat, 0.95, BudgetRule.P50) is Verdict.UNDETERMINED  # the median over it, the CI not wholly
    assert verdict(lat, 1.05, BudgetRule.P50) is Verdict.MET
    assert verdict(lat, 0.85, BudgetRule.UPPER) is Verdict.MISSED and not undecided(lat, 0.85)
    assert verdict(lat, 0.85, BudgetRule.P50) is Verdict.MISSED
    assert verdict(Interval.point(1.0), 0.99, BudgetRule.UPPER) is Verdict.MISSED  # no width, no doubt


# (name, interval, accuracy, params)
Item = tuple[str, Interval, float, int]


def pick(items: list[Item], budget: float, rule: BudgetRule = BudgetRule.UPPER) -> str:
    return choose(items, lambda x: x[1], lambda x: x[2], lambda x: x[3], budget, rule)[0]


def test_choice_is_the_most_accurate_within_budget() -> None:
    items = [("fast", iv(1.0, 1.1), 0.80, 10), ("slow", iv(2.0, 2.1), 0.90, 20), ("over", iv(3.0, 3.5), 0.95, 30)]
    assert pick(items, 2.5) == "slow"
    assert pick(items, 3.3, BudgetRule.P50) == "over" and pick(items, 3.3) == "slow"


def test_equal_accuracy_tied_on_latency_goes_to_the_smaller() -> None:
    items = [("a", iv(1.0, 1.3), 0.9, 50), ("b", iv(1.1, 1.2), 0.9, 20), ("c", iv(2.0, 2.2), 0.9, 5)]
    assert pick(items, 3.0) == "b"  # a and b tie on latency; c is clearly slower, however small
    items[1] = ("b", iv(1.4, 1.5), 0.9, 20)
    assert pick(items, 3.0) == "a"  # now a is clearly faster


def test_when_nothing_meets_the_budget_the_tied_fastest_are_ranked_by_accuracy_then_size() -> None:
    items = [("a", iv(1.0, 1.4), 0.80, 10), ("b", iv(1.3, 1.6), 0.85, 30), ("c", iv(1.7, 1.9), 0.99, 5)]
    assert [x[0] for x in fastest_tied(items, lambda x: x[1])] == ["a", "b"]
    assert pick(items, 0.5) == "b"  # tied with the fastest and more accurate; c is clearly slower
    items[1] = ("b", iv(1.3, 1.6), 0.80, 30)
    assert pick(items, 0.5) == "a"  # same accuracy: the smaller


def test_front_counts_dominance_only_beyond_the_intervals() -> None:
    pts = [(iv(1.0, 1.2), 0.80, 10), (iv(1.1, 1.3), 0.85, 20), (iv(2.0, 2.1), 0.84, 5), (iv(3.0, 3.1), 0.90, 9)]
    # 0 and 1 tie on latency: 1 is more accurate, so it dominates 0; 2 is slower and less accurate than 1
    assert dominates(pts[1], pts[0]) and not dominates(pts[0], pts[1]) and dominates(pts[1], pts[2])
    assert front(pts) == [1, 3]
    # equal accuracy and tied latency: the smaller dominates; identical points keep both
    assert dominates((iv(1.0, 1.2), 0.8, 5), (iv(1.1, 1.3), 0.8, 9))
    assert front([(iv(1.0, 1.2), 0.8, 5), (iv(1.0, 1.2), 0.8, 5)]) == [0, 1]


def test_a_budget_below_the_floor_is_refused_naming_the_floor() -> None:
    floor = rounds(0.0041, 0.0042, 0.0043)
    check_floor(0.01, floor, "cpu-ort-fp32")
    check_floor(0.003, None, "cpu-ort-fp32")  # no floor measured: nothing to refuse on
    with pytest.raises(UserError, match=r"budget 0.003 ms is below the per-call floor 0.0042 ms \[0.004\d*-0.004\d*\]"):
        check_floor(0.003, floor, "cpu-ort-fp32")


def test_separable_budget_sits_in_the_gap_nearest_the_anchor() -> None:
    lat = {"a": iv(1.0, 1.2), "b": iv(1.1, 1.5), "c": iv(2.0, 2.2), "d": iv(4.0, 4.4)}
    budget, why = separable_budget(lat, anchor_ms=1.8) or (0.0, {})
    # two thirds of the way across the gap: the faster side, chosen and measured again, gets the margin
    assert budget == pytest.approx(1.5 + 0.5 * 2 / 3) and (why["faster"], why["slower"], why["gaps"]) == ("b", "c", 2)
    assert why["gap_rel"] == pytest.approx(0.5 / budget)
    budget, why = separable_budget(lat, anchor_ms=3.5) or (0.0, {})
    assert budget == pytest.approx(3.4) and (why["faster_ci_high_ms"], why["slower_ci_low_ms"]) == (2.2, 4.0)
    # a hairline gap (under MIN_GAP of the budget) is passed over for a wide one, and alone is no gap
    narrow = {"a": iv(1.0, 1.1), "b": iv(1.12, 1.2), "c": iv(2.0, 2.1)}
    assert (separable_budget(narrow, anchor_ms=1.1) or (0.0,))[0] == pytest.approx(1.2 + 0.8 * 2 / 3)
    assert separable_budget({"a": iv(1.0, 1.1), "b": iv(1.12, 1.2)}, 5.0) is None
    # a wide interval that spans a gap between others closes it
    assert separable_budget({**lat, "wide": iv(1.0, 5.0)}, 1.8) is None
    assert separable_budget({"a": iv(1.0, 2.0), "b": iv(1.5, 2.5)}, 1.8) is None


def test_without_a_gap_the_budget_is_raised_only_as_far_as_the_fastest_needs() -> None:
    """No gap (the demo on a noisy AVX2 machine: every candidate's interval above 0.5 x the teacher's p50,
    all overlapping): the budget must still be one a candidate can meet, 10% above the lowest upper end."""
    lat = {"a": iv(1.0, 1.3), "b": iv(1.1, 1.2), "c": iv(1.15, 1.6)}
    assert separable_budget(lat, 0.8) is None
    budget, why = reachable_budget(lat, anchor_ms=0.8)
    assert budget == pytest.approx(1.2 * 1.1) and why["fastest"] == "b" and why["raised"] and why["no_gap"]
    assert meets(lat["b"], budget, BudgetRule.UPPER) and not meets(lat["c"], budget, BudgetRule.UPPER)
    budget, why = reachable_budget(lat, anchor_ms=1.5)  # the anchor is reachable already: kept
    assert budget == 1.5 and not why["raised"]
