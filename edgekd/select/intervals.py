"""Decisions that respect the noise: latencies compared by their confidence intervals.

A latency measured in rounds (`edgekd.bench.protocol.RoundStats`) is a median with a bootstrap CI.
Two candidates whose intervals overlap are tied on latency: the measurement cannot tell which is
faster, so the tie is broken by accuracy, then by size (fewer parameters). A budget is met when the
interval's upper end is within it (`upper`, the default) or, by the looser rule, its median (`p50`).
A budget below the per-call floor (the null model's median) cannot be met by any model and is refused.
Everything here is a pure function of numbers, so the rules are tested on synthetic statistics.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from edgekd.bench.protocol import RoundStats
from edgekd.errors import UserError

T = TypeVar("T")
#: A separable budget's gap must be at least this share of the budget: a rerun, or the final build measured
#: in another run, drifts by more than one run's CI on a shared machine, so a hairline gap would not hold.
MIN_GAP = 0.10
#: Where in such a gap the budget sits, from the faster side's upper end (0) to the slower side's lower end
#: (1). Not midway: the faster candidate is the one chosen, and its verdict rests on a second measurement of
#: its final build, minutes later, which moved 0.68-1.07x against its screening in 10 demo runs; the slower
#: one only has to stay excluded, by an interval measured side by side with the others.
GAP_SHARE = 2.0 / 3.0


class BudgetRule(str, enum.Enum):
    """Which end of a latency's interval must be within the budget."""

    UPPER = "upper"  # the CI's upper end: met with 97.5% confidence
    P50 = "p50"  # the median over rounds


@dataclass(frozen=True)
class Interval:
    """A latency as decisions use it: median and CI in ms (a prediction is a zero-width interval)."""

    median_ms: float
    low_ms: float
    high_ms: float

    @classmethod
    def of(cls, stats: RoundStats) -> Interval:
        return cls(stats.median_ms, stats.ci_low_ms, stats.ci_high_ms)

    @classmethod
    def point(cls, value_ms: float) -> Interval:
        return cls(value_ms, value_ms, value_ms)

    @property
    def rel_width(self) -> float:
        return (self.high_ms - self.low_ms) / self.median_ms if self.median_ms > 0 else float("inf")


def stats_from_json(data: dict[str, Any]) -> RoundStats:
    """A RoundStats back from its `to_json()` (as selection.json and the cache store it)."""
    return RoundStats(**{**data, "p50s_ms": tuple(data["p50s_ms"])})


def overlaps(a: Interval, b: Interval) -> bool:
    """The intervals share a point: the measurement cannot say which is faster."""
    return a.low_ms <= b.high_ms and b.low_ms <= a.high_ms


def clearly_faster(a: Interval, b: Interval) -> bool:
    """`a`'s whole interval is below `b`'s."""
    return a.high_ms < b.low_ms


def meets(latency: Interval, budget_ms: float, rule: BudgetRule) -> bool:
    """Whether `latency` meets `budget_ms` by `rule` (upper end, or median, within the budget)."""
    return missed_by(latency, budget_ms, rule) <= 0


def missed_by(latency: Interval, budget_ms: float, rule: BudgetRule) -> float:
    """How far (ms) the end of the interval that `rule` names is over the budget (<= 0: met)."""
    value = latency.high_ms if rule is BudgetRule.UPPER else latency.median_ms
    return value - budget_ms


class Verdict(str, enum.Enum):
    """Whether a latency meets a budget, as far as its interval tells."""

    MET = "met"
    MISSED = "missed"
    UNDETERMINED = "undetermined"  # not met by the rule, but the budget lies inside the interval


def undecided(latency: Interval, budget_ms: float) -> bool:
    """The budget lies inside the interval: the measurement cannot say on which side the latency is."""
    return latency.low_ms <= budget_ms < latency.high_ms


def verdict(latency: Interval, budget_ms: float, rule: BudgetRule) -> Verdict:
    """Met by `rule`; else undetermined when the budget lies inside the interval, missed when the whole
    interval is above it."""
    if meets(latency, budget_ms, rule):
        return Verdict.MET
    return Verdict.UNDETERMINED if undecided(latency, budget_ms) else Verdict.MISSED


def fastest_tied(items: Sequence[T], latency: Callable[[T], Interval]) -> list[T]:
    """The fastest item (lowest median) and every item whose interval overlaps its interval."""
    if not items:
        return []
    head = min(items, key=lambda x: latency(x).median_ms)
    return [x for x in items if x is head or overlaps(latency(x), latency(head))]


def best_of_tied(items: Sequence[T], accuracy: Callable[[T], float], params: Callable[[T], int]) -> T:
    """Among items tied on latency: the most accurate, then the smallest."""
    return max(items, key=lambda x: (accuracy(x), -params(x)))


