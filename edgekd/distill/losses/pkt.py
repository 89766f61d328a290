"""Probabilistic knowledge transfer, PKT (Passalis & Tefas, ECCV 2018).

Per pair: cosine kernels of student and teacher features, each row-normalised into `q_{j|i}` and
`p_{j|i}`, then `KL(p || q)` averaged over entries (`probabilistic_kt/nn/pkt.py`,
`cosine_similarity_loss`, eps = 1e-7). The authors transfer the final (penultimate) representation
only, hence `default_n_pairs = 1`; several pairs are summed with equal weights.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from edgekd.distill.kernels import PKT_EPS, cosine_kernel, kl_divergence, row_normalise
from edgekd.distill.losses import LOSSES
from edgekd.distill.pairing import LayerPair, as_pairs, layers_of, pair_features
from edgekd.distill.taps import Taps


def pkt_divergence(student: Tensor, teacher: Tensor, eps: float = PKT_EPS) -> Tensor:
    """KL between the teacher's and the student's row-normalised cosine kernels (B x ... each)."""
    p = row_normalise(cosine_kernel(teacher, eps))
    q = row_normalise(cosine_kernel(student, eps))
    return kl_divergence(p, q, eps)


@LOSSES.register("pkt")
class PKT(nn.Module):
    """PKT summed over layer pairs (student layer, teacher layer); widths may differ."""

    default_n_pairs = 1  # the penultimate representation (the last pair)

    def __init__(self, pairs: Sequence[LayerPair], eps: float = PKT_EPS) -> None:
        super().__init__()
        self.pairs = as_pairs(pairs)
        self.eps = eps
        self.student_layers = layers_of(self.pairs, 0)
        self.teacher_layers = layers_of(self.pairs, 1)

    def forward(self, s: Taps, t: Taps, target: Tensor) -> Tensor:
        terms = [pkt_divergence(*pair_features(s, t, pair), eps=self.eps) for pair in self.pairs]
        return torch.stack(terms).sum()
