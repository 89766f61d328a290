"""Named training presets: settings that go together, filled in where the user gave none.

`patient` is the "patient and consistent" recipe (Beyer et al., 2022) at the size edgekd trains: a long
cosine schedule after a short warm-up, augmentation with the teacher scoring the very view the student
sees (K views per sample cached, `edgekd.data.augment`), and, for `kd`, temperature 1. Why T = 1: on
students of a few thousand parameters trained briefly, T = 4 cost 6 to 13 points against training alone
and T = 1 tied it (README, "Hinton KD on the smallest students"); soft targets close to the labels do
not ask a small student for the teacher's fine structure it cannot hold. Longer training shrinks that
harm (at 30 epochs the 15k-parameter cnn-s gained 0.5 points from kd), hence 30 epochs, and at least
12,000 optimizer steps (`TrainConfig.min_steps`), what 30 epochs of the whole Fashion-MNIST take:
patience is counted in steps, and on a small training set 30 epochs are few. With 5,400 images (43
batches an epoch) that is 280 epochs; with 54,000 the 30 stand. Measured on the 6.9k-parameter cnn-xs at
10% of Fashion-MNIST under standard augmentation (`benchmarks.kd_recipe`, README), 30 / 100 / 300
epochs: the student alone 79.1 / 83.9 / 86.4%, kd 79.9 / 84.9 / 87.8% (seed 0; more seeds in the
records there).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edgekd.errors import UserError

#: the KD temperature that does not hurt small students (README, "Hinton KD on the smallest students")
SAFE_KD_TEMPERATURE = 1.0


@dataclass(frozen=True)
class Preset:
    """TrainConfig fields, and loss parameters per method, that a preset sets unless given."""

    train: dict[str, Any]
    loss_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    note: str = ""


PRESETS: dict[str, Preset] = {
    "patient": Preset(
        train={"epochs": 30, "min_steps": 12000, "augment": "standard", "views": 8, "warmup_epochs": 1.0},
        loss_params={"kd": {"temperature": SAFE_KD_TEMPERATURE}},
        note="30 epochs and at least 12,000 steps, 1 warm-up epoch then cosine, standard augmentation with 8"
        " cached views, kd at T = 1",
    ),
}


def preset(name: str) -> Preset:
    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    return PRESETS[name]


def with_preset(
    name: str | None, method: str, train: dict[str, Any], given: set[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(TrainConfig fields, loss parameters): `train` with the preset's values for the fields not in
    `given` (what the user set), and the preset's loss parameters for `method`."""
    if name is None:
        return train, {}
    p = preset(name)
    # the preset's step floor belongs to its epochs: a user's own --epochs is kept as given
    skip = given | ({"min_steps"} if "epochs" in given else set())
    merged = {**train, **{k: v for k, v in p.train.items() if k not in skip}}
    return merged, dict(p.loss_params.get(method, {}))
