"""Selection under shift (`select --rank-by`): finished students ranked by accuracy on a shifted copy of
their validation split instead of clean validation accuracy, so the chosen one holds up on a camera that
is not the training camera.

`--rank-by` takes `clean` (the default: validation accuracy), a corruption at a severity (`blur-3`,
`noise-2`, ...: `edgekd.data.domains`), or `mean-shift`, the mean over every corruption at severity 3.
Like clean ranking it decides on validation images only (the student's own validation split, corrupted
with seed 0); test accuracy stays reported, never chosen on. It scores the float (torch) student: the
validation split is not what the artifact is measured on, and building every candidate twice would
double the finals' cost.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgekd.data.domains import CLEAN, Domain, parse_domain
from edgekd.data.shift import CORRUPTIONS
from edgekd.errors import UserError

MEAN_SHIFT = "mean-shift"
MEAN_SEVERITY = 3


def rank_domains(rank_by: str) -> list[Domain]:
    """The domains a `--rank-by` value averages over (empty for clean); a bad name fails here."""
    if rank_by == CLEAN:
        return []
    if rank_by == MEAN_SHIFT:
        return [Domain(f"{n}-{MEAN_SEVERITY}", n, MEAN_SEVERITY) for n in CORRUPTIONS]
    domain = parse_domain(rank_by, "--rank-by")
    if domain.corruption is None:
        raise UserError(
            f"--rank-by: give clean, {MEAN_SHIFT} or NAME-SEVERITY (a built-in corruption), got {rank_by!r}"
        )
    return [domain]


def check_rank_by(rank_by: str) -> str:
    rank_domains(rank_by)
    return rank_by


def rank_under_shift(finished: Sequence[Any], checkpoint_of: Any, data: str, rank_by: str) -> list[Any]:
    """Each finished student with `rank_acc` (mean validation accuracy over the rank domains) and
    `rank_scores` (per domain) set; unchanged when ranking by clean accuracy."""
    domains = rank_domains(rank_by)
    if not domains:
        return list(finished)
    from edgekd.distill.shift_eval import domain_accuracy

    ranked = []
    for f in finished:
        scores = domain_accuracy(Path(checkpoint_of(f.record.key)), data, domains, split="val")
        shifted = [scores[d.name] for d in domains]
        ranked.append(dataclasses.replace(f, rank_acc=sum(shifted) / len(shifted), rank_scores=scores))
    return ranked
