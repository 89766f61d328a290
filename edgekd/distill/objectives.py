"""What a training step minimises: labels alone (teachers, baselines) or labels plus distillation.

The weights of the terms live here, in the task, not in the losses (see `edgekd.distill.losses`).
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edgekd.distill.cache import LOGITS, CachedTeacher, CacheSpec
from edgekd.distill.losses.kd import soft_kl
from edgekd.distill.taps import Taps, tapped
from edgekd.models import memory_format_for, to_layout


class Objective(Protocol):
    def attach(self, student: nn.Module, stack: ExitStack) -> None:
        """Install what the objective needs for the run (hooks), undone when `stack` closes."""

    def on_epoch(self, progress: float) -> dict[str, float]:
        """Called at the start of each epoch with progress in [0, 1); returns values to log."""

    def __call__(
        self, student: nn.Module, x: Tensor, y: Tensor, index: np.ndarray | None = None
    ) -> tuple[Tensor, Tensor]:
        """(loss, student logits) for one batch; `index` holds the batch's rows: `sample * views + view`
        (the sample indices in the data without augmentation). `y` holds class indices, or soft targets
        (B x classes) under mixup."""


class Supervised:
    """Cross-entropy on the labels."""

    def attach(self, student: nn.Module, stack: ExitStack) -> None:
        return None

    def on_epoch(self, progress: float) -> dict[str, float]:
        return {}

    def __call__(
        self, student: nn.Module, x: Tensor, y: Tensor, index: np.ndarray | None = None
    ) -> tuple[Tensor, Tensor]:
        logits = student(x)
        return F.cross_entropy(logits, y), logits


@dataclass
class Distillation:
    """`ce_weight * CE(student, labels) + kd_weight * loss(student taps, teacher taps)`, plus
    `logit_weight * T^2 KL(teacher || student)` at `logit_temperature` when `logit_weight` is set.

    The teacher is frozen, in eval mode, and never wrapped for data parallelism, and it sees the very
    batch the student sees (augmented, mixed). With a `cache`, its logits and taps are recorded by row
    (sample and view, `edgekd.distill.cache`) and read back afterwards: in the first epoch with one view
    per sample, or for every view before training (`fill_cache`) with several. Losses get hard labels;
    cross-entropy takes soft targets as they come (mixup).
    """

    teacher: nn.Module
    loss: nn.Module
    ce_weight: float = 0.5
    kd_weight: float = 0.5
    cache: CacheSpec | None = None
    logit_weight: float = 0.0
    logit_temperature: float = 1.0
    _student_taps: Taps = field(default_factory=dict)
    _teacher_taps: Taps = field(default_factory=dict)
    _cached: CachedTeacher | None = None

    def attach(self, student: nn.Module, stack: ExitStack) -> None:
        device = next(student.parameters(), torch.empty(0)).device
        to_layout(self.teacher, device, memory_format_for(self.teacher)).eval().requires_grad_(False)
        self._student_taps = stack.enter_context(tapped(student, getattr(self.loss, "student_layers", ())))
        teacher_layers = tuple(getattr(self.loss, "teacher_layers", ()))
        self._teacher_taps = stack.enter_context(tapped(self.teacher, teacher_layers))
        self._cached = None
        if self.cache is not None:
            self._cached = self.cache.open(self.teacher, (LOGITS, *teacher_layers), self.live_taps, stack)

    def on_epoch(self, progress: float) -> dict[str, float]:
        logged = self._cached.on_epoch() if self._cached is not None else {}
        set_progress = getattr(self.loss, "set_progress", None)
        if set_progress is None:
            return logged
        set_progress(progress)
        weights = getattr(self.loss, "last_weights", [])
        return {**logged, **{f"pair_weight_{i}": float(w) for i, w in enumerate(weights)}}

    def fill_cache(self, views: Iterable[tuple[Tensor, np.ndarray]]) -> None:
        """Record the teacher's outputs on every (views, rows) batch, unless the cache is complete already
        (then `views` is not consumed: building the views costs nothing)."""
        cached = self._cached
        if cached is None or cached.arrays is not None:
            return
        for x, rows in views:
            cached(x, rows)
            if cached.arrays is not None or not cached.enabled:  # complete, or given up (no room): train on
                return

    def live_taps(self, x: Tensor) -> Taps:
        """Run the teacher: its logits and tapped outputs (a fresh dict: the hooks refill theirs)."""
        with torch.no_grad():
            logits = self.teacher(x)
        return {**self._teacher_taps, LOGITS: logits}

    def teacher_logits(self, x: Tensor) -> Tensor:
        return self.live_taps(x)[LOGITS]

    def teacher_taps(self, x: Tensor, index: np.ndarray | None = None) -> Taps:
        """The teacher's logits and taps for a batch: read from the cache when there is one and `index` is known."""
        cached = self._cached
        return cached(x, index) if cached is not None and index is not None else self.live_taps(x)

    def __call__(
        self, student: nn.Module, x: Tensor, y: Tensor, index: np.ndarray | None = None
    ) -> tuple[Tensor, Tensor]:
        logits = student(x)
        t_taps = self.teacher_taps(x, index)
        s_taps = {**self._student_taps, LOGITS: logits}
        kd = self.loss(s_taps, t_taps, y.argmax(1) if y.is_floating_point() else y)
        loss = self.kd_weight * kd
        if self.ce_weight:
            loss = loss + self.ce_weight * F.cross_entropy(logits, y)
        if self.logit_weight:
            loss = loss + self.logit_weight * soft_kl(logits, t_taps[LOGITS].detach(), self.logit_temperature)
        return loss, logits
