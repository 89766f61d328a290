"""Knowledge-distillation losses, one file per method family, registered by name.

Every loss has one signature: `forward(student_taps, teacher_taps, target) -> Tensor`, where taps
map a tap name to a tensor (`"logits"` is always present). Hyperparameters are constructor
arguments; the weights of the terms and their schedules live in the distillation task.
"""

from __future__ import annotations

from torch import nn

from edgekd.registry import Registry

#: Filled by the modules of this package (one file per method family), imported on the first lookup.
LOSSES: Registry[nn.Module] = Registry("distillation method", package=__name__)

__all__ = ["LOSSES"]
