"""Source and held-out domains: names parsed, training images drawn into source domains, classes checked."""

from __future__ import annotations

import numpy as np
import pytest

from edgekd.data import Dataset
from edgekd.data.datasets import Split
from edgekd.data.domains import check_same_classes, domain_sets, parse_domain, parse_plan, source_split
from edgekd.errors import UserError


def toy(n: int = 40, classes: tuple[str, ...] = ("a", "b")) -> Dataset:
    x = np.full((n, 1, 8, 8), 100, dtype=np.uint8)
    return Dataset(x, np.arange(n) % len(classes), classes, "toy")


def test_parse_domain_names() -> None:
    assert parse_domain("clean").corruption is None
    assert parse_domain("noise-3").name == "gaussian_noise-3"
    assert parse_domain("blur-2").severity == 2
    assert parse_domain("cam=shots/").spec == "shots/"
    plan = parse_plan("clean,contrast-2,blur-2", "rotate-3,noise-3")
    assert plan is not None and plan.to_json()["held_out"] == ["rotate-3", "gaussian_noise-3"]
    assert parse_plan(None, None) is None
    for bad in ("fog-2", "blur-6", "blur-0", "blur", "=x"):
        with pytest.raises(UserError):
            parse_domain(bad)
    with pytest.raises(UserError, match="never trained on"):
        parse_plan("clean,blur-2", "blur-2")


def test_source_split_mixes_domains_and_records_the_plan() -> None:
    data = toy()
    split = Split(data, toy(10), toy(10), {"data": "toy"})
    plan = parse_plan("clean,brightness-5", "invert-5")
    mixed = source_split(split, plan, seed=0)
    changed = (mixed.train.x != data.x).any(axis=(1, 2, 3))
    assert 0 < changed.sum() < len(data)  # about half in each domain
    assert np.array_equal(mixed.test.x, split.test.x)  # the test split stays clean
    assert mixed.info["domains"] == plan.to_json()  # type: ignore[union-attr]
    assert np.array_equal(source_split(split, plan, seed=0).train.x, mixed.train.x)  # seeded
    held = domain_sets(split.test, plan.held_out)  # type: ignore[union-attr]
    assert set(held) == {"invert-5"} and (held["invert-5"].x == 155).all()


def test_classes_must_match() -> None:
    check_same_classes(("a", "b"), toy(classes=("0", "1")), "numbered")  # unnamed classes: counts decide
    with pytest.raises(UserError, match="classes"):
        check_same_classes(("a", "b"), toy(classes=("a", "c")), "cam")
    with pytest.raises(UserError, match="classes"):
        check_same_classes(("a", "b"), toy(classes=("0", "1", "2")), "cam")
