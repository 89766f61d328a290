"""HSSAKD: hierarchical self-supervision augmented distribution (Yang, An, Cai & Xu, TNNLS 2022,
arXiv 2109.03075; PAPERS.md section 4; the authors' code is the `HSAKD` repository).

Every batch is taken at 0, 90, 180 and 270 degrees (`rotate`, rotation-major: rows `k*B .. k*B + B-1` are
turned k times), with joint labels `class * 4 + rotation` (`joint_labels`). Auxiliary branches follow
chosen stages (default: every stage but the last): each is a fresh copy of the remaining stages and of the
global pooling (deep-copied, parameters re-initialised), then a 4C-way linear layer. They read the stages'
outputs through forward hooks and live only in `Branched`, the wrapper that trains; the model that is
saved and exported never holds them.

- Teacher (`edgekd train-teacher --hssakd`): CE of the main head on the unrotated images plus CE of every
  branch on the joint labels of all four rotations. edgekd's reading of the authors' code: the backbone
  features are detached before the branches only when branches are fitted to a frozen, pre-trained
  backbone (their `--freezed` mode); training from scratch lets the branches' gradients reach the backbone
  (their `Teacher*`, which their README reports as the more accurate teacher). edgekd trains from scratch,
  so nothing is detached. The main head sees all four rotations in the forward pass (BatchNorm statistics
  included), as in the authors' code, but only the unrotated quarter enters its CE.
- The branch weights are stored inside the teacher checkpoint under `BRANCHES_KEY`, a key that
  `edgekd.models.load_model` ignores, so the teacher stays a plain model for loading and export.
- Student (`edgekd distill --method hssakd`): `ce_weight * CE(unrotated) + kd_weight * (sum over branches
  KL_T(teacher's joint distribution || student's) + KL_T(final logits, all four rotations))`, T = 3
  (`edgekd.distill.losses.hssakd`). The teacher is frozen (eval mode, no gradient). Its outputs for a
  sample's four rotations depend on the sample alone, so they are cached by sample index like any
  teacher's (`edgekd.distill.cache`): the first epoch runs the teacher on the rotated batch and records,
  per sample, its final logits and every branch's joint logits over the four rotations (float32: cached
  values are the live ones); later epochs read them. Student branch i follows the student stage at the
  relative depth of teacher branch i (the same stage names when both have as many stages): edgekd's
  reading, the authors pair models with as many stages.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edgekd._io import write_with
from edgekd.distill import _ddp as ddp
from edgekd.distill.cache import LOGITS, CachedTeacher, CacheSpec
from edgekd.distill.losses.hssakd import branch_tap
from edgekd.distill.objectives import Supervised
from edgekd.distill.taps import Taps, tapped
from edgekd.errors import UserError
from edgekd.models.checkpoint import load_checkpoint

ROTATIONS = 4
BRANCHES_KEY = "hssakd_branches"
_STAGE = re.compile(r"^stage(\d+)$")


def check_square(input_shape: tuple[int, int, int]) -> None:
    """Rotating by 90 degrees keeps the shape only for square images."""
    _, h, w = input_shape
    if h != w:
        raise UserError(
            f"hssakd rotates images by 90 degrees, which needs square images, but the data is {h} x {w};"
            " crop or resize the data to a square, or pick another method"
        )


def rotate(x: Tensor) -> Tensor:
    """The N x C x H x W batch at 0, 90, 180 and 270 degrees, rotation-major (4N rows)."""
    check_square((x.shape[1], x.shape[2], x.shape[3]))
    return torch.cat([torch.rot90(x, k, dims=(2, 3)) for k in range(ROTATIONS)])


def joint_labels(y: Tensor) -> Tensor:
    """`class * 4 + rotation` for the rows of `rotate(x)`."""
    return torch.cat([y * ROTATIONS + k for k in range(ROTATIONS)])


def stage_names(model: nn.Module, role: str) -> list[str]:
    """The model's `stage1..stageN` children in order; a branch needs them and a global `pool`."""
    children = dict(model.named_children())
    stages = sorted((n for n in children if _STAGE.match(n)), key=lambda n: int(n[len("stage") :]))
    if not stages or "pool" not in children:
        raise UserError(
            f"hssakd needs a {role} with stage1..stageN and pool children (every built-in family);"
            f" {type(model).__name__} has {', '.join(children) or 'none'}"
        )
    return stages


def resolve_branches(model: nn.Module, names: Sequence[str] | None, role: str) -> list[str]:
    """The stages to branch after, shallow to deep (default: every stage but the last), checked on the model."""
    stages = stage_names(model, role)
    chosen = list(stages[:-1] if names is None else names)
    unknown = [n for n in chosen if n not in stages]
    if unknown:
        raise UserError(f"the {role} has no stage {unknown[0]!r} to branch after; valid: {', '.join(stages)}")
    if not chosen or len(set(chosen)) != len(chosen):
        raise UserError(f"name each stage to branch after once, e.g. --branches {','.join(stages[:-1] or stages)}")
    return sorted(chosen, key=stages.index)


