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
from typing import Any, TypeVar

# One sha256 of a file for host and device: the timing protocol's file imports nothing of edgekd's.
from edgekd.bench.protocol import sha256_file as file_sha256

T = TypeVar("T")

__all__ = [
    "atomic_dir",
    "atomic_path",
    "file_sha256",
    "pid_alive",
    "recover",
    "relocate",
    "relocated",
    "write_json",
    "write_text",
    "write_with",
]


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto `target` only on success. Temporary
    files that killed writers of `target` left are removed first."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    host = socket.gethostname().replace(".", "-")
    _sweep(target.parent, target.name, host)  # what writers of `target` that were killed left
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.{host}.{os.getpid()}.", suffix=".tmp", dir=target.parent)
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
    """Clean up after writers of `name` (on this host) that were killed: a temporary file or a staging
    folder is removed; a
    folder holding the previous `name` (killed between the two renames of the swap, or while merging) is
    put back: whole when `name` is missing, else what it holds and `name` lacks when the swap merged."""
    for stale in sorted(parent.glob(f".{name}.{host}.*.tmp")):
        pid = stale.name[len(f".{name}.{host}.") :].split(".", 1)[0]
        if not pid.isdigit() or pid_alive(int(pid)):
            continue
        old, target = stale / name, parent / name
        if stale.is_file():  # a file `atomic_path` was writing
            stale.unlink(missing_ok=True)
            continue
        if stale.name.endswith(_HELD) and old.is_dir():
            if not target.exists():
                os.replace(old, target)
            elif stale.name.endswith(_MERGE + _HELD):
                _merge(old, target)
        shutil.rmtree(stale, ignore_errors=True)


def _merge(old: Path, target: Path) -> None:
    for entry in old.iterdir():
        if not (target / entry.name).exists():
            os.replace(entry, target / entry.name)


_HELD, _MERGE = ".old.tmp", ".merge"


def recover(target: Path) -> None:
    """Finish or undo what killed writers of the folder `target` left (see `atomic_dir`): call before
    reading a folder that `atomic_dir` writes."""
    target = Path(target)
    if target.parent.is_dir():
        _sweep(target.parent, target.name, socket.gethostname().replace(".", "-"))


@contextmanager
def atomic_dir(target: Path, *, merge: bool = False) -> Iterator[Path]:
    """Yield an empty staging folder beside `target`; on success it takes `target`'s place in one rename.

    On a failure or an interruption the staging folder is removed and `target` is left as it was. With
    `merge`, what the old folder holds and the new one does not (a results store, the user's own files)
    is moved into the new one after the swap. Staging folders of killed processes are swept on the next use,
    and a swap a kill cut short is finished or undone then (the previous folder restored).
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
            # the holder's name says whether it merges, so the next writer can finish a killed swap
            held = _MERGE + _HELD if merge else _HELD
            old = Path(tempfile.mkdtemp(prefix=prefix, suffix=held, dir=target.parent)) / target.name
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            if merge:
                _merge(old, target)
            shutil.rmtree(old.parent, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def relocate(stage: Path, out: Path) -> None:
    """Name `out`, not the staging folder `stage`, in the small text files it holds (JSON, YAML, Markdown,
    scripts), before it is renamed onto `out`."""
    for path in stage.rglob("*"):
        if path.suffix not in (".json", ".yaml", ".md", ".sh") or not path.is_file():
            continue
        text = original = path.read_text()
        for old, new in _renames(stage, out):
            escape = path.suffix == ".json"
            text = text.replace(json.dumps(old)[1:-1] if escape else old, json.dumps(new)[1:-1] if escape else new)
        if text != original:
            write_text(path, text)


def relocated(obj: T, stage: Path, out: Path) -> T:
    """`obj` (JSON-like) with the staging folder's paths made `out`'s."""
    text = json.dumps(obj, default=str)
    for old, new in _renames(stage, out):
        text = text.replace(json.dumps(old)[1:-1], json.dumps(new)[1:-1])
    result: T = json.loads(text)
    return result


def _renames(stage: Path, out: Path) -> list[tuple[str, str]]:
    return [(str(stage.resolve()), str(out.resolve())), (str(stage), str(out))]


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
