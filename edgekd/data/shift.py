"""Domain shift on the fly: seeded corruptions of a test split (the ImageNet-C idea at this scale).

Numpy + PIL only, no torch: the bench worker scores artifacts on these sets in its own process.
Each corruption takes uint8 N x C x H x W images, a severity 1-5 and a numpy Generator, and returns
uint8 images of the same shape. The parameter per severity (1 -> 5):

    gaussian_noise  noise sigma, fraction of 255      0.08, 0.12, 0.18, 0.26, 0.38
    blur            Gaussian blur radius in pixels     0.5, 0.75, 1.0, 1.5, 2.0
    contrast        factor towards the image mean      0.6, 0.45, 0.3, 0.2, 0.1
    brightness      added, fraction of 255             0.1, 0.2, 0.3, 0.4, 0.5
    jpeg            JPEG quality                       25, 18, 15, 10, 7
    invert          blend towards 255 - x              0.2, 0.4, 0.6, 0.8, 1.0
    rotate          angle in degrees (sign seeded)     6, 12, 18, 24, 30
    pixelate        downscale factor, then upscale     0.6, 0.5, 0.4, 0.3, 0.25
    elastic         displacement std in pixels         0.4, 0.7, 1.0, 1.4, 2.0
                    (a seeded random field per image, smoothed by a Gaussian of sigma 2 px)

`shifted(dataset, name, severity, seed)` makes the same corrupted set for the same seed every time.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageFilter

from edgekd.data.datasets import Dataset
from edgekd.errors import UserError

SEVERITIES = (1, 2, 3, 4, 5)

Corruption = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]


def _pil_map(x: np.ndarray, fn: Callable[[Image.Image, int], Image.Image]) -> np.ndarray:
    """Apply `fn(image, index)` to each image (and each channel unless C is 1 or 3) through PIL."""
    n, c, h, w = x.shape
    out = np.empty_like(x)
    for i in range(n):
        if c == 3:
            img = fn(Image.fromarray(np.ascontiguousarray(x[i].transpose(1, 2, 0)), "RGB"), i)
            out[i] = np.asarray(img, dtype=np.uint8).reshape(h, w, 3).transpose(2, 0, 1)
        else:
            for ch in range(c):
                img = fn(Image.fromarray(np.ascontiguousarray(x[i, ch]), "L"), i)
                out[i, ch] = np.asarray(img, dtype=np.uint8).reshape(h, w)
    return out


def _clip(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = np.clip(np.rint(x), 0, 255).astype(np.uint8)
    return out


def gaussian_noise(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    sigma = (0.08, 0.12, 0.18, 0.26, 0.38)[severity - 1] * 255.0
    return _clip(x.astype(np.float32) + rng.normal(0.0, sigma, x.shape).astype(np.float32))


def blur(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    radius = (0.5, 0.75, 1.0, 1.5, 2.0)[severity - 1]
    return _pil_map(x, lambda img, _: img.filter(ImageFilter.GaussianBlur(radius)))


def contrast(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    factor = (0.6, 0.45, 0.3, 0.2, 0.1)[severity - 1]
    mean = x.astype(np.float32).mean(axis=(1, 2, 3), keepdims=True)
    return _clip((x.astype(np.float32) - mean) * factor + mean)


def brightness(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return _clip(x.astype(np.float32) + (0.1, 0.2, 0.3, 0.4, 0.5)[severity - 1] * 255.0)


def jpeg(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    quality = (25, 18, 15, 10, 7)[severity - 1]

    def compress(img: Image.Image, _: int) -> Image.Image:
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=quality)
        return Image.open(io.BytesIO(buf.getvalue())).convert(img.mode)

    return _pil_map(x, compress)


def invert(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    alpha = (0.2, 0.4, 0.6, 0.8, 1.0)[severity - 1]
    return _clip((1.0 - alpha) * x.astype(np.float32) + alpha * (255.0 - x.astype(np.float32)))


def rotate(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    angle = (6.0, 12.0, 18.0, 24.0, 30.0)[severity - 1]
    signs = rng.choice(np.array([-1.0, 1.0]), size=len(x))  # one draw per image, shared by its channels
    return _pil_map(x, lambda img, i: img.rotate(float(signs[i]) * angle, resample=Image.Resampling.BILINEAR))


def pixelate(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    factor = (0.6, 0.5, 0.4, 0.3, 0.25)[severity - 1]

    def pix(img: Image.Image, _: int) -> Image.Image:
        w, h = img.size
        small = img.resize((max(1, int(w * factor)), max(1, int(h * factor))), Image.Resampling.BOX)
        return small.resize((w, h), Image.Resampling.NEAREST)

    return _pil_map(x, pix)


def _smooth(field: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian smoothing over the last two axes (reflect padding), numpy only."""
    radius = max(1, int(3 * sigma))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    for axis in (-1, -2):
        pad = [(0, 0)] * field.ndim
        pad[axis] = (radius, radius)
        padded = np.pad(field, pad, mode="reflect")
        size = field.shape[axis]
        field = sum(w * np.take(padded, np.arange(k, k + size), axis=axis) for k, w in enumerate(taps))
    return field