def choose(
    items: Sequence[T],
    latency: Callable[[T], Interval],
    accuracy: Callable[[T], float],
    params: Callable[[T], int],
    budget_ms: float,
    rule: BudgetRule,
) -> T:
    """The most accurate item that meets the budget (equal accuracy: the faster beyond the intervals,
    then the smaller); when none meets it, the best of those tied with the fastest."""
    within = [x for x in items if meets(latency(x), budget_ms, rule)]
    if not within:
        return best_of_tied(fastest_tied(items, latency), accuracy, params)
    top = max(accuracy(x) for x in within)
    level = [x for x in within if accuracy(x) == top]
    return best_of_tied(fastest_tied(level, latency), accuracy, params)


def dominates(a: tuple[Interval, float, int], b: tuple[Interval, float, int]) -> bool:
    """(latency, accuracy, params) `a` is at least as good as `b` and better somewhere: not clearly
    slower, at least as accurate, and clearly faster, or more accurate, or (tied) smaller."""
    (la, acc_a, pa), (lb, acc_b, pb) = a, b
    if clearly_faster(lb, la) or acc_a < acc_b:
        return False
    return clearly_faster(la, lb) or acc_a > acc_b or pa < pb


def front(points: Sequence[tuple[Interval, float, int]]) -> list[int]:
    """Indices of the points that no other point dominates, by median latency."""
    keep = [i for i, p in enumerate(points) if not any(dominates(q, p) for j, q in enumerate(points) if j != i)]
    return sorted(keep, key=lambda i: points[i][0].median_ms)


def check_floor(budget_ms: float, floor: RoundStats | None, where: str) -> None:
    """Refuse a budget below the per-call floor (the null model's median): no model can meet it."""
    if floor is None or budget_ms >= floor.median_ms:
        return
    raise UserError(
        f"budget {budget_ms:.4g} ms is below the per-call floor {floor.median_ms:.4g} ms"
        f" [{floor.ci_low_ms:.4g}-{floor.ci_high_ms:.4g}] measured on {where} (a model that computes nothing"
        f" takes that long); give a budget above it"
    )


def separable_budget(latencies: dict[str, Interval], anchor_ms: float) -> tuple[float, dict[str, Any]] | None:
    """A budget where the candidates differ beyond their intervals: in a gap that no candidate's interval
    covers (between the upper end of those below and the lower end of those above), `GAP_SHARE` of the
    way across it, the one nearest `anchor_ms` among the gaps at least `MIN_GAP` of that budget wide. None when the
    intervals leave no such gap: a hairline gap between two runs' intervals does not hold in the next run
    (a budget placed in a 1% gap on a busy machine is one the selection then missed). Returns the budget
    and why."""
    names = sorted(latencies, key=lambda n: latencies[n].low_ms)
    gaps = []
    reach = names[0] if names else ""
    for name in names[1:]:
        below, above = latencies[reach], latencies[name]
        if above.low_ms > below.high_ms:
            gaps.append((below.high_ms + GAP_SHARE * (above.low_ms - below.high_ms), reach, name))
        if above.high_ms > below.high_ms:
            reach = name
    if not gaps:
        return None

    def rel(gap: tuple[float, str, str]) -> float:
        return (latencies[gap[2]].low_ms - latencies[gap[1]].high_ms) / gap[0]

    wide = [g for g in gaps if rel(g) >= MIN_GAP]
    if not wide:
        return None
    budget, fast, slow = min(wide, key=lambda g: abs(g[0] - anchor_ms))
    return budget, {
        "anchor_ms": anchor_ms,
        "faster": fast,
        "faster_ci_high_ms": latencies[fast].high_ms,
        "slower": slow,
        "slower_ci_low_ms": latencies[slow].low_ms,
        "gaps": len(gaps),
        "gap_rel": rel((budget, fast, slow)),
    }


def reachable_budget(latencies: dict[str, Interval], anchor_ms: float) -> tuple[float, dict[str, Any]]:
    """The budget when no wide gap separates the candidates' intervals (`separable_budget` gives None): the
    anchor, raised where needed so that the candidate with the lowest upper end meets it with `MIN_GAP`
    to spare. Below that, no candidate could meet the budget, and the selection would only report the
    fastest as a miss. Returns the budget and why."""
    fastest = min(latencies, key=lambda n: latencies[n].high_ms)
    reach = latencies[fastest].high_ms * (1.0 + MIN_GAP)
    return max(anchor_ms, reach), {
        "anchor_ms": anchor_ms,
        "no_gap": True,
        "fastest": fastest,
        "fastest_ci_high_ms": latencies[fastest].high_ms,
        "raised": reach > anchor_ms,
    }
