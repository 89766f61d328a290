"""Augmented views: a pure function of (seed, sample, view), flip only where configured."""

from __future__ import annotations

import numpy as np
import pytest

from edgekd.config import Augment, TrainConfig
from edgekd.data import augment as aug
from edgekd.errors import UserError


def _images(c: int = 1, n: int = 8) -> np.ndarray:
    return (np.random.default_rng(0).random((n, c, 12, 12)) * 255).astype(np.uint8)


def test_views_are_deterministic_per_seed_and_differ_per_view() -> None:
    x, std = _images(), Augment.model_validate("standard")
    sample, view = np.arange(8), np.zeros(8, dtype=np.int64)
    a = aug.views_of(x, std, 0, sample, view)
    assert a.dtype == np.uint8 and a.shape == x.shape
    assert np.array_equal(a, aug.views_of(x, std, 0, sample, view))
    # order-free: a view of a sample is the same whichever batch it is drawn in
    assert np.array_equal(a[3:5], aug.views_of(x[3:5], std, 0, sample[3:5], view[3:5]))
    assert not np.array_equal(a, aug.views_of(x, std, 1, sample, view))
    assert not np.array_equal(a, aug.views_of(x, std, 0, sample, view + 1))
    params = aug.draw(std, 0, np.zeros(2000, dtype=np.int64), np.arange(2000), (28, 28))
    assert params.dy.min() == 0 and params.dy.max() == 2 * std.pad
    assert 0.2 < params.erase.mean() < 0.3  # erase probability 0.25


def test_no_augmentation_is_the_identity() -> None:
    x = _images()
    assert not Augment().active and not TrainConfig().augment.active
    assert np.array_equal(aug.views_of(x, Augment(), 3, np.arange(8), np.arange(8)), x)
    assert aug.cache_key(Augment(), 4, 0, 1) == ""
    assert aug.view_count(TrainConfig(views=4)) == 1  # views without augmentation would all be the same


@pytest.mark.parametrize(
    ("flip", "channels", "flips"), [("off", 3, False), ("on", 1, True), ("auto", 1, False), ("auto", 3, True)]
)
def test_flip_only_where_configured(flip: str, channels: int, flips: bool) -> None:
    only_flip = Augment(flip=flip)  # type: ignore[arg-type]
    x = _images(channels)
    out = aug.views_of(x, only_flip, 0, np.arange(8), np.zeros(8, dtype=np.int64))
    flipped = aug.draw(only_flip, 0, np.arange(8), np.zeros(8, dtype=np.int64), (12, 12)).flip
    assert aug.flips(only_flip, channels) is flips
    for i in range(8):
        expect = x[i, :, :, ::-1] if flips and flipped[i] else x[i]
        assert np.array_equal(out[i], expect)
    assert flipped.any() and not flipped.all()


def test_named_settings_and_bad_names() -> None:
    from edgekd.config import parse

    cfg = parse(TrainConfig, {"augment": "standard", "views": 4}, "training options")
    assert cfg.augment == Augment(pad=4, flip="auto", erase=0.25)  # type: ignore[arg-type]
    assert TrainConfig.model_validate(cfg.model_dump()) == cfg  # what a checkpoint records reloads
    with pytest.raises(UserError, match="unknown augmentation 'heavy'"):
        parse(TrainConfig, {"augment": "heavy"}, "training options")


def test_epoch_views_are_seeded() -> None:
    a = aug.epoch_views(0, 1, 100, 4)
    assert np.array_equal(a, aug.epoch_views(0, 1, 100, 4)) and set(a) == {0, 1, 2, 3}
    assert not np.array_equal(a, aug.epoch_views(0, 2, 100, 4))
    assert not aug.epoch_views(0, 1, 100, 1).any()


def test_fresh_views_change_every_epoch_and_are_not_cached() -> None:
    """The default with augmentation (views 0): each epoch shows each sample a view it has not shown before
    (a fixed single view per sample would be a fixed distortion, not augmentation); no teacher cache."""
    from edgekd.data import Dataset
    from edgekd.distill.cache import teacher_cache

    cfg = TrainConfig(augment="standard")
    assert cfg.views == aug.FRESH and aug.view_count(cfg) == aug.FRESH
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(8, 1, 28, 28), dtype=np.uint8)
    sample = np.arange(8)
    shown = [aug.views_of(x, cfg.augment, 0, sample, aug.epoch_views(0, e, 8, aug.FRESH)) for e in range(4)]
    assert all(not np.array_equal(shown[i], shown[j]) for i in range(4) for j in range(i))
    assert np.array_equal(shown[2], aug.views_of(x, cfg.augment, 0, sample, aug.epoch_views(0, 2, 8, 0)))  # seeded
    train = Dataset(x, np.zeros(8, dtype=np.int64), ("a",), "tiny")
    assert teacher_cache(train, cfg) is None
    assert teacher_cache(train, cfg.model_copy(update={"views": 4})) is not None
