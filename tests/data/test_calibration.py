"""Calibration recipes: loading, sampling, and the one-line errors for bad recipes and bad data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgekd.data import load_data, to_float
from edgekd.data.calibration import (
    MIN_SAMPLES,
    CalibrationRecipe,
    Sampling,
    calibration_samples,
    load_recipe,
    recipe_for_data,
    validation_set,
    write_recipe,
)
from edgekd.errors import UserError

SHAPE = (1, 28, 28)


def recipe(data: Path | str, **kw: object) -> CalibrationRecipe:
    return CalibrationRecipe(name="test", dataset=str(data), **kw)  # type: ignore[arg-type]


def write_yaml(folder: Path, text: str) -> str:
    path = folder / "recipe.yaml"
    path.write_text(text)
    return str(path)


def test_default_recipe_loads() -> None:
    default = load_recipe(None)
    assert default == load_recipe("fashion-mnist")
    assert (default.name, default.dataset) == ("fashion-mnist", "fashion-mnist")
    assert default.sampling is Sampling.CLASS_BALANCED
    assert default.samples >= MIN_SAMPLES and default.split == "train"


def test_class_balanced_samples(fmnist_npz: Path) -> None:
    x = calibration_samples(recipe(fmnist_npz, samples=100), SHAPE)
    assert x.shape == (100, *SHAPE) and x.dtype == np.float32 and 0.0 <= x.min() and x.max() <= 1.0
    train = load_data(str(fmnist_npz)).train
    labels = [int(np.flatnonzero((to_float(train.x) == img).all(axis=(1, 2, 3)))[0]) for img in x]
    assert np.bincount(train.y[labels], minlength=10).tolist() == [10] * 10


def test_sampling_is_seeded(fmnist_npz: Path) -> None:
    a = calibration_samples(recipe(fmnist_npz, samples=64, sampling="random", seed=1), SHAPE)
    b = calibration_samples(recipe(fmnist_npz, samples=64, sampling="random", seed=1), SHAPE)
    c = calibration_samples(recipe(fmnist_npz, samples=64, sampling="random", seed=2), SHAPE)
    first = calibration_samples(recipe(fmnist_npz, samples=64, sampling="first"), SHAPE)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    np.testing.assert_array_equal(first, to_float(load_data(str(fmnist_npz)).train.x[:64]))


def test_validation_is_held_out_from_calibration(fmnist_npz: Path) -> None:
    r = recipe(fmnist_npz, samples=512, validation_samples=50)
    calibration = {img.tobytes() for img in calibration_samples(r, SHAPE)}
    x, y, desc = validation_set(r, SHAPE)
    assert x.shape == (50, *SHAPE) and y.shape == (50,)
    assert not calibration & {img.tobytes() for img in x}
    assert "validation split" in desc and "doubles as the test split" in desc  # an .npz has no test split


def test_recipe_for_data_round_trips(fmnist_npz: Path, tmp_path: Path) -> None:
    derived = recipe_for_data(str(fmnist_npz))
    assert derived.dataset == str(fmnist_npz) and derived.samples == load_recipe(None).samples
    assert load_recipe(str(write_recipe(derived, tmp_path / "r.yaml"))) == derived


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("dataset: fashion-mnist\nsamples: 8\n", rf"samples: .*8 is too few.*at least {MIN_SAMPLES}"),
        ("dataset: fashion-mnist\nsampling: best\n", "sampling"),
        ("dataset: fashion-mnist\nsplit: test\n", "split"),
        ("samples: 64\n", "dataset"),
        ("dataset: fashion-mnist\nsamlpes: 64\n", "samlpes"),
    ],
)
def test_bad_recipe_is_one_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(UserError, match=message) as err:
        load_recipe(write_yaml(tmp_path, text))
    assert "\n" not in str(err.value) and "invalid calibration recipe" in str(err.value)


def test_unknown_recipe_lists_known() -> None:
    with pytest.raises(UserError, match=r"unknown calibration 'nope'; known: .*fashion-mnist"):
        load_recipe("nope")


def test_too_few_images_in_the_data(tmp_path: Path) -> None:
    path = tmp_path / "small.npz"
    np.savez(path, x=np.zeros((40, 28, 28), np.uint8), y=np.arange(40) % 4)
    with pytest.raises(UserError, match=r"asks for 64 samples but .* only 36 training images; lower samples"):
        calibration_samples(recipe(path, samples=64), SHAPE)


def test_nan_data_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "nan.npz"
    x = np.random.default_rng(0).random((100, 28, 28)).astype(np.float32)
    x[3, 4, 5] = np.nan
    np.savez(path, x=x, y=np.arange(100) % 10)
    with pytest.raises(UserError, match="NaN") as err:
        calibration_samples(recipe(path, samples=32), SHAPE)
    assert "\n" not in str(err.value)


def test_wrong_shape_names_the_fix(fmnist_npz: Path) -> None:
    with pytest.raises(UserError, match=r"shape \(1, 28, 28\) but the model takes \(3, 32, 32\); name a recipe"):
        calibration_samples(recipe(fmnist_npz, samples=32), (3, 32, 32))
