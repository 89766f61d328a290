"""Static pre-check of an ONNX graph for TensorRT: onnx alone, no TensorRT, no GPU.

Walks the graph (and the bodies of If/Loop/Scan and model-local functions) against TensorRT's ONNX
operator support matrix (`edgekd.export.trt_ops`), and reports operators the parser does not take,
operators it takes only with restrictions, and tensor types TensorRT has no type for. Every finding
names the node, the operator and a fix. It catches on a laptop what the device's parser would reject
after the copy; it is no proof that a build succeeds (shapes, memory and tactics decide that).
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx
from onnx import TensorProto, helper, numpy_helper

from edgekd.errors import UserError
from edgekd.export import trt_ops

_DEFAULT_DOMAINS = ("", "ai.onnx")
_TypeOf = TensorProto.DataType.Name


class Severity(str, enum.Enum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class Finding:
    """One problem: `node` is the node (or tensor) name, `op` the operator (or input/output/...)."""

    severity: Severity
    node: str
    op: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"severity": self.severity.value, "node": self.node, "op": self.op, "message": self.message}

    def line(self) -> str:
        return f"{self.severity.value}: {self.op} {self.node!r}: {self.message}"


def check_for_tensorrt(model: Path | onnx.ModelProto, *, strict: bool = False) -> list[Finding]:
    """Findings for `model` (a path or a loaded ModelProto); with `strict`, raise UserError on any error."""
    proto, source = _load(model)
    findings = [*_check_opsets(proto), *_check_io(proto.graph), *_walk(proto.graph, set(), _functions(proto))]
    if strict:
        raise_on_errors(findings, source)
    return findings


def raise_on_errors(findings: list[Finding], source: str) -> None:
    """One-line UserError naming the first error and how many more there are."""
    errors = [f for f in findings if f.severity is Severity.ERROR]
    if errors:
        more = f" (and {len(errors) - 1} more error(s))" if len(errors) > 1 else ""
        raise UserError(f"{source}: TensorRT would reject this graph: {errors[0].line()}{more}")


def report(findings: list[Finding]) -> dict[str, Any]:
    """The `trt_check.json` object."""
    return {
        "tensorrt_baseline": trt_ops.BASELINE,
        "errors": sum(f.severity is Severity.ERROR for f in findings),
        "warnings": sum(f.severity is Severity.WARNING for f in findings),
        "findings": [f.to_json() for f in findings],
    }


def _load(model: Path | onnx.ModelProto) -> tuple[onnx.ModelProto, str]:
    if isinstance(model, onnx.ModelProto):
        return model, model.graph.name or "ONNX model"
    path = Path(model)
    if not path.is_file():
        raise UserError(f"ONNX file not found: {path}; export the model first")
    try:  # external weights are not needed to judge the graph
        return onnx.load(str(path), load_external_data=False), str(path)
    except Exception as err:  # protobuf's DecodeError and friends: a corrupt or non-ONNX file
        raise UserError(f"{path} is not a readable ONNX model ({type(err).__name__}); re-export it") from None


def _functions(proto: onnx.ModelProto) -> dict[tuple[str, str], onnx.FunctionProto]:
    return {(f.domain, f.name): f for f in proto.functions}


def _check_opsets(proto: onnx.ModelProto) -> Iterator[Finding]:
    for opset in proto.opset_import:
        if opset.domain not in _DEFAULT_DOMAINS:
            continue
        if opset.version < trt_ops.OPSET_MIN:
            yield Finding(
                Severity.ERROR,
                "",
                "model",
                f"opset {opset.version} is older than TensorRT parses"
                f" ({trt_ops.OPSET_MIN}+); fix: re-export with opset 17 or 18",
            )
        elif opset.version > trt_ops.OPSET_MAX:
            yield Finding(
                Severity.WARNING,
                "",
                "model",
                f"opset {opset.version}: TensorRT {trt_ops.BASELINE}"
                f" (JetPack 6) parses opsets up to {trt_ops.OPSET_MAX}, TensorRT 10.15 up to 24;"
                " fix: export with opset 18 (edgekd's default)",
            )


def _check_io(graph: onnx.GraphProto) -> Iterator[Finding]:
    for kind, values in (("input", graph.input), ("output", graph.output)):
        for value in values:
            yield from _type_findings(value.type.tensor_type.elem_type, value.name, kind)
    for value in graph.input[:1]:
        dims = value.type.tensor_type.shape.dim
        if any(not d.dim_value for d in dims[1:]):
            yield Finding(
                Severity.WARNING,
                value.name,
                "input",
                "dimensions other than the batch are dynamic;"
                " edgekd's optimisation profile varies only the batch, so C, H, W are taken from"
                " the target's input_shape; fix: export with fixed C, H, W",
            )


def _type_findings(elem: int, name: str, kind: str) -> Iterator[Finding]:
    """Findings for one tensor of element type `elem`; `kind` is input/output/initializer/Cast/..."""
    if not elem:
        return
    io = kind in ("input", "output")
    type_name = _TypeOf(elem)
    if elem in trt_ops.NO_TRT_TYPE:
        yield Finding(
            Severity.ERROR,
            name,
            kind,
            f"type {type_name} has no TensorRT equivalent; fix: cast to"
            " float32 or int32 inside the model, or keep this tensor outside it",
        )
    elif elem == TensorProto.DOUBLE:
        severity = Severity.ERROR if io else Severity.WARNING
        yield Finding(
            severity,
            name,
            kind,
            "type DOUBLE: TensorRT has no FP64 tensors and casts to FP32"
            " (clamping to +-FLT_MAX); fix: export the model in float32 (model.float())",
        )
    elif io and elem == TensorProto.INT64:
        yield Finding(
            Severity.WARNING,
            name,
            kind,
            f"INT64 network {kind}: TensorRT >= 9 binds INT64 but 8.x"
            " (JetPack 5) casts it to INT32, and edgekd feeds float32 images and reads float"
            " logits; fix: keep integer tensors inside the model",
        )
    elif io and elem in trt_ops.QUANTIZED_TYPES:
        yield Finding(
            Severity.WARNING,
            name,
            kind,
            f"{type_name} network {kind}: TensorRT takes quantized"
            " types only through QuantizeLinear/DequantizeLinear; fix: keep float32 I/O and let"
            " TensorRT quantize (precision: int8)",
        )
    elif not io and kind != "Cast" and elem == TensorProto.UINT8:
        yield Finding(
            Severity.WARNING,
            name,
            kind,
            "UINT8 is supported only as a network input or output; fix: cast to int32 or float inside the model",
        )


def _walk(
    graph: onnx.GraphProto, outer: set[str], functions: dict[tuple[str, str], onnx.FunctionProto]
) -> Iterator[Finding]:
    """Findings for every node of `graph` and its subgraphs; `outer` names constants of enclosing scopes."""
    values = {t.name: t for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].HasField("t"):
            values[node.output[0]] = node.attribute[0].t
    constants = outer | set(values) | {n.output[0] for n in graph.node if n.op_type == "Constant"}
    for tensor in graph.initializer:
        yield from _type_findings(tensor.data_type, tensor.name, "initializer")
        if tensor.data_location == TensorProto.EXTERNAL:
            yield Finding(
                Severity.WARNING,
                tensor.name,
                "initializer",
                "weights are stored in an external file;"
                " fix: copy it with model.onnx to the device (or export with external_data=False)",
            )
    for value in graph.value_info:
        yield from _type_findings(value.type.tensor_type.elem_type, value.name, "value")
    yield from _walk_nodes(graph.node, constants, values, functions)


def _walk_nodes(
    nodes: Any,
    constants: set[str],
    values: dict[str, TensorProto],
    functions: dict[tuple[str, str], onnx.FunctionProto],
) -> Iterator[Finding]:
    for index, node in enumerate(nodes):
        name = node.name or f"{node.op_type}#{index}"
        local = functions.get((node.domain, node.op_type))
        if local is not None:  # the parser inlines model-local functions: judge their bodies
            yield from _walk_nodes(
                local.node, {n.output[0] for n in local.node if n.op_type == "Constant"}, {}, functions
            )
            continue
        yield from (Finding(s, name, node.op_type, m) for s, m in _node_problems(node, constants, values))
        if node.op_type in ("Cast", "CastLike", "Constant"):
            yield from _cast_types(node, name)
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                yield from _walk(sub, constants, functions)


def _node_problems(
    node: onnx.NodeProto, constants: set[str], values: dict[str, TensorProto]
) -> Iterator[tuple[Severity, str]]:
    op = node.op_type
    if node.domain not in _DEFAULT_DOMAINS:
        yield (
            Severity.ERROR,
            (
                f"{node.domain}::{op} is not a standard ONNX operator and TensorRT has no importer"
                " for it; fix: export with standard ONNX operators only, or register a TensorRT"
                " plugin of that name"
            ),
        )
        return
    if op in trt_ops.UNSUPPORTED:
        yield Severity.ERROR, f"{op} is not supported by TensorRT's ONNX parser; fix: {trt_ops.UNSUPPORTED[op]}"
        return
    if op not in trt_ops.SUPPORTED:
        yield (
            Severity.WARNING,
            (
                f"{op} is not in TensorRT's ONNX operator table; the parser will probably"
                " reject it; fix: replace it with supported operators"
            ),
        )
        return
    if op in trt_ops.NEWER:
        yield (
            Severity.WARNING,
            (
                f"{op} needs TensorRT >= {trt_ops.NEWER[op]} (JetPack 6 ships"
                f" {trt_ops.BASELINE}); fix: replace it, or use a newer TensorRT"
            ),
        )
    if op in trt_ops.CAVEATS:
        yield Severity.WARNING, trt_ops.CAVEATS[op]
    if op in trt_ops.CONSTANT_INPUTS:
        index, what, required = trt_ops.CONSTANT_INPUTS[op]
        if len(node.input) > index and node.input[index] and node.input[index] not in constants:
            yield (
                Severity.ERROR if required else Severity.WARNING,
                (
                    f"{op}: input '{what}' must be a build-time constant; fix: pass it as a Python constant,"
                    " or fold constants (polygraphy surgeon sanitize --fold-constants)"
                ),
            )
    if op == "Einsum" and "..." in _attr(node, "equation", ""):
        yield (
            Severity.WARNING,
            (
                "Einsum: ellipsis equations need TensorRT >= 10.12; fix: spell out the"
                " dimensions, or use MatMul/Transpose"
            ),
        )
    check = _RESTRICTIONS.get(op)
    if check is not None:
        yield from ((Severity.ERROR, message) for message in check(node, constants, values))


def _cast_types(node: onnx.NodeProto, name: str) -> Iterator[Finding]:
    """Types a Cast produces, or a Constant holds (checked like initializers)."""
    if node.op_type == "Cast":
        yield from _type_findings(_attr(node, "to", 0), name, "Cast")
    for attr in node.attribute:
        if node.op_type == "Constant" and attr.HasField("t"):
            yield from _type_findings(attr.t.data_type, name, "Constant")


def _attr(node: onnx.NodeProto, name: str, default: Any) -> Any:
    for attr in node.attribute:
        if attr.name == name:
            value = helper.get_attribute_value(attr)
            return value.decode() if isinstance(value, bytes) else value
    return default


def _value(values: dict[str, TensorProto], name: str) -> Any:
    """The numpy value of a constant input, or None when it is not a readable constant."""
    tensor = values.get(name)
    if tensor is None or tensor.data_location == TensorProto.EXTERNAL:
        return None
    return numpy_helper.to_array(tensor)


def _pool(node: onnx.NodeProto, constants: set[str], values: dict[str, TensorProto]) -> Iterator[str]:
    if len(_attr(node, "kernel_shape", [])) > 3:
        yield f"{node.op_type}: only 1-D, 2-D and 3-D pooling; fix: reshape to at most 3 spatial dimensions"
    if any(d != 1 for d in _attr(node, "dilations", [])):
        yield f"{node.op_type}: dilations must be all ones; fix: use dilation=1 in the pooling layer"
    if node.op_type == "MaxPool" and len(node.output) > 1 and node.output[1]:
        yield "MaxPool: the Indices output is not supported; fix: use MaxPool2d(return_indices=False)"


def _resize(node: onnx.NodeProto, constants: set[str], values: dict[str, TensorProto]) -> Iterator[str]:
    mode = _attr(node, "mode", "nearest")
    coordinates = _attr(node, "coordinate_transformation_mode", "half_pixel")
    if mode not in trt_ops.RESIZE_MODES:
        yield f"Resize: mode {mode!r} is not supported (nearest, linear); fix: use bilinear or nearest"
    if coordinates not in trt_ops.RESIZE_COORDINATES:
        yield (
            f"Resize: coordinate_transformation_mode {coordinates!r} is not supported; fix: use"
            f" {', '.join(sorted(trt_ops.RESIZE_COORDINATES))}"
        )
    nearest = _attr(node, "nearest_mode", "round_prefer_floor")
    if mode == "nearest" and nearest not in trt_ops.RESIZE_NEAREST:
        yield f"Resize: nearest_mode {nearest!r} is not supported; fix: use floor or round_prefer_floor"
    if _attr(node, "antialias", 0):
        yield "Resize: antialias is not supported; fix: interpolate with antialias=False"
    if _attr(node, "keep_aspect_ratio_policy", "stretch") != "stretch":
        yield "Resize: only keep_aspect_ratio_policy 'stretch' is supported; fix: give explicit sizes"


def _topk(node: onnx.NodeProto, constants: set[str], values: dict[str, TensorProto]) -> Iterator[str]:
    if not _attr(node, "sorted", 1):
        yield "TopK: sorted must be 1; fix: call topk(sorted=True)"
    k = _value(values, node.input[1]) if len(node.input) > 1 else None
    if k is not None and k.size and int(k.max()) >= 3840:
        yield f"TopK: K = {int(k.max())} but TensorRT takes K < 3840; fix: take the top K outside the model"


def _dropout(node: onnx.NodeProto, constants: set[str], values: dict[str, TensorProto]) -> Iterator[str]:
    if len(node.input) > 2 and node.input[2]:
        training = _value(values, node.input[2])
        if node.input[2] not in constants or (training is not None and bool(training.any())):
            yield "Dropout: training_mode must be a constant False; fix: export with model.eval()"


def _zero_point(node: onnx.NodeProto, constants: set[str], values: dict[str, TensorProto]) -> Iterator[str]:
    zero = _value(values, node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if zero is not None and zero.size and bool((zero != 0).any()):
        yield f"{node.op_type}: the zero point must be 0 (symmetric quantization); fix: quantize symmetrically"


def _simple(message: str, predicate: Any) -> Any:
    def check(node: onnx.NodeProto, constants: set[str], values: dict[str, TensorProto]) -> Iterator[str]:
        if predicate(node):
            yield message

    return check


_RESTRICTIONS = {
    "MaxPool": _pool,
    "AveragePool": _pool,
    "LpPool": _pool,
    "Resize": _resize,
    "TopK": _topk,
    "Dropout": _dropout,
    "QuantizeLinear": _zero_point,
    "DequantizeLinear": _zero_point,
    "ScatterND": _simple(
        "ScatterND: only reduction 'none' is supported; fix: scatter without reduction",
        lambda n: _attr(n, "reduction", "none") != "none",
    ),
    "LSTM": _simple(
        "LSTM: input_forget and layout must be 0; fix: use batch_first=False, no coupled gates",
        lambda n: _attr(n, "input_forget", 0) or _attr(n, "layout", 0),
    ),
    "LayerNormalization": _simple(
        "LayerNormalization: only the first output (Y) is supported; fix: do not use Mean/InvStdDev outputs",
        lambda n: any(n.output[1:]),
    ),
    "Constant": _simple(
        "Constant: sparse_value and string values are not supported; fix: use a dense numeric constant",
        lambda n: any(a.name in ("sparse_value", "value_string", "value_strings") for a in n.attribute),
    ),
}
