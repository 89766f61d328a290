"""Load a dataset by its spec: `fashion-mnist`, a folder of class sub-folders, or an `.npz`."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

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
            raise UserError(f"data {self.name}: images must be N x C x H x W (or N x H x W), got shape {self.x.shape}")
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
