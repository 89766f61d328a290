"""From a distillation task to its loss: default weights per method, layer pairs, schedule.

A method is a registered loss (`edgekd.distill.losses.LOSSES`). What a loss takes is read from its
constructor, never from its name: a loss with a `pairs` argument compares layer pairs, one with a
`schedule` argument weights them over training. Pairs are explicit, or chosen at matching relative
depth among each model's candidate layers (`candidate_layers`), `n_pairs` of them (default: the loss's
`default_n_pairs`).

Default weights (`DEFAULTS`) are edgekd's choices, from two measurements on Fashion-MNIST at batch 128
(teacher `resnet`, 84% test accuracy; student `cnn-xs`; 9,000 training samples): the gradient norm of
each term against CE's on the student, and test accuracy after 3 epochs over 3 seeds (student alone
72.2%; pkt x1000 72.2%; infoflow x1 73.0%, x10 61%; sp x100 72.6%, x300 71.8%, x3000 66.6%).
User-registered methods default to 0.5 / 0.5.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from edgekd.distill.blocks import INPUT_SUFFIX, called_blocks
from edgekd.distill.pairing import LOGITS, LayerPair, as_pairs
from edgekd.errors import UserError

_STAGE = re.compile(r"^stage(\d+)$")


@dataclass(frozen=True)
class MethodDefaults:
    """Default task weights of a method, and why they are what they are."""

    ce_weight: float
    kd_weight: float
    note: str = ""
    pooled: bool = True  # may automatic pairing end at `pool` (else at the last stage's activations)


DEFAULTS: dict[str, MethodDefaults] = {
    "kd": MethodDefaults(
        0.5,
        0.5,
        "Hinton KD's usual even split (T = 4). Students of a few thousand"
        " parameters trained briefly lose to training alone at T = 4 (826 and"
        " 3,202 parameters, 10 epochs, 3 seeds: -12.8 and -6.0 points); T = 1"
        " ties training alone (kd_temperature suite): try --temperature 1",
    ),
    "pkt": MethodDefaults(
        1.0,
        1000.0,
        "PKT's gradient is 1e-4..5e-4 of CE's: x1000 makes it 0.1-0.5x"
        " CE's (the authors train on PKT alone; edgekd adds CE)",
    ),
    "infoflow": MethodDefaults(
        1.0,
        1.0,
        "critical-period weights (x100 early) already put each intermediate"
        " pair at ~0.3x CE's gradient; x10 and more cost 10+ points. No other"
        " weighting beat it by more than the seed std (resnet 91% -> cnn-s,"
        " 18k samples, 8 epochs, 3 seeds, minus student alone: critical"
        " period -0.06 +- 0.16, last-only -0.07 +- 0.05, per-pair"
        " normalise=first -0.03 +- 0.10; pkt +0.26 +- 0.30)",
    ),
    "sp": MethodDefaults(
        1.0,
        100.0,
        "gamma 3000 (public benchmarks) makes SP's gradient 6-19x CE's here"
        " and costs 5 points; 100 keeps it below CE's",
        pooled=False,
    ),
    "kddg": MethodDefaults(
        0.5,
        0.5,
        "KD's even split and T = 4, not yet measured for kddg; loss_params"
        " filter (--gradient-filter): confidence (default: each sample's KD scaled by"
        " the teacher's probability of the label), agree (KD only where the teacher"
        " is right) or none; teacher and student on --domains (benchmarks/kddg_comparison.py)",
    ),
    "hssakd": MethodDefaults(
        1.0,
        1.0,
        "the authors' plain sum: CE + KL_T (T = 3) of each branch and the"
        " logits over 4 rotations; teacher from train-teacher --hssakd",
    ),
}
FALLBACK = MethodDefaults(0.5, 0.5)


def loss_parameters(method: str) -> dict[str, inspect.Parameter]:
    """The constructor parameters of a registered loss (unknown names fail listing the known ones)."""
    from edgekd.distill.losses import LOSSES

    return dict(inspect.signature(LOSSES.get(method)).parameters)


def complete_task(data: dict[str, Any]) -> dict[str, Any]:
    """A raw DistillConfig mapping with the method's defaults filled in, checked against the method."""
    out = {k: v for k, v in data.items() if v is not None}
    method = out.setdefault("method", "kd")
    params = loss_parameters(method)
    defaults = DEFAULTS.get(method, FALLBACK)
    out.setdefault("ce_weight", defaults.ce_weight)
    out.setdefault("kd_weight", defaults.kd_weight)
    clash = {"pairs", "schedule"} & set(out.get("loss_params") or {})
    if clash:
        raise UserError(f"give {', '.join(sorted(clash))} as task options, not inside loss_params")
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    unknown = sorted(set(out.get("loss_params") or {}) - set(params))
    if unknown and not accepts_any:
        takes = [
            n
            for n, p in params.items()
            if n not in ("pairs", "schedule", "self") and p.kind is not inspect.Parameter.VAR_POSITIONAL
        ]
        fix = "drop --temperature" if unknown[0] == "temperature" else f"drop {unknown[0]!r} from loss_params"
        raise UserError(
            f"method {method!r} has no loss parameter {unknown[0]!r} (its parameters:"
            f" {', '.join(takes) or 'none'}); {fix}, or pick a method that has it"
        )
    if "pairs" in out and "n_pairs" in out:
        raise UserError("give either explicit pairs or n_pairs (how many to choose automatically), not both")
    if "pairs" not in params and ({"pairs", "n_pairs"} & set(out)):
        raise UserError(f"method {method!r} compares logits only: it takes no layer pairs (drop --pairs/--n-pairs)")
    if "schedule" in params:
        default = params["schedule"].default
        out.setdefault("schedule", default if isinstance(default, str) else None)
        _check_schedule(out["schedule"])
    elif "schedule" in out:
        raise UserError(
            f"method {method!r} does not weight layers over training: --schedule applies to"
            f" {', '.join(m for m in _methods() if 'schedule' in loss_parameters(m))}"
        )
    return out


