"""Calibration recipes (YAML in calibration/): which images an INT8 build calibrates on, and how many.

A recipe names a dataset, a sample count, how the samples are drawn (class-balanced, random, or the
first N) and a seed. Calibration images come from the training part of the split; the validation part
(the same seeded split the trainer holds out) is what accuracy-aware quantization judges against, and
the test split is never touched here: it stays for reporting.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Literal

import numpy as np
import yaml
from pydantic import Field, field_validator

from edgekd.config import Frozen, load_yaml, parse, resolve_named_yaml
from edgekd.data.datasets import Split, to_float
from edgekd.data.load import load_data
from edgekd.errors import UserError

MIN_SAMPLES = 32  # fewer images give activation ranges that depend on which images were drawn
DEFAULT_RECIPE = "fashion-mnist"


class Sampling(str, enum.Enum):
    CLASS_BALANCED = "class-balanced"
    RANDOM = "random"
    FIRST = "first"


class CalibrationRecipe(Frozen):
    """Where calibration images come from; the same recipe feeds ONNX Runtime and NNCF."""

    name: str = "(inline)"
    description: str = ""
    dataset: str = Field(description="a data spec: fashion-mnist, a class-folder tree, or an .npz")
    samples: int = Field(default=512, description=f"calibration images, at least {MIN_SAMPLES}")
    sampling: Sampling = Sampling.CLASS_BALANCED
    seed: int = Field(default=0, description="seed of the sampling")
    split: Literal["train"] = Field(default="train", description="val is kept for judging, test for reporting")
    split_seed: int = Field(default=0, description="the training seed: the validation split it held out")
    val_fraction: float = Field(default=0.1, gt=0.0, lt=1.0, description="as in training")
    validation_samples: int = Field(default=1000, ge=1, description="validation images for accuracy checks")

    @field_validator("samples")
    @classmethod
    def _enough(cls, value: int) -> int:
        if value < MIN_SAMPLES:
            raise ValueError(f"{value} is too few to calibrate on; use at least {MIN_SAMPLES} (512 is typical)")
        return value


def load_recipe(name_or_path: str | None) -> CalibrationRecipe:
    """A recipe by name (calibration/NAME.yaml) or YAML path; None gives the default recipe."""
    path = resolve_named_yaml(name_or_path or DEFAULT_RECIPE, "calibration")
    data = load_yaml(path)
    data.setdefault("name", path.stem)
    return parse(CalibrationRecipe, data, f"calibration recipe {path}")


def recipe_for_data(data: str) -> CalibrationRecipe:
    """The default recipe's settings applied to `data` (used when no recipe is named)."""
    base = load_recipe(DEFAULT_RECIPE)
    return base.model_copy(update={"name": f"{base.name} settings on {data}", "dataset": data})


def write_recipe(recipe: CalibrationRecipe, path: Path) -> Path:
    """Save `recipe` as YAML that `load_recipe` reads back."""
    path.write_text(yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False))
    return path


def calibration_samples(recipe: CalibrationRecipe, input_shape: tuple[int, int, int]) -> np.ndarray:
    """float32 N x C x H x W in [0, 1]: the recipe's calibration images, checked against the model."""
    train = _split(recipe, input_shape).train
    if len(train) < recipe.samples:
        raise UserError(
            f"calibration recipe {recipe.name!r} asks for {recipe.samples} samples but {recipe.dataset!r} has"
            f" only {len(train)} training images; lower samples (at least {MIN_SAMPLES}) or use more data"
        )
    picks = _pick(train.y, recipe.samples, recipe.sampling, recipe.seed)
    return _checked(to_float(train.x[picks]), recipe)


def validation_set(recipe: CalibrationRecipe, input_shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray, str]:
    """(images, labels, description) of the held-out validation slice accuracy-aware builds judge on."""
    split = _split(recipe, input_shape)
    val = split.val.head(recipe.validation_samples)
    if len(val) == 0:
        raise UserError(
            f"calibration recipe {recipe.name!r}: {recipe.dataset!r} leaves no validation images;"
            " raise val_fraction in the recipe"
        )
    same = " (this data has no test split: it doubles as the test split)" if split.info.get("test") == "val" else ""
    return _checked(to_float(val.x), recipe), val.y, f"{recipe.dataset} (validation split, {len(val)} images){same}"


def _split(recipe: CalibrationRecipe, input_shape: tuple[int, int, int]) -> Split:
    split = load_data(recipe.dataset, val_fraction=recipe.val_fraction, seed=recipe.split_seed)
    if split.train.input_shape != tuple(input_shape):
        raise UserError(
            f"calibration recipe {recipe.name!r}: {recipe.dataset!r} has images of shape {split.train.input_shape}"
            f" but the model takes {tuple(input_shape)}; name a recipe (--calibration) with data of the model's shape"
        )
    return split


def _pick(labels: np.ndarray, n: int, sampling: Sampling, seed: int) -> np.ndarray:
    """Indices of `n` samples, sorted (so the order of the data is kept)."""
    if sampling is Sampling.FIRST:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    if sampling is Sampling.RANDOM:
        return np.sort(rng.choice(len(labels), n, replace=False))
    # Class-balanced: rank the images of each class in a random order and take ranks 0, 1, 2, ... across
    # classes in turn, so classes get equal shares and a class with too few images is topped up by others.
    rank = np.empty(len(labels), dtype=np.int64)
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        rank[members] = np.arange(len(members))
    return np.sort(np.lexsort((rng.random(len(labels)), rank))[:n])


def _checked(x: np.ndarray, recipe: CalibrationRecipe) -> np.ndarray:
    if not np.isfinite(x).all():
        raise UserError(
            f"calibration recipe {recipe.name!r}: {recipe.dataset!r} holds NaN or infinite values; clean the data"
        )
    if x.min() < 0.0 or x.max() > 1.0:
        raise UserError(f"calibration recipe {recipe.name!r}: images must lie in [0, 1]; fix the data")
    return np.ascontiguousarray(x, dtype=np.float32)
