"""Atomic file writes: write to a temporary file beside the target, then rename over it."""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# One sha256 of a file for host and device: the timing protocol's file imports nothing of edgekd's.
from edgekd.bench.protocol import sha256_file as file_sha256

__all__ = ["atomic_dir", "atomic_path", "file_sha256", "pid_alive", "write_json", "write_text", "write_with"]


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


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _sweep(parent: Path, name: str, host: str) -> None:
    """Remove the staging folders of `name` that a killed process (of this host) left behind."""
    for stale in parent.glob(f".{name}.{host}.*.tmp"):
        pid = stale.name[len(f".{name}.{host}.") :].split(".", 1)[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)


@contextmanager
def atomic_dir(target: Path, *, merge: bool = False) -> Iterator[Path]:
    """Yield an empty staging folder beside `target`; on success it takes `target`'s place in one rename.

    On a failure or an interruption the staging folder is removed and `target` is left as it was. With
    `merge`, what the old folder holds and the new one does not (a results store, the user's own files)
    is moved into the new one after the swap. Staging folders of killed processes are swept on the next use.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    host = socket.gethostname().replace(".", "-")
    _sweep(target.parent, target.name, host)
    prefix = f".{target.name}.{host}.{os.getpid()}."
    tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it owner-only; give it a plain mkdir's mode
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=prefix, suffix=".tmp", dir=target.parent)) / target.name
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            for entry in old.iterdir() if merge else ():
                if not (target / entry.name).exists():
                    os.replace(entry, target / entry.name)
            shutil.rmtree(old.parent, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


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
