"""`--data` specs -> datasets split for training: each spec is read by the format that claims it."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.data.datasets import Dataset, Split
from edgekd.data.formats import FORMATS
from edgekd.errors import UserError


def _read_pair(spec: str) -> tuple[Dataset, Dataset | None]:
    """(train, test-or-None) for a data spec, read by the first registered format that claims it."""
    for name in FORMATS.names():
        fmt = FORMATS.create(name)
        if fmt.matches(spec):
            return fmt.read(spec)
    if not Path(spec).exists():
        raise UserError(
            f"data not found: {spec!r}; give 'fashion-mnist', a folder of class sub-folders, or an .npz file"
        )
    raise UserError(f"unsupported data {spec!r}; give 'fashion-mnist', a folder of class sub-folders, or an .npz")


def load_data(spec: str, *, val_fraction: float = 0.1, seed: int = 0, limit: int | None = None) -> Split:
    """Load `spec` and split it: a seeded validation split drawn from the training data.

    `limit` keeps the first N training samples (before the split), for quick trials. Data without its
    own test split (an .npz, a folder without train/ and test/) uses the validation split as test.
    """
    train, test = _read_pair(spec)
    train = train.head(limit)
    n_val = int(round(len(train) * val_fraction))
    if len(train) - n_val < 1:
        raise UserError(f"data {spec!r}: {len(train)} samples leave nothing to train on; use more data")
    if val_fraction > 0 and (n_val < 1 or len(train) - n_val < 2):
        raise UserError(
            f"data {spec!r}: {len(train)} samples are too few for a training and a validation split"
            f" ({val_fraction:g} held out); use more data (or a larger --limit)"
        )
    order = np.random.default_rng(seed).permutation(len(train))
    val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
    val = train.subset(val_idx, f"{train.name}/val")
    info: dict[str, object] = {
        "data": spec,
        "limit": limit,
        "val_fraction": val_fraction,
        "split_seed": seed,
        "n_train": int(len(train_idx)),
        "n_val": int(n_val),
        "val_index_sha": hashlib.sha256(val_idx.astype(np.int64).tobytes()).hexdigest()[:16],
    }
    if test is None:
        test = val
        info["test"] = "val"
    else:
        info["test"] = "test"
        info["n_test"] = len(test)
    return Split(train.subset(train_idx, f"{train.name}/train"), val, test, info)


def evaluation_split(spec: str, trained: Mapping[str, Any] | None = None) -> tuple[Dataset, str]:
    """What to score a model on, and a description of it: the data's own test split when it has one;
    otherwise the validation split drawn as the model's training drew it (`trained` is the `split` a
    checkpoint records: its seed and fraction), so the score is on images the model never trained on.
    Without that record (an ONNX file, a model from elsewhere), the default split, seed 0."""
    trained = trained or {}
    seed, fraction = int(trained.get("split_seed", 0)), float(trained.get("val_fraction", 0.1))
    split = load_data(spec, val_fraction=fraction, seed=seed)
    if split.info["test"] == "test":
        return split.test, f"{spec} (test split)"
    how = "the model's own" if trained and trained.get("data") in (None, spec) else "seed-drawn"
    return split.test, f"{spec} (no test split: {how} validation split, seed {seed}, {fraction:g} of the data)"
