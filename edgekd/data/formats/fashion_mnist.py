"""Fashion-MNIST from the Debian package `dataset-fashion-mnist` (idx gz files; nothing downloaded)."""

from __future__ import annotations

import gzip
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from edgekd.data.datasets import Dataset
from edgekd.data.formats import FORMATS
from edgekd.errors import UserError

NAMES = ("fashion-mnist", "fashion_mnist", "fmnist")
CLASSES = (
    "t-shirt/top",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
)
DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
_FILES = {"train": "train-{}-idx{}-ubyte.gz", "test": "t10k-{}-idx{}-ubyte.gz"}


def data_dir() -> Path:
    return Path(os.environ.get("EDGEKD_FASHION_MNIST", DEFAULT_DIR))


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    if not path.is_file():
        raise UserError(
            f"Fashion-MNIST file missing: {path}; install it with 'apt-get install -y dataset-fashion-mnist'"
            " (or set EDGEKD_FASHION_MNIST to a folder holding the idx .gz files)"
        )
    with gzip.open(path, "rb") as f:
        raw = f.read()
    header = 4 + 4 * ndim
    dims = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4)
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(tuple(int(d) for d in dims))


@lru_cache(maxsize=2)
def load(split: str) -> Dataset:
    """The train (60k) or test (10k) split as uint8 N x 1 x 28 x 28."""
    pattern = _FILES[split]
    images = _read_idx(data_dir() / pattern.format("images", 3), 3)
    labels = _read_idx(data_dir() / pattern.format("labels", 1), 1)
    x = images[:, None, :, :]
    x.setflags(write=False)
    return Dataset(x, labels.astype(np.int64), CLASSES, f"fashion-mnist/{split}")


@FORMATS.register("fashion-mnist")
class FashionMnist:
    """`--data fashion-mnist`: the built-in data, with its own test split."""

    @staticmethod
    def matches(spec: str) -> bool:
        return spec in NAMES

    @staticmethod
    def read(spec: str) -> tuple[Dataset, Dataset | None]:
        return load("train"), load("test")
