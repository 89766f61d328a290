"""Seeded corruptions of a test split: deterministic, shape- and dtype-preserving, worse with severity."""

from __future__ import annotations

import numpy as np
import pytest

from edgekd.data import Dataset
from edgekd.data.shift import CORRUPTIONS, SEVERITIES, parse_domains, parse_shift, shifted
from edgekd.errors import UserError


def images(c: int) -> Dataset:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:16, 0:16]
    base = ((xx * 12 + yy * 3) % 256).astype(np.uint8)  # structured, so blur and rotation change it
    x = np.stack([np.stack([np.roll(base, i + ch, axis=1) for ch in range(c)]) for i in range(6)])
    x[:, :, 4:8, 4:8] = rng.integers(0, 256, (6, c, 4, 4), dtype=np.uint8)
    return Dataset(x, np.arange(6) % 3, ("a", "b", "c"), "toy")


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_each_corruption_is_seeded_changes_images_and_grows_with_severity(name: str, channels: int) -> None:
    data = images(channels)
    diffs = []
    for severity in SEVERITIES:
        out = shifted(data, name, severity, seed=1)
        assert out.x.dtype == np.uint8 and out.x.shape == data.x.shape
        assert np.array_equal(out.x, shifted(data, name, severity, seed=1).x)  # same seed, same set
        assert np.array_equal(out.y, data.y)
        diffs.append(float(np.abs(out.x.astype(np.int16) - data.x.astype(np.int16)).mean()))
    assert diffs[0] > 0, f"{name} at severity 1 left the images unchanged"
    assert diffs[-1] > diffs[0] and float(np.diff(diffs).min()) >= -1.0, (name, diffs)


@pytest.mark.parametrize("name", ["gaussian_noise", "rotate"])
def test_random_corruptions_differ_between_seeds(name: str) -> None:
    data = images(1)
    assert not np.array_equal(shifted(data, name, 5, seed=1).x, shifted(data, name, 5, seed=2).x)


def test_parse_shift_and_domains() -> None:
    assert parse_shift("all") == [(n, 3) for n in CORRUPTIONS]
    assert parse_shift("blur,jpeg", "all") == [("blur", s) for s in SEVERITIES] + [("jpeg", s) for s in SEVERITIES]
    assert parse_domains(["photos=a/b", "x=c.npz"]) == {"photos": "a/b", "x": "c.npz"}
    for bad in (lambda: parse_shift("fog"), lambda: parse_shift("blur", "6"), lambda: parse_domains(["nopath"])):
        with pytest.raises(UserError):
            bad()
