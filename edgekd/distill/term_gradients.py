"""How hard each term of a distillation loss pulls on the student: its gradient norm against CE's.

A term's weight only means something next to the size of its gradient: infoflow's divergences are
10^-3 of CE's at initialisation, so a weight of 1 on them is no weight at all. `term_gradients` measures,
on given batches, the norm of the gradient on the student's parameters of each term as the loss weights
it (each layer pair of a loss that weights pairs, with its schedule weight times `kd_weight`; the whole
distillation term; CE times `ce_weight`), divided by the norm of CE's gradient at weight 1. Doubling a
term's weight doubles its ratio; a ratio of 0.01 says the term hardly trains anything.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edgekd.distill.cache import LOGITS
from edgekd.distill.taps import Taps, tapped

#: the reference every ratio divides by: CE at weight 1
CE = "ce"
#: the whole distillation term, `kd_weight * loss`
DISTILL = "distill"


@dataclass(frozen=True)
class TermGradient:
    """One term: its weight in the loss, the mean norm of its (weighted) gradient, and that over CE's."""

    term: str
    weight: float
    grad_norm: float
    ratio: float


def _grad_norm(value: Tensor, params: Sequence[nn.Parameter]) -> float:
    grads = torch.autograd.grad(value, params, retain_graph=True, allow_unused=True)
    squares = [g.double().pow(2).sum() for g in grads if g is not None]
    return float(torch.stack(squares).sum().sqrt()) if squares else 0.0


def _terms(loss: nn.Module, s: Taps, t: Taps, y: Tensor, kd_weight: float) -> dict[str, tuple[float, Tensor]]:
    """(weight, weighted value) of the distillation term and, for a loss that weights pairs, of each pair."""
    out = {DISTILL: (kd_weight, kd_weight * loss(s, t, y))}
    weights = tuple(getattr(loss, "last_weights", ()))
    pairs = list(getattr(loss, "pairs", ()))
    if len(pairs) > 1 and len(weights) == len(pairs):
        try:
            for i, (pair, w) in enumerate(zip(pairs, weights, strict=True)):
                if w == 0.0:
                    continue
                loss.last_weights = tuple(v if j == i else 0.0 for j, v in enumerate(weights))  # type: ignore[assignment]
                out[f"{pair[0]}:{pair[1]}"] = (kd_weight * w, kd_weight * loss(s, t, y))
        finally:
            loss.last_weights = weights  # type: ignore[assignment]
    return out


def term_gradients(
    student: nn.Module,
    teacher: nn.Module,
    loss: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    *,
    ce_weight: float,
    kd_weight: float,
) -> list[TermGradient]:
    """Each term's gradient norm on the student's parameters, averaged over `batches`, and its ratio to
    CE's at weight 1 (the first row, ratio 1). The student is left in train mode, its gradients untouched."""
    params = [p for p in student.parameters() if p.requires_grad]
    teacher.eval()
    sums: dict[str, float] = {}
    weights: dict[str, float] = {CE: 1.0}
    n = 0
    s_layers = tuple(getattr(loss, "student_layers", ()))
    t_layers = tuple(getattr(loss, "teacher_layers", ()))
    with tapped(student, s_layers) as s_taps, tapped(teacher, t_layers) as t_taps:
        for x, y in batches:
            student.train()
            with torch.no_grad():
                t_logits = teacher(x)
            logits = student(x)
            s = {**s_taps, LOGITS: logits}
            t = {**{k: v.detach() for k, v in t_taps.items()}, LOGITS: t_logits}
            values = {CE: (1.0, F.cross_entropy(logits, y)), **_terms(loss, s, t, y, kd_weight)}
            for name, (weight, value) in values.items():
                weights[name] = weight
                sums[name] = sums.get(name, 0.0) + _grad_norm(value, params)
            n += 1
    if n == 0:
        raise ValueError("term_gradients needs at least one batch")
    ce = sums[CE] / n
    rows = [TermGradient(CE, 1.0, ce, 1.0)]
    if ce_weight != 1.0:
        rows.append(TermGradient(f"ce x{ce_weight:g}", ce_weight, ce * ce_weight, ce_weight))
    for name, total in sums.items():
        if name != CE:
            rows.append(TermGradient(name, weights[name], total / n, (total / n) / ce if ce > 0 else float("nan")))
    return rows


__all__ = ["CE", "DISTILL", "TermGradient", "term_gradients"]
