"""An `.npz` with `x` (N x H x W or N x C x H x W, uint8 or float in [0, 1]) and `y` (N integer labels)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from edgekd.data.datasets import Dataset
from edgekd.data.formats import FORMATS
from edgekd.errors import UserError


def load(path: Path) -> Dataset:
    if not path.is_file():
        raise UserError(f"data file not found: {path}; check the path")
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = {"x", "y"} - set(f.files)
            if missing:
                raise UserError(f"{path} lacks array(s) {sorted(missing)}; save it with np.savez(path, x=..., y=...)")
            x, y = f["x"], f["y"]
            names = tuple(str(c) for c in f["classes"]) if "classes" in f.files else None
    except (zipfile.BadZipFile, ValueError, OSError) as err:
        raise UserError(f"cannot read {path} as .npz ({err}); save it with np.savez(path, x=..., y=...)") from None
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise UserError(f"{path}: x must be N x H x W or N x C x H x W, got shape {x.shape}")
    if x.shape[1] not in (1, 3) and x.shape[3] in (1, 3):
        x = x.transpose(0, 3, 1, 2)  # N x H x W x C -> N x C x H x W
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise UserError(f"{path}: y must be a 1-D array of integer labels, got {y.dtype} of shape {y.shape}")
    if x.dtype != np.uint8:
        if not np.isfinite(x).all():
            raise UserError(f"{path}: x holds NaN or infinite values; clean the data")
        x = np.clip(np.round(x.astype(np.float32) * 255.0), 0, 255).astype(np.uint8) if x.max() <= 1.0 else x
        if x.dtype != np.uint8:
            raise UserError(f"{path}: float images must lie in [0, 1] (or give uint8 0..255)")
    n_classes = len(names) if names else int(y.max()) + 1 if len(y) else 0
    classes = names or tuple(str(i) for i in range(n_classes))
    return Dataset(np.ascontiguousarray(x), y.astype(np.int64), classes, path.name)


@FORMATS.register("npz")
class Npz:
    """`--data PATH.npz`: one split (the validation split doubles as test)."""

    @staticmethod
    def matches(spec: str) -> bool:
        return Path(spec).suffix == ".npz"

    @staticmethod
    def read(spec: str) -> tuple[Dataset, Dataset | None]:
        return load(Path(spec)), None
