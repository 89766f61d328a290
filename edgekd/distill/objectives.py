"""What a training step minimises: labels alone (teachers, baselines) or labels plus distillation.

The weights of the terms live here, in the task, not in the losses (see `edgekd.distill.losses`).
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edgekd.distill.taps import Taps, tapped


class Objective(Protocol):
    def attach(self, student: nn.Module, stack: ExitStack) -> None:
        """Install what the objective needs for the run (hooks), undone when `stack` closes."""

    def on_epoch(self, progress: float) -> dict[str, float]:
        """Called at the start of each epoch with progress in [0, 1); returns values to log."""

    def __call__(self, student: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """(loss, student logits) for one batch."""


class Supervised:
    """Cross-entropy on the labels."""

    def attach(self, student: nn.Module, stack: ExitStack) -> None:
        return None

    def on_epoch(self, progress: float) -> dict[str, float]:
        return {}

    def __call__(self, student: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        logits = student(x)
        return F.cross_entropy(logits, y), logits


@dataclass
class Distillation:
    """`ce_weight * CE(student, labels) + kd_weight * loss(student taps, teacher taps)`.

    The teacher is frozen, in eval mode, and never wrapped for data parallelism.
    """

    teacher: nn.Module
    loss: nn.Module
    ce_weight: float = 0.5
    kd_weight: float = 0.5
    _student_taps: Taps = field(default_factory=dict)
    _teacher_taps: Taps = field(default_factory=dict)

    def attach(self, student: nn.Module, stack: ExitStack) -> None:
        self.teacher.eval().requires_grad_(False)
        self._student_taps = stack.enter_context(tapped(student, getattr(self.loss, "student_layers", ())))
        self._teacher_taps = stack.enter_context(tapped(self.teacher, getattr(self.loss, "teacher_layers", ())))

    def on_epoch(self, progress: float) -> dict[str, float]:
        set_progress = getattr(self.loss, "set_progress", None)
        if set_progress is None:
            return {}
        set_progress(progress)
        weights = getattr(self.loss, "last_weights", [])
        return {f"pair_weight_{i}": float(w) for i, w in enumerate(weights)}

    def teacher_logits(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            return self.teacher(x)

    def __call__(self, student: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        logits = student(x)
        t_logits = self.teacher_logits(x)
        s_taps = {**self._student_taps, "logits": logits}
        t_taps = {**self._teacher_taps, "logits": t_logits}
        kd = self.loss(s_taps, t_taps, y)
        loss = self.kd_weight * kd
        if self.ce_weight:
            loss = loss + self.ce_weight * F.cross_entropy(logits, y)
        return loss, logits
