"""Latency screening: which candidates of a space can meet the budget, decided before any training.

The latency predictor (`edgekd.select.predictor`), fitted on a few probe candidates measured whole,
estimates every candidate; the ones predicted at or below the budget plus a margin (twice the
predictor's leave-one-out error, at least 10%: a candidate the predictor overestimates is still
measured) are measured (`measure_candidate`: an untrained copy built for the target, THE timing loop,
cached in the store), and only those measured at or below the budget go on. A space no larger than the
probe count is simply measured whole. When nothing meets the budget, the fastest measured candidate
goes on alone and the screening says by how much it misses.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgekd.bench import TimingConfig
from edgekd.config import TargetProfile
from edgekd.select.latency import measure_candidate
from edgekd.select.predictor import LatencyPredictor, choose_probes
from edgekd.select.space import Candidate
from edgekd.store import Store

MIN_MARGIN = 0.10
FASTEST_TO_MEASURE = 3  # when every prediction is over the budget, confirm the fastest few by measuring


@dataclass(frozen=True)
class Screened:
    """A candidate's latency on the target: predicted (None when the space was measured whole) and
    measured (None when the prediction put it clearly over the budget)."""

    candidate: Candidate
    predicted_ms: float | None
    measured_ms: float | None
    probe: bool = False

    @property
    def latency_ms(self) -> float:
        """The best knowledge of its latency: the measurement, else the prediction."""
        value = self.measured_ms if self.measured_ms is not None else self.predicted_ms
        assert value is not None
        return value


@dataclass(frozen=True)
class Screening:
    rows: tuple[Screened, ...]
    survivors: tuple[Screened, ...]
    budget_ms: float
    margin: float | None  # relative margin above the budget within which predictions were measured
    mape_pct: float | None  # the predictor's error on measured candidates it was not fitted on
    mape_count: int

    @property
    def met(self) -> bool:
        return any(s.measured_ms is not None and s.measured_ms <= self.budget_ms for s in self.survivors)

    @property
    def missed_by_ms(self) -> float | None:
        return None if self.met else self.survivors[0].latency_ms - self.budget_ms


def screen(
    candidates: list[Candidate],
    profile: TargetProfile,
    budget_ms: float,
    workdir: Path,
    store: Store,
    timing: TimingConfig | None = None,
    *,
    probes: int = 8,
) -> Screening:
    """Predict, then measure near or below the budget, and keep what measures within it."""
    if len(candidates) <= probes:
        measured = {c.key: measure_candidate(c, profile, workdir, store, timing).p50_ms for c in candidates}
        rows = tuple(Screened(c, None, measured[c.key]) for c in candidates)
        return _decide(rows, budget_ms, None, None, 0)
    chosen = choose_probes(candidates, probes)
    predictor = LatencyPredictor.fit(chosen, profile, workdir, store, timing)
    predictor.save(workdir / "latency_predictor.json")
    predicted = {c.key: predictor.predict(c) for c in candidates}
    margin = max(MIN_MARGIN, 2.0 * _loo_mape(predictor) / 100.0)
    probe_keys = {c.key for c in chosen}
    near = [c for c in candidates if c.key in probe_keys or predicted[c.key] <= budget_ms * (1 + margin)]
    if not any(predicted[c.key] <= budget_ms * (1 + margin) for c in candidates):
        near += sorted(candidates, key=lambda c: predicted[c.key])[:FASTEST_TO_MEASURE]
    measured = {c.key: measure_candidate(c, profile, workdir, store, timing).p50_ms for c in near}
    held_out = {k: v for k, v in measured.items() if k not in probe_keys}
    mape = predictor.mape(held_out, candidates) if held_out else None
    rows = tuple(Screened(c, predicted[c.key], measured.get(c.key), c.key in probe_keys) for c in candidates)
    return _decide(rows, budget_ms, margin, mape, len(held_out))


def _decide(
    rows: tuple[Screened, ...], budget_ms: float, margin: float | None, mape: float | None, count: int
) -> Screening:
    measured = [r for r in rows if r.measured_ms is not None]
    within = tuple(r for r in measured if r.measured_ms is not None and r.measured_ms <= budget_ms)
    survivors = within or (min(measured, key=lambda r: r.latency_ms),)
    return Screening(rows, survivors, budget_ms, margin, mape, count)


def _loo_mape(predictor: LatencyPredictor) -> float:
    by_vector = predictor.fit_info.get("loo_mape_by_vector") or {}
    return float(by_vector.get(str(predictor.vector), 0.0))
