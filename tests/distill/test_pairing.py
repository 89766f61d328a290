"""Automatic layer pairing at matching relative depth, explicit overrides, and name checks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgekd.distill.pairing import (
    as_pairs,
    depth_indices,
    layers_of,
    pair_by_depth,
    pair_features,
    resolve_pairs,
)
from edgekd.errors import UserError


def staged(n_stages: int) -> nn.Module:
    """A model whose top-level stages are named stage0..stageN-1, then a head."""
    model = nn.Sequential()
    for i in range(n_stages):
        model.add_module(f"stage{i}", nn.Conv2d(3, 3, 1))
    model.add_module("head", nn.Sequential(nn.Flatten(), nn.Linear(3, 10)))
    return model


def names(n: int) -> list[str]:
    return [f"stage{i}" for i in range(n)]


@pytest.mark.parametrize(
    ("n_layers", "n", "expected"),
    [
        (4, 4, [0, 1, 2, 3]),
        (4, 1, [3]),
        (4, 2, [1, 3]),
        (8, 4, [1, 3, 5, 7]),
        (5, 4, [0, 2, 3, 4]),  # depths 1.25, 2.5 (tie: deeper), 3.75, 5 of 5
        (3, 2, [1, 2]),  # 1.5 -> 2nd layer (tie goes deeper)
        (12, 3, [3, 7, 11]),
    ],
)
def test_depth_indices(n_layers: int, n: int, expected: list[int]) -> None:
    assert depth_indices(n_layers, n) == expected


@pytest.mark.parametrize("n_layers", range(1, 13))
def test_depth_indices_distinct_increasing_and_end_at_last(n_layers: int) -> None:
    for n in range(1, n_layers + 1):
        idx = depth_indices(n_layers, n)
        assert idx == sorted(set(idx)) and len(idx) == n and idx[-1] == n_layers - 1 and idx[0] >= 0


def test_heterogeneous_pairs_match_relative_depth_and_include_last() -> None:
    pairs = pair_by_depth(names(3), [f"t{i}" for i in range(6)], 3)
    assert pairs == [("stage0", "t1"), ("stage1", "t3"), ("stage2", "t5")]


def test_too_many_pairs_is_a_user_error() -> None:
    with pytest.raises(UserError, match="3 candidate layers"):
        pair_by_depth(names(3), names(6), 4)
    with pytest.raises(UserError):
        depth_indices(3, 0)


def test_resolve_pairs_auto_and_explicit() -> None:
    student, teacher = staged(2), staged(4)
    auto = resolve_pairs(student, teacher, names(2), names(4), n=2)
    assert auto == [("stage0", "stage1"), ("stage1", "stage3")]
    explicit = resolve_pairs(student, teacher, names(2), names(4), n=2, explicit=[["stage1", "stage2"]])
    assert explicit == [("stage1", "stage2")]
    logits = resolve_pairs(student, teacher, [], [], n=1, explicit=[("logits", "logits")])
    assert logits == [("logits", "logits")]


def test_resolve_pairs_rejects_unknown_layers_listing_valid_names() -> None:
    with pytest.raises(UserError, match=r"teacher has no layer 'stage9'.*stage0, stage1"):
        resolve_pairs(staged(2), staged(4), names(2), names(4), n=1, explicit=[("stage0", "stage9")])
    with pytest.raises(UserError, match="student has no layer 'block'"):
        resolve_pairs(staged(2), staged(4), ["block"], names(4), n=1)


@pytest.mark.parametrize("bad", [[], [("a",)], [("a", "b", "c")], [("a", "")], [(1, 2)]])
def test_as_pairs_rejects_malformed(bad: list) -> None:
    with pytest.raises(UserError, match="layer pairs"):
        as_pairs(bad)


def test_layers_of_dedups_in_order_and_skips_logits() -> None:
    pairs = [("a", "x"), ("b", "x"), ("a", "y"), ("logits", "logits")]
    assert layers_of(pairs, 0) == ("a", "b") and layers_of(pairs, 1) == ("x", "y")


def test_pair_features_flattens_and_detaches_teacher() -> None:
    s = {"a": torch.ones(2, 8, 4, 4, requires_grad=True)}
    t = {"x": torch.ones(2, 32, 2, 2, requires_grad=True)}
    fs, ft = pair_features(s, t, ("a", "x"))
    assert fs.shape == (2, 128) and ft.shape == (2, 128)
    assert fs.requires_grad and not ft.requires_grad
