"""KDDG: knowledge distillation for domain generalisation (Wang, Li, Chau, Kot, arXiv 2107.02629).

What the paper states (verified): a teacher trained on the source domains supervises the student with
its softened outputs ("richer dark knowledge"), and a "gradient filter" regularisation term makes the
mapping easier to learn; evaluated on classification across held-out domains. No public code was found,
and the exact gradient-filter formula could not be verified.

What edgekd implements:

- The KD part, faithfully: `T^2 * KL(softmax(t / T) || softmax(s / T))` per sample, beside the task's
  cross-entropy (`ce_weight * CE + kd_weight * this`). Train the teacher on the source domains
  (`train-teacher --domains ...`) and distil on the same ones (`distill --domains ...`).
- The gradient filter as an edgekd reading, behind its own switch `filter` (loss_params):
    - `none`: plain KD, no filter (KDDG without its regulariser).
    - `confidence` (edgekd's reading, the default): each sample's distillation gradient is scaled by
      the teacher's probability of the true class (at T = 1, no gradient through it). Where the teacher
      is unsure or wrong on a source image, its dark knowledge points the student at a harder or wrong
      mapping, so that sample's KD gradient is filtered down and the label teaches it; where the teacher
      is right and sure, KD's gradient passes nearly whole. A filtered sample's gradient is exactly KD's
      times that weight (the batch mean still divides by the whole batch).
    - `agree` (variant, the hard filter): the weight is 1 where the teacher's top-1 equals the label
      and 0 elsewhere, so a sample the teacher gets wrong gets no KD gradient at all.
  Considered and not built: an RSC-style filter (Huang et al., 2020) that mutes the feature dimensions
  with the largest gradients before the head. It needs a second pass through the student's head, which
  a loss in edgekd never sees (it gets taps, not the model); `edgekd.distill.objectives` would have to
  change for one method.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edgekd.distill.losses import LOSSES
from edgekd.distill.taps import Taps

Filter = Literal["none", "agree", "confidence"]
FILTERS: tuple[str, ...] = ("none", "agree", "confidence")


def filter_weights(teacher_logits: Tensor, target: Tensor, mode: str) -> Tensor:
    """Per-sample weights on the distillation gradient: 1 (none), the teacher's probability of the label
    (confidence), or teacher top-1 == label (agree); soft targets (mixup) count by their top class and
    their mass. No gradient flows through them."""
    with torch.no_grad():
        if mode == "none":
            return torch.ones(len(teacher_logits), device=teacher_logits.device)
        soft = target.ndim == 2  # mixup: soft targets, B x classes
        if mode == "agree":
            labels = target.argmax(dim=1) if soft else target
            return (teacher_logits.argmax(dim=1) == labels).to(teacher_logits.dtype)
        probs = F.softmax(teacher_logits.float(), dim=1)
        label_prob = (probs * target.float()).sum(dim=1) if soft else probs.gather(1, target.view(-1, 1)).squeeze(1)
        return label_prob.to(teacher_logits.dtype)


def kddg_loss(student_logits: Tensor, teacher_logits: Tensor, target: Tensor, temperature: float, mode: str) -> Tensor:
    """Batch mean of each sample's `T^2 * KL(teacher || student)` at temperature T, times its filter weight."""
    log_q = F.log_softmax(student_logits / temperature, dim=1)
    log_p = F.log_softmax(teacher_logits / temperature, dim=1)
    per_sample = (log_p.exp() * (log_p - log_q)).sum(dim=1) * temperature**2
    return (filter_weights(teacher_logits, target, mode) * per_sample).mean()


@LOSSES.register("kddg")
class KDDG(nn.Module):
    """Soft-label distillation from a source-domain teacher with a gradient filter (see the module)."""

    taps: tuple[str, ...] = ()  # logits only

    def __init__(self, temperature: float = 4.0, filter: Filter = "confidence") -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError("temperature must be positive")
        if filter not in FILTERS:
            raise ValueError(f"filter must be one of {', '.join(FILTERS)}, got {filter!r}")
        self.temperature = temperature
        self.filter = filter

    def forward(self, s: Taps, t: Taps, target: Tensor) -> Tensor:
        return kddg_loss(s["logits"], t["logits"].detach(), target, self.temperature, self.filter)
