"""The null model: the compared models' input and output shapes, and no compute.

Timed by the same loop as the models, in the same run, its latency is the per-call floor: what the
runtime's call, the input binding and the output copy cost before any layer runs. A model's latency
within a few floors of it is mostly overhead, and differences smaller than the floor's own spread say
nothing about the models.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from edgekd.runtimes import Artifact

#: Runtimes that load an .onnx file as it is; others (TensorRT: an engine build) get no floor.
NULL_RUNTIMES = ("onnxruntime", "openvino")
OPSET = 13
IR_VERSION = 8  # old enough for every supported runtime, new enough for opset 13


def write_null_onnx(path: Path, input_shape: tuple[int, ...], classes: int) -> Path:
    """An ONNX model N x C x H x W -> N x `classes` (dynamic N): the first `classes` input values of each
    image, by Flatten and Slice (Tile first when an image has fewer values than `classes`)."""
    import onnx
    from onnx import TensorProto, helper

    values = 1
    for d in input_shape:
        values *= int(d)
    nodes = [helper.make_node("Flatten", ["x"], ["flat"], axis=1)]
    source = "flat"
    if values < classes:
        repeats = -(-classes // values)
        nodes.append(helper.make_node("Tile", ["flat", "repeats"], ["tiled"]))
        source = "tiled"
    nodes.append(helper.make_node("Slice", [source, "starts", "ends", "axes"], ["y"]))
    initializers = [
        helper.make_tensor("starts", TensorProto.INT64, [1], [0]),
        helper.make_tensor("ends", TensorProto.INT64, [1], [classes]),
        helper.make_tensor("axes", TensorProto.INT64, [1], [1]),
    ]
    if values < classes:
        initializers.append(helper.make_tensor("repeats", TensorProto.INT64, [2], [1, repeats]))
    graph = helper.make_graph(
        nodes,
        "edgekd_null",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *input_shape])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", classes])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="edgekd")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def null_artifact(like: Artifact, classes: int, folder: Path) -> Artifact | None:
    """The null model for `like`'s runtime, device, threads and input shape, written in `folder`; None
    for a runtime that cannot load an ONNX file as it is."""
    if like.runtime not in NULL_RUNTIMES:
        return None
    path = write_null_onnx(folder / "null.onnx", tuple(like.input_shape), classes)
    return replace(like, precision="fp32", path=path, target=None, info={"null_model": True, "classes": classes})
