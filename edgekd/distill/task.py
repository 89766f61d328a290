"""A distillation task (`DistillConfig`) and what it builds: its checked layer pairs and its loss.

The task is the one place where a method's term weights, pairs and schedule live (not the loss); its
defaults come from `edgekd.distill.methods` when the config loads, so a bad method, schedule or pair
string fails there, before any training.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field, model_validator
from torch import nn

from edgekd.config import Frozen
from edgekd.distill.blocks import PENULTIMATE, penultimate
from edgekd.distill.methods import (
    DEFAULTS,
    FALLBACK,
    candidate_layers,
    complete_task,
    loss_parameters,
    parse_pairs,
)
from edgekd.distill.pairing import LayerPair, resolve_pairs
from edgekd.errors import UserError

#: methods whose loss is on the logits already: a logit term (`logit_weight`) is refused for them
LOGIT_METHODS = ("kd", "kddg", "hssakd")


class DistillConfig(Frozen):
    """A distillation task: the method, the weights of its terms (here, not in the loss), its layer
    pairs and schedule, and whether teacher outputs are cached.

    Left out, the weights take the method's defaults (`edgekd.distill.methods.DEFAULTS`), pairs are
    chosen at matching relative depth (`n_pairs` of them; default: the loss's own count), and
    `schedule` is the loss's default when the loss weights layers (infoflow). The method and schedule
    names are checked against their registries here, when the config loads.

    `logit_weight`: a Hinton KD term on the logits (`logit_temperature`, default 1) added to a feature
    method's loss, as feature methods are often run with one (the student then learns both the teacher's
    relations and its outputs). The methods with logit terms of their own (`LOGIT_METHODS`) refuse it.

    `recipe`: `edgekd` (the default, what every record so far used) or `pkth`, the authors' recipe for
    infoflow (`edgekd.distill.pkth`): the student on the transfer loss alone (ce_weight 0 unless given),
    the critical period per real epoch (100 * 0.7^epoch), Adam at a constant --lr with no weight decay,
    and an auxiliary teacher (with --auxiliary auto) trained on its own settings: `auxiliary_epochs` on
    labels (default the authors' 80: 50 at 1e-3, 30 at 1e-4), then half as many of transfer alone (30 at
    1e-3, 10 at 1e-4), each phase Adam at a constant rate, in the authors' proportions.
    """

    method: str = "kd"
    ce_weight: float = Field(default=0.5, ge=0)
    kd_weight: float = Field(default=0.5, ge=0)
    loss_params: dict[str, Any] = Field(default_factory=dict)
    pairs: tuple[tuple[str, str], ...] | None = Field(
        default=None, description="(student layer, teacher layer) pairs, or 's:t,...'; None = automatic"
    )
    n_pairs: int | None = Field(default=None, ge=1)
    schedule: str | None = None
    cache: bool = Field(default=True, description="cache teacher outputs by sample and view; False = live")
    auxiliary: str = Field(
        default="none",
        description="auxiliary teacher: auto (when the teacher's family"
        " differs from the student's), none, or a checkpoint path",
    )
    auxiliary_width: str | None = Field(
        default=None,
        description="the auxiliary teacher's width as the student factory's keyword argument, e.g. width=32"
        " (needed to build one for a module:factory student; built-in families default to twice the width)",
    )
    recipe: Literal["edgekd", "pkth"] = Field(default="edgekd", description="edgekd, or pkth: the authors' recipe")
    auxiliary_epochs: int | None = Field(
        default=None, ge=2, description="recipe pkth: the auxiliary's epochs on labels (default 80; transfer: half)"
    )
    logit_weight: float = Field(
        default=0.0,
        ge=0,
        description="a Hinton KD term on the logits added to a feature method's loss, at this weight (0: none)",
    )
    logit_temperature: float = Field(default=1.0, gt=0, description="the logit term's temperature")

    @model_validator(mode="before")
    @classmethod
    def _method_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        if data.get("pairs") is not None:
            data = {**data, "pairs": parse_pairs(data["pairs"])}
        if data.get("auxiliary_width") is not None:
            parse_width(data["auxiliary_width"])
            # a width asks for an auxiliary teacher built here: `none` (the CLI's default) becomes `auto`
            if data.get("auxiliary", "none") == "none":
                data = {**data, "auxiliary": "auto"}
            elif data["auxiliary"] != "auto":
                raise UserError("give either --auxiliary PATH (a trained checkpoint) or --auxiliary-width, not both")
        if data.get("recipe", "edgekd") == "pkth":
            if data.get("method") != "infoflow":
                raise UserError("--recipe pkth is the authors' recipe for infoflow: add --method infoflow")
            if data.get("ce_weight") is None:  # the authors' student trains on the transfer loss alone
                data = {**data, "ce_weight": 0.0}
        elif data.get("auxiliary_epochs") is not None:
            raise UserError("--auxiliary-epochs sets the pkth recipe's auxiliary: add --recipe pkth")
        if data.get("logit_temperature") not in (None, 1.0) and not data.get("logit_weight"):
            raise UserError("--logit-temperature sets the --logit-kd term's temperature: add --logit-kd WEIGHT")
        if data.get("logit_weight") and (method := data.get("method", "kd")) in LOGIT_METHODS:
            raise UserError(
                f"--logit-kd adds a logit term to a feature method; method {method!r} has one"
                " of its own: drop --logit-kd, or set its weight with --kd-weight"
            )
        return complete_task(data)


def parse_width(text: str) -> tuple[str, Any]:
    """`name=value` -> (name, value as a number when it reads as one): a factory's width argument."""
    from edgekd.models.spec import _literal

    key, sep, value = str(text).partition("=")
    if not sep or not key.strip().isidentifier() or not value.strip():
        raise UserError(f"auxiliary width {text!r}: write the factory's argument and value, e.g. width=32")
    return key.strip(), _literal(value.strip())


