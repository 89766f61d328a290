"""Online ensemble compression: one shared stem and N students of decreasing width, trained at once.

Walawalkar, Shen, Savvides, ECCV 2020 (PAPERS.md section 2). The family is an ordinary `nn.Module`
(`EnsembleFamily`: normalise, the shared stem, then each student's stages, pool and head; its output is
the mean of the students' logits, the ensemble teacher) and the loss an ordinary `Objective`
(`OnlineEnsemble`), so the one trainer trains it with its checkpoints, exact resume and NaN stop:

    loss = 0.7 * sum_j CE(s_j, y)
         + 0.15 * sum_{stage k, j >= 1} MSE(adapter_jk(f_jk), f_0k)
         + 0.15 * sum_j T^2 * KL(softmax(t / T) || softmax(s_j / T)),   t = mean_j s_j (detached), T = 2

Student 0 is the widest (the paper's pseudo-teacher); the adapters are 1x1 convolutions from a
compressed student's stage features to student 0's, training-only (they live beside the family, in the
module the trainer optimises, and are never exported).

edgekd's reading where the paper leaves a choice:
- Student 0's stage features are detached in the MSE term: the paper presents them as a teacher signal
  for the compressed students, like the ensemble logits (detached). The authors' public code
  (BOC-KD `utils/Losses.py`) passes them attached, but also never hands its adapters to the optimiser;
  edgekd trains the adapters and keeps the pseudo-teacher's features a target.
- The KL term runs over every student, student 0 included (PAPERS.md sums it over the students; the
  authors' code loops over all its student models); the MSE is the element mean (`nn.MSELoss`), summed
  over stages and compressed students.
- Widths: integer channels, `round(width * fraction)` (half up), at least 1, all distinct. The shared
  stem keeps the base width, so a student narrower than it is a plain `cnn(..., stem=base width)`.
- Optional guidance by an external teacher (an edgekd addition): `guide_weight * sum_j loss(s_j, teacher)`
  with any registered loss on the logits (`kd` by default); the teacher's outputs are cached after the
  first epoch, as `edgekd distill` caches them.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edgekd.distill.losses.kd import soft_kl
from edgekd.distill.objectives import Distillation
from edgekd.distill.pairing import LOGITS
from edgekd.distill.taps import Taps, tapped
from edgekd.errors import UserError
from edgekd.models import ArchSpec, build_model

#: family -> its integer channel-width parameter; such a family also takes `stem` (the stem's width)
SCALED: dict[str, str] = {"cnn": "width"}
FACTORY = "edgekd.distill.ensemble:ensemble_family"  # the family checkpoint's arch (module:factory)
DEFAULT_FRACTIONS = (1.0, 0.8, 0.6, 0.4, 0.2)
TEMPERATURE = 2.0
WEIGHTS = (0.7, 0.15, 0.15)  # CE, feature MSE, KL to the ensemble
_STAGE = re.compile(r"^stage\d+$")
_HINT = "give decreasing width fractions in (0, 1], e.g. --widths 1.0,0.8,0.6,0.4,0.2"


def parse_fractions(value: str | Sequence[float], at_least: int = 2) -> tuple[float, ...]:
    """Width fractions from `"1.0,0.8,..."` or a sequence: `at_least` of them (an ensemble needs two), in
    (0, 1], strictly decreasing."""
    if isinstance(value, str):
        try:
            fractions = tuple(float(v) for v in value.split(",") if v.strip())
        except ValueError:
            raise UserError(f"widths {value!r} are not a list of numbers; {_HINT}") from None
    else:
        fractions = tuple(float(v) for v in value)
    if len(fractions) < at_least:
        need = "an ensemble needs at least two widths" if at_least == 2 else f"give at least {at_least} width(s)"
        raise UserError(f"{need}, got {len(fractions)}; {_HINT}")
    outside = [f for f in fractions if not 0.0 < f <= 1.0]
    if outside:
        raise UserError(f"width fraction {outside[0]:g} is outside (0, 1]; {_HINT}")
    if any(b >= a for a, b in zip(fractions, fractions[1:], strict=False)):
        raise UserError(
            f"width fractions {', '.join(f'{f:g}' for f in fractions)} are not strictly decreasing; {_HINT}"
        )
    return fractions


@dataclass(frozen=True)
class Member:
    """One student of the family: its width fraction and the plain built-in spec it exports as."""

    fraction: float
    spec: ArchSpec


def plan(base: ArchSpec, fractions: Sequence[float]) -> list[Member]:
    """The students of `base` at `fractions` of its width; they share `base`'s stem."""
    param = None if base.is_user else SCALED.get(base.family)
    if param is None:
        raise UserError(
            f"model {base.label()} does not support width scaling (ensemble students are"
            f" {', '.join(SCALED)}); use e.g. --student cnn-s or 'cnn(width=16,depth=1)'"
        )
    full = int(base.params.get(param, _default(base.family, param)))
    stem = int(base.params.get("stem") or full)
    widths = [max(1, int(full * f + 0.5)) for f in fractions]
    if len(set(widths)) < len(widths):
        raise UserError(
            f"width fractions {', '.join(f'{f:g}' for f in fractions)} of {base.label()} give"
            f" {param}s {widths}, not all distinct; use fewer or more distant fractions, or a wider base"
        )
    members = []
    for fraction, width in zip(fractions, widths, strict=True):
        params = {k: v for k, v in base.params.items() if k != "stem"}
        params[param] = width
        if stem != width:
            params["stem"] = stem
        members.append(Member(fraction, base.model_copy(update={"params": params})))
    return members


