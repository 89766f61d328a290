"""Layer-weight schedules give the documented values."""

from __future__ import annotations

import pytest

from edgekd.distill.schedules import SCHEDULES, CriticalPeriod, Schedule, resolve_schedule
from edgekd.errors import UserError


def test_registered_names() -> None:
    assert SCHEDULES.names() == ["constant", "critical-period", "last-only", "linear-decay"]
    for name in SCHEDULES.names():
        assert isinstance(SCHEDULES.create(name), Schedule)


@pytest.mark.parametrize(
    ("progress", "intermediate"),
    [(0.0, 100.0), (1 / 50, 70.0), (2 / 50, 49.0), (11 / 50, 100 * 0.7**11), (1.0, 100 * 0.7**50)],
)
def test_critical_period_on_the_authors_50_epoch_scale(progress: float, intermediate: float) -> None:
    w = SCHEDULES.create("critical-period").weights(progress, 4)
    assert w == pytest.approx([intermediate] * 3 + [1.0], rel=1e-12)


def test_critical_period_compresses_short_runs() -> None:
    # 10 epochs: after epoch 1 of 10 (progress 0.1) it is the authors' epoch 5
    assert CriticalPeriod().weights(0.1, 2)[0] == pytest.approx(100 * 0.7**5)
    assert 1.9 < CriticalPeriod().weights(11 / 50, 2)[0] < 2.0  # "about 2 after 11 epochs"
    assert CriticalPeriod().weights(26 / 50, 2)[0] < 0.01


def test_constant_linear_and_last_only() -> None:
    assert SCHEDULES.create("constant").weights(0.3, 3) == [1.0, 1.0, 1.0]
    assert SCHEDULES.create("linear-decay").weights(0.0, 3) == [100.0, 100.0, 1.0]
    assert SCHEDULES.create("linear-decay").weights(0.25, 3) == [75.0, 75.0, 1.0]
    assert SCHEDULES.create("linear-decay", initial=2.0).weights(1.0, 2) == [0.0, 1.0]
    assert SCHEDULES.create("last-only").weights(0.5, 3) == [0.0, 0.0, 1.0]


@pytest.mark.parametrize("name", ["constant", "critical-period", "last-only", "linear-decay"])
def test_one_pair_is_the_last_pair(name: str) -> None:
    assert SCHEDULES.create(name).weights(0.5, 1) == [1.0]


@pytest.mark.parametrize("name", ["constant", "critical-period", "last-only", "linear-decay"])
def test_rejects_progress_outside_unit_interval_and_no_pairs(name: str) -> None:
    schedule = SCHEDULES.create(name)
    for bad in (-0.01, 1.01):
        with pytest.raises(ValueError, match="progress"):
            schedule.weights(bad, 2)
    with pytest.raises(ValueError, match="pair"):
        schedule.weights(0.5, 0)


def test_resolve_schedule() -> None:
    obj = CriticalPeriod(initial=10.0)
    assert resolve_schedule(obj) is obj
    assert isinstance(resolve_schedule("constant"), Schedule)
    with pytest.raises(UserError, match="critical-period"):
        resolve_schedule("cosine")
    with pytest.raises(UserError, match="not a schedule"):
        resolve_schedule(3)  # type: ignore[arg-type]
    with pytest.raises(UserError):
        CriticalPeriod(decay=1.5)
