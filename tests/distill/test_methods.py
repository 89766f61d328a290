"""Methods end to end: config defaults and checks, candidate layers, automatic and explicit pairs, the
vit teacher (heterogeneous pairs, ONNX export), and `edgekd distill --method ...` for every method."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from edgekd import api
from edgekd.cli import cli
from edgekd.config import TrainConfig
from edgekd.distill.losses import LOSSES
from edgekd.distill.methods import DEFAULTS, candidate_layers
from edgekd.distill.taps import tapped
from edgekd.distill.task import DistillConfig, build_loss, method_pairs
from edgekd.errors import UserError
from edgekd.models import build_model, load_model, parse_arch
from edgekd.store import Store

SHAPE = (1, 28, 28)


def model(arch: str) -> nn.Module:
    return build_model(parse_arch(arch))


# ---- config ----------------------------------------------------------------------------------


@pytest.mark.parametrize("method", sorted(DEFAULTS))
def test_weights_default_per_method(method: str) -> None:
    task = DistillConfig(method=method)
    assert (task.ce_weight, task.kd_weight) == (DEFAULTS[method].ce_weight, DEFAULTS[method].kd_weight)
    assert DistillConfig(method=method, kd_weight=2.0).kd_weight == 2.0
    assert task.schedule == ("critical-period" if method == "infoflow" else None)


def test_pairs_parse_from_text_and_lists() -> None:
    expected = (("stage3", "stage5"), ("pool", "pool"))
    assert DistillConfig(method="pkt", pairs="stage3:stage5, pool:pool").pairs == expected
    assert DistillConfig(method="pkt", pairs=["stage3:stage5", ["pool", "pool"]]).pairs == expected


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"method": "kd", "pairs": "pool:pool"}, "takes no layer pairs"),
        ({"method": "sp", "schedule": "constant"}, "--schedule applies to infoflow"),
        ({"method": "infoflow", "schedule": "sometimes"}, "known: constant, critical-period"),
        ({"method": "pkt", "pairs": "pool"}, "student_layer:teacher_layer"),
        ({"method": "pkt", "pairs": "pool:pool", "n_pairs": 2}, "not both"),
        ({"method": "fitnet"}, "known: hssakd, infoflow, kd, kddg, pkt, sp"),
        (
            {"method": "pkt", "loss_params": {"temperature": 2}},
            r"method 'pkt' has no loss parameter 'temperature' \(its parameters: eps\); drop --temperature",
        ),
        (
            {"method": "kd", "loss_params": {"gamma": 2}},
            "its parameters: temperature\\); drop 'gamma' from loss_params",
        ),
        ({"method": "kd", "logit_weight": 1.0}, "method 'kd' has one of its own: drop --logit-kd"),
        ({"method": "pkt", "logit_temperature": 2.0}, "add --logit-kd WEIGHT"),
    ],
)
def test_bad_options_fail_when_the_config_loads(options: dict[str, object], needle: str) -> None:
    with pytest.raises(UserError, match=needle):
        DistillConfig(**options)


def test_a_config_with_a_logit_term_survives_its_own_dump() -> None:
    for task in (DistillConfig(method="sp", logit_weight=1.0, logit_temperature=2.0), DistillConfig(method="kd")):
        assert DistillConfig.model_validate(task.model_dump()) == task
        assert DistillConfig.model_validate_json(task.model_dump_json()) == task


def test_a_logit_term_adds_hinton_kd_on_the_logits_to_a_feature_method() -> None:
    from edgekd.distill.losses.kd import soft_kl
    from edgekd.distill.objectives import Distillation

    torch.manual_seed(0)
    student, teacher = model("cnn-xs"), model("cnn-s")
    task = DistillConfig(method="pkt", logit_weight=0.7, logit_temperature=2.0)
    pairs = method_pairs(task, student, teacher, SHAPE)
    x, y = torch.randn(8, *SHAPE), torch.arange(8) % 10
    losses = []
    for weight in (0.0, task.logit_weight):
        objective = Distillation(teacher, build_loss(task, pairs), 1.0, 1000.0, None, weight, 2.0)
        with ExitStack() as stack:
            objective.attach(student, stack)
            loss, logits = objective(student, x, y)
            losses.append(loss)
    expected = 0.7 * soft_kl(logits, teacher.eval()(x), 2.0)
    assert float(losses[1] - losses[0]) == pytest.approx(float(expected), rel=1e-4, abs=1e-6)
    assert float(expected) > 0


# ---- candidate layers and pairs --------------------------------------------------------------


def test_candidates_of_built_in_models() -> None:
    assert candidate_layers(model("cnn-xs"), SHAPE) == ["stage1", "stage2", "stage3", "pool"]
    assert candidate_layers(model("vit-s"), SHAPE) == [f"stage{i}" for i in range(1, 7)] + ["pool"]
    assert candidate_layers(model("resnet"), SHAPE, pooled=False) == ["stage1", "stage2", "stage3"]


class Reordered(nn.Module):
    """A user model whose children are registered in another order than they run."""

    def __init__(self) -> None:
        super().__init__()
        self.classifier = nn.Linear(16, 10)
        self.features = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU())
        self.bottleneck = nn.Linear(32, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.bottleneck(self.features(x)))


def test_candidates_of_a_user_model_follow_the_forward_pass_without_the_logits() -> None:
    assert candidate_layers(Reordered(), SHAPE) == ["features.2", "bottleneck"]


def test_vit_to_cnn_pairs_at_matching_depth_and_the_loss_runs() -> None:
    student, teacher = model("cnn-xs"), model("vit-s")
    task = DistillConfig(method="infoflow")
    pairs = method_pairs(task, student, teacher, SHAPE)
    # 4 of 4 student candidates; 4 of 7 teacher candidates at depths 2/7, 4/7, 5/7, 7/7
    assert pairs == [("stage1", "stage2"), ("stage2", "stage4"), ("stage3", "stage5"), ("pool", "pool")]
    loss = build_loss(task, pairs)
    x = torch.rand(8, *SHAPE)
    with tapped(student, loss.student_layers) as s, tapped(teacher, loss.teacher_layers) as t:
        s_logits = student(x)
        t_logits = teacher(x).detach()
        assert t["stage2"].shape == (8, 49, 64)  # a block's output: B x tokens x dim
        value = loss({**s, "logits": s_logits}, {**t, "logits": t_logits}, torch.zeros(8, dtype=torch.long))
    value.backward()
    assert torch.isfinite(value) and student.stem[0].weight.grad is not None


def test_sp_pairs_the_last_stage_activations() -> None:
    pairs = method_pairs(DistillConfig(method="sp"), model("cnn-xs"), model("resnet"), SHAPE)
    assert pairs == [("stage3", "stage3")]


def test_explicit_pairs_are_checked_on_the_models() -> None:
    task = DistillConfig(method="pkt", pairs="stage3:stage9")
    with pytest.raises(UserError, match=r"teacher has no layer 'stage9'; valid layer names: .*stage1"):
        method_pairs(task, model("cnn-xs"), model("resnet"), SHAPE)


def test_too_few_candidates_names_the_way_out() -> None:
    user = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    with pytest.raises(UserError, match="offers 1 candidate layers.*--n-pairs or explicit --pairs"):
        method_pairs(DistillConfig(method="infoflow"), user, model("resnet"), SHAPE)


@pytest.mark.parametrize("method", LOSSES.names())
def test_every_method_builds_with_its_defaults(method: str) -> None:
    task = DistillConfig(method=method)
    pairs = method_pairs(task, model("cnn-xs"), model("resnet"), SHAPE)
    assert isinstance(build_loss(task, pairs), nn.Module)


# ---- the vit family --------------------------------------------------------------------------


def test_vit_exports_to_onnx_with_a_dynamic_batch(tmp_path: Path) -> None:
    import onnxruntime as ort

    from edgekd.export.onnx import export_onnx

    torch.manual_seed(0)
    vit = model("vit(dim=32,depth=2,heads=2,patch=7)").eval()
    path = export_onnx(vit, SHAPE, tmp_path / "vit.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        x = np.random.default_rng(batch).random((batch, *SHAPE), dtype=np.float32)
        got = session.run(None, {"input": x})[0]
        with torch.no_grad():
            np.testing.assert_allclose(got, vit(torch.from_numpy(x)).numpy(), atol=1e-4)


# ---- end to end ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory, fmnist_npz: Path) -> Path:
    out = tmp_path_factory.mktemp("teacher") / "t.pt"
    api.train_teacher(
        "vit(dim=32,depth=3,heads=2,patch=7)", str(fmnist_npz), out, TrainConfig(epochs=1, limit=300), progress=False
    )
    return out


@pytest.mark.parametrize("method", ["kd", "pkt", "infoflow", "sp"])
def test_cli_distills_with_every_method(method: str, teacher: Path, fmnist: str, tmp_path: Path) -> None:
    out = tmp_path / "s.pt"
    result = CliRunner().invoke(
        cli,
        [
            "distill",
            "--teacher",
            str(teacher),
            "--student",
            "cnn-xs",
            "--method",
            method,
            "--data",
            fmnist,
            "--epochs",
            "2",
            "--limit",
            "200",
            "--out",
            str(out),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    _, _, meta = load_model(out)
    assert meta["method"] == method and meta["distill"]["kd_weight"] == DEFAULTS[method].kd_weight
    if method == "kd":
        assert meta["pairs"] is None
    else:
        assert meta["pairs"][-1] == (["stage3", "stage3"] if method == "sp" else ["pool", "pool"])
    assert meta["schedule"] == ("critical-period" if method == "infoflow" else None)
    names = {m["name"] for m in Store(tmp_path / "edgekd.sqlite").metrics(meta["run_id"])}
    assert {"teacher_cached", "val_acc"} <= names
    if method == "infoflow":
        assert {f"pair_weight_{i}" for i in range(4)} <= names


def test_cli_adds_a_logit_term_to_a_feature_method(teacher: Path, fmnist: str, tmp_path: Path) -> None:
    out = tmp_path / "s.pt"
    common = ["--data", fmnist, "--epochs", "1", "--limit", "200", "--json"]
    args = ["distill", "--teacher", str(teacher), "--student", "cnn-xs", *common]
    result = CliRunner().invoke(cli, [*args, "--method", "sp", "--logit-kd", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    distilled = load_model(out)[2]["distill"]
    assert (distilled["method"], distilled["logit_weight"], distilled["logit_temperature"]) == ("sp", 1.0, 1.0)
    refused = CliRunner().invoke(cli, [*args, "--method", "kd", "--logit-kd", "1", "--out", str(tmp_path / "k.pt")])
    assert refused.exit_code == 2 and "drop --logit-kd" in refused.output and not (tmp_path / "k.pt").exists()


def test_cli_wrong_layer_fails_before_training(teacher: Path, fmnist: str, tmp_path: Path) -> None:
    out = tmp_path / "s.pt"
    result = CliRunner().invoke(
        cli,
        [
            "distill",
            "--teacher",
            str(teacher),
            "--student",
            "cnn-xs",
            "--method",
            "pkt",
            "--pairs",
            "stage3:block9",
            "--data",
            fmnist,
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 2, result.output
    assert "teacher has no layer 'block9'; valid layer names: norm, stem" in result.output
    assert not out.exists() and not (tmp_path / "edgekd.sqlite").exists()


def test_cli_lists_methods_with_their_weights() -> None:
    result = CliRunner().invoke(cli, ["distill", "--list-methods"])
    assert result.exit_code == 0
    assert all(name in result.output for name in LOSSES.names()) and "kd-weight 1000" in result.output
    assert "--logit-kd W adds Hinton KD on the logits" in result.output


def test_resume_refuses_another_method(
    teacher: Path, fmnist: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgekd.distill.trainer import Trainer, state_path

    def stop(self: Trainer, advance: object) -> None:
        self.epoch = 1
        self._save_state()
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "_epoch", stop)
    cfg = TrainConfig(epochs=2, limit=100)
    with pytest.raises(KeyboardInterrupt):
        api.distill(teacher, "cnn-xs", fmnist, tmp_path / "s.pt", cfg, DistillConfig(method="pkt"), progress=False)
    assert state_path(tmp_path / "s.pt").exists()
    with pytest.raises(UserError, match="other training settings"):
        api.distill(
            teacher, "cnn-xs", fmnist, tmp_path / "s.pt", cfg, DistillConfig(method="sp"), resume=True, progress=False
        )
