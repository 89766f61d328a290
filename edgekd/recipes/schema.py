"""What a recipe holds: frozen, validated sections; every name is checked against its registry here.

A check that fails raises ValueError (so pydantic records the field's location and `load.py` can name
its line); the stage helpers' UserErrors are turned into ValueErrors for that reason.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, Field, field_validator, model_validator

from edgekd.config import Frozen, TrainConfig, load_target, resolve_named_yaml
from edgekd.distill.task import DistillConfig
from edgekd.errors import UserError
from edgekd.select.intervals import BudgetRule

T = TypeVar("T")
_SEPARABLE = re.compile(r"^\s*separable(?:\s+near\s+(?P<rule>.+))?$", re.I)
_RULE = re.compile(r"^\s*(?P<share>\d+(?:\.\d*)?|\.\d+)\s*[x*×]\s*teacher\s+(?P<stat>p50|p90|p99)\s*$", re.I)


def _checked(check: Callable[[str], object]) -> Callable[[str], str]:
    """A validator that runs `check` on a value, turning its UserError into a located ValueError."""

    def validate(value: str) -> str:
        try:
            check(value)
        except UserError as err:
            raise ValueError(str(err)) from None
        return value

    return validate


def _student_arch(arch: str) -> None:
    from edgekd.models import parse_arch

    if ":" in arch:
        raise UserError(
            f"{arch!r} is a module:factory; students of a recipe are built-in families (cnn-s, cnn(width=8))"
        )
    parse_arch(arch)


def _teacher_arch(arch: str) -> None:
    from edgekd.models import parse_arch

    parse_arch(arch)


def _space(name: str) -> None:
    from edgekd.select.space import SPACES_DIR, load_space

    if not Path(name).suffix and "/" not in name and not (SPACES_DIR / f"{name}.yaml").is_file():
        known = ", ".join(sorted(p.stem for p in SPACES_DIR.glob("*.yaml")))
        raise UserError(f"unknown search space {name!r}; known: {known}, or a YAML path")
    load_space(name)


def _data(spec: str) -> None:
    if spec != "fashion-mnist" and not Path(spec).exists():
        raise UserError(f"data not found: {spec!r}; give fashion-mnist, a folder of class sub-folders or an .npz")


def _target(name: str) -> None:
    from edgekd.config import known_targets

    if Path(name).suffix not in (".yaml", ".yml") and "/" not in name and name not in known_targets():
        raise UserError(f"unknown target {name!r}; known: {', '.join(known_targets())}, or a YAML path")
    load_target(name)


Target = Annotated[str, AfterValidator(_checked(_target))]
StudentArch = Annotated[str, AfterValidator(_checked(_student_arch))]


class Timing(str, enum.Enum):
    QUICK = "quick"  # a shorter measurement (the demo's --quick)
    DEFAULT = "default"


class ReportFormat(str, enum.Enum):
    HTML = "html"
    MD = "md"
    JSON = "json"


class Budget(Frozen):
    """The latency budget on every target: fixed (`ms`), a share of the teacher's latency there, or
    `separable`: placed where the space's candidates differ beyond their latency intervals on the target
    (the gap between intervals nearest the share of the teacher's latency, by default 0.5 x its p50), so
    that the candidates on either side of it are told apart by the measurement, not by its noise."""

    ms: float | None = Field(default=None, gt=0)
    share: float | None = Field(default=None, gt=0)
    stat: str = "p50"
    separable: bool = False

    @classmethod
    def parse(cls, value: object) -> object:
        """A number of ms, or a rule such as '0.5 x teacher p50', as a Budget mapping."""
        if isinstance(value, bool) or value is None:
            raise ValueError("give the budget as a number of ms or a rule such as '0.5 x teacher p50'")
        if isinstance(value, int | float):
            if not value > 0:
                raise ValueError(
                    f"the latency budget must be a positive number of ms, got {value:g};"
                    " give a number > 0 or a rule such as '0.5 x teacher p50'"
                )
            return {"ms": float(value)}
        separable = _SEPARABLE.match(value) if isinstance(value, str) else None
        if separable is not None:
            anchor = _RULE.match(separable["rule"] or "0.5 x teacher p50")
            if not anchor:
                raise ValueError(f"budget {value!r}: give 'separable' or 'separable near 0.5 x teacher p50'")
            return {"share": float(anchor["share"]), "stat": anchor["stat"].lower(), "separable": True}
        if isinstance(value, str):
            match = _RULE.match(value)
            if not match:
                raise ValueError(f"budget {value!r} is neither a number of ms nor a rule such as '0.5 x teacher p50'")
            return {"share": float(match["share"]), "stat": match["stat"].lower()}
        return value

    def resolve(self, teacher_latency: dict[str, float]) -> tuple[float, str]:
        """The budget in ms on one target, and where it came from, given the teacher's latency there."""
        if self.ms is not None:
            return self.ms, "given"
        assert self.share is not None
        return self.share * float(teacher_latency[self.stat]), self.rule()

    def rule(self) -> str:
        if self.share is None:
            return "given"
        share = f"{self.share:g} x the teacher's {self.stat} here"
        return f"separable near {share}" if self.separable else share


class TeacherSpec(Frozen):
    """The teacher: a checkpoint to use, or a built-in arch (or module:factory) to train and cache."""

    arch: Annotated[str, AfterValidator(_checked(_teacher_arch))] | None = None
    checkpoint: Path | None = None
    epochs: int = Field(default=4, ge=1, description="training epochs of an `arch` teacher")

    @field_validator("checkpoint")
    @classmethod
    def _exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"teacher checkpoint not found: {value}; check the path, or give `arch` to train one")
        return value

    @model_validator(mode="after")
    def _one(self) -> TeacherSpec:
        if (self.arch is None) == (self.checkpoint is None):
            raise ValueError("give exactly one of `arch` (a teacher to train) and `checkpoint` (one to use)")
        return self


