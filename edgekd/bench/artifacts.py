"""What the user passes to `edgekd bench`: an export folder, its artifact.json, an .onnx, an OpenVINO IR.

A model built outside edgekd may leave dimensions dynamic: the batch always may (`--batch` picks it), and
C, H, W come from `--input-shape` (benchmark_app's `-shape`) when the file does not fix them.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from edgekd.config import RUNTIMES, Precision, Runtime, runtime_name
from edgekd.errors import UserError
from edgekd.runtimes import Artifact

MANIFEST = "artifact.json"
_HOW = "give a folder written by `edgekd export`, its artifact.json, an .onnx file or an OpenVINO .xml IR"
_REQUIRED = ("runtime", "precision", "artifact", "input_shape")
_FIELDS = {*_REQUIRED, "device", "threads", "hint", "target"}


Shape = tuple[int, int, int]


def parse_input_shape(text: str) -> Shape:
    """`--input-shape C,H,W` (also `CxHxW` or `[C,H,W]`) as three positive sizes."""
    parts = text.strip().strip("[]()").replace("x", ",").split(",")
    return _chw([p for p in parts if p.strip()], f"--input-shape {text!r}")


def resolve_artifact(path: Path, *, runtime: str | None = None, input_shape: Shape | None = None) -> Artifact:
    """The Artifact `path` names; `runtime` picks the runtime for a bare .onnx (default onnxruntime);
    `input_shape` (C, H, W) fills a model file's dynamic dimensions and must match its fixed ones."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"artifact not found: {path}; {_HOW}")
    if path.is_dir():
        if not (path / MANIFEST).is_file():
            raise UserError(f"{path} holds no {MANIFEST}; {_HOW}")
        path = path / MANIFEST
    readers = {".json": _from_manifest, ".onnx": _from_onnx, ".xml": _from_openvino_ir}
    reader = readers.get(path.suffix.lower())
    if reader is None:
        kind = path.suffix or "(none)"
        raise UserError(f"cannot benchmark {path.name}: unknown file type {kind!r}; {_HOW}")
    given = None if input_shape is None else _chw(input_shape, "--input-shape")
    return reader(path.resolve(), None if runtime is None else _runtime(runtime, str(path)), given)


def _from_manifest(path: Path, runtime: str | None, given: Shape | None) -> Artifact:
    """An artifact.json written by `edgekd export`; its `artifact` names a file beside it."""
    data = _read_json(path)
    missing = [key for key in _REQUIRED if key not in data]
    if missing:
        raise UserError(f"{path} lacks {', '.join(missing)}; re-run `edgekd export`")
    built_for = _runtime(data["runtime"], str(path))
    if runtime is not None and runtime != built_for:
        raise UserError(
            f"{path} was built for {built_for}, not {runtime}; export the model for a"
            f" {runtime} target, or drop the runtime option"
        )
    file = path.parent / str(data["artifact"])
    if not file.exists():
        raise UserError(f"{path} names {data['artifact']!r} but {file} is missing; re-run `edgekd export`")
    shape = _chw(data["input_shape"], str(path))
    if given is not None and given != shape:
        raise UserError(
            f"{path} was exported for input {_show(shape)}, not --input-shape {_show(given)};"
            " re-export with `edgekd export --input-shape`, or drop the option"
        )
    return Artifact(
        runtime=built_for,
        precision=_precision(data["precision"], str(path)),
        path=file,
        input_shape=shape,
        device=str(data.get("device", "cpu")),
        threads=int(data.get("threads", 0)),
        hint=str(data.get("hint", "latency")),
        target=data.get("target"),
        info={key: value for key, value in data.items() if key not in _FIELDS},
    )


def _from_onnx(path: Path, runtime: str | None, given: Shape | None) -> Artifact:
    """A float ONNX file that edgekd did not build: run as is (FP32)."""
    from edgekd.export.onnx import onnx_input_shape

    runtime = runtime or Runtime.ONNXRUNTIME.value
    if runtime == Runtime.TENSORRT:
        raise UserError(f"{path.name}: TensorRT needs a built engine; run `edgekd export` for a tensorrt target")
    shape = onnx_input_shape(path, given)  # also turns a corrupt file into one clear line
    return Artifact(runtime, Precision.FP32.value, path, shape, info={"source": "onnx"})


def _from_openvino_ir(path: Path, runtime: str | None, given: Shape | None) -> Artifact:
    """An OpenVINO IR (.xml + .bin) that edgekd did not build."""
    if runtime not in (None, Runtime.OPENVINO):
        raise UserError(f"{path.name} is an OpenVINO IR; it runs on openvino, not {runtime}")
    weights = path.with_suffix(".bin")
    if not weights.is_file():
        raise UserError(f"{path} has no weights file {weights.name} beside it; copy the .bin too")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        raise UserError(f"{path} is not a valid OpenVINO IR ({err}); re-export it") from None
    # Quantised IRs carry FakeQuantize layers; their weights may still be stored as f32.
    int8 = any(layer.get("type") == "FakeQuantize" for layer in root.iter("layer"))
    precision = Precision.INT8 if int8 else Precision.FP32
    shape = _ir_input_shape(root, path, given)
    return Artifact(Runtime.OPENVINO.value, precision.value, path, shape, info={"source": "openvino-ir"})


def _ir_input_shape(root: ET.Element, path: Path, given: Shape | None) -> Shape:
    """C, H, W from the first Parameter layer: its output port dims, else its `shape` attribute; dynamic
    dims ("-1", "?", or a range "1..32") are taken from `given`."""
    from edgekd.export.onnx import fill_input_shape

    param = next((layer for layer in root.iter("layer") if layer.get("type") == "Parameter"), None)
    if param is None:
        raise UserError(f"{path} has no input (Parameter) layer; is it an OpenVINO IR model?")
    dims: list[Any] = [d.text for d in param.findall("./output/port/dim")]
    if not dims:
        data = param.find("data")
        dims = (data.get("shape") or "").split(",") if data is not None else []
    return fill_input_shape([_fixed(d) for d in dims], given, str(path))


def _fixed(dim: Any) -> int | None:
    """A fixed size from an IR dim's text, or None for a dynamic one."""
    text = str(dim or "").strip()
    return int(text) if text.isdigit() and int(text) > 0 else None


def _show(shape: Shape) -> str:
    return ",".join(str(d) for d in shape)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise UserError(f"cannot read {path} ({err}); re-run `edgekd export`") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} must hold a JSON object; re-run `edgekd export`")
    return data


def _chw(values: Any, source: str) -> Shape:
    """Three fixed positive dims (C, H, W), or a clear error naming `source`."""
    try:
        dims = tuple(int(str(v).strip()) for v in values)
    except (TypeError, ValueError):
        dims = ()
    if len(dims) != 3 or min(dims) < 1:
        raise UserError(f"{source}: input shape must be three fixed sizes C, H, W, got {values}")
    return dims


def _runtime(name: Any, source: str) -> str:
    """A registered runtime's name (`RUNTIMES`), or a clear error naming `source`."""
    if not isinstance(name, str) or name not in RUNTIMES:
        known = ", ".join(RUNTIMES.names())
        raise UserError(f"{source}: unknown runtime {name!r}; known: {known}")
    return runtime_name(name)


def _precision(name: Any, source: str) -> str:
    try:
        return Precision(name).value
    except ValueError:
        known = ", ".join(p.value for p in Precision)
        raise UserError(f"{source}: unknown precision {name!r}; known: {known}") from None
