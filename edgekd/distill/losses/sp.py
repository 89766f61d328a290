"""Similarity-preserving KD, SP (Tung & Mori, ICCV 2019, arXiv 1907.09682).

Per pair: Q = activations as B x (C*H*W), G = Q Q^T with each row L2-normalised, and the loss is
`(1 / B^2) * sum over pairs ||G_T - G_S||_F^2` (the paper's eq. 4). The task weight gamma (3000 in
common public benchmarks) multiplies this loss in the distillation task, not here. One pair by default,
the deepest (`default_n_pairs = 1`), as mdistiller's SP uses the last stage's features
(`mdistiller/distillers/SP.py`, `feats[-1]`); edgekd's reading, the paper was not rechecked for this.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edgekd.distill.kernels import gram
from edgekd.distill.losses import LOSSES
from edgekd.distill.pairing import LayerPair, as_pairs, layers_of, pair_features
from edgekd.distill.taps import Taps


def similarity_matrix(features: Tensor) -> Tensor:
    """`G = Q Q^T` with rows L2-normalised (F.normalize's eps 1e-12 guards an all-zero row)."""
    return F.normalize(gram(features), p=2, dim=1)


def sp_distance(student: Tensor, teacher: Tensor) -> Tensor:
    """`||G_T - G_S||_F^2 / B^2` for one pair of B x D features."""
    diff = similarity_matrix(teacher) - similarity_matrix(student)
    return (diff * diff).sum() / student.shape[0] ** 2


@LOSSES.register("sp")
class SimilarityPreserving(nn.Module):
    """SP summed over layer pairs (student layer, teacher layer); widths may differ."""

    default_n_pairs = 1  # the last block's output

    def __init__(self, pairs: Sequence[LayerPair]) -> None:
        super().__init__()
        self.pairs = as_pairs(pairs)
        self.student_layers = layers_of(self.pairs, 0)
        self.teacher_layers = layers_of(self.pairs, 1)

    def forward(self, s: Taps, t: Taps, target: Tensor) -> Tensor:
        terms = [sp_distance(*pair_features(s, t, pair)) for pair in self.pairs]
        return torch.stack(terms).sum()
