"""The latency predictor: per-layer costs fitted to measured probes; predict, table, MAPE, save and load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgekd.bench import TimingConfig
from edgekd.config import TargetProfile
from edgekd.errors import UserError
from edgekd.select import Candidate
from edgekd.select.latency import LatencyCache
from edgekd.select.layers import LayerKind
from edgekd.select.predictor import FEATURES, LatencyPredictor, candidate_layers, choose_probes, padded_macs
from edgekd.select.space import SearchSpace
from edgekd.store import STORE_NAME, Store

# A made-up target: 20 us per call, convolutions in blocks of 8 channels.
TRUTH = LatencyPredictor(
    {
        "overhead": 0.02,
        "conv.count": 0.003,
        "conv.macs": 2e-8,
        "pointwise.macs": 3e-8,
        "depthwise.macs": 1e-7,
        "pool.elements": 1e-7,
        "eltwise.elements": 5e-8,
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


def test_layers_fold_batch_norm_and_activations_into_convolutions(space: list[Candidate]) -> None:
    cnn = next(c for c in space if c.arch == "cnn(depth=1,width=2)" and c.spec.image_size == 8)
    kinds = [layer.kind for layer in candidate_layers(cnn)]
    # normalise (sub, mul), 4 conv-BN-ReLU as 4 convs, 2 max-pools, the global mean, the head
    assert kinds == [LayerKind.ELTWISE] * 2 + [LayerKind.CONV] * 2 + [LayerKind.POOL, LayerKind.CONV] * 2 + [
        LayerKind.POOL,
        LayerKind.LINEAR,
    ]
    conv = candidate_layers(cnn)[3]
    assert conv.config == "conv3x3 s1 g1 2->2 @8x8" and conv.macs == 8 * 8 * 9 * 2 * 2
    assert padded_macs(conv, 8) == 8 * 8 * 9 * 8 * 8


def test_a_residual_sum_after_a_convolution_folds_into_it_as_the_runtimes_fuse_it() -> None:
    import torch
    from torch import nn

    from edgekd.select.layers import model_layers

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(4, 4, 3, padding=1)
            self.bn = nn.BatchNorm2d(4)
            self.head = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = torch.relu(self.bn(self.conv(x)) + x)  # conv, its sum and its activation: one fused node
            z = y.mean((2, 3))
            return self.head(z) + z  # a sum after a matrix product: not fused, an eltwise layer

    kinds = [layer.kind for layer in model_layers(Block(), (4, 6, 6))]
    assert kinds == [LayerKind.CONV, LayerKind.POOL, LayerKind.LINEAR, LayerKind.ELTWISE]


def test_fit_recovers_a_known_cost_model_on_held_out_candidates(space: list[Candidate]) -> None:
    probes = choose_probes(space, 14)
    held_out = [c for c in space if c not in probes]
    measured = {c.key: TRUTH.predict(c) for c in space}
    predictor = LatencyPredictor.fit_measured(probes, measured)
    assert predictor.vector == 8  # chosen by leave-one-out error, not configured
    assert not predictor.own_padding  # padding costs what a real MAC does on this target
    assert not predictor.fit_info["weights_priced"]  # nor do weights cost anything of their own
    assert predictor.mape({c.key: measured[c.key] for c in held_out}, held_out) < 1.0
    assert predictor.fit_info["fit_mape"] < 1.0


def test_padding_priced_on_its_own_is_found_when_it_is_cheaper(space: list[Candidate]) -> None:
    # a target whose kernels skip part of the padded work: a padding MAC costs half a real convolution MAC
    truth = LatencyPredictor(
        {**{n: float(v) for n, v in zip(FEATURES, TRUTH.coef, strict=True)}, "padding.macs": 1e-8},
        vector=8,
        own_padding=True,
    )
    probes = choose_probes(space, 14)
    held_out = [c for c in space if c not in probes]
    measured = {c.key: truth.predict(c) for c in space}
    predictor = LatencyPredictor.fit_measured(probes, measured)
    assert (predictor.vector, predictor.own_padding) == (8, True)
    assert predictor.fit_info["loo_mape"] == predictor.fit_info["loo_mape_by_vector"]["8+padding"]
    assert predictor.mape({c.key: measured[c.key] for c in held_out}, held_out) < 1.0
    # a 2-channel CNN is mostly padding at 8 channels: paid in full, the same layers cost more
    narrow = next(c for c in space if c.arch == "cnn(depth=1,width=2)")
    assert TRUTH.predict(narrow) > truth.predict(narrow)


def test_weights_read_per_call_are_priced_when_they_cost_time(space: list[Candidate]) -> None:
    # a target that streams every layer's weights at one cost per weight, whatever the layer's kind
    per_weight = {f"{kind}.weights": 2e-6 for kind in ("conv", "pointwise", "depthwise", "linear")}
    truth = LatencyPredictor({**{n: float(v) for n, v in zip(FEATURES, TRUTH.coef, strict=True)}, **per_weight}, 8)
    probes = choose_probes(space, 14)
    held_out = [c for c in space if c not in probes]
    measured = {c.key: truth.predict(c) for c in space}
    predictor = LatencyPredictor.fit_measured(probes, measured)
    assert predictor.fit_info["weights_priced"] and predictor.vector == 8
    assert predictor.fit_info["loo_mape"] == predictor.fit_info["loo_mape_by_vector"]["8+weights"]
    assert [predictor.coef[FEATURES.index(name)] for name in per_weight] == [pytest.approx(2e-6, rel=0.05)] * 4
    assert predictor.mape({c.key: measured[c.key] for c in held_out}, held_out) < 1.0


def test_prediction_is_overhead_plus_the_layer_table(space: list[Candidate]) -> None:
    candidate = space[-1]
    table = {row["config"]: row["ms"] for row in TRUTH.table([candidate])}
    layers = candidate_layers(candidate)
    assert TRUTH.predict(candidate) == pytest.approx(TRUTH.overhead_ms() + sum(table[x.config] for x in layers))
    assert len(TRUTH.table(space)) > len(table) and all(ms >= 0 for ms in table.values())


def test_save_and_load_round_trip(tmp_path: Path, space: list[Candidate]) -> None:
    fitted = LatencyPredictor.fit_measured(
        space[::2], {c.key: TRUTH.predict(c) for c in space}, target={"name": "made-up", "threads": 1}
    )
    loaded = LatencyPredictor.load(fitted.save(tmp_path / "predictor.json"))
    table = json.loads((tmp_path / "predictor.json").read_text())["table"]
    assert {row["config"] for row in table} == {row["config"] for row in fitted.table(space[::2])}
    assert [loaded.predict(c) for c in space] == [fitted.predict(c) for c in space]
    assert (loaded.vector, loaded.target, loaded.fit_info) == (fitted.vector, fitted.target, fitted.fit_info)
    assert loaded.own_padding == fitted.own_padding


def test_mape_needs_the_candidates_it_has_not_seen(space: list[Candidate]) -> None:
    predictor = LatencyPredictor({"overhead": 0.1})
    with pytest.raises(UserError, match="no candidate for key"):
        predictor.mape({space[0].key: 0.1})
    assert predictor.mape({space[0].key: 0.2}, [space[0]]) == pytest.approx(50.0)
    assert predictor.mape({space[0].key: 0.1}) == pytest.approx(0.0)  # remembered now


def test_probes_spread_over_each_family(space: list[Candidate]) -> None:
    probes = choose_probes(space, 8)
    assert probes == choose_probes(space, 8)
    for family in ("cnn", "mobilenet"):
        members = sorted((c for c in space if c.spec.family == family), key=lambda c: c.flops)
        picked = [c for c in probes if c.spec.family == family]
        assert members[0] in picked and members[-1] in picked
    assert 6 <= len(probes) <= 10


def test_bad_inputs_are_user_errors(tmp_path: Path, space: list[Candidate]) -> None:
    with pytest.raises(UserError, match="at least 2 measured probes"):
        LatencyPredictor.fit_measured(space, {space[0].key: 0.1})
    with pytest.raises(UserError, match="must be positive"):
        LatencyPredictor.fit_measured(space[:2], {space[0].key: 0.1, space[1].key: 0.0})
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(UserError, match="cannot read latency predictor"):
        LatencyPredictor.load(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(UserError, match="is not an edgekd latency predictor"):
        LatencyPredictor.load(tmp_path / "other.json")


def test_fit_measures_probes_through_the_store(tmp_path: Path, space: list[Candidate]) -> None:
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    profile = TargetProfile(name="test-ort", runtime="onnxruntime", threads=1)
    probes = [c for c in space if c.spec.image_size == 8][:3]
    store = Store(tmp_path / STORE_NAME)
    timing = TimingConfig(warmup_iters=2, warmup_s=0.0, min_iters=20, min_time_s=0.05)
    predictor = LatencyPredictor.fit(probes, profile, tmp_path, store, timing)
    assert LatencyCache(store).count() == 3
    assert predictor.target["name"] == "test-ort" and predictor.target["threads"] == 1
    assert all(predictor.predict(c) > 0 for c in space)
    loaded = LatencyPredictor.load(predictor.save(tmp_path / "latency_predictor.json"))
    assert loaded.predict(space[0]) == pytest.approx(predictor.predict(space[0]))


def test_the_first_convolution_reads_the_image_unpadded() -> None:
    # runtimes block channels after the first convolution: an RGB stem's 3 input channels stay 3
    from edgekd.models import parse_arch
    from edgekd.select.space import make_candidate

    rgb = make_candidate(parse_arch("mobilenetv3(width=0.5)", in_channels=3, image_size=32))
    convs = [la for la in candidate_layers(rgb) if la.kind in (LayerKind.CONV, LayerKind.POINTWISE)]
    assert convs[0].first and convs[0].cin_per_group == 3 and not any(la.first for la in convs[1:])
    assert padded_macs(convs[0], 16) == convs[0].positions * 3 * 16
    later = next(la for la in convs[1:] if la.kind is LayerKind.POINTWISE and la.cin_per_group % 16)
    assert padded_macs(later, 16) > later.macs
