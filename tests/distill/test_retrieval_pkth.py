"""The authors' retrieval protocol (`database_map`): train split as database, test queries, cosine,
11-point interpolated precision; textbook interpolation, and theirs with its bug, on cases worked by hand."""

from __future__ import annotations

import numpy as np
import pytest

from edgekd.distill.retrieval import database_map
from edgekd.errors import UserError


def _angles(*degrees: float) -> np.ndarray:
    rad = np.radians(degrees)
    return np.stack([np.cos(rad), np.sin(rad)], 1)


def test_perfect_separation_scores_one() -> None:
    rng = np.random.default_rng(0)
    centres = np.eye(4) * 10
    db_y, q_y = rng.integers(0, 4, 50), rng.integers(0, 4, 20)
    db = centres[db_y] + rng.normal(0, 0.1, (50, 4))
    q = centres[q_y] + rng.normal(0, 0.1, (20, 4))
    for how in ("standard", "pkth"):
        assert database_map(db, db_y, q, q_y, interpolation=how) == pytest.approx(1.0)


def test_one_query_worked_by_hand() -> None:
    """Ranking relevant, not, not, relevant: precision 1, 1/2, 1/3, 1/2 at recall 1/2, 1/2, 1/2, 1."""
    db, db_y = _angles(0, 30, 60, 80), np.array([0, 1, 1, 0])
    q, q_y = _angles(0), np.array([0])
    # textbook: the best precision at recall >= r is 1 for r <= 0.5 (6 levels), 1/2 above (5 levels)
    assert database_map(db, db_y, q, q_y) == pytest.approx(8.5 / 11)
    # theirs: the rank whose recall is nearest each level; 0.6 and 0.7 are nearer 1/2 than 1 -> 8 levels at 1
    assert database_map(db, db_y, q, q_y, interpolation="pkth") == pytest.approx(9.5 / 11)


def test_their_interpolation_depends_on_the_query_batch() -> None:
    """Ranking not, relevant, relevant. Alone, no rank is interpolated (a batch of one query); with a
    second query in the batch, rank 1 takes rank 2's precision. The textbook value is 2/3 either way."""
    db, db_y = _angles(0, 30, 60), np.array([1, 0, 0])
    one, two = _angles(0), _angles(0, 0)
    assert database_map(db, db_y, one, [0]) == pytest.approx(2 / 3)
    assert database_map(db, db_y, two, [0, 0]) == pytest.approx(2 / 3)
    # levels 0-0.2 read rank 1 (precision 0), 0.3-0.7 rank 2 (1/2), 0.8-1 rank 3 (2/3)
    assert database_map(db, db_y, one, [0], interpolation="pkth") == pytest.approx((5 * 0.5 + 3 * 2 / 3) / 11)
    assert database_map(db, db_y, two, [0, 0], interpolation="pkth") == pytest.approx((8 * 0.5 + 3 * 2 / 3) / 11)


def test_chunks_do_not_change_the_textbook_score() -> None:
    rng = np.random.default_rng(1)
    db, db_y = rng.normal(size=(40, 3)), rng.integers(0, 3, 40)
    q, q_y = rng.normal(size=(25, 3)), rng.integers(0, 3, 25)
    scores = {database_map(db, db_y, q, q_y, chunk=c) for c in (1, 7, 128)}
    assert max(scores) - min(scores) < 1e-12 and 0.0 < min(scores) < 1.0


def test_queries_of_absent_classes_are_left_out_and_bad_input_fails() -> None:
    db, db_y = _angles(0, 90), np.array([0, 1])
    q, q_y = _angles(0, 0), np.array([0, 2])
    assert database_map(db, db_y, q, q_y) == pytest.approx(1.0)
    with pytest.raises(UserError, match="no query"):
        database_map(db, db_y, q[1:], q_y[1:])
    with pytest.raises(UserError, match="interpolation"):
        database_map(db, db_y, q, q_y, interpolation="other")
    with pytest.raises(UserError, match="-d"):
        database_map(db, db_y, np.ones((2, 3)), q_y)
