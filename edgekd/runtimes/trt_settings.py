"""What a target profile asks of TensorRT, validated once: the Python build and `trtexec` read the same.

The profile's `options` for TensorRT (all optional):

| option | meaning | default |
|---|---|---|
| `min_batch` | smallest batch the engine's optimisation profile accepts | 1 |
| `max_batch` | largest batch it accepts (the profile's `batch` is the one kernels are tuned for) | max(batch, 32) |
| `workspace_mb` | builder scratch-memory limit (memory pool WORKSPACE), MiB | 1024 |
| `calibration_batch` | images per INT8 calibration batch | 32 |
| `builder_optimization_level` | 0-5, TensorRT's default 3; higher builds slower, may run faster | TensorRT's |
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from edgekd.config import Precision, TargetProfile
from edgekd.errors import UserError

# The files a TensorRT build leaves in its folder (the Python build and trtexec write the same names).
ENGINE_NAME = "model.engine"
TIMING_CACHE_NAME = "timing.cache"
CALIBRATION_CACHE_NAME = "calibration.cache"

DEFAULT_MAX_BATCH = 32
_DEVICE = re.compile(r"^(cuda|gpu)(:(?P<index>\d+))?$")
DEFAULT_WORKSPACE_MB = 1024
DEFAULT_CALIBRATION_BATCH = 32
#: option -> smallest value allowed
_KNOWN = {"min_batch": 1, "max_batch": 1, "workspace_mb": 1, "calibration_batch": 1, "builder_optimization_level": 0}


@dataclass(frozen=True)
class TrtSettings:
    """Build settings for one profile: device, batch range of the optimisation profile, memory, INT8."""

    device_index: int
    precision: Precision
    min_batch: int
    opt_batch: int
    max_batch: int
    workspace_mb: int
    calibration_batch: int
    optimization_level: int | None


def trt_settings(profile: TargetProfile) -> TrtSettings:
    """Validate what `profile` asks of TensorRT; one-line UserError naming the field and the fix."""
    where = f"target {profile.name}"
    index = device_index(profile.device, where)
    options = _options(profile.options, where)
    batch = profile.batch
    min_batch = options.get("min_batch") or 1
    max_batch = options.get("max_batch") or max(batch, DEFAULT_MAX_BATCH)
    if not min_batch <= batch <= max_batch:
        raise UserError(
            f"{where}: need min_batch ({min_batch}) <= batch ({batch}) <= max_batch ({max_batch});"
            " fix batch or options in the profile"
        )
    level = options.get("builder_optimization_level")
    if level is not None and level > 5:
        raise UserError(f"{where}: options.builder_optimization_level must be 0-5, got {level}")
    return TrtSettings(
        device_index=index,
        precision=profile.precision,
        min_batch=min_batch,
        opt_batch=batch,
        max_batch=max_batch,
        workspace_mb=options.get("workspace_mb") or DEFAULT_WORKSPACE_MB,
        calibration_batch=options.get("calibration_batch") or DEFAULT_CALIBRATION_BATCH,
        optimization_level=level,
    )


def device_index(device: str, where: str = "TensorRT") -> int:
    """N of a device named cuda, cuda:N or gpu[:N]; UserError for anything else (cpu, npu, ...)."""
    match = _DEVICE.match(device.lower())
    if match is None:
        raise UserError(
            f"{where}: TensorRT runs on an NVIDIA GPU, so device must be cuda or cuda:N,"
            f" not {device!r}; fix device in the target profile"
        )
    return int(match.group("index") or 0)


def _options(options: dict[str, Any], where: str) -> dict[str, int]:
    """The TensorRT options a profile gives, each an integer in range; unknown names refused."""
    unknown = sorted(set(options) - set(_KNOWN))
    if unknown:
        raise UserError(f"{where}: unknown TensorRT option(s) {', '.join(unknown)}; known: {', '.join(_KNOWN)}")
    for key, value in options.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < _KNOWN[key]:
            raise UserError(f"{where}: options.{key} must be an integer >= {_KNOWN[key]}, got {value!r}")
    return dict(options)