def matching_stages(
    teacher_after: Sequence[str], teacher_stages: Sequence[str], student_stages: Sequence[str]
) -> list[str]:
    """For each teacher branch, the student stage at the same relative depth."""
    t, s = len(teacher_stages), len(student_stages)
    depth = [(teacher_stages.index(name) + 1) / t for name in teacher_after]
    return [student_stages[min(s, max(1, round(d * s))) - 1] for d in depth]


def reinitialise(module: nn.Module) -> None:
    """New initial values for every layer that defines `reset_parameters` (BatchNorm statistics too)."""
    for m in module.modules():
        reset = getattr(m, "reset_parameters", None)
        if callable(reset):
            reset()


def make_branch(model: nn.Module, after: str, features: int, num_joint: int) -> nn.Sequential:
    """A fresh copy of the stages after `after` and of the pooling, then a `num_joint`-way linear layer."""
    stages = stage_names(model, "model")
    rest = [copy.deepcopy(model.get_submodule(name)) for name in stages[stages.index(after) + 1 :]]
    branch = nn.Sequential(*rest, copy.deepcopy(model.get_submodule("pool")))
    reinitialise(branch)
    return branch.append(nn.Linear(features, num_joint))


class Branched(nn.Module):
    """`model` plus training-only branches after some of its stages: forward -> (logits, [branch logits])."""

    def __init__(self, model: nn.Module, after: Sequence[str], branches: Sequence[nn.Module], num_classes: int) -> None:
        super().__init__()
        self.model = model
        self.after = list(after)
        self.branches = nn.ModuleList(branches)
        self.num_classes = num_classes  # each branch has ROTATIONS * num_classes outputs

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        with tapped(self.model, sorted(set(self.after))) as taps:
            logits = self.model(x)
        return logits, [branch(taps[name]) for name, branch in zip(self.after, self.branches, strict=True)]


def with_branches(
    model: nn.Module, after: Sequence[str], input_shape: tuple[int, int, int], num_classes: int
) -> Branched:
    """`model` wrapped with new branches after the stages `after` (4 * num_classes outputs each)."""
    was_training = model.training
    with tapped(model, ["pool"]) as taps, torch.no_grad():
        model.eval()(torch.zeros(1, *input_shape))
    model.train(was_training)
    features = int(taps["pool"].flatten(1).shape[1])
    branches = [make_branch(model, name, features, ROTATIONS * num_classes) for name in after]
    return Branched(model, after, branches, num_classes)


# -- the teacher's branches inside its checkpoint ------------------------------------------------------


def save_branches(checkpoint: Path, net: Branched) -> None:
    """Add the branches to a teacher checkpoint, under a key that `load_model` ignores (atomic rewrite;
    under torchrun, by rank 0, which wrote the checkpoint)."""
    if not ddp.from_env().main:
        return
    payload = load_checkpoint(checkpoint)
    payload[BRANCHES_KEY] = {
        "after": net.after,
        "num_classes": net.num_classes,
        "state_dict": {k: v.detach().cpu() for k, v in net.branches.state_dict().items()},
    }
    write_with(checkpoint, lambda tmp: torch.save(payload, tmp))


def load_teacher(checkpoint: Path, model: nn.Module, input_shape: tuple[int, int, int]) -> Branched:
    """The teacher `model` (loaded from `checkpoint`) with the branches stored beside its weights."""
    saved = load_checkpoint(checkpoint).get(BRANCHES_KEY)
    if saved is None:
        raise UserError(
            f"teacher {checkpoint} has no HSSAKD branches; train it with"
            " 'edgekd train-teacher --hssakd' or pick another --method"
        )
    net = with_branches(model, saved["after"], input_shape, saved["num_classes"])
    net.branches.load_state_dict(saved["state_dict"])
    return net.eval()


# -- objectives -----------------------------------------------------------------------------------------


class BranchedSupervised(Supervised):
    """Teacher training: CE of the main head on the unrotated images + CE of each branch on joint labels."""

    def __call__(
        self, student: nn.Module, x: Tensor, y: Tensor, index: np.ndarray | None = None
    ) -> tuple[Tensor, Tensor]:
        logits, branch_logits = student(rotate(x))
        joint = joint_labels(y)
        main = logits[: len(y)]
        loss = F.cross_entropy(main, y)
        for z in branch_logits:
            loss = loss + F.cross_entropy(z, joint)
        return loss, main


def _taps(logits: Tensor, branch_logits: Sequence[Tensor]) -> Taps:
    return {"logits": logits, **{branch_tap(i): z for i, z in enumerate(branch_logits)}}


