"""Benchmark scripts of edgekd itself (not of artifacts): each is `python -m benchmarks.NAME`."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def env_set(name: str, value: str) -> Iterator[None]:
    """Set the environment variable `name` to `value` for the block, then put back what was there."""
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous
