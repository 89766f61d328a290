"""TensorRT: float ONNX -> serialized engine (`model.engine`) for an NVIDIA GPU, and a session on it.

The build parses the ONNX with TensorRT's ONNX parser, sets the profile's precision (FP32 without
TF32, FP16, BF16, or INT8 with FP16 fallback and an entropy calibrator fed by the calibration recipe),
one optimisation profile over the batch (min/opt/max from `edgekd.runtimes.trt_settings`), a
workspace limit, and a timing cache (`timing.cache`, reused by later builds and by trtexec). Files are
written atomically. An engine is tied to the TensorRT version and GPU model that built it: build on the
device. Without TensorRT, `prepare_offline` writes the trtexec command and the static pre-check.

Importing this module imports neither tensorrt nor CUDA (nor torch); CUDA calls go through
`edgekd.runtimes.cudart` (cuda-python, see there why). The adapter knows nothing about timing; its
session (`trt_session`) exposes `stage`/`enqueue` so that `edgekd.bench.cuda_events` can time it.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
from pathlib import Path
from types import ModuleType
from typing import Any

from edgekd._io import atomic_path, write_json, write_text
from edgekd.config import Precision, Runtime, TargetProfile
from edgekd.errors import EdgekdError, UserError
from edgekd.runtimes import RUNTIMES, Artifact, cudart
from edgekd.runtimes.trt_session import TensorRTSession
from edgekd.runtimes.trt_settings import (
    CALIBRATION_CACHE_NAME,
    ENGINE_NAME,
    TIMING_CACHE_NAME,
    TrtSettings,
    device_index,
    trt_settings,
)

__all__ = ["TensorRT", "TensorRTSession", "import_tensorrt", "prepare_offline"]

_DISTRIBUTIONS = ("tensorrt", "tensorrt-cu12", "tensorrt-cu13", "tensorrt-cu11")


def import_tensorrt() -> ModuleType:
    try:
        import tensorrt
    except ImportError:
        raise UserError(
            "runtime tensorrt is not installed on this machine; install TensorRT on the NVIDIA"
            " device (JetPack ships it; elsewhere pip install 'edgekd[tensorrt]')"
        ) from None
    result: ModuleType = tensorrt
    return result


@RUNTIMES.register(Runtime.TENSORRT.value)
class TensorRT:
    """TensorRT runtime adapter (see `edgekd.runtimes.RuntimeAdapter`)."""

    name = Runtime.TENSORRT
    install_hint = (
        "install TensorRT on the device (pip install 'edgekd[tensorrt]' on an NVIDIA machine),"
        " or add --offline to export the ONNX and trtexec.sh to build there"
    )

    @staticmethod
    def is_available() -> bool:
        return importlib.util.find_spec("tensorrt") is not None

    def version(self) -> str:
        for dist in _DISTRIBUTIONS:
            try:
                return importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                continue
        return str(import_tensorrt().__version__)  # JetPack installs it from apt, without pip metadata

    def build(self, onnx_path: Path, profile: TargetProfile, workdir: Path) -> Artifact:
        """Write `workdir/model.engine` and `workdir/timing.cache` (and `calibration.cache` for INT8)."""
        from edgekd.export.trt_check import check_for_tensorrt

        settings = trt_settings(profile)
        name, chw = _onnx_input(Path(onnx_path), profile)
        findings = check_for_tensorrt(Path(onnx_path), strict=True)  # clearer than the parser's complaint
        trt = import_tensorrt()
        gpu = cudart.select_device(settings.device_index)
        workdir = Path(workdir).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        logger = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(logger)
        network, parser = _parse(trt, builder, logger, Path(onnx_path))
        config = builder.create_builder_config()
        batches = _configure(trt, builder, network, config, settings, chw)
        # TensorRT holds only a pointer to the calibrator: this reference keeps it alive through the build.
        calibrator, calibration = _calibrate(trt, builder, network, config, profile, chw, workdir)
        timing_cache = workdir / TIMING_CACHE_NAME
        _use_timing_cache(config, timing_cache)
        serialized = builder.build_serialized_network(network, config)
        del parser  # it owns the weights until the build is done
        if calibrator is not None:
            calibrator.release()
        if serialized is None:
            raise EdgekdError(
                f"TensorRT could not build {Path(onnx_path).name} for {gpu}"
                f" ({profile.precision.value}); its log above says why"
            )
        engine = workdir / ENGINE_NAME
        for path, data in ((engine, serialized), (timing_cache, config.get_timing_cache().serialize())):
            with atomic_path(path) as tmp:
                tmp.write_bytes(memoryview(data))
        return Artifact(
            runtime=self.name.value,
            precision=profile.precision.value,
            path=engine,
            input_shape=chw,
            device=profile.device,
            threads=profile.threads,
            hint=profile.hint,
            target=profile.name,
            info={
                "tensorrt": trt.__version__,
                "gpu": gpu,
                "input": name,
                "batch": profile.batch,
                "min_batch": batches[0],
                "opt_batch": batches[1],
                "max_batch": batches[2],
                "workspace_mb": settings.workspace_mb,
                "timing_cache": TIMING_CACHE_NAME,
                **calibration,
                "trt_check": [f.line() for f in findings],
            },
        )

    def load(self, artifact: Artifact) -> TensorRTSession:
        """Deserialize the engine on the artifact's GPU; one execution context, buffers for the largest batch."""
        path = Path(artifact.path)
        if not path.is_file():
            raise UserError(f"TensorRT engine not found: {path}; build it with `edgekd export`")
        trt = import_tensorrt()
        cudart.select_device(device_index(artifact.device))
        logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(logger)
        engine = runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise UserError(
                f"{path} is not an engine TensorRT {trt.__version__} can run on this GPU (engines are"
                " tied to the TensorRT version and GPU that built them); rebuild it on this device"
            )
        return TensorRTSession(trt, runtime, engine)


