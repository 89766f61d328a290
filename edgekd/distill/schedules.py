"""Layer-weight schedules: how much each layer pair counts at a given point of training.

A schedule is asked for `weights(progress, n_pairs)`, with progress = epochs done / total epochs in
[0, 1] and pairs ordered shallow to deep: the last pair is the final (penultimate) representation.
Losses that weight layers hold a schedule; the trainer only reports progress (`set_progress`).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from edgekd.errors import UserError
from edgekd.registry import Registry


@runtime_checkable
class Schedule(Protocol):
    """Weights of the layer pairs, shallow to deep, at a point of training."""

    def weights(self, progress: float, n_pairs: int) -> list[float]: ...


SCHEDULES: Registry[Schedule] = Registry("layer-weight schedule")


def _check(progress: float, n_pairs: int) -> None:
    if not 0.0 <= progress <= 1.0:
        raise ValueError(f"progress must lie in [0, 1], got {progress}")
    if n_pairs < 1:
        raise ValueError(f"a schedule needs at least one layer pair, got {n_pairs}")


def _intermediate_then_last(intermediate: float, n_pairs: int, last: float = 1.0) -> list[float]:
    return [intermediate] * (n_pairs - 1) + [last]


@SCHEDULES.register("critical-period")
class CriticalPeriod:
    """Intermediate pairs `initial * decay ** epoch`, the last pair 1 (pkth `cifar10/exp2_proposed.py`).

    The authors start at 100 and multiply by 0.7 after each of their 50 epochs. edgekd reads the
    epoch on that 50-epoch scale, `epoch = progress * epochs`, continuously, so a 10-epoch run passes
    through the same weights five times faster (and at progress k/50 it matches the authors exactly).
    With `epochs` = the run's own epoch count (`per_epoch`, what `--recipe pkth` uses) the epoch read is
    the real one: 100 * 0.7^epoch whatever the run's length, as in the authors' code.
    """

    def __init__(self, initial: float = 100.0, decay: float = 0.7, epochs: float = 50.0) -> None:
        if initial < 0 or not 0.0 < decay <= 1.0 or epochs <= 0:
            raise UserError("critical-period needs initial >= 0, 0 < decay <= 1 and epochs > 0")
        self.initial, self.decay, self.epochs = initial, decay, epochs

    def weights(self, progress: float, n_pairs: int) -> list[float]:
        _check(progress, n_pairs)
        epoch = progress * self.epochs
        epoch = round(epoch) if abs(epoch - round(epoch)) < 1e-9 else epoch  # k / E * E is k, not k - 1e-16
        return _intermediate_then_last(self.initial * self.decay**epoch, n_pairs)


def per_epoch(run_epochs: int, initial: float = 100.0, decay: float = 0.7) -> CriticalPeriod:
    """The authors' critical period on their scale: intermediate pairs `initial * decay ** epoch` at
    the start of each real epoch of a `run_epochs`-epoch run (epoch 0: 100, epoch 13: 0.97), the last 1."""
    return CriticalPeriod(initial, decay, float(run_epochs))


@SCHEDULES.register("constant")
class Constant:
    """Every pair weighs 1 (the ablation without a critical period)."""

    def weights(self, progress: float, n_pairs: int) -> list[float]:
        _check(progress, n_pairs)
        return [1.0] * n_pairs


@SCHEDULES.register("linear-decay")
class LinearDecay:
    """Intermediate pairs `initial * (1 - progress)`, the last pair 1.

    edgekd's ablation, not the authors': the default start of 100 matches critical-period's, so the
    two differ only in the shape of the decay.
    """

    def __init__(self, initial: float = 100.0) -> None:
        if initial < 0:
            raise UserError("linear-decay needs initial >= 0")
        self.initial = initial

    def weights(self, progress: float, n_pairs: int) -> list[float]:
        _check(progress, n_pairs)
        return _intermediate_then_last(self.initial * (1.0 - progress), n_pairs)


@SCHEDULES.register("last-only")
class LastOnly:
    """Only the final representation counts: intermediate pairs 0, the last 1."""

    def weights(self, progress: float, n_pairs: int) -> list[float]:
        _check(progress, n_pairs)
        return _intermediate_then_last(0.0, n_pairs)


def resolve_schedule(schedule: Schedule | str) -> Schedule:
    """A schedule object, or a registered name created with its defaults."""
    if isinstance(schedule, str):
        return SCHEDULES.create(schedule)
    if not isinstance(schedule, Schedule):
        raise UserError(f"not a schedule: {schedule!r}; known names: {', '.join(SCHEDULES.names())}")
    return schedule
