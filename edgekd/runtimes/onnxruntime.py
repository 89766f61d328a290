"""ONNX Runtime: an offline graph-optimised copy of the float ONNX (FP32) or a static INT8 QDQ model
calibrated from a recipe (INT8, see `_ort_quant`), run by the CPU (or CUDA) provider.

`onnxruntime` is imported inside the methods only, so importing this module stays cheap.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
from pathlib import Path
from typing import Any

import numpy as np

from edgekd._io import atomic_path
from edgekd.config import Precision, Runtime, TargetProfile
from edgekd.errors import UserError
from edgekd.runtimes import RUNTIMES, Artifact

ARTIFACT_NAME = "model.ort.onnx"
INT8_ARTIFACT_NAME = "model.int8.onnx"

# Device name in a target profile -> ONNX Runtime execution providers, best first.
_PROVIDERS: dict[str, list[str]] = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "gpu": ["CUDAExecutionProvider", "CPUExecutionProvider"],
}


class OrtSession:
    """A loaded artifact; `run` maps a float32 N x C x H x W batch to logits.

    A run on the very array of the previous run (the timing loop) goes through an IOBinding made on the
    previous run: the input bound as it is (shared memory), the output written into a buffer allocated
    once, so the call allocates and converts nothing (about half the per-call cost of `session.run`).
    """

    def __init__(self, session: Any) -> None:
        self._session = session
        self._input = session.get_inputs()[0].name
        self._outputs = [session.get_outputs()[0].name]
        self._binding = session.io_binding()
        self._last: Any = None  # the caller's array the binding wraps (None: bind on the next run)
        self._out = np.empty(0, dtype=np.float32)  # the bound output buffer

    def run(self, inputs: np.ndarray) -> np.ndarray:
        """Logits; on the previous run's array, the session's own buffer (overwritten by the next run),
        else a new array."""
        if inputs is self._last:
            self._session.run_with_iobinding(self._binding)
            return self._out
        logits: np.ndarray = self._session.run(self._outputs, {self._input: inputs})[0]
        self._bind(inputs, logits)
        return logits

    def _bind(self, inputs: Any, logits: np.ndarray) -> None:
        """Bind `inputs` and an output buffer like `logits` for the next run on the same array."""
        self._last = None
        if not (isinstance(inputs, np.ndarray) and inputs.dtype == np.float32 and inputs.flags.c_contiguous):
            return  # ORT converted it: a binding would see a copy, not the caller's array
        if self._out.shape != logits.shape or self._out.dtype != logits.dtype:
            self._out = np.empty_like(logits)
        self._binding.bind_cpu_input(self._input, inputs)
        self._binding.bind_output(
            self._outputs[0], "cpu", 0, self._out.dtype.type, list(self._out.shape), self._out.ctypes.data
        )
        self._last = inputs


@RUNTIMES.register(Runtime.ONNXRUNTIME.value)
class OnnxRuntime:
    """Runtime adapter for ONNX Runtime (see `edgekd.runtimes.RuntimeAdapter`)."""

    name = Runtime.ONNXRUNTIME
    install_hint = "pip install onnxruntime"

    @staticmethod
    def is_available() -> bool:
        return importlib.util.find_spec("onnxruntime") is not None

    def version(self) -> str:
        return importlib.metadata.version("onnxruntime")

    def build(self, onnx_path: Path, profile: TargetProfile, workdir: Path) -> Artifact:
        """FP32: `workdir/model.ort.onnx`, the float model with ONNX Runtime's graph rewrites applied.
        INT8: `workdir/model.int8.onnx`, QDQ quantized with the recipe named by `profile.calibration`.
        """
        from edgekd.export.onnx import onnx_input_shape

        if profile.precision not in (Precision.FP32, Precision.INT8):
            raise UserError(
                f"onnxruntime {profile.precision.value} builds are not supported (ONNX Runtime's CPU provider runs"
                " fp32 and int8); use precision: fp32 or int8, or an openvino target for fp16/bf16"
            )
        # Dynamic C, H or W take the profile's input_shape (`--input-shape`); fixed ones must match it.
        input_shape = onnx_input_shape(Path(onnx_path), profile.input_shape, what=f"target {profile.name}")
        providers = _providers(profile.device)  # an unusable device fails before any quantizing
        info: dict[str, Any] = {"runtime_version": self.version(), "source": str(onnx_path)}
        if profile.precision is Precision.INT8:
            from edgekd.runtimes import _ort_quant

            out = Path(workdir).resolve() / INT8_ARTIFACT_NAME
            # The QDQ graph is the portable form: each provider fuses it into its own INT8 kernels at load.
            info["quantization"] = _ort_quant.quantize(Path(onnx_path), out, profile, input_shape)
        else:
            out = Path(workdir).resolve() / ARTIFACT_NAME
            _optimise_offline(Path(onnx_path), out, providers)
            info["graph_optimization"] = "extended"
        return Artifact(
            runtime=self.name.value,
            precision=profile.precision.value,
            path=out,
            input_shape=input_shape,
            device=profile.device,
            threads=profile.threads,
            hint=profile.hint,
            target=profile.name,
            info=info,
        )

    def load(self, artifact: Artifact) -> OrtSession:
        """An inference session with fixed threads: intra-op = artifact.threads (0 = all cores)."""
        import onnxruntime as ort
        from onnxruntime.capi.onnxruntime_pybind11_state import InvalidGraph, InvalidProtobuf

        ort.disable_telemetry_events()
        if not Path(artifact.path).is_file():
            raise UserError(f"artifact file not found: {artifact.path}; rebuild it with `edgekd export`")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = artifact.threads or (os.cpu_count() or 1)
        # One model, one request at a time: parallel branches would only fight the intra-op pool.
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # At load time all rewrites are fine, including layouts specific to the CPU it runs on.
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            session = ort.InferenceSession(str(artifact.path), options, providers=_providers(artifact.device))
        except (InvalidProtobuf, InvalidGraph) as err:  # a corrupt or truncated file: bad input
            reason = str(err).splitlines()[0]
            raise UserError(f"onnxruntime cannot load {artifact.path} ({reason}); re-export it") from None
        return OrtSession(session)


def _providers(device: str) -> list[str]:
    """Execution providers for a device name, refusing a device this install cannot drive."""
    import onnxruntime as ort

    wanted = _PROVIDERS.get(device.split(":")[0].lower())
    if wanted is None:
        raise UserError(f"onnxruntime: unknown device {device!r}; use one of {', '.join(_PROVIDERS)}")
    available = set(ort.get_available_providers())
    if wanted[0] not in available:
        raise UserError(
            f"onnxruntime here has no {wanted[0]} for device {device!r}; install onnxruntime-gpu or use device: cpu"
        )
    return [p for p in wanted if p in available]


def _optimise_offline(source: Path, out: Path, providers: list[str]) -> None:
    """Save `source` after ORT_ENABLE_EXTENDED rewrites for the target's providers.

    EXTENDED, not ALL: ALL adds layout rewrites tied to the building CPU's instruction set, and an
    artifact may be built on one machine and run on another. Those run at load time instead. Fused
    nodes belong to a provider, so the build uses the providers the artifact will run with.
    """
    import onnxruntime as ort

    ort.disable_telemetry_events()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    # The temporary name does not end in .onnx; say the format rather than let ORT guess from it.
    options.add_session_config_entry("session.save_model_format", "ONNX")
    with atomic_path(out) as tmp:
        options.optimized_model_filepath = str(tmp)
        ort.InferenceSession(str(source), options, providers=providers)