def _onnx_input(onnx_path: Path, profile: TargetProfile) -> tuple[str, tuple[int, int, int]]:
    """Name and C, H, W of the ONNX model's input, checked against the profile's input_shape."""
    from edgekd.export.onnx import load_onnx, onnx_input_shape

    chw = onnx_input_shape(onnx_path)
    if profile.input_shape is not None and tuple(profile.input_shape) != chw:
        raise UserError(
            f"target {profile.name} expects input {list(profile.input_shape)} but {onnx_path} takes"
            f" {list(chw)}; fix input_shape in the profile or export the model for it"
        )
    return str(load_onnx(onnx_path).graph.input[0].name), chw


def _parse(trt: ModuleType, builder: Any, logger: Any, onnx_path: Path) -> tuple[Any, Any]:
    # TensorRT 10 networks are always explicit-batch; 8.x needs the flag.
    explicit = int(trt.__version__.split(".")[0]) < 10
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH) if explicit else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)).splitlines()[0] for i in range(parser.num_errors)]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise UserError(
            f"TensorRT's ONNX parser rejected {onnx_path.name}: {errors[0] if errors else 'no reason'}"
            f"{more}; see trt_check.json from the pre-check for fixes"
        )
    if network.num_inputs != 1:
        raise UserError(f"{onnx_path.name} has {network.num_inputs} inputs; edgekd builds models with one image input")
    return network, parser


def _configure(
    trt: ModuleType, builder: Any, network: Any, config: Any, settings: TrtSettings, chw: tuple[int, int, int]
) -> tuple[int, int, int]:
    """Workspace, precision flags and the optimisation profile; returns its (min, opt, max) batch."""
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, settings.workspace_mb << 20)
    if settings.optimization_level is not None:
        config.builder_optimization_level = settings.optimization_level
    if settings.precision is Precision.FP32:
        config.clear_flag(trt.BuilderFlag.TF32)  # Ampere GPUs (Orin) would run FP32 layers in TF32
    elif settings.precision is Precision.BF16:
        config.set_flag(trt.BuilderFlag.BF16)
    else:  # FP16, and INT8 with FP16 for the layers that have no INT8 kernel
        config.set_flag(trt.BuilderFlag.FP16)
    tensor = network.get_input(0)
    static = tensor.shape[0]  # an ONNX file with a fixed batch keeps it
    batches = (static,) * 3 if static > 0 else (settings.min_batch, settings.opt_batch, settings.max_batch)
    profile = builder.create_optimization_profile()
    profile.set_shape(tensor.name, *[(b, *chw) for b in batches])
    config.add_optimization_profile(profile)
    return batches


