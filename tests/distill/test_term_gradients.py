"""Each term's gradient norm against CE's (`term_gradients`), and the cnn family's hidden layer."""

from __future__ import annotations

import pytest
import torch

from edgekd.distill.blocks import penultimate
from edgekd.distill.losses.infoflow import InformationFlow
from edgekd.distill.losses.kd import HintonKD
from edgekd.distill.retrieval import penultimate_features
from edgekd.distill.term_gradients import CE, DISTILL, term_gradients
from edgekd.models import build_model, parse_arch

PAIRS = [("stage1", "stage1"), ("stage2", "stage2"), ("stage3", "stage3"), ("pool", "pool")]


def _models() -> tuple[torch.nn.Module, torch.nn.Module, list[tuple[torch.Tensor, torch.Tensor]]]:
    torch.manual_seed(0)
    student = build_model(parse_arch("cnn(width=4,depth=1,hidden=16)"))
    teacher = build_model(parse_arch("cnn(width=6,depth=1)"))
    batches = [(torch.rand(16, 1, 28, 28), torch.randint(0, 10, (16,))) for _ in range(2)]
    return student, teacher, batches


def test_ratios_are_finite_and_scale_with_the_weight() -> None:
    student, teacher, batches = _models()
    loss = InformationFlow(PAIRS)
    rows = {r.term: r for r in term_gradients(student, teacher, loss, batches, ce_weight=0.0, kd_weight=1.0)}
    assert rows[CE].ratio == 1.0 and rows["ce x0"].ratio == 0.0
    assert set(rows) == {CE, "ce x0", DISTILL, *(f"{s}:{t}" for s, t in PAIRS)}
    assert all(torch.isfinite(torch.tensor(r.grad_norm)) and r.grad_norm > 0 for r in rows.values() if r.weight)
    assert rows["stage1:stage1"].weight == 100.0 and rows["pool:pool"].weight == 1.0
    doubled = {r.term: r for r in term_gradients(student, teacher, loss, batches, ce_weight=1.0, kd_weight=2.0)}
    for name in (DISTILL, "stage2:stage2", "pool:pool"):
        assert doubled[name].ratio == pytest.approx(2 * rows[name].ratio, rel=1e-6)
    assert loss.last_weights == (100.0, 100.0, 100.0, 1.0)  # restored after the per-pair passes
    assert all(p.grad is None for p in student.parameters())


def test_a_loss_without_pairs_has_one_distillation_row() -> None:
    student, teacher, batches = _models()
    rows = term_gradients(student, teacher, HintonKD(), batches, ce_weight=0.5, kd_weight=0.5)
    assert [r.term for r in rows] == [CE, "ce x0.5", DISTILL] and rows[1].ratio == 0.5


def test_cnn_hidden_layer_is_the_penultimate_representation() -> None:
    plain = build_model(parse_arch("cnn-xs"))
    assert sorted(plain.state_dict()) == sorted(build_model(parse_arch("cnn(width=8,depth=1,hidden=0)")).state_dict())
    model = build_model(parse_arch("cnn(width=8,depth=1,hidden=64)"))
    assert penultimate(model, (1, 28, 28)) == "pool"
    assert isinstance(model.pool[2], torch.nn.Linear) and model.head.in_features == 64
    from edgekd.data.datasets import Dataset

    data = Dataset(torch.rand(5, 1, 28, 28).numpy(), torch.zeros(5, dtype=torch.long).numpy(), ("a",), "x")
    features = penultimate_features(model, data)
    assert features.shape == (5, 64) and (features >= 0).all()  # after the ReLU