def per_sample(rows: Tensor, n: int) -> Tensor:
    """Rotation-major rows (4N x ...) -> per sample (N x 4 x ...): what the cache stores by sample index."""
    return rows.reshape(ROTATIONS, n, *rows.shape[1:]).transpose(0, 1)


def rotation_major(rows: Tensor) -> Tensor:
    """The inverse of `per_sample`: N x 4 x ... -> 4N x ..., the order of `rotate`."""
    return rows.transpose(0, 1).reshape(ROTATIONS * rows.shape[0], *rows.shape[2:])


@dataclass
class BranchedDistillation:
    """`ce_weight * CE(unrotated) + kd_weight * loss(student taps, teacher taps)` on rotated batches; the
    taps are the final logits and each branch's joint logits (`branch0`, ...), the teacher frozen. With a
    `cache`, the teacher's outputs over the four rotations are recorded by sample index in the first epoch
    and read back afterwards (only for inputs that are the same every epoch)."""

    teacher: Branched
    loss: nn.Module
    ce_weight: float = 1.0
    kd_weight: float = 1.0
    cache: CacheSpec | None = None
    _cached: CachedTeacher | None = None

    def cache_taps(self) -> tuple[str, ...]:
        """The cached taps: the final logits, then `logits.branch<i>` (stored float32, like logits)."""
        return (LOGITS, *(f"{LOGITS}.{branch_tap(i)}" for i in range(len(self.teacher.branches))))

    def attach(self, student: nn.Module, stack: ExitStack) -> None:
        device = next(student.parameters(), torch.empty(0)).device
        self.teacher.to(device).eval().requires_grad_(False)
        self._cached = None
        if self.cache is not None:
            self._cached = self.cache.open(self.teacher, self.cache_taps(), self.live_per_sample, stack)

    def on_epoch(self, progress: float) -> dict[str, float]:
        return self._cached.on_epoch() if self._cached is not None else {}

    def live_per_sample(self, x: Tensor) -> Taps:
        """Run the teacher on the four rotations of the unrotated batch `x`: each tap N x 4 x outputs."""
        with torch.no_grad():
            logits, branch_logits = self.teacher(rotate(x))
        return {tap: per_sample(z, len(x)) for tap, z in zip(self.cache_taps(), [logits, *branch_logits], strict=True)}

    def teacher_taps(self, x: Tensor, index: np.ndarray | None = None) -> Taps:
        """The teacher's taps for `rotate(x)` (rotation-major): from the cache when there is one and `index`
        is known, else live."""
        cached = self._cached
        rows = cached(x, index) if cached is not None and index is not None else self.live_per_sample(x)
        outputs = [rotation_major(rows[tap]) for tap in self.cache_taps()]
        return _taps(outputs[0], outputs[1:])

    def __call__(
        self, student: nn.Module, x: Tensor, y: Tensor, index: np.ndarray | None = None
    ) -> tuple[Tensor, Tensor]:
        t_taps = self.teacher_taps(x, index)
        logits, branch_logits = student(rotate(x))
        main = logits[: len(y)]
        loss = self.kd_weight * self.loss(_taps(logits, branch_logits), t_taps, y)
        if self.ce_weight:
            loss = loss + self.ce_weight * F.cross_entropy(main, y)
        return loss, main


def distillation(
    teacher_ckpt: Path,
    teacher: nn.Module,
    student: nn.Module,
    loss: nn.Module,
    ce_weight: float,
    kd_weight: float,
    input_shape: tuple[int, int, int],
    num_classes: int,
    cache: CacheSpec | None = None,
) -> tuple[BranchedDistillation, Branched, dict[str, Any]]:
    """The student's objective, its trainable wrapper (student + branches) and what to record in its meta."""
    t_net = load_teacher(teacher_ckpt, teacher, input_shape)
    after = matching_stages(t_net.after, stage_names(teacher, "teacher"), stage_names(student, "student"))
    s_net = with_branches(student, after, input_shape, num_classes)
    return (
        BranchedDistillation(t_net, loss, ce_weight, kd_weight, cache),
        s_net,
        {"teacher_branches": t_net.after, "student_branches": after},
    )


def check_task(auxiliary: str, input_shape: tuple[int, int, int]) -> None:
    """What `distill --method hssakd` needs before anything trains."""
    check_square(input_shape)
    if auxiliary != "none":
        raise UserError("hssakd distils from the teacher's own branches, not an auxiliary teacher; drop --auxiliary")


def teacher_task(
    model: nn.Module, branches: Sequence[str] | None, input_shape: tuple[int, int, int], num_classes: int
) -> tuple[BranchedSupervised, Branched]:
    """The objective of an HSSAKD teacher and its trainable wrapper (model + new branches)."""
    check_square(input_shape)
    return BranchedSupervised(), with_branches(
        model, resolve_branches(model, branches, "model"), input_shape, num_classes
    )
