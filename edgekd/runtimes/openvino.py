"""OpenVINO: float ONNX -> OpenVINO IR (model.xml + model.bin) for a device, and a session on it.

Importing this module never imports openvino; every method imports it through `import_openvino()`, which
first turns OpenVINO's telemetry off for this process; other edgekd code that needs openvino (or nncf,
which reads the same telemetry package) should import it through that function too.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.config import Precision, Runtime, TargetProfile
from edgekd.errors import UserError
from edgekd.runtimes import RUNTIMES, Artifact
from edgekd.runtimes._openvino_import import import_openvino

IR_NAME = "model.xml"
# Plugins that dispatch to other devices: they are never listed in `available_devices`.
_VIRTUAL_DEVICES = ("AUTO", "MULTI", "HETERO", "BATCH")


@RUNTIMES.register(Runtime.OPENVINO.value)
class OpenVino:
    """OpenVINO runtime adapter: builds IR with the precision of the profile, loads it on a device."""

    name = Runtime.OPENVINO
    install_hint = "pip install openvino"

    @staticmethod
    def is_available() -> bool:
        return importlib.util.find_spec("openvino") is not None

    def version(self) -> str:
        # The distribution metadata: no import of openvino needed to report it.
        return importlib.metadata.version("openvino")

    def build(self, onnx_path: Path, profile: TargetProfile, workdir: Path) -> Artifact:
        """Convert `onnx_path` to IR in `workdir`: FP32 keeps float32 weights, FP16 stores float16, INT8 is
        NNCF post-training quantization with the recipe named by `profile.calibration` (see `_ov_quant`).
        """
        if profile.precision not in (Precision.FP32, Precision.FP16, Precision.INT8):
            raise UserError(f"OpenVINO builds fp32, fp16 or int8, not {profile.precision.value}; fix the profile")
        if not Path(onnx_path).is_file():
            raise UserError(f"ONNX file not found: {onnx_path}; export the model first")
        ov = import_openvino()
        model = ov.convert_model(str(onnx_path))
        input_shape = _dynamic_batch(model, profile.input_shape, source=str(onnx_path))
        info: dict[str, Any] = {"openvino": ov.get_version()}
        if profile.precision is Precision.INT8:
            from edgekd.runtimes import _ov_quant

            model, info["quantization"] = _ov_quant.quantize(model, profile, input_shape)
        workdir = Path(workdir).resolve()  # artifact paths are absolute, as the other adapters' are
        workdir.mkdir(parents=True, exist_ok=True)
        xml = workdir / IR_NAME
        # save_model compresses float weights to FP16 unless told not to: only an FP16 artifact may be. An INT8
        # model keeps the layers left in float (for accuracy) at float32.
        compress = profile.precision is Precision.FP16
        ov.save_model(model, str(xml), compress_to_fp16=compress)
        info["weights"] = {Precision.FP16: "f16", Precision.INT8: "i8"}.get(profile.precision, "f32")
        return Artifact(
            runtime=self.name.value,
            precision=profile.precision.value,
            path=xml,
            input_shape=input_shape,
            device=profile.device,
            threads=profile.threads,
            hint=profile.hint,
            target=profile.name,
            info=info,
        )

    def load(self, artifact: Artifact) -> OpenVinoSession:
        """Read the IR once; the session compiles it for each input shape it is given (static shapes)."""
        if not Path(artifact.path).is_file():
            raise UserError(f"OpenVINO IR not found: {artifact.path}; build the artifact first")
        ov = import_openvino()
        core = ov.Core()
        device = artifact.device.upper()
        _check_device(device, core.available_devices)
        config = _compile_config(core, device, artifact)
        model = core.read_model(str(artifact.path))
        session = OpenVinoSession(core, model, device, config)
        # Compile now for the artifact's own shape (batch 1): a model that does not compile fails at load.
        session.prepare((1, *artifact.input_shape))
        return session


class OpenVinoSession:
    """The model compiled once per input shape, each with one reused infer request whose input and output
    tensors wrap numpy arrays: a repeated `run` on the same array is `infer()` and nothing more.

    Shapes are made static per compile, as benchmark_app's `-shape` does: a dynamic batch (or H, W) costs
    the CPU plugin shape inference and output allocation on every call (about 0.01 ms on a small model).
    """

    _MAX_SHAPES = 8  # compiled models kept; a caller cycling through more shapes recompiles

    def __init__(self, core: Any, model: Any, device: str, config: dict[str, str]) -> None:
        self._ov = import_openvino()
        self._core, self._model, self._device, self._config = core, model, device, config
        self._compiled: dict[tuple[int, ...], tuple[Any, np.ndarray | None]] = {}
        self._request: Any = None
        self._out: np.ndarray | None = None  # the output buffer the current request writes into
        self._last: Any = None  # the caller's array the request is bound to (None: rebind next call)
        self._held: np.ndarray | None = None  # the array whose memory the input tensor wraps

    def run(self, inputs: np.ndarray) -> np.ndarray:
        """Logits for a float32 N x C x H x W batch.

        A run on the very array of the previous run (the timing loop) returns the session's own output
        buffer, overwritten by the next run; any other run returns a new array."""
        if inputs is self._last:
            self._request.infer()
            return self._out if self._out is not None else self._request.get_output_tensor(0).data
        batch = np.ascontiguousarray(inputs, dtype=np.float32)
        self._request, self._out = self.prepare(batch.shape)
        # A tensor that shares the array's memory: no copy per call. Holding the array keeps it valid.
        self._request.set_input_tensor(self._ov.Tensor(batch, shared_memory=True))
        self._held, self._last = batch, (inputs if batch is inputs else None)
        self._request.infer()
        out = self._out if self._out is not None else self._request.get_output_tensor(0).data
        return np.array(out, copy=True)  # the caller may keep it: the next run must not overwrite it

    def prepare(self, shape: tuple[int, ...]) -> tuple[Any, np.ndarray | None]:
        """(infer request, output buffer or None when the output shape stays dynamic) for `shape`."""
        shape = tuple(int(d) for d in shape)
        if shape not in self._compiled:
            if len(self._compiled) >= self._MAX_SHAPES:
                self._compiled.pop(next(iter(self._compiled)))
            self._compiled[shape] = self._compile(shape)
        return self._compiled[shape]

    def _compile(self, shape: tuple[int, ...]) -> tuple[Any, np.ndarray | None]:
        model = self._model.clone()
        try:
            model.reshape({model.inputs[0]: self._ov.PartialShape(list(shape))})
        except Exception:  # a graph that cannot be reshaped (constant Reshape targets): run it as it is
            model = self._model
        compiled = self._core.compile_model(model, self._device, self._config)
        request = compiled.create_infer_request()
        port = compiled.outputs[0]
        if port.get_partial_shape().is_dynamic:
            return request, None
        out = np.empty(tuple(port.get_shape()), dtype=port.get_element_type().to_dtype())
        request.set_output_tensor(0, self._ov.Tensor(out, shared_memory=True))
        return request, out


def ir_input_shape(xml_path: Path) -> tuple[int, int, int]:
    """C, H, W of an OpenVINO IR's first input (the batch dimension may be dynamic)."""
    xml_path = Path(xml_path)
    if not xml_path.is_file():
        raise UserError(f"OpenVINO IR not found: {xml_path}; check the path")
    model = import_openvino().Core().read_model(str(xml_path))
    return _chw(model.inputs[0].get_partial_shape(), source=str(xml_path))


