#!/usr/bin/env python3
"""Run the model of an edgekd deployment bundle on the device: check it, time it, classify images.

Needs only Python 3.8+, numpy and the bundle's runtime (onnxruntime, openvino, or tensorrt with
cuda-python); it never imports edgekd or torch. `edgekd package` copies this file into the bundle as
`run.py`, beside `manifest.json` (what the model takes and gives, and the sha256 of every file).

    python run.py verify                    every file matches the manifest (exit 2 and one line if not)
    python run.py bench [--batch N]         latency with edgekd's timing protocol, as one JSON object
    python run.py predict IMAGE...          top-k labels and probabilities, as one JSON object

`bench` times in rounds, as `edgekd bench` does: the protocol's warm-up + timed block repeated in this
one process until the median's 95% bootstrap CI over rounds is within --rounds-ci of it (or the time
cap); `latency_ms` is the typical round and `rounds` holds the round statistics and the stop reason.
A null model (`null.onnx`, written by `edgekd package`: the model's input and output shapes and no
compute) takes part in every round, as on the host, and its round statistics are the result's `floor`,
the per-call cost below which no model can go (null on TensorRT, whose engines are built on the device).

`edgekd ingest RESULTS_JSON` reads the output of `bench` back into the results store. Exit codes: 0 on
success, 2 on bad input (one line naming the problem and the fix), 1 on a failure inside.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import traceback
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

try:  # inside a bundle: THE timing protocol, copied here by `edgekd package` (its sha256 is in the manifest)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import edgekd_protocol as protocol
except ImportError:  # edgekd reading this file for the bundle formats: the same file, inside the package
    from edgekd.bench import protocol
finally:
    del sys.path[0]

BUNDLE_SCHEMA = "edgekd-bundle-1"
RESULT_SCHEMA = "edgekd-device-result-1"
MANIFEST = "manifest.json"
# What the bundle id covers: the files and every setting that changes what a measurement means.
ID_FIELDS = (
    "schema",
    "runtime",
    "precision",
    "device",
    "threads",
    "hint",
    "batch",
    "target",
    "input",
    "classes",
    "artifact",
    "artifact_files",
    "files",
    "timing",
)
_GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")


class BadInput(Exception):
    """Bad input from the user: printed as one line, exit 2."""


# ---- files and the bundle id ---------------------------------------------------------------------


def manifest_id(manifest: dict[str, Any]) -> str:
    """The bundle id: a hash of the files' hashes and the settings, so an edited manifest is caught too."""
    keyed = {key: manifest.get(key) for key in ID_FIELDS}
    text = json.dumps(keyed, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def read_manifest(bundle: Path) -> dict[str, Any]:
    path = bundle / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise BadInput(f"cannot read {path} ({err}); run this from an edgekd bundle or pass --bundle DIR") from None
    if not isinstance(manifest, dict) or manifest.get("schema") != BUNDLE_SCHEMA:
        found = manifest.get("schema") if isinstance(manifest, dict) else None
        raise BadInput(
            f"{path} has schema {found!r}, this runner reads {BUNDLE_SCHEMA!r};"
            " use the run.py that came in the same bundle"
        )
    return manifest


def verify(bundle: Path, manifest: dict[str, Any]) -> dict[str, str]:
    """Hash every file the manifest lists; BadInput naming the first that is missing or changed."""
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise BadInput(f"{bundle / MANIFEST} lists no files; re-run `edgekd package`")
    found = {}
    for name, expected in sorted(files.items()):
        path = bundle / name
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise BadInput(f"{MANIFEST} names {name!r}, outside the bundle; re-run `edgekd package`")
        if not path.is_file():
            raise BadInput(f"{name} is missing from the bundle {bundle}; copy the whole bundle folder again")
        found[name] = protocol.sha256_file(path)
        if found[name] != expected:
            raise BadInput(
                f"{name} does not match {MANIFEST} (sha256 {found[name][:12]}..., expected"
                f" {str(expected)[:12]}...): the bundle was changed or damaged; copy it again"
            )
    if manifest_id(manifest) != manifest.get("bundle_id"):
        raise BadInput(
            f"{MANIFEST} was edited (its bundle id does not match its contents);"
            " copy the bundle again or re-run `edgekd package`"
        )
    return found


# ---- sessions: the same load settings as edgekd's runtime adapters --------------------------------


def _version(distributions: tuple[str, ...], module: Any) -> str:
    from importlib import metadata

    for name in distributions:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return str(getattr(module, "__version__", "unknown"))


def _import(name: str, hint: str) -> Any:
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError:
        raise BadInput(f"this bundle runs on {name}, which is not installed here; {hint}") from None


class OrtSession:
    """edgekd.runtimes.onnxruntime: fixed intra-op threads, one inter-op thread, all graph rewrites."""

    _PROVIDERS = {
        "cpu": ["CPUExecutionProvider"],
        "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
        "gpu": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    }

    def __init__(self, path: Path, device: str, threads: int, hint: str, precision: str) -> None:
        ort = _import("onnxruntime", "pip install onnxruntime (onnxruntime-gpu for CUDA)")
        if hasattr(ort, "disable_telemetry_events"):
            ort.disable_telemetry_events()
        wanted = self._PROVIDERS.get(device.split(":")[0].lower())
        if wanted is None:
            raise BadInput(f"onnxruntime: unknown device {device!r} in the manifest; re-package for cpu or cuda")
        available = set(ort.get_available_providers())
        if wanted[0] not in available:
            raise BadInput(f"onnxruntime here has no {wanted[0]} for device {device!r}; install onnxruntime-gpu")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = threads or (os.cpu_count() or 1)
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = [p for p in wanted if p in available]
        self._session = ort.InferenceSession(str(path), options, providers=providers)
        self._input = self._session.get_inputs()[0].name
        self._outputs = [self._session.get_outputs()[0].name]
        self.version = _version(("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino"), ort)

    def run(self, inputs: np.ndarray) -> np.ndarray:
        result: np.ndarray = self._session.run(self._outputs, {self._input: inputs})[0]
        return result


class OpenVinoSession:
    """edgekd.runtimes.openvino: one compiled model, one reused infer request, the profile's hints."""

    def __init__(self, path: Path, device: str, threads: int, hint: str, precision: str) -> None:
        # Telemetry off for this process only: OpenVINO falls back to a stub when it cannot import it.
        if "openvino" not in sys.modules:
            sys.modules.setdefault("openvino_telemetry", None)  # type: ignore[arg-type]
        ov = _import("openvino", "pip install openvino")
        core = ov.Core()
        device = device.upper()
        base = device.partition(":")[0]
        wanted = (
            [d for d in device.partition(":")[2].split(",") if d]
            if base in ("AUTO", "MULTI", "HETERO", "BATCH")
            else [device]
        )
        for name in wanted:
            if not any(d == name or d.startswith(name + ".") for d in core.available_devices):
                raise BadInput(
                    f"OpenVINO device {name!r} is not available here (present:"
                    f" {', '.join(core.available_devices) or 'none'}); package for one of those"
                )
        config = {"PERFORMANCE_HINT": "LATENCY" if hint == "latency" else "THROUGHPUT"}
        if hint == "latency":
            config["NUM_STREAMS"] = "1"
        if threads > 0:
            config["INFERENCE_NUM_THREADS"] = str(threads)
        if precision in ("fp32", "int8"):
            config["INFERENCE_PRECISION_HINT"] = "f32"
        elif precision == "fp16" and device.startswith("GPU"):
            config["INFERENCE_PRECISION_HINT"] = "f16"
        supported = core.get_property(base, "SUPPORTED_PROPERTIES")
        self._ov, self._core, self._device = ov, core, device
        self._config = {k: v for k, v in config.items() if supported.get(k) == "RW"}
        self._model = core.read_model(str(path))
        self._shape: tuple[int, ...] | None = None
        self._request: Any = None
        self._last: Any = None  # the array the request's input tensor wraps (reused: infer() alone)
        self.version = _version(("openvino",), ov)

    def _compile(self, shape: tuple[int, ...]) -> None:
        """Compile for this very input shape (static, as the host's session and benchmark_app's -shape do:
        a dynamic batch costs shape inference and an output allocation on every call)."""
        model = self._model.clone()
        try:
            model.reshape({model.inputs[0]: self._ov.PartialShape(list(shape))})
        except Exception:  # a graph that cannot be reshaped (constant Reshape targets): run it as it is
            model = self._model
        self._request = self._core.compile_model(model, self._device, self._config).create_infer_request()
        self._shape, self._last = shape, None

    def run(self, inputs: np.ndarray) -> np.ndarray:
        if inputs is self._last:  # the timing loop's fixed input: bound already, no copy, no allocation
            self._request.infer()
            return self._request.get_output_tensor(0).data  # type: ignore[no-any-return]
        x = np.ascontiguousarray(inputs, dtype=np.float32)
        if x.shape != self._shape:
            self._compile(tuple(x.shape))
        self._request.set_input_tensor(self._ov.Tensor(x, shared_memory=True))
        self._last = inputs if x is inputs else None
        self._request.infer()
        return np.array(self._request.get_output_tensor(0).data, copy=True)


class TensorRTSession:
    """edgekd.runtimes.trt_session, reduced: TensorRT 10 name-based I/O through cuda-python (host-timed)."""

    def __init__(self, path: Path, device: str, threads: int, hint: str, precision: str) -> None:
        trt = _import("tensorrt", "TensorRT comes with JetPack, or pip install tensorrt on an NVIDIA machine")
        try:
            from cuda.bindings import runtime as rt  # cuda-python >= 12.6
        except ImportError:
            rt = _import("cuda.cudart", "pip install cuda-python")
        self._rt, self.version = rt, str(trt.__version__)
        self._call(rt.cudaSetDevice(int(device.partition(":")[2] or 0)))
        self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self._engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if self._engine is None:
            raise BadInput(
                f"{path.name} does not run on TensorRT {trt.__version__} on this GPU; engines are tied"
                " to the TensorRT version and GPU that built them: rebuild it here from model.onnx"
            )
        self._context = self._engine.create_execution_context()
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        inputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self._input, self._output = inputs[0], [n for n in names if n not in inputs][0]
        high = tuple(self._engine.get_tensor_profile_shape(self._input, 0)[2])
        self._context.set_input_shape(self._input, high)
        self._ptrs = {n: self._call(rt.cudaMalloc(4 * int(np.prod(self._context.get_tensor_shape(n))))) for n in names}
        for name, ptr in self._ptrs.items():
            self._context.set_tensor_address(name, ptr)
        self._stream = self._call(rt.cudaStreamCreate())
        self._batch = -1

    def _call(self, result: Any) -> Any:
        err, *values = result
        if err != self._rt.cudaError_t.cudaSuccess:
            raise RuntimeError(f"CUDA call failed: {err}")
        return values[0] if values else None

    def run(self, inputs: np.ndarray) -> np.ndarray:
        rt, x = self._rt, np.ascontiguousarray(inputs, dtype=np.float32)
        if len(x) != self._batch:
            self._context.set_input_shape(self._input, x.shape)
            self._batch = len(x)
        out = np.empty(tuple(self._context.get_tensor_shape(self._output)), dtype=np.float32)
        h2d, d2h = rt.cudaMemcpyKind.cudaMemcpyHostToDevice, rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._call(rt.cudaMemcpyAsync(self._ptrs[self._input], x.ctypes.data, x.nbytes, h2d, self._stream))
        if not self._context.execute_async_v3(int(self._stream)):
            raise RuntimeError("TensorRT failed to enqueue the engine")
        self._call(rt.cudaMemcpyAsync(out.ctypes.data, self._ptrs[self._output], out.nbytes, d2h, self._stream))
        self._call(rt.cudaStreamSynchronize(self._stream))
        return out


SESSIONS: dict[str, Callable[..., Any]] = {
    "onnxruntime": OrtSession,
    "openvino": OpenVinoSession,
    "tensorrt": TensorRTSession,
}


def open_session(bundle: Path, manifest: dict[str, Any], threads: int, artifact: str | None = None) -> Any:
    factory = SESSIONS.get(manifest["runtime"])
    if factory is None:
        raise BadInput(f"this runner does not know runtime {manifest['runtime']!r}; use the run.py of the bundle")
    return factory(
        bundle / (artifact or manifest["artifact"]),
        str(manifest.get("device", "cpu")),
        threads,
        str(manifest.get("hint", "latency")),
        str(manifest["precision"]),
    )


# ---- images ---------------------------------------------------------------------------------------


def read_image(path: Path, chw: tuple[int, ...]) -> list[tuple[str, np.ndarray]]:
    """(name, C x H x W float32 in [0, 1]) for each image in `path` (an .npy may hold N of them)."""
    suffix = path.suffix.lower()
    if not path.is_file():
        raise BadInput(f"image not found: {path}")
    if suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise BadInput(f"{path} is not a plain .npy array ({err})") from None
        if arr.ndim == 4:
            return [(f"{path}[{i}]", _fit(a, chw, f"{path}[{i}]")) for i, a in enumerate(arr)]
        return [(str(path), _fit(arr, chw, str(path)))]
    if suffix in (".pgm", ".ppm", ".pnm"):
        pixels, maxval = _read_pnm(path)
        return [(str(path), _fit(pixels, chw, str(path), maxval))]
    try:
        from PIL import Image
    except ImportError:
        raise BadInput(
            f"{path.name}: reading {suffix or 'this format'} needs Pillow, which is not installed here;"
            " pip install pillow, or convert the image to .pgm/.ppm/.npy"
        ) from None
    try:
        with Image.open(path) as img:
            grey = img.mode in _GREY_MODES
            arr = np.asarray(img.convert("L" if grey else "RGB"))
    except (OSError, ValueError) as err:  # PIL's UnidentifiedImageError is an OSError
        raise BadInput(f"cannot read {path} as an image ({err}); give a PNG/JPEG/BMP, .pgm/.ppm or .npy") from None
    return [(str(path), _fit(arr if grey else arr.transpose(2, 0, 1), chw, str(path)))]


def _read_pnm(path: Path) -> tuple[np.ndarray, int]:
    """A Netpbm image (P5/P6 binary, P2/P3 text) as (C x H x W array, maxval)."""
    data = path.read_bytes()
    magic = data[:2]
    if magic not in (b"P2", b"P3", b"P5", b"P6"):
        raise BadInput(f"{path} is not a PGM/PPM image (magic {magic!r}); give P5/P6 (or P2/P3) Netpbm files")
    tokens: list[int] = []
    pos = 2
    while len(tokens) < 3:
        while pos < len(data) and data[pos : pos + 1].isspace():
            pos += 1
        if data[pos : pos + 1] == b"#":
            pos = data.find(b"\n", pos) + 1 or len(data)
            continue
        start = pos
        while pos < len(data) and not data[pos : pos + 1].isspace():
            pos += 1
        if start == pos:
            raise BadInput(f"{path}: truncated PGM/PPM header")
        try:
            tokens.append(int(data[start:pos]))
        except ValueError:
            raise BadInput(f"{path}: malformed PGM/PPM header ({data[start:pos][:20]!r})") from None
    width, height, maxval = tokens
    if min(width, height) < 1 or not 1 <= maxval <= 65535:
        raise BadInput(f"{path}: PGM/PPM header says {width} x {height} pixels, maxval {maxval}; re-save the image")
    channels = 3 if magic in (b"P3", b"P6") else 1
    count = width * height * channels
    if magic in (b"P5", b"P6"):
        dtype = np.dtype(">u2" if maxval > 255 else "u1")
        raster = data[pos + 1 :]  # exactly one whitespace byte ends the header
        if len(raster) < count * dtype.itemsize:
            raise BadInput(f"{path}: the image data is shorter than its {width} x {height} header says")
        pixels = np.frombuffer(raster, dtype=dtype, count=count)
    else:
        values = data[pos:].split()
        if len(values) < count:
            raise BadInput(f"{path}: the image data is shorter than its {width} x {height} header says")
        pixels = np.array(values[:count], dtype=np.int64).astype(np.uint16 if maxval > 255 else np.uint8)
    return pixels.reshape(height, width, channels).transpose(2, 0, 1), maxval


def _fit(arr: np.ndarray, chw: tuple[int, ...], name: str, maxval: int | None = None) -> np.ndarray:
    """One image as C x H x W float32 in [0, 1], the model's input; no resizing, no channel changes."""
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim == 3 and tuple(arr.shape) != tuple(chw) and arr.shape[-1] == chw[0] and arr.shape[2] <= 4:
        arr = arr.transpose(2, 0, 1)  # H x W x C
    if arr.ndim != 3:
        raise BadInput(f"{name} has shape {list(arr.shape)}; give H x W, C x H x W or N x C x H x W pixels")
    if tuple(arr.shape[1:]) != tuple(chw[1:]):
        raise BadInput(
            f"{name} is {arr.shape[1]} x {arr.shape[2]} pixels but the model takes {chw[1]} x {chw[2]};"
            " resize it first (the runner does not resize, so nothing differs from what was measured)"
        )
    if arr.shape[0] != chw[0]:
        kind = {1: "grey (1 channel)", 3: "colour (3 channels)"}
        raise BadInput(
            f"{name} has {arr.shape[0]} channel(s) but the model takes {kind.get(chw[0], chw[0])};"
            " convert the image first"
        )
    if maxval is not None and maxval != 255:
        return arr.astype(np.float32) / np.float32(maxval)
    if arr.dtype == np.uint8:  # exactly edgekd.data.to_float
        return arr.astype(np.float32) * np.float32(1.0 / 255.0)
    if arr.dtype.kind != "f":
        raise BadInput(f"{name} holds {arr.dtype} values; give uint8 pixels (0-255) or floats in [0, 1]")
    low, high = float(arr.min()), float(arr.max())
    if not (-1e-3 <= low and high <= 1.0 + 1e-3):  # also catches NaN
        raise BadInput(
            f"{name} holds floats in [{low:g}, {high:g}]; the model takes [0, 1]: divide 0-255 pixels"
            " by 255, or save them as uint8"
        )
    return arr.astype(np.float32)


# ---- commands -------------------------------------------------------------------------------------


def _bundle_and_manifest(args: argparse.Namespace) -> tuple[Path, dict[str, Any], dict[str, str]]:
    bundle = Path(args.bundle).resolve() if args.bundle else Path(__file__).resolve().parent
    manifest = read_manifest(bundle)
    return bundle, manifest, verify(bundle, manifest)


def _header(manifest: dict[str, Any], hashes: dict[str, str], kind: str) -> dict[str, Any]:
    return {
        "schema": RESULT_SCHEMA,
        "kind": kind,
        "run_id": uuid.uuid4().hex,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "bundle_id": manifest["bundle_id"],
        "artifact": manifest["artifact"],
        "artifact_sha256": hashes[manifest["artifact"]],
        "target": manifest.get("target"),
        "exported_from": manifest.get("exported_from"),
    }


def cmd_verify(args: argparse.Namespace) -> dict[str, Any]:
    bundle, manifest, hashes = _bundle_and_manifest(args)
    return {"verified": True, "bundle": str(bundle), "bundle_id": manifest["bundle_id"], "files": hashes}


def _threads(args: argparse.Namespace, manifest: dict[str, Any]) -> int:
    threads = int(manifest.get("threads", 0)) if args.threads is None else args.threads
    if threads < 0:
        raise BadInput(f"--threads must be >= 0 (0 = all cores), got {threads}")
    # Pin OpenMP/BLAS pools before the runtime loads, as edgekd's benchmark worker does.
    for var in protocol.THREAD_VARS:
        os.environ[var] = str(threads or os.cpu_count() or 1)
    return threads


def cmd_bench(args: argparse.Namespace) -> dict[str, Any]:
    bundle, manifest, hashes = _bundle_and_manifest(args)
    batch = int(manifest.get("batch", 1)) if args.batch is None else args.batch
    if batch < 1:
        raise BadInput(f"--batch must be >= 1, got {batch}")
    timing = protocol.QUICK_TIMING if args.quick else protocol.TimingConfig.from_json(manifest.get("timing") or {})
    threads = _threads(args, manifest)
    session = open_session(bundle, manifest, threads)
    # The one input every timed run reuses: seeded noise, exactly as edgekd's worker makes it.
    inputs = protocol.fixed_input(tuple(manifest["input"]["shape"]), batch, seed=0)
    try:  # one untimed run, as the worker's output check
        logits = np.asarray(session.run(inputs))
    except Exception as err:  # runtimes raise their own types for a batch they cannot take
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise BadInput(f"the artifact cannot run a batch of shape {list(inputs.shape)} ({reason})") from None
    if logits.ndim != 2 or logits.shape[0] != batch:
        raise BadInput(f"the model gives outputs of shape {list(logits.shape)} for a batch of {batch}")
    # Rounds of the one loop in this one process, the model interleaved with the null model (its floor):
    # the same round statistics and stop rule as `edgekd bench`; only the model's CI must narrow.
    measure_round = {"model": lambda: protocol.measure(session, inputs, timing)}
    if manifest.get("null_model"):  # `edgekd package` writes one only for runtimes that read ONNX as it is
        null = open_session(bundle, manifest, threads, artifact=manifest["null_model"])
        null.run(inputs)
        measure_round["null"] = lambda: protocol.measure(null, inputs, timing)
    rounds = protocol.interleaved_rounds(measure_round, _rule(args), watch=["model"])
    stats = rounds["model"].typical()
    floor = {"name": "null", **rounds["null"].stats.to_json()} if "null" in rounds else None
    fp = protocol.fingerprint(
        manifest["runtime"],
        session.version,
        manifest["precision"],
        threads or os.cpu_count() or 1,
        batch,
        str(manifest.get("device", "cpu")),
    )
    return {
        **_header(manifest, hashes, "bench"),
        **stats.fields_json(),
        "rounds": rounds["model"].stats.to_json(),
        "rule": _rule(args).to_json(),
        "floor": floor,
        "accuracy": None,
        "accuracy_samples": None,
        "data": None,
        "fingerprint": fp,
        "timing": timing.to_json(),
        "torch_loaded": "torch" in sys.modules,
    }


def _rule(args: argparse.Namespace) -> Any:
    """The stop rule of the rounds: the protocol's (quick: its short one), with the user's width and cap."""
    base = protocol.QUICK_RULE if args.quick else protocol.DEFAULT_RULE
    cap = base.time_cap_s if args.time_cap_s is None else args.time_cap_s
    return protocol.StopRule.from_json(dict(base.to_json(), rel_width=args.rounds_ci, time_cap_s=cap))


def cmd_predict(args: argparse.Namespace) -> dict[str, Any]:
    bundle, manifest, hashes = _bundle_and_manifest(args)
    chw = tuple(manifest["input"]["shape"])
    images = [item for path in args.images for item in read_image(Path(path), chw)]
    session = open_session(bundle, manifest, _threads(args, manifest))
    classes = manifest.get("classes")
    predictions = []
    for name, image in images:
        logits = np.asarray(session.run(image[None]), dtype=np.float64)[0]
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        top = np.argsort(-probs, kind="stable")[: max(1, args.top_k)]
        predictions.append(
            {
                "image": name,
                "top": [
                    {
                        "index": int(i),
                        "label": str(classes[i]) if classes and i < len(classes) else str(int(i)),
                        "probability": float(probs[i]),
                    }
                    for i in top
                ],
            }
        )
    return {**_header(manifest, hashes, "predict"), "predictions": predictions}


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(
        prog="run.py",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  python run.py verify\n  python run.py bench --threads 4 > results.json\n"
        "  python run.py predict shoe.pgm bag.npy --top-k 3\n"
        "then on the host: edgekd ingest results.json",
    )
    main.add_argument("--bundle", help="the bundle folder (default: the folder of this script)")
    sub = main.add_subparsers(dest="command", required=True)
    sub.add_parser("verify", help="check every file against manifest.json (exit 2 on a mismatch)")
    bench = sub.add_parser("bench", help="measure latency with edgekd's timing protocol; prints one JSON object")
    bench.add_argument("--batch", type=int, help="images per run (default: the manifest's batch)")
    bench.add_argument("--quick", action="store_true", help="fewer rounds and a short cap, as `edgekd bench --quick`")
    bench.add_argument(
        "--rounds-ci", type=float, default=0.05, help="stop when the 95%% CI is this fraction of the median (0.05)"
    )
    bench.add_argument("--time-cap-s", type=float, help="stop rounds after this many seconds (default 120)")
    predict = sub.add_parser(
        "predict",
        help="classify images; prints JSON with the top-k labels",
        description="Formats: .npy (H x W, C x H x W, H x W x C or N x C x H x W; uint8 0-255 or float 0-1),"
        " binary or text PGM/PPM (.pgm/.ppm/.pnm) read natively, and PNG/JPEG/BMP only when Pillow"
        " is installed. Images must already have the model's size and channels: nothing is resized.",
    )
    predict.add_argument("images", nargs="+", metavar="IMAGE")
    predict.add_argument("--top-k", type=int, default=5, help="how many labels to print per image (default 5)")
    for command in (bench, predict):
        command.add_argument("--threads", type=int, help="runtime threads, 0 = all cores (default: the manifest's)")
    return main


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    # Runtimes may print from C code; point fd 1 at stderr so stdout carries only the JSON.
    sys.stdout.flush()
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    commands = {"verify": cmd_verify, "bench": cmd_bench, "predict": cmd_predict}
    try:
        result = commands[args.command](args)
    except (BadInput, protocol.ProtocolError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Exception as err:
        if os.environ.get("EDGEKD_DEBUG"):
            traceback.print_exc()
        print(f"error: {args.command} failed inside: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    out.write(json.dumps(result) + "\n")
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
