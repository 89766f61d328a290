"""The predictor's yardstick metrics on numbers worked out by hand."""

from __future__ import annotations

import math

import pytest

from edgekd.errors import UserError
from edgekd.select.yardstick import kendall_tau, mape, rmse, score, within_share


def test_within_share_counts_the_10_percent_band_inclusively() -> None:
    measured = [1.0, 2.0, 4.0, 10.0]
    predicted = [1.1, 1.7, 4.0, 11.5]  # +10% (in), -15% (out), 0% (in), +15% (out)
    assert within_share(predicted, measured) == 0.5
    assert within_share(predicted, measured, tolerance=0.2) == 1.0


def test_rmse_and_mape() -> None:
    assert rmse([1.0, 3.0], [2.0, 2.0]) == pytest.approx(1.0)
    assert mape([1.1, 1.8], [1.0, 2.0]) == pytest.approx(10.0)


def test_kendall_tau_of_same_reversed_and_one_swap() -> None:
    a = [1.0, 2.0, 3.0, 4.0]
    assert kendall_tau(a, [10, 20, 30, 40]) == pytest.approx(1.0)
    assert kendall_tau(a, [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert kendall_tau(a, [1, 3, 2, 4]) == pytest.approx(4 / 6)  # 5 concordant, 1 discordant of 6 pairs
    assert kendall_tau([1.0, 1.0], [2.0, 3.0]) == 0.0  # no order on one side: no information, not NaN


def test_score_collects_everything() -> None:
    s = score([1.05, 2.5, 2.9], [1.0, 2.0, 3.0])
    assert s.n == 3 and s.within == pytest.approx(2 / 3)
    assert s.mape_pct == pytest.approx((5 + 25 + 100 / 30) / 3)
    assert s.tau == pytest.approx(1.0)
    assert math.isnan(score([1.0], [1.0]).tau)
    assert set(s.to_json()) == {"n", "tolerance", "within", "rmse_ms", "mape_pct", "tau"}


@pytest.mark.parametrize("predicted, measured", [([1.0], [1.0, 2.0]), ([], []), ([1.0], [0.0])])
def test_bad_inputs_are_user_errors(predicted: list[float], measured: list[float]) -> None:
    with pytest.raises(UserError):
        score(predicted, measured)
