"""Latency screening: which candidates of a space can meet the budget, decided before any training.

The latency predictor (`edgekd.select.predictor`), fitted on a few probe candidates measured whole,
estimates every candidate; the ones predicted at or below the budget plus a margin (twice the
predictor's leave-one-out error, at least 10%: a candidate the predictor overestimates is still
measured) are measured (`measure_candidates`: untrained copies built for the target, side by side in
interleaved rounds beside a null model, cached in the store), and only those whose interval meets the
budget by the budget rule (`intervals.BudgetRule`) go on. A space no larger than the probe count is
simply measured whole. A budget below the measured per-call floor is refused. When nothing meets the
budget, the fastest measured candidate and every one tied with it (overlapping intervals) go on, and
the screening says by how much the fastest misses.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from edgekd.bench import TimingConfig
from edgekd.bench.protocol import RoundStats, StopRule
from edgekd.config import TargetProfile
from edgekd.select.intervals import BudgetRule, Interval, check_floor, fastest_tied, meets, missed_by
from edgekd.select.latency import LatencyResult, drift, drift_message, measure_candidates, target_fields
from edgekd.select.predictor import LatencyPredictor, choose_probes
from edgekd.select.space import Candidate
from edgekd.store import Store

MIN_MARGIN = 0.10
FASTEST_TO_MEASURE = 3  # when every prediction is over the budget, confirm the fastest few by measuring


@dataclass(frozen=True)
class Screened:
    """A candidate's latency on the target: predicted (None when the space was measured whole) and
    measured (the median over rounds, with `stats`; None when the prediction put it clearly over)."""

    candidate: Candidate
    predicted_ms: float | None
    measured_ms: float | None
    probe: bool = False
    stats: RoundStats | None = None

    @property
    def latency_ms(self) -> float:
        """The best knowledge of its latency: the measurement, else the prediction."""
        value = self.measured_ms if self.measured_ms is not None else self.predicted_ms
        assert value is not None
        return value

    @property
    def interval(self) -> Interval:
        """The measured interval; a prediction or an interval-less measurement is a point."""
        return Interval.of(self.stats) if self.stats is not None else Interval.point(self.latency_ms)


@dataclass(frozen=True)
class Screening:
    rows: tuple[Screened, ...]
    survivors: tuple[Screened, ...]
    budget_ms: float
    margin: float | None  # relative margin above the budget within which predictions were measured
    mape_pct: float | None  # the predictor's error on measured candidates it was not fitted on
    mape_count: int
    budget_rule: BudgetRule = BudgetRule.UPPER
    floor: RoundStats | None = None  # the per-call floor (null model) measured beside the candidates
    drift: dict[str, Any] | None = None  # every re-measured candidate moved beyond its cached interval

    @property
    def met(self) -> bool:
        return any(
            s.measured_ms is not None and meets(s.interval, self.budget_ms, self.budget_rule) for s in self.survivors
        )

    @property
    def missed_by_ms(self) -> float | None:
        return None if self.met else missed_by(self.survivors[0].interval, self.budget_ms, self.budget_rule)


def screen(
    candidates: list[Candidate],
    profile: TargetProfile,
    budget_ms: float,
    workdir: Path,
    store: Store,
    timing: TimingConfig | None = None,
    *,
    probes: int = 8,
    rule: StopRule | None = None,
    budget_rule: BudgetRule = BudgetRule.UPPER,
) -> Screening:
    """Predict, then measure near or below the budget, and keep what meets it by `budget_rule`."""

    def measure(some: list[Candidate]) -> dict[str, LatencyResult]:
        return measure_candidates(some, profile, workdir, store, timing, rule) if some else {}

    if len(candidates) <= probes:
        measured = measure(candidates)
        floor = _floor(measured)
        check_floor(budget_ms, floor, profile.name)
        rows = tuple(Screened(c, None, measured[c.key].p50_ms, False, measured[c.key].stats) for c in candidates)
        return _noting_drift(_decide(rows, budget_ms, None, None, 0, budget_rule, floor), measured, profile.name)
    chosen = choose_probes(candidates, probes)
    probed = measure(chosen)
    floor = _floor(probed)
    check_floor(budget_ms, floor, profile.name)  # before measuring any more
    predictor = _fit(chosen, probed, profile)
    predictor.save(workdir / "latency_predictor.json")
    predicted = {c.key: predictor.predict(c) for c in candidates}
    margin = max(MIN_MARGIN, 2.0 * _loo_mape(predictor) / 100.0)
    probe_keys = {c.key for c in chosen}
    near = [c for c in candidates if c.key not in probe_keys and predicted[c.key] <= budget_ms * (1 + margin)]
    if not any(predicted[c.key] <= budget_ms * (1 + margin) for c in candidates):
        fastest = sorted(candidates, key=lambda c: predicted[c.key])[:FASTEST_TO_MEASURE]
        near += [c for c in fastest if c.key not in probe_keys and c not in near]
    measured = {**probed, **measure(near)}
    held_out = {k: v.p50_ms for k, v in measured.items() if k not in probe_keys}
    mape = predictor.mape(held_out, candidates) if held_out else None
    rows = tuple(
        Screened(
            c,
            predicted[c.key],
            measured[c.key].p50_ms if c.key in measured else None,
            c.key in probe_keys,
            measured[c.key].stats if c.key in measured else None,
        )
        for c in candidates
    )
    return _noting_drift(
        _decide(rows, budget_ms, margin, mape, len(held_out), budget_rule, floor), measured, profile.name
    )


def _noting_drift(screening: Screening, measured: dict[str, LatencyResult], target: str) -> Screening:
    """The screening with the drift of its re-measured candidates (`latency.drift`), warned of on stderr."""
    moved = drift(measured.values())
    if moved is None:
        return screening
    from edgekd.ui import console

    console.print(f"[bold yellow]warning[/]: {drift_message(moved, target)}")
    return replace(screening, drift=moved)


def _fit(chosen: list[Candidate], probed: dict[str, LatencyResult], profile: TargetProfile) -> LatencyPredictor:
    from edgekd.runtimes import get_runtime

    target = {"name": profile.name, **target_fields(profile, get_runtime(profile.runtime).version())}
    return LatencyPredictor.fit_measured(chosen, {k: r.p50_ms for k, r in probed.items()}, target)


def _floor(measured: dict[str, LatencyResult]) -> RoundStats | None:
    """The floor measured beside these candidates: a fresh measurement's, else a cached one's."""
    ranked = sorted(measured.values(), key=lambda r: r.cached)
    return next((r.floor for r in ranked if r.floor is not None), None)


def _decide(
    rows: tuple[Screened, ...],
    budget_ms: float,
    margin: float | None,
    mape: float | None,
    count: int,
    budget_rule: BudgetRule,
    floor: RoundStats | None,
) -> Screening:
    measured = [r for r in rows if r.measured_ms is not None]
    within = tuple(r for r in measured if meets(r.interval, budget_ms, budget_rule))
    tied = sorted(fastest_tied(measured, lambda r: r.interval), key=lambda r: r.latency_ms)
    survivors = within or tuple(tied)
    return Screening(rows, survivors, budget_ms, margin, mape, count, budget_rule, floor)


def _loo_mape(predictor: LatencyPredictor) -> float:
    if "loo_mape" in predictor.fit_info:
        return float(predictor.fit_info["loo_mape"])
    by_vector = predictor.fit_info.get("loo_mape_by_vector") or {}  # a predictor saved before `loo_mape`
    return float(by_vector.get(str(predictor.vector), 0.0))
