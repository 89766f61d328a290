"""Teacher-output cache: a frozen teacher's logits and tapped features per training sample, on disk.

The trainer feeds, for a row `sample * views + view`, the same pixels every epoch: the stored image, or
with augmentation one of the sample's K views, whose parameters are a pure function of (seed, sample,
view) (`edgekd.data.augment`; FKD's soft labels per crop). So the teacher's outputs depend on the row
alone, and the cache holds N x K rows. With one view the first epoch runs the teacher live and records
its outputs by row; with more, the trainer runs the teacher over every view before the first epoch
(`Distillation.fill_cache`). Later epochs read the rows from memory-mapped `.npy` files, so the teacher
costs (near) nothing; the cache is K times the size of a one-view cache (its size is checked against
the disk before it is written, and printed).

Layout: `<root>/<digest>/meta.json` and one `tap<i>.npy` per tap, N x (the tap's per-sample shape).
Features are stored as float16: after normalisation layers they lie far inside its range, and its
rounding (relative error at most 2^-11, about 5e-4) is far below what the kernel losses resolve; a tap
whose values would overflow float16 is kept in float32. Logits stay float32 (a few numbers a sample):
the tap `logits` and any tap named `logits.<name>` (HSSAKD's branch logits, `edgekd.distill.hssakd`).
The largest rounding error of every tap is measured while it is written and recorded in meta.json.

Bounded: the caches under one root are kept to `EDGEKD_CACHE_MAX_GB` (default 10) in all. Opening a
cache marks it used (its meta.json's time); after a new cache is written, the least recently used
others are deleted until the total fits (`evict`). Deleting a cache another process has open is safe on
POSIX systems: its mapped files live on until it closes them; the next run with that key rebuilds it.

Never silently reused: the folder is named by a digest of (teacher weights hash, data fingerprint,
taps, and with augmentation its parameters, K and the seed), and meta.json holds that key in full and
is checked on every open, so a cache made for another teacher, other data or other taps is detected and
rebuilt. A build fills a hidden temporary folder and is renamed into place only when every row is
written, so an interrupted build is never read; a folder whose files do not match its meta.json is
rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from edgekd._io import pid_alive
from edgekd.config import TrainConfig, cache_dir
from edgekd.data import Dataset, augment
from edgekd.distill import _ddp
from edgekd.errors import EdgekdError, UserError
from edgekd.ui import console

CACHE_FORMAT = "edgekd-teacher-cache-1"
LOGITS = "logits"
HALF_LIMIT = 32768.0  # half of float16's largest finite value (65504): larger values stay float32
DISK_MARGIN = 1 << 30  # leave a GiB free when sizing a cache against the disk
MAX_GB_ENV, DEFAULT_MAX_GB = "EDGEKD_CACHE_MAX_GB", 10.0


class CacheUnavailable(EdgekdError):
    """The cache cannot be built here (e.g. too little disk); distillation goes on with the live teacher."""


def weights_hash(model: nn.Module) -> str:
    """sha256 of a model's structure (its repr) and every parameter and buffer, bit for bit."""
    h = hashlib.sha256(f"{type(model).__qualname__}\n{model!r}".encode())
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}:{t.dtype}:{tuple(tensor.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class CacheKey:
    """What teacher outputs depend on: the teacher, the training samples in index order, the taps, and
    the views (`edgekd.data.augment.cache_key`; '' without augmentation, keeping one-view keys as they were)."""

    teacher: str
    data: str
    taps: tuple[str, ...]
    augment: str = ""

    def digest(self) -> str:
        parts = [CACHE_FORMAT, self.teacher, self.data, list(self.taps)] + ([self.augment] if self.augment else [])
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:20]

    def to_json(self) -> dict[str, Any]:
        out = {**asdict(self), "taps": list(self.taps)}
        if not self.augment:
            del out["augment"]
        return out


def _mismatch(meta: dict[str, Any], key: CacheKey, n: int) -> str | None:
    """Why a cache's meta.json does not fit the key, or None when it does."""
    if meta.get("format") != CACHE_FORMAT:
        return "has another format"
    stored = meta.get("key", {})
    for field, what in (("teacher", "another teacher"), ("data", "other data"), ("taps", "other taps")):
        if stored.get(field) != key.to_json()[field]:
            return f"was made for {what}"
    if stored.get("augment", "") != key.augment:
        return "was made for other augmented views"
    return None if meta.get("n") == n else "holds another number of samples"


def open_cache(folder: Path, key: CacheKey, n: int) -> tuple[dict[str, np.ndarray] | None, str]:
    """The cache's arrays by tap name (memory-mapped, read-only), or None and why it cannot be used."""
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        return None, "is missing" if not folder.exists() else "is incomplete (no meta.json)"
    try:
        meta = json.loads(meta_path.read_text())
        reason = _mismatch(meta, key, n)
        if reason:
            return None, reason
        arrays = {
            tap: np.load(folder / info["file"], mmap_mode="r", allow_pickle=False) for tap, info in meta["taps"].items()
        }
        for tap, info in meta["taps"].items():
            if arrays[tap].shape != (n, *info["shape"]) or str(arrays[tap].dtype) != info["dtype"]:
                return None, f"is incomplete ({info['file']} does not match meta.json)"
    except (OSError, ValueError, KeyError, TypeError) as err:
        return None, f"is unreadable ({type(err).__name__})"
    return arrays, "ok"


def is_logits(tap: str) -> bool:
    """Logits are stored exactly (float32): `logits`, and `logits.<name>` for other heads' logits."""
    return tap == LOGITS or tap.startswith(LOGITS + ".")


def read_rows(arrays: dict[str, np.ndarray], index: np.ndarray, device: torch.device) -> dict[str, Tensor]:
    """The cached taps of the samples `index`, in that order, as float32 tensors on `device`.

    The rows are gathered in their stored dtype and widened by torch: numpy's float16 -> float32 cast is
    scalar code, torch's is vectorised (the same values, bit for bit; 15 ms -> 3 ms a batch of 128 for a
    ResNet's four taps on this project's CPU).
    """
    return {
        tap: torch.from_numpy(np.ascontiguousarray(arr[index])).to(device=device, dtype=torch.float32)
        for tap, arr in arrays.items()
    }


class CacheBuilder:
    """Fills a temporary folder beside `folder` by sample index; `commit` renames it into place."""

    def __init__(self, folder: Path, key: CacheKey, n: int) -> None:
        self.folder, self.key, self.n = folder, key, n
        self.tmp = folder.with_name(f".{folder.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        self.arrays: dict[str, np.ndarray] = {}
        self.stats: dict[str, dict[str, float]] = {}
        self.filled = np.zeros(n, dtype=bool)

    @property
    def complete(self) -> bool:
        return bool(self.filled.all())

    def write(self, index: np.ndarray, taps: dict[str, Tensor]) -> None:
        """Record the teacher's outputs for the samples `index` (rows of every tap of the key)."""
        values = {tap: taps[tap].detach().float().cpu().numpy() for tap in self.key.taps}
        if not self.arrays:
            self._allocate(values)
        for tap, x in values.items():
            peak = float(np.abs(x).max(initial=0.0))
            if self.arrays[tap].dtype == np.float16 and peak > HALF_LIMIT:
                self._promote(tap)
            stored = x.astype(self.arrays[tap].dtype)
            err = float(np.abs(stored.astype(np.float32) - x).max(initial=0.0))
            stat = self.stats[tap]
            stat["max_abs"], stat["max_abs_err"] = max(stat["max_abs"], peak), max(stat["max_abs_err"], err)
            self.arrays[tap][index] = stored
        self.filled[index] = True

    def _allocate(self, values: dict[str, np.ndarray]) -> None:
        dtypes = {
            tap: np.float32 if is_logits(tap) or np.abs(x).max(initial=0.0) > HALF_LIMIT else np.float16
            for tap, x in values.items()
        }
        need = sum(self.n * x[0].size * np.dtype(dtypes[tap]).itemsize for tap, x in values.items())
        try:
            self.tmp.mkdir(parents=True)
            free = shutil.disk_usage(self.tmp).free
            if need > free - DISK_MARGIN:
                raise OSError(f"it needs {need / 2**30:.1f} GiB, {free / 2**30:.1f} GiB are free")
            for i, (tap, x) in enumerate(values.items()):
                self.arrays[tap] = _reserved_memmap(self.tmp / f"tap{i}.npy", dtypes[tap], (self.n, *x.shape[1:]))
                self.stats[tap] = {"max_abs": 0.0, "max_abs_err": 0.0}
        except OSError as err:
            self.discard()
            raise CacheUnavailable(f"cannot build the teacher cache in {self.folder.parent} ({err})") from None

    def _promote(self, tap: str) -> None:
        """Re-allocate a float16 tap as float32 (rows so far were in range, so they carry over)."""
        old = self.arrays[tap]
        path = Path(old.filename).with_suffix(".f32.npy")  # type: ignore[attr-defined]
        try:
            new = _reserved_memmap(path, np.dtype(np.float32), old.shape)
        except OSError as err:
            self.discard()
            raise CacheUnavailable(f"cannot build the teacher cache in {self.folder.parent} ({err})") from None
        new[:] = old
        self.arrays[tap] = new
        del old
        path.with_name(path.name.replace(".f32", "")).unlink()

    def commit(self) -> dict[str, np.ndarray]:
        """Flush, write meta.json last, and move the folder into place; returns the arrays to read."""
        taps: dict[str, Any] = {}
        for tap, arr in self.arrays.items():
            arr.flush()  # type: ignore[attr-defined]
            taps[tap] = {
                "file": Path(arr.filename).name,  # type: ignore[attr-defined]
                "shape": list(arr.shape[1:]),
                "dtype": str(arr.dtype),
                **self.stats[tap],
            }
        meta = {"format": CACHE_FORMAT, "key": self.key.to_json(), "n": self.n, "taps": taps}
        (self.tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        self.arrays = {}
        shutil.rmtree(self.folder, ignore_errors=True)  # a stale or half-written cache of this key
        try:
            os.replace(self.tmp, self.folder)
        except OSError:  # another process committed the same key meanwhile: read theirs
            self.discard()
        arrays, reason = open_cache(self.folder, self.key, self.n)
        if arrays is None:
            raise EdgekdError(f"the teacher cache {self.folder} {reason} right after it was written")
        return arrays

    def discard(self) -> None:
        self.arrays = {}
        shutil.rmtree(self.tmp, ignore_errors=True)


def size_limit() -> int:
    """The most bytes the caches under one root may hold together (`EDGEKD_CACHE_MAX_GB`)."""
    text = os.environ.get(MAX_GB_ENV, "").strip()
    try:
        gb = float(text) if text else DEFAULT_MAX_GB
    except ValueError:
        gb = -1.0
    if not gb >= 0:
        raise UserError(f"{MAX_GB_ENV}={text!r} is not a size; give a number of GB >= 0 (0 keeps only the newest)")
    return int(gb * 2**30)


def _folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.iterdir() if f.is_file())


def evict(root: Path, keep: Path, limit: int) -> list[Path]:
    """Delete the least recently used complete caches under `root`, never `keep`, until all of them
    together hold at most `limit` bytes; returns what was deleted."""
    caches = []
    for folder in root.iterdir():
        meta = folder / "meta.json"
        if folder.name.startswith(".") or not meta.is_file():
            continue  # a build in progress (hidden) or not a cache
        try:
            caches.append((meta.stat().st_mtime, _folder_bytes(folder), folder))
        except OSError:  # deleted meanwhile by another process
            continue
    total = sum(size for _, size, _ in caches)
    evicted = []
    for _, size, folder in sorted(caches, key=lambda c: c[0]):
        if total <= limit:
            break
        if folder.resolve() == keep.resolve():
            continue
        shutil.rmtree(folder, ignore_errors=True)
        total -= size
        evicted.append(folder)
    return evicted


def _reserved_memmap(path: Path, dtype: Any, shape: tuple[int, ...]) -> np.ndarray:
    """A writable .npy memmap whose disk blocks are reserved up front: a write to a sparse mapping on a
    full disk would kill the process (SIGBUS) instead of raising."""
    arr = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    if hasattr(os, "posix_fallocate"):
        with open(path, "r+b") as f:
            os.posix_fallocate(f.fileno(), 0, path.stat().st_size)
    return arr


def sweep_stale(folder: Path) -> None:
    """Delete temporary build folders of this key left by processes that no longer run."""
    for tmp in folder.parent.glob(f".{folder.name}.*.tmp"):
        pid = tmp.name.split(".")[2]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)


@dataclass(frozen=True)
class CacheSpec:
    """Where caches live and what the training data and its views are: enough, with the teacher, to key a
    cache of `n_samples * views` rows."""

    root: Path
    data: str  # fingerprint of the training split, in the order the trainer indexes it
    n_samples: int
    views: int = 1
    augment: str = ""  # `edgekd.data.augment.cache_key`: '' without augmentation

    def open(
        self, teacher: nn.Module, taps: tuple[str, ...], live: Callable[[Tensor], dict[str, Tensor]], stack: ExitStack
    ) -> CachedTeacher:
        """The cache of `teacher`'s `taps` on this data (keyed by its weights), opened for the run `stack`
        spans; `live` runs the teacher on a batch when the cache cannot answer."""
        key = CacheKey(weights_hash(teacher), self.data, taps, self.augment)
        cached = CachedTeacher(live, self.root / key.digest(), key, self.n_samples * self.views)
        cached.open(stack)
        return cached


SPOT_CHECK = 2  # samples re-run live at the start of each cached epoch
SPOT_TOLERANCE = 1e-2  # relative to the logits' scale: batch effects are ~1e-6, augmentation is ~1


class CachedTeacher:
    """Teacher taps of a batch by sample index: from the cache once it is complete, else live.

    While the cache is incomplete, live outputs are recorded by index; the build is committed when the
    last sample of an epoch has been seen, and thrown away if the run stops first. Each cached epoch
    starts by re-running the teacher on a few samples and comparing logits: if the inputs of an index
    changed (augmentation), the cache is dropped for the rest of the run and the teacher runs live.
    """

    def __init__(self, live: Callable[[Tensor], dict[str, Tensor]], folder: Path, key: CacheKey, n: int) -> None:
        self.live, self.folder, self.key, self.n = live, folder, key, n
        self.arrays: dict[str, np.ndarray] | None = None
        self.builder: CacheBuilder | None = None
        self.enabled, self.check_next = True, False
        self.limit = int(DEFAULT_MAX_GB * 2**30)

    def open(self, stack: ExitStack) -> None:
        """Open a complete cache of this key, or prepare to build one; a build left open is discarded."""
        self.limit = size_limit()  # a bad setting fails before training, not after the first epoch
        sweep_stale(self.folder)
        self.arrays, reason = open_cache(self.folder, self.key, self.n)
        if self.arrays is not None:
            os.utime(self.folder / "meta.json")  # used now: the last to be evicted
            console.print(f"teacher outputs: from the cache {self.folder}")
        elif reason != "is missing":
            console.print(f"teacher cache {self.folder} {reason}: rebuilding it")
        stack.callback(self._discard)

    def on_epoch(self) -> dict[str, float]:
        self.check_next = self.arrays is not None
        return {"teacher_cached": float(self.arrays is not None)}

    def __call__(self, x: Tensor, index: np.ndarray) -> dict[str, Tensor]:
        if len(index) and int(index.max()) >= self.n:  # views of a cache keyed for fewer (a one-view spec)
            if self.enabled:
                console.print("teacher cache keyed for fewer views than the trainer draws: the teacher runs live")
            self.arrays, self.enabled = None, False
            self._discard()
            return self.live(x)
        if self.arrays is not None:
            cached = read_rows(self.arrays, index, x.device)
            if not self.check_next or self._agrees(x, cached):
                return cached
        taps = self.live(x)
        if self.enabled and self.arrays is None:
            self._record(index, taps)
        return taps

    def _agrees(self, x: Tensor, cached: dict[str, Tensor]) -> bool:
        self.check_next = False
        live = self.live(x[:SPOT_CHECK])[LOGITS].float()
        ref = cached[LOGITS][:SPOT_CHECK]
        if float((live - ref).abs().max()) <= SPOT_TOLERANCE * max(1.0, float(ref.abs().max())):
            return True
        console.print(
            "teacher outputs no longer match the cache (do the inputs change between epochs?):"
            " the teacher runs live for the rest of this run"
        )
        self.arrays, self.enabled = None, False
        return False

    def _record(self, index: np.ndarray, taps: dict[str, Tensor]) -> None:
        if self.builder is None:
            self.builder = CacheBuilder(self.folder, self.key, self.n)
        try:
            self.builder.write(index, taps)
            if not self.builder.complete:
                return
            self.arrays, self.builder = self.builder.commit(), None
        except (CacheUnavailable, OSError) as err:  # no room, no permission: train on, live
            console.print(f"{err}: the teacher runs live (--no-cache silences this)")
            self._discard()
            self.enabled = False
            return
        size = sum(arr.nbytes for arr in self.arrays.values())
        console.print(f"teacher outputs cached in {self.folder} ({size / 2**20:.0f} MiB)")
        evicted = evict(self.folder.parent, self.folder, self.limit)
        if evicted:
            console.print(
                f"removed {len(evicted)} least recently used teacher cache(s) to stay within"
                f" {MAX_GB_ENV}={self.limit / 2**30:g}: {', '.join(f.name for f in evicted)}"
            )

    def _discard(self) -> None:
        if self.builder is not None:
            self.builder.discard()
            self.builder = None


def cache_usable() -> bool:
    """False under torchrun: each rank sees only its shard of the first epoch, so no one rank could fill
    the teacher-output cache; the teacher then runs live on every rank."""
    if not _ddp.from_env().active:
        return True
    if _ddp.from_env().main:
        console.print("teacher-output cache off under torchrun (each rank sees only its shard of the data)")
    return False


def teacher_cache(train: Dataset, cfg: TrainConfig | None = None) -> CacheSpec | None:
    """Where a teacher's outputs on the training split `train` (on `cfg`'s views of it) are cached, or None
    when no cache can be used here (under torchrun)."""
    if not cache_usable():
        return None
    views, key = 1, ""
    if cfg is not None and cfg.augment.active:
        views = augment.view_count(cfg)
        if views == augment.FRESH:
            console.print("augmentation draws a fresh view every epoch: the teacher runs live (--views K caches K)")
            return None
        key = augment.cache_key(cfg.augment, views, cfg.seed, train.input_shape[0])
    return CacheSpec(cache_dir() / "teacher-outputs", train.fingerprint(), len(train), views, key)