def _chw(shape: Any, source: str) -> tuple[int, int, int]:
    if shape.rank.is_dynamic or len(shape) != 4 or any(d.is_dynamic for d in list(shape)[1:]):
        raise UserError(f"{source}: input must be N x C x H x W with fixed C, H, W, got {shape}")
    return int(shape[1].get_length()), int(shape[2].get_length()), int(shape[3].get_length())


def _dynamic_batch(model: Any, wanted: tuple[int, int, int] | None, source: str) -> tuple[int, int, int]:
    """Make the batch dimension dynamic and C, H, W static; returns C, H, W."""
    ov = import_openvino()
    shape = model.inputs[0].get_partial_shape()
    if wanted is not None and (shape.rank.is_dynamic or any(d.is_dynamic for d in list(shape)[1:])):
        model.reshape({0: ov.PartialShape([-1, *wanted])})
        shape = model.inputs[0].get_partial_shape()
    chw = _chw(shape, source)
    if wanted is not None and tuple(wanted) != chw:
        raise UserError(
            f"{source}: the model takes C, H, W = {chw} but the target profile says {tuple(wanted)};"
            " fix input_shape in the profile or remove it"
        )
    if shape[0].is_static:
        model.reshape({0: ov.PartialShape([-1, *chw])})
    return chw


def _check_device(device: str, available: list[str]) -> None:
    """Fail with one line when the device (or a device a virtual plugin names) is not here."""
    base, _, rest = device.partition(":")
    wanted = [d for d in rest.split(",") if d] if base in _VIRTUAL_DEVICES else [device]
    for name in wanted:
        # "GPU" matches "GPU.0"/"GPU.1": OpenVINO numbers devices only when there are several.
        if not any(d == name or d.startswith(f"{name}.") for d in available):
            raise UserError(
                f"OpenVINO device {name!r} is not available on this machine (present: "
                f"{', '.join(available) or 'none'}); pick a target whose device is one of those"
            )


def _compile_config(core: Any, device: str, artifact: Artifact) -> dict[str, str]:
    """Compile properties from the profile, keeping only those the device accepts."""
    latency = artifact.hint == "latency"
    config = {"PERFORMANCE_HINT": "LATENCY" if latency else "THROUGHPUT"}
    if latency:
        config["NUM_STREAMS"] = "1"  # one request at a time: one stream, every thread on it
    if artifact.threads > 0:
        config["INFERENCE_NUM_THREADS"] = str(artifact.threads)
    # OpenVINO picks the execution precision per device, not from the IR: bf16 on CPUs with AMX or
    # AVX512-BF16, f16 on ARM CPUs and GPUs. FP32 parity needs f32 asked for explicitly, and so do the
    # layers an INT8 build kept in float for accuracy (the hint does not touch the INT8 layers).
    if artifact.precision in (Precision.FP32.value, Precision.INT8.value):
        config["INFERENCE_PRECISION_HINT"] = "f32"
    elif artifact.precision == Precision.FP16.value and device.startswith("GPU"):
        config["INFERENCE_PRECISION_HINT"] = "f16"
    # Properties are queried on the plugin ("AUTO"), not on "AUTO:GPU,CPU".
    supported = core.get_property(device.partition(":")[0], "SUPPORTED_PROPERTIES")
    # Threads and precision mean nothing to AUTO or a GPU: passing them would fail the compile.
    return {key: value for key, value in config.items() if supported.get(key) == "RW"}
