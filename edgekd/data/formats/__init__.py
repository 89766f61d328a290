"""Data formats, one file each: a format says which `--data` specs are its own and reads them.

Each module here defines a class registered in `FORMATS` with two static methods:
`matches(spec: str) -> bool` and `read(spec: str) -> (train Dataset, test Dataset or None)`. The
registry imports every module of this package on its first lookup, so a new format is one new file.
"""

from __future__ import annotations

from typing import Protocol

from edgekd.data.datasets import Dataset
from edgekd.registry import Registry


class DataFormat(Protocol):
    """What a registered format provides (the class itself is registered; it is never instantiated)."""

    @staticmethod
    def matches(spec: str) -> bool: ...

    @staticmethod
    def read(spec: str) -> tuple[Dataset, Dataset | None]: ...


FORMATS: Registry[DataFormat] = Registry("data format", package=__name__)

__all__ = ["FORMATS", "DataFormat"]
