"""Sample-to-sample similarity kernels and the divergences between them (pure functions).

Restated from the authors' code: PKT (Passalis & Tefas, ECCV 2018; `probabilistic_kt/nn/pkt.py`,
`cosine_similarity_loss`) and information-flow KD (Passalis et al., CVPR 2020; `pkth/nn/pkt_transfer.py`,
`pairwise_distances`, `cosine_pairwise_similarities`, `prob_loss`). Every kernel maps a batch of
features (B x ...) to a B x B matrix, so student and teacher widths never need to match.
"""

from __future__ import annotations

import torch
from torch import Tensor

# Authors' constants. PKT (ECCV 2018) uses 1e-7 both in the norm and in the KL; pkth uses 1e-6 in the
# norm and inside the square root of the distance.
PKT_EPS = 1e-7
PKTH_EPS = 1e-6
# pkth's Jeffreys term takes `log p - log q` with no epsilon; edgekd adds this one (STYLE.md's shape) so
# that a zero entry (two exactly opposite samples under the cosine kernel) gives 0, not NaN.
DIVERGENCE_EPS = 1e-7


def flatten(features: Tensor) -> Tensor:
    """B x ... -> B x D, one row per sample; half precision is lifted to float32 for the Gram products."""
    x = features.flatten(1) if features.dim() > 1 else features.unsqueeze(1)
    if x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    return x


def gram(x: Tensor) -> Tensor:
    """`x x^T` in x's own precision: autocast is switched off, as half-precision Gram products
    (`||a||^2 + ||b||^2 - 2 a.b`) lose small distances to cancellation."""
    with torch.autocast(device_type=x.device.type, enabled=False):
        return _SymmetricGram.apply(x) if x.requires_grad else x @ x.T  # type: ignore[no-untyped-call]


class _SymmetricGram(torch.autograd.Function):
    """`x x^T` whose backward takes one B x B x D product, `(g + g^T) x`, where autograd's matmul takes two
    (`g x` and `g^T x`); the value is the same matmul."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        return x @ x.T

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors  # type: ignore[attr-defined]
        result: Tensor = (grad + grad.T) @ x
        return result


def cosine_kernel(features: Tensor, eps: float = PKT_EPS) -> Tensor:
    """`(cos(x_i, x_j) + 1) / 2`, in [0, 1]; rows are divided by `norm + eps` as the authors do.

    An all-zero row stays zero (the authors' NaN-to-zero step is then never needed), so its cosine
    with every sample is 0 and its kernel entries are 1/2.
    """
    x = flatten(features)
    x = x / (x.norm(dim=1, keepdim=True) + eps)
    return (gram(x) + 1.0) / 2.0


def pairwise_distances(features: Tensor, eps: float = PKTH_EPS) -> Tensor:
    """`sqrt(max(||x_i||^2 + ||x_j||^2 - 2 x_i.x_j, 0) + eps)` (pkth `pairwise_distances`).

    The eps inside the root keeps the gradient finite at zero distance (the diagonal, and duplicate
    samples): d sqrt(u)/du is infinite at u = 0. The price is that a zero distance reads sqrt(eps).
    """
    x = flatten(features)
    sq = (x * x).sum(dim=1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * gram(x)
    return torch.sqrt(d2.clamp(min=0.0) + eps)


def tstudent_kernel(features: Tensor, eps: float = PKTH_EPS) -> Tensor:
    """`1 / (1 + ||x_i - x_j||)` (pkth `student_t` kernel with d = 1), in (0, 1]."""
    return 1.0 / (1.0 + pairwise_distances(features, eps))


def cosine_and_tstudent(
    features: Tensor, cosine_eps: float = PKT_EPS, distance_eps: float = PKTH_EPS
) -> tuple[Tensor, Tensor]:
    """`(cosine_kernel(features, cosine_eps), tstudent_kernel(features, distance_eps))` from one Gram product.

    Both kernels are functions of `G = x x^T`: the cosine is `G_ij / ((|x_i| + eps)(|x_j| + eps))` and the
    squared distance `G_ii + G_jj - 2 G_ij`, so the pair costs one B x B x D product (and, with grad, one
    more in backward) where the two kernels apart cost two (and four). The values are the same up to
    rounding: the distances are computed exactly as in `pairwise_distances`, the cosine takes the same
    sums in another order. The norms are taken from x, not from `sqrt(G_ii)`, so that an all-zero row
    keeps a finite gradient, as in `cosine_kernel`.
    """
    x = flatten(features)
    g = gram(x)
    inv = 1.0 / (x.norm(dim=1) + cosine_eps)
    cosine = (g * inv[:, None] * inv[None, :] + 1.0) / 2.0
    sq = (x * x).sum(dim=1)  # as in `pairwise_distances`, not diag(G): the same float32 rounding
    d2 = sq[:, None] + sq[None, :] - 2.0 * g
    return cosine, 1.0 / (1.0 + torch.sqrt(d2.clamp(min=0.0) + distance_eps))


def row_normalise(similarity: Tensor) -> Tensor:
    """Divide each row by its sum: a kernel matrix becomes the conditional `p_{j|i}`."""
    return similarity / similarity.sum(dim=1, keepdim=True)


def kl_divergence(p: Tensor, q: Tensor, eps: float = PKT_EPS) -> Tensor:
    """`mean(p * log((p + eps) / (q + eps)))`, KL(p || q) averaged over entries (PKT's form)."""
    return (p * torch.log((p + eps) / (q + eps))).mean()


def jeffreys(p: Tensor, q: Tensor, eps: float = DIVERGENCE_EPS) -> Tensor:
    """Symmetric KL `mean((p - q) * (log p - log q))` over entries (pkth's `jeffreys`, plus eps)."""
    return ((p - q) * (torch.log(p + eps) - torch.log(q + eps))).mean()
