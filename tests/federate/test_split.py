"""Dirichlet label splits: seeded, exhaustive, skewed by alpha, and refusing an empty client."""

from __future__ import annotations

import numpy as np
import pytest

from edgekd.errors import UserError
from edgekd.federate.split import dirichlet_split, label_counts


def labels(n: int = 2000, classes: int = 10) -> np.ndarray:
    return np.random.default_rng(0).integers(0, classes, n)


def test_split_is_seeded_and_covers_every_sample_once() -> None:
    y = labels()
    parts = dirichlet_split(y, 20, 0.5, seed=3)
    again = dirichlet_split(y, 20, 0.5, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(len(y)))
    other = dirichlet_split(y, 20, 0.5, seed=4)
    assert not all(np.array_equal(a, b) for a, b in zip(parts, other, strict=True))


def test_small_alpha_concentrates_labels() -> None:
    y = labels(20000)

    def dominant_share(alpha: float) -> float:
        parts = dirichlet_split(y, 10, alpha, seed=0)
        return float(np.mean([max(label_counts(y[p], 10)) / len(p) for p in parts]))

    assert dominant_share(0.1) > dominant_share(0.5) > dominant_share(100.0)


def test_a_client_without_data_is_a_user_error() -> None:
    with pytest.raises(UserError, match="without data"):
        dirichlet_split(labels(30), 20, 0.1, seed=0)