def _default(family: str, param: str) -> int:
    from edgekd.models.zoo import FAMILIES

    return int(inspect.signature(FAMILIES.get(family)).parameters[param].default)


class Branch(nn.Module):
    """One student past the shared stem: its stages, pool and head, under the names its own model uses."""

    def __init__(self, student: nn.Module) -> None:
        super().__init__()
        for name, child in student.named_children():
            if name not in ("norm", "stem"):
                self.add_module(name, child)

    def forward(self, h: Tensor) -> Tensor:
        for child in self.children():
            h = child(h)
        return h


class EnsembleFamily(nn.Module):
    """normalise -> shared stem -> every student's stages, pool and head; returns the mean of their logits."""

    def __init__(self, students: Sequence[nn.Module]) -> None:
        super().__init__()
        self.norm = students[0].get_submodule("norm")
        self.stem = students[0].get_submodule("stem")
        self.students = nn.ModuleList(Branch(s) for s in students)

    def forward(self, x: Tensor) -> Tensor:
        h = self.stem(self.norm(x))
        return torch.stack([student(h) for student in self.students]).mean(0)

    def path(self, index: int, x: Tensor) -> Tensor:
        """The logits of student `index` alone, through the shared stem."""
        result: Tensor = self.students[index](self.stem(self.norm(x)))
        return result

    def stage_names(self) -> list[str]:
        return [name for name, _ in self.students[0].named_children() if _STAGE.match(name)]


def ensemble_family(
    in_channels: int = 1, num_classes: int = 10, family: str = "cnn", students: Sequence[dict[str, Any]] = ()
) -> EnsembleFamily:
    """The family a checkpoint's spec describes (`FACTORY`): `family` built with each of `students`' params."""
    from edgekd.models.zoo import FAMILIES

    builder = FAMILIES.get(family)
    return EnsembleFamily([builder(in_channels=in_channels, num_classes=num_classes, **p) for p in students])


def family_spec(base: ArchSpec, members: Sequence[Member]) -> ArchSpec:
    return ArchSpec(
        family=FACTORY,
        params={"family": base.family, "students": [dict(m.spec.params) for m in members]},
        in_channels=base.in_channels,
        num_classes=base.num_classes,
        image_size=base.image_size,
    )


def _channels(stage: nn.Module) -> int:
    norms = [m for m in stage.modules() if isinstance(m, nn.BatchNorm2d)]
    if not norms:
        raise UserError(f"stage {type(stage).__name__} has no BatchNorm2d to read its width from")
    return norms[-1].num_features


def make_adapters(family: EnsembleFamily) -> nn.ModuleList:
    """adapters[j - 1][k]: 1x1 convolution from student j's stage k features to student 0's (training only)."""
    stages = family.stage_names()
    widths = [[_channels(getattr(s, name)) for name in stages] for s in family.students]
    return nn.ModuleList(
        nn.ModuleList(nn.Conv2d(c, c0, 1) for c, c0 in zip(row, widths[0], strict=True)) for row in widths[1:]
    )


