"""Hinton KD: `T^2 * KL(softmax(t / T) || softmax(s / T))` on the logits (Hinton et al., 2015)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from edgekd.distill.losses import LOSSES
from edgekd.distill.taps import Taps


def soft_kl(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """Batch-mean KL between temperature-softened distributions, scaled by T^2 to keep gradients level."""
    log_q = F.log_softmax(student_logits / temperature, dim=1)
    log_p = F.log_softmax(teacher_logits / temperature, dim=1)
    return F.kl_div(log_q, log_p, log_target=True, reduction="batchmean") * temperature**2


@LOSSES.register("kd")
class HintonKD(nn.Module):
    """Soft-label distillation on the final logits."""

    taps: tuple[str, ...] = ()  # logits only

    def __init__(self, temperature: float = 4.0) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError("temperature must be positive")
        self.temperature = temperature

    def forward(self, s: Taps, t: Taps, target: Tensor) -> Tensor:
        return soft_kl(s["logits"], t["logits"].detach(), self.temperature)
