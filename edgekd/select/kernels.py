"""Per-node times from the runtime's own profiler, matched to the predictor's layers (nn-Meter's kernel data).

A probe is run once with the runtime's profiler on, in its own process (like the bench worker): ONNX
Runtime's profiler (`SessionOptions.enable_profiling`: a JSON trace with one `*_kernel_time` event per
node and run) or OpenVINO's performance counters (`PERF_COUNT`, `InferRequest.get_profiling_info()`,
f32 forced with `INFERENCE_PRECISION_HINT`). Profiling inflates small calls, so these times are used for
the SPLIT of a probe's time over its layers, never for its total: the predictor is calibrated to the
unprofiled whole-model medians afterwards (`edgekd.select.predictor`).

Nodes are matched to layers (`edgekd.select.layers`) by group (convolutions, matrix products, pooling,
element-wise), in execution order, by output shape: a node takes the next layer of its group whose output
has the same shape, the channels allowed to be padded up to the runtime's block (ONNX Runtime's NCHWc).
A layer no node takes was fused into another node (its time is in that node's); a node no layer takes
(layout reorders, reshapes) is left over, and the calibration accounts for it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from math import prod
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.errors import UserError
from edgekd.select.layers import Layer, LayerKind

#: Runtime operator types by the layer group they run; anything else that computes is element-wise.
_OPS = {
    "conv": set("Conv FusedConv Convolution GroupConvolution".split()),
    "linear": set("Gemm MatMul FusedMatMul FusedGemm FullyConnected".split()),
    "pool": set("MaxPool AveragePool GlobalAveragePool GlobalMaxPool ReduceMean ReduceMax Reduce Pooling".split()),
    "other": set(
        "ReorderInput ReorderOutput Reorder Reshape Flatten Transpose Squeeze Unsqueeze Identity Parameter Result"
        " Input Output Const Constant Convert Concat Concatenation Shape Gather Split Slice".split()
    ),
}
_GROUP = {
    LayerKind.CONV: "conv",
    LayerKind.POINTWISE: "conv",
    LayerKind.DEPTHWISE: "conv",
    LayerKind.LINEAR: "linear",
    LayerKind.POOL: "pool",
    LayerKind.ELTWISE: "eltwise",
}
CHANNEL_BLOCK = 16  # the widest channel block a runtime pads to (AVX-512: 16 floats)


@dataclass(frozen=True)
class NodeTime:
    """One executed node: its name and operator type, its output shape without the batch dimension, its
    time (ms, the mean of the faster half of the profiled runs) and, for a convolution, its kernel's area (kh * kw;
    0 where not known), which tells a 1x1 shortcut from the 3x3 convolution beside it."""

    name: str
    op: str
    out_shape: tuple[int, ...]
    ms: float
    kernel: int = 0

    @property
    def group(self) -> str:
        return next((g for g, ops in _OPS.items() if self.op in ops), "eltwise")


@dataclass(frozen=True)
class Matched:
    """A probe's nodes against its layers: (layer, ms) pairs, and the time no layer took (ms)."""

    pairs: tuple[tuple[Layer, float], ...]
    unmatched_ms: float
    total_ms: float


def same_shape(node: tuple[int, ...], layer: tuple[int, ...]) -> bool:
    """Equal shapes, except that the node's channels (the first dimension) may be padded up to a block."""
    if len(node) != len(layer) or not layer:
        return False
    if len(layer) == 1:
        return node == layer
    return node[1:] == layer[1:] and layer[0] <= node[0] < layer[0] + CHANNEL_BLOCK


def kernel_area(layer: Layer) -> int:
    """kh * kw of a convolution layer (0 for other layers)."""
    spatial = prod(layer.out_shape[1:]) if len(layer.out_shape) > 1 else 0
    return layer.positions // spatial if _GROUP[layer.kind] == "conv" and spatial else 0


def fits(node: NodeTime, layer: Layer) -> bool:
    """The node can be the layer: same output shape (channels padded at most to a block), same kernel."""
    same_kernel = not node.kernel or not kernel_area(layer) or node.kernel == kernel_area(layer)
    return same_kernel and same_shape(node.out_shape, layer.out_shape)


def match(layers: Sequence[Layer], nodes: Sequence[NodeTime]) -> Matched:
    """Pair each node with the next unpaired layer of its group that it fits (in order)."""
    queues: dict[str, list[Layer]] = {}
    for layer in layers:
        queues.setdefault(_GROUP[layer.kind], []).append(layer)
    pairs: list[tuple[Layer, float]] = []
    unmatched = 0.0
    for node in nodes:
        queue = queues.get(node.group, [])
        hit = next((i for i, layer in enumerate(queue) if fits(node, layer)), None)
        if hit is None:
            unmatched += node.ms
            continue
        pairs.append((queue.pop(hit), node.ms))
    return Matched(tuple(pairs), unmatched, sum(n.ms for n in nodes))