def elastic(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Elastic deformation (Simard et al., 2003): a smooth random displacement field per image, shared by
    its channels, scaled to a standard deviation of `alpha` pixels; bilinear resampling, edges clamped."""
    alpha = (0.4, 0.7, 1.0, 1.4, 2.0)[severity - 1]
    n, c, h, w = x.shape
    field = _smooth(rng.uniform(-1.0, 1.0, (n, 2, h, w)), sigma=2.0)
    field *= alpha / max(float(field.std()), 1e-8)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    sy = np.clip(yy + field[:, 0], 0, h - 1)[:, None]  # N x 1 x H x W, broadcast over channels
    sx = np.clip(xx + field[:, 1], 0, w - 1)[:, None]
    y0, x0 = np.floor(sy).astype(np.intp), np.floor(sx).astype(np.intp)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    fy, fx = sy - y0, sx - x0
    img = x.astype(np.float64)
    ni, ci = np.arange(n)[:, None, None, None], np.arange(c)[None, :, None, None]

    def at(yi: np.ndarray, xi: np.ndarray) -> np.ndarray:
        out: np.ndarray = img[ni, ci, yi, xi]
        return out

    top = at(y0, x0) * (1 - fx) + at(y0, x1) * fx
    bottom = at(y1, x0) * (1 - fx) + at(y1, x1) * fx
    return _clip(top * (1 - fy) + bottom * fy)


CORRUPTIONS: dict[str, Corruption] = {
    "gaussian_noise": gaussian_noise,
    "blur": blur,
    "contrast": contrast,
    "brightness": brightness,
    "jpeg": jpeg,
    "invert": invert,
    "rotate": rotate,
    "pixelate": pixelate,
    "elastic": elastic,
}


def shifted(dataset: Dataset, name: str, severity: int, seed: int = 0) -> Dataset:
    """`dataset` with corruption `name` at `severity` (1-5); the same seed gives the same images."""
    fn = check_corruptions([name])[0]
    if severity not in SEVERITIES:
        raise UserError(f"severity must be 1-5, got {severity}")
    rng = np.random.default_rng([seed, zlib.crc32(name.encode()), severity])
    return Dataset(fn(dataset.x, severity, rng), dataset.y, dataset.classes, f"{dataset.name}+{name}-{severity}")


def check_corruptions(names: list[str]) -> list[Corruption]:
    unknown = [n for n in names if n not in CORRUPTIONS]
    if unknown:
        raise UserError(f"unknown --shift {', '.join(unknown)}; choose from all, {', '.join(CORRUPTIONS)}")
    return [CORRUPTIONS[n] for n in names]


def parse_shift(shift: str, severity: str = "3") -> list[tuple[str, int]]:
    """`--shift all|name[,name...]` and `--severity 1-5|all` -> [(corruption, severity), ...]."""
    names = list(CORRUPTIONS) if shift.strip() == "all" else [n.strip() for n in shift.split(",") if n.strip()]
    check_corruptions(names)
    if severity.strip() == "all":
        levels = list(SEVERITIES)
    elif severity.strip().isdigit() and int(severity) in SEVERITIES:
        levels = [int(severity)]
    else:
        raise UserError(f"--severity must be 1-5 or all, got {severity!r}")
    return [(n, s) for n in names for s in levels]


def parse_domains(domains: tuple[str, ...] | list[str]) -> dict[str, str]:
    """`--domain NAME=PATH` options -> {name: data spec}."""
    out: dict[str, str] = {}
    for item in domains:
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise UserError(f"--domain must be NAME=PATH (a folder or .npz), got {item!r}")
        out[name.strip()] = path.strip()
    return out