def _calibrate(
    trt: ModuleType,
    builder: Any,
    network: Any,
    config: Any,
    profile: TargetProfile,
    chw: tuple[int, int, int],
    workdir: Path,
) -> tuple[Any, dict[str, Any]]:
    """For INT8: set the INT8 flag, the entropy calibrator and its profile; (calibrator, artifact info)."""
    if profile.precision is not Precision.INT8:
        return None, {"calibration_cache": None}
    from edgekd.runtimes.trt_calibrator import calibration_batches, entropy_calibrator, recipe_samples

    samples, recipe = recipe_samples(profile, chw)
    batches = calibration_batches(samples, trt_settings(profile).calibration_batch, chw)
    config.set_flag(trt.BuilderFlag.INT8)
    calibrator = entropy_calibrator(trt, batches, workdir / CALIBRATION_CACHE_NAME)
    config.int8_calibrator = calibrator
    calibration = builder.create_optimization_profile()  # calibration runs at exactly one shape
    calibration.set_shape(network.get_input(0).name, *[(batches.shape[1], *chw)] * 3)
    config.set_calibration_profile(calibration)
    return calibrator, {
        "calibration_cache": CALIBRATION_CACHE_NAME,
        "calibration_recipe": recipe,
        "calibration_samples": int(batches.shape[0] * batches.shape[1]),
    }


def _use_timing_cache(config: Any, path: Path) -> None:
    """Start from the timing cache a previous build left (a cache of another TensorRT/GPU is ignored)."""
    previous = path.read_bytes() if path.is_file() else b""
    cache = config.create_timing_cache(previous)
    config.set_timing_cache(cache, ignore_mismatch=False)


def prepare_offline(onnx_path: Path, profile: TargetProfile, workdir: Path) -> dict[str, Any]:
    """Without TensorRT here: `workdir/trtexec.sh` (the build-and-measure command) and `trt_check.json`.

    The ONNX is copied into `workdir` when it is elsewhere, so the folder can be copied to the device
    and `sh trtexec.sh` run there. Returns what was written, the command and the findings.
    """
    from edgekd.export.trt_check import Severity, check_for_tensorrt, report
    from edgekd.runtimes.trtexec import trtexec_command

    onnx_path, workdir = Path(onnx_path), Path(workdir)
    name, chw = _onnx_input(onnx_path, profile)
    findings = check_for_tensorrt(onnx_path)
    workdir.mkdir(parents=True, exist_ok=True)
    local = workdir / onnx_path.name
    if not local.exists() or not local.samefile(onnx_path):
        shutil.copyfile(onnx_path, local)
    command = trtexec_command(profile, local.name, input_name=name, input_shape=chw)
    write_json(workdir / "trt_check.json", {**report(findings), "onnx": local.name, "target": profile.name})
    script = workdir / "trtexec.sh"
    write_text(script, _script(profile, command, any(f.severity is Severity.ERROR for f in findings)))
    os.chmod(script, 0o755)
    summary = report(findings)
    return {
        "onnx": local.name,
        "trtexec": script.name,
        "check": "trt_check.json",
        "command": command,
        "errors": summary["errors"],
        "warnings": summary["warnings"],
        "findings": summary["findings"],
    }


def _script(profile: TargetProfile, command: str, has_errors: bool) -> str:
    lines = [
        "#!/bin/sh",
        f"# Build and measure target {profile.name} with TensorRT's trtexec, on the device itself.",
        "# Written by edgekd; run it in this folder: sh trtexec.sh",
        "# Leaves model.engine and timing.cache (as edgekd's TensorRT build does), per-inference times in",
        "# trtexec_times.json and per-layer times in trtexec_profile.json.",
    ]
    if profile.precision is Precision.INT8:
        lines += [
            "# INT8: trtexec cannot calibrate. Put the calibration.cache of an edgekd TensorRT build here;",
            "# without it trtexec uses placeholder scales: latency is representative, accuracy is not.",
        ]
    if has_errors:
        lines.append("# WARNING: the pre-check found errors (trt_check.json); the build will likely fail.")
    lines += [
        "set -e",
        'cd "$(dirname "$0")"',
        'PATH="$PATH:/usr/src/tensorrt/bin"  # where JetPack puts trtexec',
        command.replace(" --", " \\\n  --"),
        "",
    ]
    return "\n".join(lines)
