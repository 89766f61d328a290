"""The `trtexec` command line a user runs on the device for a TensorRT target profile.

One command builds the engine exactly as `edgekd.runtimes.tensorrt` does (same precision flags,
optimisation profile, workspace limit, timing cache and file names) and then measures it with
edgekd's timing protocol:

- warm-up: `--warmUp` = `warmup_s` (trtexec warms up by time only; `warmup_iters` has no equivalent);
- measurement: at least `--iterations` = `min_iters` runs and `--duration` = `min_time_s` seconds;
- `--percentile=50,90,99`: the percentiles edgekd reports, over single runs (trtexec computes them
  from every inference, whatever `--avgRuns` is; `--avgRuns` only groups its progress lines);
- `--noDataTransfers --useCudaGraph`: GPU compute time of one batch already on the device, which is
  what `edgekd.bench.cuda_events` measures with CUDA events on a captured graph;
- `--exportTimes`: every inference's timestamps, so the raw samples can be read back;
  `--exportProfile --separateProfileRun`: per-layer times from a second run that does not disturb the first.

INT8: trtexec cannot calibrate. `--calib=calibration.cache` reads the cache that edgekd's entropy
calibrator writes during a TensorRT build; without that file trtexec uses placeholder scales, so the
latency is representative but the accuracy is not.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Callable

from edgekd.bench.protocol import DEFAULT_TIMING, TimingConfig
from edgekd.config import Precision, TargetProfile
from edgekd.errors import UserError
from edgekd.runtimes.trt_settings import (
    CALIBRATION_CACHE_NAME,
    ENGINE_NAME,
    TIMING_CACHE_NAME,
    TrtSettings,
    trt_settings,
)

TIMES_NAME = "trtexec_times.json"
LAYER_PROFILE_NAME = "trtexec_profile.json"
PERCENTILES = (50, 90, 99)
# Progress lines only (see the module docstring); large enough not to flood a serial console.
AVG_RUNS = 100


def trtexec_command(
    profile: TargetProfile,
    onnx_name: str = "model.onnx",
    *,
    input_name: str = "input",
    input_shape: tuple[int, int, int] | None = None,
    timing: TimingConfig = DEFAULT_TIMING,
) -> str:
    """The command line, quoted for a POSIX shell; run it in the folder holding `onnx_name`."""
    return shlex.join(trtexec_args(profile, onnx_name, input_name=input_name, input_shape=input_shape, timing=timing))


def trtexec_args(
    profile: TargetProfile,
    onnx_name: str = "model.onnx",
    *,
    input_name: str = "input",
    input_shape: tuple[int, int, int] | None = None,
    timing: TimingConfig = DEFAULT_TIMING,
) -> list[str]:
    """`trtexec_command` as an argument list. C, H, W come from `input_shape` or else the profile."""
    settings = trt_settings(profile)
    chw = input_shape or profile.input_shape
    if chw is None:
        raise UserError(
            f"target {profile.name} has no input_shape; set input_shape: [C, H, W] in the profile"
            " or take it from the model"
        )

    def shape(batch: int) -> str:
        return f"{input_name}:" + "x".join(str(d) for d in (batch, *chw))

    build = [
        f"--onnx={onnx_name}",
        f"--saveEngine={ENGINE_NAME}",
        f"--minShapes={shape(settings.min_batch)}",
        f"--optShapes={shape(settings.opt_batch)}",
        f"--maxShapes={shape(settings.max_batch)}",
        *_precision_args(settings, shape),
        f"--memPoolSize=workspace:{settings.workspace_mb}M",
        f"--timingCacheFile={TIMING_CACHE_NAME}",
    ]
    if settings.optimization_level is not None:
        build.append(f"--builderOptimizationLevel={settings.optimization_level}")
    if settings.device_index:
        build.append(f"--device={settings.device_index}")
    measure = [
        f"--shapes={shape(settings.opt_batch)}",
        f"--warmUp={round(timing.warmup_s * 1000)}",
        f"--iterations={timing.min_iters}",
        f"--duration={math.ceil(timing.min_time_s)}",
        f"--avgRuns={AVG_RUNS}",
        "--percentile=" + ",".join(str(p) for p in PERCENTILES),
        "--noDataTransfers",
        "--useCudaGraph",
        f"--exportTimes={TIMES_NAME}",
        f"--exportProfile={LAYER_PROFILE_NAME}",
        "--separateProfileRun",
    ]
    return ["trtexec", *build, *measure]


def _precision_args(settings: TrtSettings, shape: Callable[[int], str]) -> list[str]:
    """The builder flags the Python build sets for the same precision."""
    precision = settings.precision
    if precision is Precision.FP32:
        return ["--noTF32"]  # Ampere (Orin) would otherwise run FP32 convolutions and GEMMs in TF32
    if precision is Precision.FP16:
        return ["--fp16"]
    if precision is Precision.BF16:
        return ["--bf16"]
    # INT8 keeps FP16 for layers without INT8 kernels, as the Python build does.
    calib = shape(settings.calibration_batch)
    return ["--int8", "--fp16", f"--calib={CALIBRATION_CACHE_NAME}", f"--optShapesCalib={calib}"]