class Students(Frozen):
    """The candidates: a search space (a built-in name or a YAML path), or a list of archs."""

    space: Annotated[str, AfterValidator(_checked(_space))] | None = None
    archs: tuple[StudentArch, ...] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one(self) -> Students:
        if (self.space is None) == (self.archs is None):
            raise ValueError("give exactly one of `space` (a search space) and `archs` (a list of students)")
        return self


class Distill(Frozen):
    """How every candidate is distilled: a registered method and its weights (default: the method's)."""

    method: str = "kd"
    ce_weight: float | None = Field(default=None, ge=0)
    kd_weight: float | None = Field(default=None, ge=0)
    temperature: float | None = Field(default=None, gt=0)
    loss_params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("method")
    @classmethod
    def _known(cls, value: str) -> str:
        from edgekd.distill.losses import LOSSES

        return _checked(LOSSES.get)(value)

    @model_validator(mode="after")
    def _task(self) -> Distill:
        try:
            self.task()
        except UserError as err:
            raise ValueError(str(err)) from None
        return self

    def task(self) -> DistillConfig:
        params = {**self.loss_params, **({"temperature": self.temperature} if self.temperature is not None else {})}
        weights = {"ce_weight": self.ce_weight, "kd_weight": self.kd_weight}
        return DistillConfig.model_validate({"method": self.method, **weights, "loss_params": params})


class Shift(Frozen):
    """Accuracy under domain shift (the ImageNet-C idea at this scale, `edgekd.data.shift`): every measured
    artifact is also scored on seeded corruptions of the test split (`corruptions`: all or a list, at
    `severity` 1-5 or all) and on user folders as target domains (`domains`: NAME -> folder or .npz), as
    `bench --shift --severity --domain` does; `rank_by` makes the selection choose on a shifted
    validation split (clean, NAME-SEVERITY or mean-shift: `select --rank-by`)."""

    corruptions: str | tuple[str, ...] = "all"
    severity: str | int = "3"
    domains: dict[str, str] = Field(default_factory=dict)
    rank_by: str = "clean"

    @model_validator(mode="after")
    def _known(self) -> Shift:
        from edgekd.select.shift_rank import check_rank_by

        try:
            self.request()
            check_rank_by(self.rank_by)
        except UserError as err:
            raise ValueError(str(err)) from None
        return self

    def request(self) -> dict[str, Any]:
        """The shift request `edgekd.bench.bench_artifacts` takes (what `bench --shift` builds)."""
        from edgekd.data.shift import parse_shift

        names = self.corruptions if isinstance(self.corruptions, str) else ",".join(self.corruptions)
        corruptions = parse_shift(names, str(self.severity)) if names.strip() else []
        for name, spec in self.domains.items():
            _data(spec)
            if not name.strip():
                raise UserError("shift.domains: a domain needs a name (NAME: folder)")
        return {"corruptions": corruptions, "domains": dict(self.domains), "seed": 0}


class Outputs(Frozen):
    workdir: Path = Path("edgekd-run")
    reports: tuple[ReportFormat, ...] = (ReportFormat.HTML,)


class Recipe(Frozen):
    """The whole pipeline: teacher, data, students, distillation, targets, budget, training, shift, timing,
    outputs."""

    name: str = "run"
    data: Annotated[str, AfterValidator(_checked(_data))] = "fashion-mnist"
    teacher: TeacherSpec
    students: Students
    distill: Distill = Field(default_factory=Distill)
    targets: tuple[Target, ...] = Field(min_length=1)
    budget: Budget = Field(default_factory=lambda: Budget(share=0.5))
    budget_rule: BudgetRule = BudgetRule.UPPER  # met when the latency CI's upper end (or the median: p50) is within
    calibration: Annotated[str, AfterValidator(_checked(lambda v: resolve_named_yaml(v, "calibration")))] | None = None
    training: TrainConfig = Field(default_factory=TrainConfig)
    shift: Shift | None = None  # accuracy per shifted domain for every artifact; rank_by for the selection
    timing: Timing = Timing.DEFAULT
    outputs: Outputs = Field(default_factory=Outputs)

    @field_validator("budget", mode="before")
    @classmethod
    def _budget(cls, value: object) -> object:
        return Budget.parse(value)

    @property
    def quick(self) -> bool:
        return self.timing is Timing.QUICK

    def teacher_config(self) -> TrainConfig:
        """How an `arch` teacher trains: the recipe's training settings with the teacher's epochs."""
        return self.training.model_copy(update={"epochs": self.teacher.epochs})