def _resolve(
    pairs: Sequence[LayerPair], student: nn.Module, teacher: nn.Module, shape: tuple[int, int, int]
) -> tuple[LayerPair, ...]:
    """Pairs with the reserved name `penultimate` replaced by each model's own tap (`blocks.penultimate`)."""
    names = {
        role: penultimate(model, shape) if any(p[i] == PENULTIMATE for p in pairs) else PENULTIMATE
        for i, (role, model) in enumerate((("student", student), ("teacher", teacher)))
    }
    return tuple(
        (names["student"] if s == PENULTIMATE else s, names["teacher"] if t == PENULTIMATE else t) for s, t in pairs
    )


def method_pairs(
    task: DistillConfig, student: nn.Module, teacher: nn.Module, input_shape: tuple[int, int, int]
) -> list[LayerPair] | None:
    """The task's layer pairs, checked on both models (None for methods without pairs)."""
    params = loss_parameters(task.method)
    if "pairs" not in params:
        return None
    from edgekd.distill.losses import LOSSES

    default_n = int(getattr(LOSSES.get(task.method), "default_n_pairs", 1))
    n = task.n_pairs if task.n_pairs is not None else default_n
    if task.pairs:
        return resolve_pairs(student, teacher, [], [], n, explicit=_resolve(task.pairs, student, teacher, input_shape))
    pooled = DEFAULTS.get(task.method, FALLBACK).pooled
    s_layers = candidate_layers(student, input_shape, pooled)
    t_layers = candidate_layers(teacher, input_shape, pooled)
    if n > min(len(s_layers), len(t_layers)):
        raise UserError(
            f"method {task.method!r} uses {n} layer pairs, but the student offers {len(s_layers)} candidate"
            f" layers ({', '.join(s_layers) or 'none'}) and the teacher {len(t_layers)}"
            f" ({', '.join(t_layers) or 'none'}); pass --n-pairs or explicit --pairs student:teacher,..."
        )
    return resolve_pairs(student, teacher, s_layers, t_layers, n)


def build_loss(task: DistillConfig, pairs: Sequence[LayerPair] | None) -> nn.Module:
    """The task's loss module, with its pairs and schedule."""
    from edgekd.distill.losses import LOSSES

    kwargs = dict(task.loss_params)
    if pairs is not None:
        kwargs["pairs"] = list(pairs)
    if task.schedule is not None:
        kwargs["schedule"] = task.schedule
    try:
        return LOSSES.create(task.method, **kwargs)
    except TypeError as err:
        raise UserError(f"method {task.method!r}: {err}; check the loss parameters") from None
