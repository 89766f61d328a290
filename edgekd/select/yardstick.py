"""How close a latency predictor comes to measured latency, in nn-Meter's terms and ours.

nn-Meter (Zhang et al., MobiSys 2021) headlines the share of predictions within +-10% of the measured
latency; it also reports RMSE. MAPE is the predictor's own fitting goal (`edgekd.select.predictor`).
Ranking is what selection needs most: Kendall's tau between the predicted and the measured order, and,
as the ceiling any predictor is judged against, tau between two independent measured orders of the same
candidates (the measurement's own repeatability).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from edgekd.errors import UserError

Values = Sequence[float] | np.ndarray


@dataclass(frozen=True)
class PredictionScore:
    """A predictor's error on `n` candidates: share within +-`tolerance`, RMSE (ms), MAPE (%), tau."""

    n: int
    tolerance: float
    within: float
    rmse_ms: float
    mape_pct: float
    tau: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _pair(predicted: Values, measured: Values) -> tuple[np.ndarray, np.ndarray]:
    p, m = np.asarray(predicted, dtype=np.float64), np.asarray(measured, dtype=np.float64)
    if p.shape != m.shape or p.ndim != 1 or p.size == 0:
        raise UserError(f"need two equally long, non-empty lists of latencies, got {p.shape} and {m.shape}")
    if not np.all(m > 0):
        raise UserError("measured latencies must be positive")
    return p, m


def within_share(predicted: Values, measured: Values, tolerance: float = 0.10) -> float:
    """The share (0..1) of predictions within +-`tolerance` (relative) of the measured latency."""
    p, m = _pair(predicted, measured)
    return float(np.mean(np.abs(p - m) <= tolerance * m + 1e-12))


def rmse(predicted: Values, measured: Values) -> float:
    p, m = _pair(predicted, measured)
    return float(np.sqrt(np.mean((p - m) ** 2)))


def mape(predicted: Values, measured: Values) -> float:
    """Mean absolute percentage error, %."""
    p, m = _pair(predicted, measured)
    return float(np.mean(np.abs(p - m) / m) * 100.0)


def kendall_tau(a: Values, b: Values) -> float:
    """Kendall's tau-b between two orderings of the same candidates (1: same order, -1: reversed)."""
    from scipy.stats import kendalltau

    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.size < 2:
        raise UserError(f"Kendall's tau needs two equally long lists of at least 2, got {x.size} and {y.size}")
    tau = float(kendalltau(x, y).statistic)
    return tau if np.isfinite(tau) else 0.0


def score(predicted: Values, measured: Values, tolerance: float = 0.10) -> PredictionScore:
    """Every metric of `predicted` against `measured` (ms, in the same candidate order)."""
    p, m = _pair(predicted, measured)
    return PredictionScore(
        n=int(p.size),
        tolerance=tolerance,
        within=within_share(p, m, tolerance),
        rmse_ms=rmse(p, m),
        mape_pct=mape(p, m),
        tau=kendall_tau(p, m) if p.size > 1 else float("nan"),
    )
