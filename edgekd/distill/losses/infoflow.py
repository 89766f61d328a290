"""Information-flow KD (Passalis, Tzelepi & Tefas, CVPR 2020, arXiv 2005.00727).

Per pair: the cosine kernel and the T-student kernel `1 / (1 + ||x_i - x_j||)` of each side,
row-normalised, compared by the Jeffreys divergence, the two kernel terms added (pkth
`nn/pkt_transfer.py`, `prob_loss` with kernel and loss `combined`). Pairs run shallow to deep; the loss
is `sum_l w_l * D_l` with weights from a schedule (by default the critical period: intermediate pairs
100 * 0.7^epoch, the last 1), optionally with each D_l divided by a scale of its own (`normalise`).
The authors pair four points, hence `default_n_pairs = 4`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from edgekd.distill.kernels import (
    DIVERGENCE_EPS,
    PKTH_EPS,
    cosine_and_tstudent,
    jeffreys,
    row_normalise,
)
from edgekd.distill.losses import LOSSES
from edgekd.distill.pairing import LayerPair, as_pairs, layers_of, pair_features
from edgekd.distill.schedules import Schedule, resolve_schedule
from edgekd.distill.taps import Taps
from edgekd.errors import UserError


def infoflow_divergence(
    student: Tensor, teacher: Tensor, eps: float = DIVERGENCE_EPS, kernel_eps: float = PKTH_EPS
) -> Tensor:
    """Jeffreys(cosine kernels) + Jeffreys(T-student kernels) for one pair of B x ... features.

    Each side's two kernels share one Gram product (`cosine_and_tstudent`); the teacher's are built
    without autograd (its features are detached: nothing flows back through them).
    """
    with torch.no_grad():
        p_cos, p_t = (row_normalise(k) for k in cosine_and_tstudent(teacher, kernel_eps, kernel_eps))
    q_cos, q_t = (row_normalise(k) for k in cosine_and_tstudent(student, kernel_eps, kernel_eps))
    return jeffreys(p_cos, q_cos, eps) + jeffreys(p_t, q_t, eps)


#: how each pair's divergence is scaled before the schedule weights it (`InformationFlow(normalise=...)`)
NORMALISE = ("none", "running", "first")


@LOSSES.register("infoflow")
class InformationFlow(nn.Module):
    """Schedule-weighted sum of per-pair divergences; call `set_progress` once per epoch.

    `normalise` (edgekd's option, not the authors'): `none` sums `w_l * D_l`; `running` sums
    `w_l * D_l / m_l`, where `m_l` is a running mean of pair l's (detached) divergence, started at its
    first value and updated with `momentum` before each use in training mode (held in eval mode);
    `first` divides by pair l's divergence at its first step. Either way every pair starts at 1 (times
    its weight), however different the pairs' magnitudes, and the gradient keeps D_l's direction. The
    scales live in the loss for one run (not in checkpoints: a resumed run starts them again; under data
    parallelism each rank keeps its own).
    """

    default_n_pairs = 4  # three conv blocks and the penultimate representation

    def __init__(
        self,
        pairs: Sequence[LayerPair],
        schedule: Schedule | str = "critical-period",
        eps: float = DIVERGENCE_EPS,
        kernel_eps: float = PKTH_EPS,
        normalise: str = "none",
        momentum: float = 0.99,
    ) -> None:
        super().__init__()
        if normalise not in NORMALISE:
            raise UserError(f"infoflow normalise must be one of {', '.join(NORMALISE)}; got {normalise!r}")
        if not 0.0 <= momentum < 1.0:
            raise UserError(f"infoflow momentum must lie in [0, 1); got {momentum}")
        self.pairs = as_pairs(pairs)
        self.schedule = resolve_schedule(schedule)
        self.eps, self.kernel_eps = eps, kernel_eps
        self.normalise, self.momentum = normalise, momentum
        self.scales: list[Tensor | None] = [None] * len(self.pairs)
        self.student_layers = layers_of(self.pairs, 0)
        self.teacher_layers = layers_of(self.pairs, 1)
        self.last_weights: tuple[float, ...] = ()
        self.set_progress(0.0)

    def set_progress(self, progress: float) -> None:
        """Take the schedule's weights at `progress` (epochs done / total epochs) until the next call."""
        self.last_weights = tuple(self.schedule.weights(progress, len(self.pairs)))

    def forward(self, s: Taps, t: Taps, target: Tensor) -> Tensor:
        terms = [
            weight * self.scaled(i, infoflow_divergence(*pair_features(s, t, pair), self.eps, self.kernel_eps))
            for i, (weight, pair) in enumerate(zip(self.last_weights, self.pairs, strict=True))
            if weight != 0.0  # e.g. last-only: skip those pairs' kernels entirely
        ]
        if not terms:
            raise ValueError(f"every layer weight is 0 at this progress: {self.last_weights}")
        return torch.stack(terms).sum()

    def scaled(self, index: int, divergence: Tensor) -> Tensor:
        """Pair `index`'s divergence divided by its scale (unchanged with `normalise="none"`)."""
        if self.normalise == "none":
            return divergence
        value, scale = divergence.detach(), self.scales[index]
        if scale is None:
            scale = value
        elif self.normalise == "running" and self.training:
            scale = self.momentum * scale + (1.0 - self.momentum) * value
        self.scales[index] = scale
        return divergence / scale.clamp(min=torch.finfo(scale.dtype).tiny)
