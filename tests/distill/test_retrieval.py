"""Retrieval mAP (`edgekd.distill.retrieval`) against a brute-force reference written from the definition."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from edgekd.data.datasets import Dataset
from edgekd.distill.retrieval import penultimate_features, retrieval_map
from edgekd.errors import UserError


def brute_force_map(features: np.ndarray, labels: np.ndarray) -> float:
    """Per query: rank all other samples by cosine similarity (plain Python), then AP = mean of
    precision@k over the ranks k of the same-label items."""
    rows = [[float(v) for v in row] for row in features]
    norms = [math.sqrt(sum(v * v for v in row)) for row in rows]
    aps = []
    for i, qi in enumerate(rows):
        sims = []
        for j, xj in enumerate(rows):
            if j != i:
                sims.append((sum(a * b for a, b in zip(qi, xj, strict=True)) / (norms[i] * norms[j]), j))
        sims.sort(key=lambda s: -s[0])
        hits, precisions = 0, []
        for k, (_, j) in enumerate(sims, 1):
            if labels[j] == labels[i]:
                hits += 1
                precisions.append(hits / k)
        if precisions:
            aps.append(sum(precisions) / len(precisions))
    return sum(aps) / len(aps)


def random_set(n: int = 60, d: int = 7, classes: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    centres = rng.normal(size=(classes, d))
    return (0.8 * centres[labels] + rng.normal(size=(n, d))).astype(np.float32), labels


def test_matches_brute_force_on_a_small_random_set() -> None:
    features, labels = random_set()
    reference = brute_force_map(features, labels)
    assert reference == pytest.approx(0.530890, abs=5e-6)  # pinned: the reference itself must not drift
    assert retrieval_map(features, labels) == pytest.approx(reference, abs=1e-9)


@pytest.mark.parametrize("chunk", [1, 7, 60, 1000])
def test_chunk_size_does_not_change_the_result(chunk: int) -> None:
    features, labels = random_set(seed=3)
    assert retrieval_map(features, labels, chunk=chunk) == pytest.approx(retrieval_map(features, labels), abs=1e-12)


def test_perfect_features_give_one() -> None:
    labels = np.random.default_rng(1).integers(0, 5, 50)
    assert retrieval_map(np.eye(5, dtype=np.float32)[labels], labels) == pytest.approx(1.0)
    assert retrieval_map(torch.eye(5)[torch.as_tensor(labels)], torch.as_tensor(labels)) == pytest.approx(1.0)


def test_queries_without_a_relevant_item_are_left_out() -> None:
    features = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]], dtype=np.float32)
    labels = np.array([0, 0, 1])  # the lone class-1 sample has nothing to retrieve
    assert retrieval_map(features, labels) == pytest.approx(1.0)
    with pytest.raises(UserError):
        retrieval_map(features, np.array([0, 1, 2]))


def test_penultimate_features_tap_the_head_input() -> None:
    model = nn.Sequential()
    model.add_module("body", nn.Sequential(nn.Flatten(), nn.Linear(4, 3)))
    model.add_module("head", nn.Linear(3, 2))
    rng = np.random.default_rng(0)
    data = Dataset(rng.integers(0, 256, (10, 1, 2, 2), dtype=np.uint8), np.arange(10) % 2, ("a", "b"), "t")
    model.train()
    got = penultimate_features(model, data, batch_size=4)
    assert model.training
    with torch.no_grad():
        expected = model.body(torch.from_numpy(data.x.astype(np.float32) / 255.0)).numpy()
    assert got.shape == (10, 3)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(UserError):
        penultimate_features(nn.Linear(4, 2), data)