class EnsembleTraining(nn.Module):
    """What the trainer optimises and checkpoints: the family and its adapters. The family alone is saved."""

    def __init__(self, family: EnsembleFamily, adapters: nn.ModuleList) -> None:
        super().__init__()
        self.family = family
        self.adapters = adapters

    def forward(self, x: Tensor) -> Tensor:
        result: Tensor = self.family(x)
        return result


def online_ensemble_loss(
    logits: Sequence[Tensor],
    features: Sequence[Sequence[Tensor]],
    adapters: Sequence[Sequence[nn.Module]],
    target: Tensor,
    temperature: float = TEMPERATURE,
    weights: tuple[float, float, float] = WEIGHTS,
) -> Tensor:
    """The paper's loss. `logits[j]` and `features[j][k]` are student j's logits and stage-k features
    (student 0 the widest); `adapters[j - 1][k]` maps student j's stage k to student 0's channels."""
    teacher = torch.stack(list(logits)).mean(0).detach()
    ce = torch.stack([F.cross_entropy(s, target) for s in logits]).sum()
    kl = torch.stack([soft_kl(s, teacher, temperature) for s in logits]).sum()
    mse = torch.stack(
        [
            F.mse_loss(adapter(f), f0.detach())
            for row, row_adapters in zip(features[1:], adapters, strict=True)
            for f, f0, adapter in zip(row, features[0], row_adapters, strict=True)
        ]
    ).sum()
    w_ce, w_feature, w_kl = weights
    return w_ce * ce + w_feature * mse + w_kl * kl


@dataclass
class OnlineEnsemble:
    """The objective: `online_ensemble_loss` on the family's taps, plus the external teacher's guidance
    (`guide`: its loss and weight on each student's logits; its `ce_weight` is unused). Returns the
    ensemble's logits, so the trainer's accuracy is the ensemble's."""

    adapters: nn.ModuleList
    guide: Distillation | None = None
    temperature: float = TEMPERATURE
    weights: tuple[float, float, float] = WEIGHTS
    _taps: Taps = field(default_factory=dict)
    _logits: list[str] = field(default_factory=list)
    _features: list[list[str]] = field(default_factory=list)

    def attach(self, student: nn.Module, stack: ExitStack) -> None:
        if not isinstance(student, EnsembleFamily):
            raise TypeError(f"OnlineEnsemble trains an EnsembleFamily, not {type(student).__name__}")
        n, stages = len(student.students), student.stage_names()
        self._logits = [f"students.{j}" for j in range(n)]
        self._features = [[f"students.{j}.{name}" for name in stages] for j in range(n)]
        self._taps = stack.enter_context(tapped(student, self._logits + [n for row in self._features for n in row]))
        if self.guide is not None:
            self.guide.attach(student, stack)

    def on_epoch(self, progress: float) -> dict[str, float]:
        return self.guide.on_epoch(progress) if self.guide is not None else {}

    def __call__(
        self, student: nn.Module, x: Tensor, y: Tensor, index: np.ndarray | None = None
    ) -> tuple[Tensor, Tensor]:
        ensemble = student(x)
        logits = [self._taps[name] for name in self._logits]
        features = [[self._taps[name] for name in row] for row in self._features]
        adapters = [list(row.children()) for row in self.adapters.children()]
        loss = online_ensemble_loss(logits, features, adapters, y, self.temperature, self.weights)
        if self.guide is not None:
            t_taps = self.guide.teacher_taps(x, index)
            guided = torch.stack([self.guide.loss({LOGITS: s}, t_taps, y) for s in logits]).sum()
            loss = loss + self.guide.kd_weight * guided
        return loss, ensemble


def extract_student(family: EnsembleFamily, index: int, spec: ArchSpec) -> nn.Module:
    """Student `index` alone, as the plain model `spec` builds: the shared stem copied in, no adapters.
    The state dict loads strictly, so every weight of the student is accounted for."""
    prefix = f"students.{index}."
    state = {
        k.removeprefix(prefix): v
        for k, v in family.state_dict().items()
        if k.startswith(prefix) or not k.startswith("students.")
    }
    model = build_model(spec)
    model.load_state_dict(state)
    return model.eval()
