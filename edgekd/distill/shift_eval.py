"""A trained checkpoint scored in torch on clean and shifted copies of its test split (`--hold-out`
domains after training, `select --rank-by`, the KDDG comparison)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from edgekd.data import Dataset, evaluation_split
from edgekd.data.domains import CLEAN, Domain, domain_sets
from edgekd.distill.trainer import evaluate
from edgekd.models import load_model


def domain_accuracy(
    checkpoint: Path,
    data: str,
    domains: Sequence[Domain],
    *,
    limit: int | None = None,
    seed: int = 0,
    split: str = "test",
) -> dict[str, float]:
    """{"clean": accuracy, domain name: accuracy, ...} of the checkpoint's model on `data`'s test split
    (or, with split="val", the validation split its training drew) and on each domain's copy of it."""
    model, _, meta = load_model(checkpoint)
    recorded = meta.get("split") or {}
    if split == "val":
        from edgekd.data import load_data

        held: Dataset = load_data(
            data,
            val_fraction=float(recorded.get("val_fraction", 0.1)),
            seed=int(recorded.get("split_seed", 0)),
            limit=recorded.get("limit"),
        ).val
    else:
        held = evaluation_split(data, recorded)[0]
    held = held.head(limit)
    sets = {CLEAN: held, **domain_sets(held, [d for d in domains if d.name != CLEAN], seed)}
    with torch.no_grad():
        return {name: evaluate(model, d, torch.device("cpu"))[1] for name, d in sets.items()}


def mean_over(scores: dict[str, float], names: Sequence[str]) -> float | None:
    """The mean accuracy over `names` (None when none is scored)."""
    values = [scores[n] for n in names if n in scores]
    return sum(values) / len(values) if values else None
