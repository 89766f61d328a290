"""The kernel-level fit: runtime nodes matched to layers, per-kind costs fitted on per-node times and
calibrated to whole-model latencies (synthetic data, no timing assertions), and one real profile per
runtime of a tiny model."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from edgekd.select import Candidate
from edgekd.select.kernels import NodeTime, match, node_from_json, node_to_json, profile_nodes
from edgekd.select.layers import Layer, LayerKind
from edgekd.select.predictor import LatencyPredictor, candidate_layers, choose_probes
from edgekd.select.space import SearchSpace

TRUTH = LatencyPredictor(
    {
        "overhead": 0.02,
        "conv.count": 0.003,
        "conv.macs": 2e-8,
        "pointwise.macs": 3e-8,
        "depthwise.macs": 1e-7,
        "pool.elements": 1e-7,
        "eltwise.elements": 5e-8,
        "linear.macs": 1e-8,
    },
    vector=8,
)


@pytest.fixture(scope="module")
def space() -> list[Candidate]:
    return SearchSpace.model_validate(
        {
            "families": [
                {"family": "cnn", "width": [2, 6, 8, 12, 16], "depth": [1, 2]},
                {"family": "mobilenet", "width": [0.25, 0.5, 1.0], "depth": [1, 2]},
            ],
            "image_size": [8, 12],
        }
    ).candidates()


def _conv(kind: LayerKind, cout: int, hw: int, kernel: int, name: str) -> Layer:
    return Layer(kind, name, hw * hw * kernel * cout * 8, 0, 8, cout, hw * hw * kernel, out_shape=(cout, hw, hw))


def test_nodes_match_layers_by_group_shape_and_kernel() -> None:
    stem = _conv(LayerKind.CONV, 8, 16, 9, "stem")
    main = _conv(LayerKind.CONV, 24, 8, 9, "3x3 s2")
    shortcut = _conv(LayerKind.POINTWISE, 24, 8, 1, "1x1 s2")
    add = Layer(LayerKind.ELTWISE, "add", 0, 3072, out_shape=(24, 8, 8))
    head = Layer(LayerKind.LINEAR, "head", 240, 34, 24, 10, 1, out_shape=(10,))
    layers = [stem, main, shortcut, add, head]
    nodes = [
        NodeTime("stem", "Conv", (16, 16, 16), 0.010, kernel=9),  # channels padded to a block of 16
        NodeTime("reorder", "ReorderOutput", (8, 16, 16), 0.001),  # no layer: left over
        NodeTime("shortcut", "Conv", (32, 8, 8), 0.002, kernel=1),  # runs before the 3x3 beside it
        NodeTime("main", "Conv", (32, 8, 8), 0.020, kernel=9),  # the add is fused into it: no node
        NodeTime("head", "Gemm", (10,), 0.003),
    ]
    matched = match(layers, nodes)
    assert [(layer.config, ms) for layer, ms in matched.pairs] == [
        ("stem", 0.010),
        ("1x1 s2", 0.002),
        ("3x3 s2", 0.020),
        ("head", 0.003),
    ]
    assert matched.unmatched_ms == pytest.approx(0.001) and matched.total_ms == pytest.approx(0.036)
    assert node_from_json(node_to_json(nodes[2])) == nodes[2]


def test_a_channel_count_beyond_the_block_or_another_shape_does_not_match() -> None:
    layer = _conv(LayerKind.POINTWISE, 8, 4, 1, "pw")
    assert not match([layer], [NodeTime("n", "Conv", (32, 4, 4), 0.01, kernel=1)]).pairs
    assert not match([layer], [NodeTime("n", "Conv", (8, 2, 2), 0.01, kernel=1)]).pairs
    assert not match([layer], [NodeTime("n", "Conv", (8, 4, 4), 0.01, kernel=9)]).pairs
    assert not match([layer], [NodeTime("n", "Add", (8, 4, 4), 0.01)]).pairs  # another group
    assert match([layer], [NodeTime("n", "Convolution", (8, 4, 4), 0.01)]).pairs  # kernel unknown: shape only


def _profiled(candidate: Candidate, load: float) -> list[NodeTime]:
    """Per-node times as a profiler would report them: each layer's true cost, the whole probe slowed by
    `load`, and the element-wise layers after a convolution fused into it (no node of their own)."""
    nodes = []
    for layer in candidate_layers(candidate):
        ms = TRUTH.layer_ms(layer) * load
        if layer.kind is LayerKind.ELTWISE and nodes and nodes[-1].op == "Conv":
            nodes[-1] = NodeTime(nodes[-1].name, "Conv", nodes[-1].out_shape, nodes[-1].ms + ms)
            continue
        op = {LayerKind.LINEAR: "Gemm", LayerKind.POOL: "MaxPool", LayerKind.ELTWISE: "Mul"}.get(layer.kind, "Conv")
        nodes.append(NodeTime(layer.config, op, layer.out_shape, ms))
    return nodes


def test_kernel_fit_recovers_a_known_cost_model_on_held_out_candidates(space: list[Candidate]) -> None:
    probes = choose_probes(space, 8)
    held_out = [c for c in space if c not in probes]
    measured = {c.key: TRUTH.predict(c) for c in space}
    nodes = {c.key: _profiled(c, load=1.0 + 0.3 * (i % 3)) for i, c in enumerate(probes)}
    predictor = LatencyPredictor.fit_kernels(probes, measured, nodes)
    assert predictor.fit_info["method"] == "kernel"
    assert predictor.fit_info["pairs"] > 10 * len(probes)
    assert predictor.mape({c.key: measured[c.key] for c in held_out}, held_out) < 5.0


def test_without_per_node_times_the_whole_model_fit_is_used_and_said(space: list[Candidate]) -> None:
    probes = choose_probes(space, 8)
    measured = {c.key: TRUTH.predict(c) for c in space}
    predictor = LatencyPredictor.fit_kernels(probes, measured, {})
    assert predictor.fit_info["method"].startswith("whole-model")
    whole = LatencyPredictor.fit_measured(probes, measured)
    assert [predictor.predict(c) for c in space] == [whole.predict(c) for c in space]


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_a_runtime_profiles_a_tiny_model_node_by_node(tmp_path: Path, runtime: str, space: list[Candidate]) -> None:
    if importlib.util.find_spec(runtime) is None:
        pytest.skip(f"{runtime} is not installed")
    pytest.importorskip("torch", reason="torch is needed to make the test model")
    from edgekd.export import export_onnx
    from edgekd.models import build_model

    candidate = next(c for c in space if c.arch == "cnn(depth=1,width=6)" and c.spec.image_size == 8)
    onnx_path = export_onnx(build_model(candidate.spec), candidate.input_shape, tmp_path / "model.onnx")
    nodes = profile_nodes(runtime, onnx_path, candidate.input_shape, batch=2, threads=1, warmup=2, runs=5)
    assert nodes and all(n.ms >= 0 for n in nodes)
    convs = [n for n in nodes if n.group == "conv"]
    assert len(convs) == 4 and all(n.kernel == 9 for n in convs)
    matched = match(candidate_layers(candidate), nodes)
    assert sum(1 for layer, _ in matched.pairs if layer.kind is LayerKind.CONV) == 4


def test_a_probe_measured_far_above_its_profiled_total_is_left_out_of_the_calibration(
    space: list[Candidate],
) -> None:
    probes = choose_probes(space, 8)
    held_out = [c for c in space if c not in probes]
    measured = {c.key: TRUTH.predict(c) for c in space}
    stalled = {**measured, probes[3].key: 6.0 * measured[probes[3].key]}  # a stall in the measurement
    nodes = {c.key: _profiled(c, load=1.0) for c in probes}
    predictor = LatencyPredictor.fit_kernels(probes, stalled, nodes, choose=False)
    assert predictor.fit_info["inconsistent_probes"] == [probes[3].arch]
    assert predictor.mape({c.key: measured[c.key] for c in held_out}, held_out) < 5.0
