"""Training-time augmentation as views: parameters drawn from (seed, sample, view), applied to uint8 batches.

A view of a sample is a crop offset after zero padding, a flip bit and an erase box (or none). Its
parameters are a pure function of (seed, sample index, view index k in 0..K-1): a counter-based hash
(splitmix64), so any view of any sample can be rebuilt in any order, on any process, without state. That
is what lets the teacher-output cache store the teacher's outputs for K views per sample (the FKD idea:
soft labels per crop) and the student read the very view the teacher saw. Each epoch the trainer draws,
for every sample, one of its K views from a generator seeded by (seed, epoch) (`epoch_views`).

Random erasing (Zhong et al.) covers a box of 2-33% of the image, aspect ratio 0.3-3.3, with one grey
level drawn per view (a constant, not per-pixel noise, so the view stays a few numbers).

Only the training split is augmented: evaluation, validation and calibration read the stored images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edgekd.config import Augment, Flip, TrainConfig

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_ERASE_AREA = (0.02, 1 / 3)
_ERASE_LOG_RATIO = (np.log(0.3), np.log(1 / 0.3))
_FIELDS = 9  # independent 64-bit draws per view


@dataclass(frozen=True)
class ViewParams:
    """The parameters of a batch of views, one row each (crop offsets in the padded image)."""

    dy: np.ndarray
    dx: np.ndarray
    flip: np.ndarray  # bool
    erase: np.ndarray  # bool: whether the box below is erased
    ey: np.ndarray
    ex: np.ndarray
    eh: np.ndarray
    ew: np.ndarray
    value: np.ndarray  # uint8 grey level of the erased box


def _splitmix(z: np.ndarray) -> np.ndarray:
    z = z + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    out: np.ndarray = z ^ (z >> np.uint64(31))
    return out


def _uniform(seed: int, sample: np.ndarray, view: np.ndarray) -> np.ndarray:
    """len(sample) x _FIELDS uniforms in [0, 1), a pure function of (seed, sample, view, field)."""
    with np.errstate(over="ignore"):
        key = _splitmix(np.full(len(sample), seed & 0xFFFFFFFFFFFFFFFF, dtype=np.uint64))
        key = _splitmix(key ^ sample.astype(np.uint64))
        key = _splitmix(key ^ view.astype(np.uint64))
        bits = _splitmix(key[:, None] ^ np.arange(1, _FIELDS + 1, dtype=np.uint64)[None, :])
    return (bits >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def draw(aug: Augment, seed: int, sample: np.ndarray, view: np.ndarray, size: tuple[int, int]) -> ViewParams:
    """The views `view` of the samples `sample` for images of `size` (H, W)."""
    u = _uniform(seed, np.asarray(sample), np.asarray(view))
    h, w = size
    span = 2 * aug.pad + 1
    area = h * w * (_ERASE_AREA[0] + u[:, 4] * (_ERASE_AREA[1] - _ERASE_AREA[0]))
    ratio = np.exp(_ERASE_LOG_RATIO[0] + u[:, 5] * (_ERASE_LOG_RATIO[1] - _ERASE_LOG_RATIO[0]))
    eh = np.clip(np.sqrt(area * ratio), 1, h).astype(np.int64)
    ew = np.clip(np.sqrt(area / ratio), 1, w).astype(np.int64)
    return ViewParams(
        dy=(u[:, 0] * span).astype(np.int64),
        dx=(u[:, 1] * span).astype(np.int64),
        flip=u[:, 2] < 0.5,
        erase=u[:, 3] < aug.erase,
        ey=(u[:, 6] * (h - eh + 1)).astype(np.int64),
        ex=(u[:, 7] * (w - ew + 1)).astype(np.int64),
        eh=eh,
        ew=ew,
        value=(u[:, 8] * 256).astype(np.uint8),
    )


def flips(aug: Augment, channels: int) -> bool:
    """Whether `aug` flips images with `channels` channels (`auto`: 3-channel only; see `Flip`)."""
    return aug.flip == Flip.ON or (aug.flip == Flip.AUTO and channels == 3)


def apply(x: np.ndarray, p: ViewParams, aug: Augment) -> np.ndarray:
    """The views `p` of the uint8 batch `x` (B x C x H x W): pad, crop (and flip) in one gather, then erase."""
    b, c, h, w = x.shape
    pad = aug.pad
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad))) if pad else x
    rows = p.dy[:, None] + np.arange(h)[None, :]
    cols = np.arange(w)[None, :].repeat(b, 0)
    if flips(aug, c):
        cols = np.where(p.flip[:, None], w - 1 - cols, cols)
    cols = p.dx[:, None] + cols
    out = xp[
        np.arange(b)[:, None, None, None],
        np.arange(c)[None, :, None, None],
        rows[:, None, :, None],
        cols[:, None, None, :],
    ]
    if aug.erase > 0:
        yy, xx = np.arange(h)[None, :, None], np.arange(w)[None, None, :]
        box = (
            p.erase[:, None, None]
            & (yy >= p.ey[:, None, None])
            & (yy < (p.ey + p.eh)[:, None, None])
            & (xx >= p.ex[:, None, None])
            & (xx < (p.ex + p.ew)[:, None, None])
        )
        out = np.where(box[:, None], p.value[:, None, None, None], out)
    return np.ascontiguousarray(out, dtype=np.uint8)


def views_of(x: np.ndarray, aug: Augment, seed: int, sample: np.ndarray, view: np.ndarray) -> np.ndarray:
    """`apply(x, draw(...))`: the views `view` of the samples `sample`, whose images are `x`."""
    return apply(x, draw(aug, seed, sample, view, (x.shape[2], x.shape[3])), aug)


FRESH = 0  # views per sample: a new one every epoch (the view's id is the epoch), none cacheable


def view_count(cfg: TrainConfig) -> int:
    """The views per sample `cfg` trains on: `cfg.views` with augmentation (FRESH: a new view each epoch),
    else 1 (every view the same)."""
    return cfg.views if cfg.augment.active else 1


def epoch_views(seed: int, epoch: int, n: int, k: int) -> np.ndarray:
    """Which of its `k` views each of `n` samples shows in `epoch` (all zeros for one view; the epoch's
    own view for FRESH)."""
    if k == FRESH:
        return np.full(n, epoch, dtype=np.int64)
    if k == 1:
        return np.zeros(n, dtype=np.int64)
    return np.random.default_rng([seed, epoch, 0x5EED]).integers(0, k, size=n)


def cache_key(aug: Augment, views: int, seed: int, channels: int) -> str:
    """What the teacher's outputs on the views depend on besides the teacher and the data ('' for none)."""
    if not aug.active:
        return ""
    return f"augment-1 pad={aug.pad} flip={int(flips(aug, channels))} erase={aug.erase!r} views={views} seed={seed}"


def describe(aug: Augment, views: int, channels: int) -> dict[str, Any]:
    """What a run's meta records: the settings, the resolved flip, and the number of views."""
    return {**aug.model_dump(), "flips": flips(aug, channels), "views": views, "active": aug.active}
