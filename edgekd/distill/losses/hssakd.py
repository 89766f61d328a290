"""HSSAKD's distillation terms (Yang, An, Cai & Xu, TNNLS 2022, arXiv 2109.03075; PAPERS.md section 4).

On a batch holding every image at 0, 90, 180 and 270 degrees: `KL_T` between the teacher's and the
student's joint (class x rotation, 4C-way) distributions of each auxiliary branch, plus `KL_T` between
their final logits over all four rotations, `KL_T = T^2 * batchmean KL(p_T || q_T)` with T = 3 (the
authors' `HSAKD` loss and `train_student_cifar.py`). The CE term on the unrotated images, the rotations
and the branches themselves live in the task, `edgekd.distill.hssakd`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from edgekd.distill.losses import LOSSES
from edgekd.distill.losses.kd import soft_kl
from edgekd.distill.taps import Taps

BRANCH = "branch"  # tap-name prefix of the branches' joint logits, numbered shallow to deep: branch0, ...


def branch_tap(i: int) -> str:
    return f"{BRANCH}{i}"


def hssakd_divergence(s: Taps, t: Taps, temperature: float) -> Tensor:
    """`KL_T` summed over the final logits and every branch the teacher has (student branch i to teacher's i)."""
    names = ["logits", *(name for name in t if name.startswith(BRANCH))]
    return torch.stack([soft_kl(s[name], t[name].detach(), temperature) for name in names]).sum()


@LOSSES.register("hssakd")
class HSSAKD(nn.Module):
    """KL_T on every branch's joint distribution and on the final logits, over the rotated batch."""

    def __init__(self, temperature: float = 3.0) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError("temperature must be positive")
        self.temperature = temperature

    def forward(self, s: Taps, t: Taps, target: Tensor) -> Tensor:
        return hssakd_divergence(s, t, self.temperature)
