"""INT8 calibration for TensorRT: an IInt8EntropyCalibrator2 fed by edgekd's calibration recipe.

The calibrator class derives from a TensorRT class, so it is made by a function that receives the
imported `tensorrt` module: importing this file imports neither tensorrt nor CUDA. TensorRT runs the
network in FP32 on the calibration batches, builds activation histograms and picks each tensor's INT8
scale by minimising the KL divergence (entropy calibration, version 2: TensorRT's recommended choice
for CNNs). The scales land in `calibration.cache`, which `trtexec --calib` reads on the device.

TensorRT >= 10.1 marks calibrators (implicit quantization) deprecated in favour of explicit Q/DQ
graphs (TensorRT Model Optimizer); they still work in every 10.x release, including JetPack 6's 10.3.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgekd._io import atomic_path
from edgekd.config import TargetProfile
from edgekd.errors import UserError
from edgekd.runtimes import cudart


def calibration_batches(samples: np.ndarray, batch: int, chw: tuple[int, int, int]) -> np.ndarray:
    """`samples` (N x C x H x W float32) as B x batch x C x H x W; a last partial batch is dropped.

    With fewer samples than `batch`, one batch of all of them. The engine's calibration profile is
    built for exactly this batch size.
    """
    samples = np.asarray(samples)
    if samples.ndim != 4 or tuple(samples.shape[1:]) != tuple(chw):
        raise UserError(
            f"calibration samples have shape {tuple(samples.shape)} but the model takes"
            f" N x {' x '.join(map(str, chw))}; use a recipe for this model's input"
        )
    if len(samples) == 0:
        raise UserError("the calibration recipe gave no samples; raise its sample count")
    batch = min(batch, len(samples))
    count = len(samples) // batch
    data = np.ascontiguousarray(samples[: count * batch], dtype=np.float32)
    return data.reshape(count, batch, *chw)


def recipe_samples(profile: TargetProfile, chw: tuple[int, int, int]) -> tuple[np.ndarray, str]:
    """(samples, recipe name): the profile's calibration recipe (else the default one) for input C x H x W."""
    from edgekd.data.calibration import calibration_samples, load_recipe

    recipe = load_recipe(profile.calibration)
    return np.asarray(calibration_samples(recipe, chw), dtype=np.float32), recipe.name


def entropy_calibrator(trt: Any, batches: np.ndarray, cache_path: Path) -> Any:
    """An IInt8EntropyCalibrator2 that feeds `batches` (from `calibration_batches`) one by one.

    It always calibrates (a cache left in the folder may belong to another model) and writes the
    resulting scales to `cache_path` atomically.
    """

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):  # type: ignore[misc]
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.batch = int(batches.shape[1])
            self._batches = batches
            self._next = 0
            self._stream = cudart.Stream()
            self._buffer = cudart.DeviceBuffer(batches[0].nbytes)

        def get_batch_size(self) -> int:
            return self.batch

        def get_batch(self, names: list[str]) -> list[int] | None:
            if self._next >= len(self._batches):
                return None
            cudart.to_device(self._buffer.ptr, self._batches[self._next], self._stream)
            self._stream.synchronize()
            self._next += 1
            return [self._buffer.ptr]

        def read_calibration_cache(self) -> bytes | None:
            return None

        def write_calibration_cache(self, cache: Any) -> None:
            with atomic_path(cache_path) as tmp:
                tmp.write_bytes(memoryview(cache))

        def release(self) -> None:
            self._buffer.free()
            self._stream.destroy()

    return EntropyCalibrator()