def low_mean(values: Sequence[float]) -> float:
    """The mean of the lower half: on a shared machine other processes only ever add time, and the
    profilers count whole microseconds, so a plain minimum would be coarse."""
    v = np.sort(np.asarray(values, dtype=np.float64))
    return float(v[: max(1, (len(v) + 1) // 2)].mean())


# ---- parent side -------------------------------------------------------------------------------


def has_profiler(runtime: str) -> bool:
    """Whether per-node times can be had from `runtime` (ONNX Runtime and OpenVINO)."""
    return runtime in _PROFILERS


def profile_nodes(
    runtime: str,
    path: Path,
    input_shape: Sequence[int],
    batch: int,
    threads: int,
    *,
    warmup: int = 10,
    runs: int = 30,
    timeout_s: float = 300.0,
) -> list[NodeTime]:
    """Per-node times of one built model (ONNX Runtime's .onnx or OpenVINO's IR), in a process of its own.
    Raises UserError for a runtime without per-node times."""
    from edgekd.bench.worker import worker_env

    if runtime not in _PROFILERS:
        raise UserError(f"no per-node profiler for runtime {runtime!r} (have {', '.join(_PROFILERS)})")
    request = {
        "runtime": runtime,
        "path": str(path),
        "shape": [batch, *input_shape],
        "threads": threads,
        "warmup": warmup,
        "runs": runs,
    }
    done = subprocess.run(
        [sys.executable, "-m", "edgekd.select.kernels"],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        env=worker_env(max(1, threads)),
        timeout=timeout_s,
        check=False,
    )
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-10:])
        raise RuntimeError(f"kernel profiler failed (exit {done.returncode}):\n{tail}")
    reply = json.loads(done.stdout.strip().splitlines()[-1])
    return [node_from_json(n) for n in reply["nodes"]]


def node_from_json(data: dict[str, Any]) -> NodeTime:
    shape = tuple(int(d) for d in data["shape"])
    return NodeTime(str(data["name"]), str(data["op"]), shape, float(data["ms"]), int(data.get("kernel", 0)))


def node_to_json(node: NodeTime) -> dict[str, Any]:
    return {"name": node.name, "op": node.op, "shape": list(node.out_shape), "ms": node.ms, "kernel": node.kernel}


# ---- child side --------------------------------------------------------------------------------


def _ort_nodes(request: dict[str, Any]) -> list[dict[str, Any]]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = int(request["threads"]) or 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL  # as the adapter loads it
    with tempfile.TemporaryDirectory(prefix="edgekd-kernels-") as tmp:
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "ort")
        session = ort.InferenceSession(request["path"], options, providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: _input(request)}
        for _ in range(int(request["warmup"]) + int(request["runs"])):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    durations: dict[str, list[float]] = {}
    described: dict[str, dict[str, Any]] = {}
    for event in events:
        name = str(event.get("name", ""))
        if event.get("cat") != "Node" or not name.endswith("_kernel_time"):
            continue
        durations.setdefault(name, []).append(float(event["dur"]) / 1000.0)
        args = event.get("args", {})
        shapes = args.get("output_type_shape") or [{}]
        shape: list[int] = next(iter(shapes[0].values()), [])
        weights = args.get("input_type_shape") or []
        op = args.get("op_name", "")
        kernel = _kernel(next(iter(weights[1].values()), [])) if len(weights) > 1 and op in _OPS["conv"] else 0
        described.setdefault(name, {"name": name[: -len("_kernel_time")], "op": op, "shape": shape, "kernel": kernel})
    warm = int(request["warmup"])
    return [
        {**described[k], "shape": described[k]["shape"][1:], "ms": low_mean(v[warm:] or v)}
        for k, v in durations.items()
    ]


def _ov_nodes(request: dict[str, Any]) -> list[dict[str, Any]]:
    import openvino as ov

    core = ov.Core()
    model = core.read_model(request["path"])
    model.reshape({model.inputs[0]: ov.PartialShape(list(request["shape"]))})
    config = {
        "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": "1",
        "INFERENCE_NUM_THREADS": str(int(request["threads"]) or 1),
        "INFERENCE_PRECISION_HINT": "f32",
        "PERF_COUNT": "YES",
    }
    compiled = core.compile_model(model, "CPU", config)
    infer = compiled.create_infer_request()
    x = _input(request)
    times: dict[str, list[float]] = {}
    ops: dict[str, str] = {}
    for i in range(int(request["warmup"]) + int(request["runs"])):
        infer.infer({0: x})
        if i < int(request["warmup"]):
            continue
        for info in infer.get_profiling_info():
            if info.status == ov.ProfilingInfo.Status.EXECUTED:
                times.setdefault(info.node_name, []).append(info.real_time.total_seconds() * 1000.0)
                ops[info.node_name] = info.node_type
    shapes, kernels = {}, {}
    for node in compiled.get_runtime_model().get_ordered_ops():
        name = node.get_friendly_name()
        if node.get_output_size() > 0 and node.output(0).get_partial_shape().is_static:
            shapes[name] = list(node.output(0).get_partial_shape().to_shape())[1:]
        if ops.get(name) in _OPS["conv"] and node.get_input_size() > 1:
            weights = node.input_value(1).get_partial_shape()
            kernels[name] = _kernel(list(weights.to_shape())) if weights.is_static else 0
    return [
        {"name": k, "op": ops[k], "shape": shapes.get(k, []), "ms": low_mean(v), "kernel": kernels.get(k, 0)}
        for k, v in times.items()
    ]


def _kernel(weights: Sequence[int]) -> int:
    """kh * kw from a convolution's weight shape (O x I x kh x kw, or grouped G x O x I x kh x kw)."""
    return int(weights[-1]) * int(weights[-2]) if len(weights) >= 4 else 0


def _input(request: dict[str, Any]) -> np.ndarray:
    return np.random.default_rng(0).random(tuple(request["shape"]), dtype=np.float32)


_PROFILERS = {"onnxruntime": _ort_nodes, "openvino": _ov_nodes}


def main() -> int:
    out = sys.stdout
    sys.stdout = sys.stderr  # runtimes may print; stdout carries only the reply
    request = json.loads(sys.stdin.read())
    nodes = _PROFILERS[request["runtime"]](request)
    out.write(json.dumps({"nodes": nodes}) + "\n")
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
