"""Load a dataset by its spec: `fashion-mnist`, a folder of class sub-folders, or an `.npz`."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.errors import UserError


@dataclass(frozen=True)
class Dataset:
    """One split of images (uint8, N x C x H x W) with integer labels."""

    x: np.ndarray
    y: np.ndarray
    classes: tuple[str, ...]
    name: str

    def __post_init__(self) -> None:
        if self.x.ndim != 4:
            raise UserError(
                f"data {self.name}: images must be N x C x H x W (or N x H x W), got shape {self.x.shape}"
            )
        if len(self.x) != len(self.y):
            raise UserError(f"data {self.name}: {len(self.x)} images but {len(self.y)} labels; make them match")
        if len(self.y) and (self.y.min() < 0 or self.y.max() >= len(self.classes)):
            raise UserError(
                f"data {self.name}: labels must lie in 0..{len(self.classes) - 1}, got {self.y.min()}..{self.y.max()}"
            )

    def __len__(self) -> int:
        return len(self.y)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        c, h, w = self.x.shape[1:]
        return int(c), int(h), int(w)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def subset(self, index: np.ndarray, name: str | None = None) -> Dataset:
        return Dataset(self.x[index], self.y[index], self.classes, name or self.name)

    def head(self, n: int | None) -> Dataset:
        return self if n is None or n >= len(self) else self.subset(np.arange(n), f"{self.name}[:{n}]")

    def fingerprint(self) -> str:
        """A short content hash: equal data, equal hash (used to key caches)."""
        h = hashlib.sha256()
        h.update(str(self.x.shape).encode())
        h.update(np.ascontiguousarray(self.x).tobytes())
        h.update(np.ascontiguousarray(self.y).astype(np.int64).tobytes())
        return h.hexdigest()[:16]


@dataclass(frozen=True)
class Split:
    """Train / validation / test, with how the validation split was drawn (recorded with every run)."""

    train: Dataset
    val: Dataset
    test: Dataset
    info: dict[str, object] = field(default_factory=dict)


def to_float(x: np.ndarray) -> np.ndarray:
    """uint8 images -> float32 in [0, 1], the input every edgekd model and artifact takes."""
    if x.dtype == np.uint8:
        return x.astype(np.float32) * np.float32(1.0 / 255.0)
    return x.astype(np.float32, copy=False)


def _read_pair(spec: str) -> tuple[Dataset, Dataset | None]:
    """(train, test-or-None) for a data spec."""
    from edgekd.data import fashion_mnist, folder, npz

    if spec in fashion_mnist.NAMES:
        return fashion_mnist.load("train"), fashion_mnist.load("test")
    path = Path(spec)
    if path.suffix == ".npz":
        return npz.load(path), None
    if path.is_dir():
        return folder.load(path)
    if not path.exists():
        raise UserError(
            f"data not found: {spec!r}; give 'fashion-mnist', a folder of class sub-folders, or an .npz file"
        )
    raise UserError(f"unsupported data {spec!r}; give 'fashion-mnist', a folder of class sub-folders, or an .npz")


def load_data(
    spec: str, *, val_fraction: float = 0.1, seed: int = 0, limit: int | None = None
) -> Split:
    """Load `spec` and split it: a seeded validation split drawn from the training data.

    `limit` keeps the first N training samples (before the split), for quick trials. Data without its
    own test split (an .npz, a folder without train/ and test/) uses the validation split as test.
    """
    train, test = _read_pair(spec)
    train = train.head(limit)
    n_val = int(round(len(train) * val_fraction))
    if len(train) - n_val < 1:
        raise UserError(f"data {spec!r}: {len(train)} samples leave nothing to train on; use more data")
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