def _check_schedule(name: str | None) -> None:
    from edgekd.distill.schedules import SCHEDULES

    if name is not None:
        SCHEDULES.get(name)


def _methods() -> list[str]:
    from edgekd.distill.losses import LOSSES

    return LOSSES.names()


def parse_pairs(text: str | Sequence[Any]) -> tuple[LayerPair, ...]:
    """`"s1:t1,s2:t2"`, a list of `"s:t"` strings, or a list of (student, teacher) pairs."""
    items = [p for p in text.split(",") if p.strip()] if isinstance(text, str) else list(text)
    pairs = []
    for item in items:
        if isinstance(item, str):
            names = _split_pair(item)
            if len(names) != 2:
                raise UserError(f"layer pair {item!r}: write student_layer:teacher_layer, e.g. stage3:stage3")
            item = (names[0], names[1])
        pairs.append(item)
    return as_pairs(pairs)


def _split_pair(item: str) -> list[str]:
    """`s:t` -> [s, t], where a name may end in `:in` (a layer's input): `head:in:fc:in` -> [head:in, fc:in]."""
    names: list[str] = []
    for part in (p.strip() for p in item.strip().split(":")):
        if part == INPUT_SUFFIX[1:] and names and not names[-1].endswith(INPUT_SUFFIX):
            names[-1] += INPUT_SUFFIX
        else:
            names.append(part)
    return names


def candidate_layers(model: nn.Module, input_shape: tuple[int, int, int], pooled: bool = True) -> list[str]:
    """Layers automatic pairing chooses from, shallow to deep.

    A model with `stage1..stageN` children (every built-in one) offers those and, when `pooled`,
    `pool`; any other model offers its blocks in the order its forward pass calls them, ending, when
    `pooled`, at its penultimate representation (`edgekd.distill.blocks.called_blocks`), never the
    logits (they are always compared as `logits`).
    """
    children = [name for name, _ in model.named_children()]
    stages = sorted((n for n in children if _STAGE.match(n)), key=lambda n: int(n[len("stage") :]))
    if stages:
        return stages + (["pool"] if pooled and "pool" in children else [])
    return called_blocks(model, input_shape, pooled)


__all__ = ["DEFAULTS", "FALLBACK", "LOGITS", "candidate_layers", "complete_task", "loss_parameters", "parse_pairs"]
