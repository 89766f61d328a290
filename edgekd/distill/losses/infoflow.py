"""Information-flow KD (Passalis, Tzelepi & Tefas, CVPR 2020, arXiv 2005.00727).

Per pair: the cosine kernel and the T-student kernel `1 / (1 + ||x_i - x_j||)` of each side,
row-normalised, compared by the Jeffreys divergence, the two kernel terms added (pkth
`nn/pkt_transfer.py`, `prob_loss` with kernel and loss `combined`). Pairs run shallow to deep; the loss
is `sum_l w_l * D_l` with weights from a schedule (by default the critical period: intermediate pairs
100 * 0.7^epoch, the last 1). The authors pair four points, hence `default_n_pairs = 4`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from edgekd.distill.kernels import (
    DIVERGENCE_EPS,
    PKTH_EPS,
    cosine_kernel,
    jeffreys,
    row_normalise,
    tstudent_kernel,
)
from edgekd.distill.losses import LOSSES
from edgekd.distill.pairing import LayerPair, as_pairs, layers_of, pair_features
from edgekd.distill.schedules import Schedule, resolve_schedule
from edgekd.distill.taps import Taps


def infoflow_divergence(
    student: Tensor, teacher: Tensor, eps: float = DIVERGENCE_EPS, kernel_eps: float = PKTH_EPS
) -> Tensor:
    """Jeffreys(cosine kernels) + Jeffreys(T-student kernels) for one pair of B x ... features."""
    total = student.new_zeros(())
    for kernel in (cosine_kernel, tstudent_kernel):
        p = row_normalise(kernel(teacher, kernel_eps))
        q = row_normalise(kernel(student, kernel_eps))
        total = total + jeffreys(p, q, eps)
    return total


@LOSSES.register("infoflow")
class InformationFlow(nn.Module):
    """Schedule-weighted sum of per-pair divergences; call `set_progress` once per epoch."""

    default_n_pairs = 4  # three conv blocks and the penultimate representation

    def __init__(
        self,
        pairs: Sequence[LayerPair],
        schedule: Schedule | str = "critical-period",
        eps: float = DIVERGENCE_EPS,
        kernel_eps: float = PKTH_EPS,
    ) -> None:
        super().__init__()
        self.pairs = as_pairs(pairs)
        self.schedule = resolve_schedule(schedule)
        self.eps, self.kernel_eps = eps, kernel_eps
        self.student_layers = layers_of(self.pairs, 0)
        self.teacher_layers = layers_of(self.pairs, 1)
        self.last_weights: tuple[float, ...] = ()
        self.set_progress(0.0)

    def set_progress(self, progress: float) -> None:
        """Take the schedule's weights at `progress` (epochs done / total epochs) until the next call."""
        self.last_weights = tuple(self.schedule.weights(progress, len(self.pairs)))

    def forward(self, s: Taps, t: Taps, target: Tensor) -> Tensor:
        terms = [
            weight * infoflow_divergence(*pair_features(s, t, pair), self.eps, self.kernel_eps)
            for weight, pair in zip(self.last_weights, self.pairs, strict=True)
            if weight != 0.0  # e.g. last-only: skip those pairs' kernels entirely
        ]
        if not terms:
            raise ValueError(f"every layer weight is 0 at this progress: {self.last_weights}")
        return torch.stack(terms).sum()
