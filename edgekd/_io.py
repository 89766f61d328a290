"""Atomic file writes: write to a temporary file beside the target, then rename over it."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# One sha256 of a file for host and device: the timing protocol's file imports nothing of edgekd's.
from edgekd.bench.protocol import sha256_file as file_sha256

__all__ = ["atomic_path", "file_sha256", "pid_alive", "write_json", "write_text", "write_with"]


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto `target` only on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():
            # mkstemp makes the file owner-only; give it the mode a plain open() would (0666 & ~umask)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text(target: Path, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text)


def write_json(target: Path, obj: Any) -> None:
    write_text(target, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_with(target: Path, writer: Callable[[Path], None]) -> None:
    """Atomically produce `target` with a writer that takes a path (torch.save, onnx.save, ...)."""
    with atomic_path(target) as tmp:
        writer(tmp)


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid runs on this machine (one of another user counts as running)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
