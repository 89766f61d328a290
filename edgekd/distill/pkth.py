"""The authors' recipe for information-flow KD (`--recipe pkth`; Passalis et al., CVPR 2020, pkth `cifar10/exp*.py`).

The loss is edgekd's infoflow either way; what this recipe changes is how it is trained, as the
authors' code does it (see /work/shared/notes/infoflow-fidelity.md for the line-by-line reading):

- the student trains on the transfer loss alone (`ce_weight` 0 unless given: optional CE), with the
  critical period indexed by real epoch, 100 * 0.7^epoch for the intermediate pairs and 1 for the last
  (`schedules.per_epoch`), not compressed into the run's length;
- the student's optimiser is Adam at a constant learning rate (--lr; theirs is 1e-3), no weight decay;
- the auxiliary teacher has settings of its own: `label_epochs` on labels (theirs: 50 at 1e-3, then 30
  at 1e-4), then half as many epochs of transfer alone from the teacher on the final representation
  (theirs: 30 at 1e-3, then 10 at 1e-4), each phase a fresh Adam at a constant rate, no weight decay.
  A shorter `label_epochs` keeps the authors' proportions (5:3 on labels, 3:1 in transfer).

What is still not theirs: Adam is not re-created every epoch of the student (theirs is: `prob_transfer`
is called once per epoch), their CIFAR augmentation (flip, crop) is not applied, and the taps are
edgekd's (stage outputs before max-pool; the penultimate representation is the pool, or with
`cnn(hidden=64)` a learned 64-d ReLU layer like their fc1).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgekd.config import TrainConfig
from edgekd.distill.blocks import PENULTIMATE
from edgekd.distill.pairing import LayerPair
from edgekd.distill.schedules import per_epoch
from edgekd.distill.task import DistillConfig

#: the authors' auxiliary: (epochs, learning rate) on labels, then in transfer (exp0 and exp1)
AUTHORS_LABELS = ((50, 1e-3), (30, 1e-4))
AUTHORS_TRANSFER = ((30, 1e-3), (10, 1e-4))
#: the auxiliary's transfer step: infoflow on the final representation alone, no CE
TRANSFER_ONLY = DistillConfig(
    method="infoflow", pairs=((PENULTIMATE, PENULTIMATE),), recipe="pkth", ce_weight=0.0, kd_weight=1.0
)


@dataclass(frozen=True)
class Phase:
    """Epochs at one constant Adam learning rate."""

    epochs: int
    lr: float


def auxiliary_phases(label_epochs: int | None = None) -> tuple[tuple[Phase, ...], tuple[Phase, ...]]:
    """(on labels, in transfer) phases: the authors' own, or `label_epochs` on labels in their 5:3 split
    and half as many in transfer in their 3:1 split (phases of 0 epochs are dropped)."""
    if label_epochs is None:
        return tuple(Phase(*p) for p in AUTHORS_LABELS), tuple(Phase(*p) for p in AUTHORS_TRANSFER)
    if label_epochs < 2:
        raise ValueError(f"the auxiliary needs at least 2 epochs on labels, got {label_epochs}")
    transfer = max(1, label_epochs // 2)
    return _split(label_epochs, AUTHORS_LABELS), _split(transfer, AUTHORS_TRANSFER)


def _split(total: int, authors: tuple[tuple[int, float], ...]) -> tuple[Phase, ...]:
    first = max(1, round(total * authors[0][0] / sum(e for e, _ in authors)))
    phases = (Phase(first, authors[0][1]), Phase(total - first, authors[1][1]))
    return tuple(p for p in phases if p.epochs > 0)


def constant_adam(trainer: Any, lr: float | None = None) -> None:
    """Replace a Trainer's AdamW + cosine with Adam at a constant rate (the trainer's lr), no weight decay.

    Called right after the Trainer is built, before `fit`; a resumed run restores this optimiser's state."""
    params = trainer.train_module.parameters()
    trainer.opt = torch.optim.Adam(params, lr=trainer.cfg.lr if lr is None else lr)
    trainer.sched = torch.optim.lr_scheduler.LambdaLR(trainer.opt, lambda _step: 1.0)


def student_loss(task: DistillConfig, pairs: list[LayerPair] | None, run_epochs: int) -> nn.Module:
    """The task's loss with the critical period on the authors' scale (per real epoch of this run)."""
    from edgekd.distill.losses import LOSSES

    kwargs: dict[str, Any] = dict(task.loss_params)
    if pairs is not None:
        kwargs["pairs"] = list(pairs)
    schedule = task.schedule or "critical-period"
    kwargs["schedule"] = per_epoch(run_epochs) if schedule == "critical-period" else schedule
    return LOSSES.create(task.method, **kwargs)


def phase_config(cfg: TrainConfig, phase: Phase) -> TrainConfig:
    return cfg.model_copy(update={"epochs": phase.epochs, "lr": phase.lr, "weight_decay": 0.0})


def train_phases(
    model: nn.Module,
    spec: Any,
    objective: Any,
    split: Any,
    cfg: TrainConfig,
    phases: tuple[Phase, ...],
    out: Path,
    store: Any,
    kind: str,
    meta: dict[str, Any],
    progress: bool,
) -> list[Path]:
    """Train `model` in place through `phases`, one checkpoint each (`<out stem>-<i>.pt`; a finished
    phase whose checkpoint exists is loaded, not retrained). Returns the checkpoints."""
    from edgekd.distill.trainer import Trainer
    from edgekd.models import load_model

    done = []
    for i, phase in enumerate(phases):
        path = out.with_name(f"{out.stem}-{i}.pt")
        if path.is_file():
            model.load_state_dict(load_model(path)[0].state_dict())
        else:
            trainer = Trainer(model, spec, objective, split, phase_config(cfg, phase), path, store, kind, meta)
            constant_adam(trainer)
            trainer.fit(resume=True, show_progress=progress)
        done.append(path)
    return done


__all__ = [
    "AUTHORS_LABELS",
    "AUTHORS_TRANSFER",
    "TRANSFER_ONLY",
    "Phase",
    "auxiliary_phases",
    "constant_adam",
    "student_loss",
    "train_phases",
]
