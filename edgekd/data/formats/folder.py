"""A folder of class sub-folders of PNG/JPEG images (ImageFolder layout).

`root/<class>/<image>` is one split; `root/train/<class>/...` plus `root/test/<class>/...` gives both.
All images are resized to the size of the first one, keeping its channel count (1 = grey, 3 = RGB).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekd.data.datasets import Dataset
from edgekd.data.formats import FORMATS
from edgekd.errors import UserError

EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp"}


def _read_split(root: Path, classes: tuple[str, ...] | None = None) -> Dataset:
    from PIL import Image

    found = tuple(sorted(d.name for d in root.iterdir() if d.is_dir()))
    if not found:
        raise UserError(f"{root} has no class sub-folders; lay it out as {root}/<class>/<image>.png")
    classes = classes or found
    unknown = set(found) - set(classes)
    if unknown:
        raise UserError(f"{root} has classes {sorted(unknown)} that the training split lacks")
    images, labels = [], []
    size: tuple[int, int] | None = None
    mode = "L"
    for label, name in enumerate(classes):
        folder = root / name
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() not in EXTENSIONS:
                continue
            try:
                with Image.open(path) as img:
                    if size is None:
                        size, mode = img.size, ("L" if img.mode in ("L", "1", "I;16") else "RGB")
                    arr = np.asarray(img.convert(mode).resize(size))
            except (OSError, ValueError) as err:  # PIL's UnidentifiedImageError is an OSError
                raise UserError(f"cannot read image {path} ({type(err).__name__}); remove or replace it") from None
            images.append(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1))
            labels.append(label)
    if not images:
        raise UserError(f"{root} holds no images ({', '.join(sorted(EXTENSIONS))}); add some")
    return Dataset(np.stack(images).astype(np.uint8), np.asarray(labels, np.int64), classes, root.name)


def load(root: Path) -> tuple[Dataset, Dataset | None]:
    if (root / "train").is_dir() and (root / "test").is_dir():
        train = _read_split(root / "train")
        return train, _read_split(root / "test", train.classes)
    return _read_split(root), None


@FORMATS.register("folder")
class ImageFolder:
    """`--data DIR`: class sub-folders, or train/ and test/ each holding them."""

    @staticmethod
    def matches(spec: str) -> bool:
        return Path(spec).is_dir()

    @staticmethod
    def read(spec: str) -> tuple[Dataset, Dataset | None]:
        return load(Path(spec))
