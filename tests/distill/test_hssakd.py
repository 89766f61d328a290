"""HSSAKD: rotations and joint labels, branches, both losses against independent references, the teacher
checkpoint, exact resume, the export without branches, and the CLI's errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import Tensor, nn

from edgekd import api
from edgekd.cli import cli
from edgekd.config import TrainConfig
from edgekd.distill.hssakd import (
    BRANCHES_KEY,
    BranchedDistillation,
    BranchedSupervised,
    joint_labels,
    matching_stages,
    resolve_branches,
    rotate,
    with_branches,
)
from edgekd.distill.losses import LOSSES
from edgekd.distill.task import DistillConfig
from edgekd.distill.trainer import Trainer, state_path
from edgekd.errors import UserError
from edgekd.models import build_model, load_checkpoint, load_model, parse_arch, save_checkpoint

SHAPE = (1, 28, 28)
CFG = TrainConfig(epochs=2, batch_size=64, limit=192, seed=3)


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def assert_one_line_error(args: list[str], *needles: str) -> None:
    code, output = run(*args)
    lines = [line for line in output.splitlines() if line.strip()]
    assert code == 2, output
    assert "Traceback" not in output and len(lines) == 1 and lines[0].startswith("edgekd: error:"), output
    for needle in needles:
        assert needle in output, output


def model(arch: str) -> nn.Module:
    torch.manual_seed(0)
    return build_model(parse_arch(arch))


# ---- rotations and joint labels ------------------------------------------------------------------------


def test_rotations_are_rotation_major_quarter_turns() -> None:
    x = torch.arange(2 * 9, dtype=torch.float32).reshape(2, 1, 3, 3)
    r = rotate(x)
    assert r.shape == (8, 1, 3, 3)
    for k in range(4):
        for b in range(2):
            np.testing.assert_array_equal(r[k * 2 + b, 0].numpy(), np.rot90(x[b, 0].numpy(), k))
    # one quarter turn, counter-clockwise, written out
    np.testing.assert_array_equal(r[2, 0].numpy(), [[2, 5, 8], [1, 4, 7], [0, 3, 6]])


def test_joint_labels_are_class_times_four_plus_rotation() -> None:
    y = torch.tensor([3, 0, 9])
    assert joint_labels(y).tolist() == [12, 0, 36, 13, 1, 37, 14, 2, 38, 15, 3, 39]


def test_rotation_needs_square_images() -> None:
    with pytest.raises(UserError, match="needs square images, but the data is 28 x 20"):
        rotate(torch.zeros(2, 1, 28, 20))


# ---- branches ------------------------------------------------------------------------------------------


def test_branches_are_fresh_copies_of_the_remaining_stages() -> None:
    student = model("cnn-xs")
    keys = set(student.state_dict())
    net = with_branches(student, resolve_branches(student, None, "model"), SHAPE, 10)
    assert net.after == ["stage1", "stage2"] and set(student.state_dict()) == keys  # the model is untouched
    first = net.branches[0]
    assert [type(m) for m in first] == [nn.Sequential, nn.Sequential, nn.Sequential, nn.Linear]
    assert first[-1].in_features == 32 and first[-1].out_features == 40
    copied, original = first[0][1][0].weight, student.stage2[1][0].weight
    assert copied.shape == original.shape and copied is not original and not torch.equal(copied, original)
    assert len(net.branches[1]) == 3  # stage3, pool, linear
    logits, branch_logits = net(torch.rand(2, *SHAPE))
    assert logits.shape == (2, 10) and [z.shape for z in branch_logits] == [(2, 40), (2, 40)]


def test_a_branch_on_the_last_stage_is_pool_and_linear() -> None:
    teacher = model("resnet")
    net = with_branches(teacher, resolve_branches(teacher, ["stage3"], "model"), SHAPE, 10)
    assert len(net.branches[0]) == 2 and net.branches[0][-1].in_features == 64


def test_unknown_branch_stage_lists_the_valid_ones() -> None:
    with pytest.raises(UserError, match="no stage 'stage9' to branch after; valid: stage1, stage2, stage3"):
        resolve_branches(model("cnn-xs"), ["stage1", "stage9"], "model")


def test_student_branches_follow_the_teachers_relative_depth() -> None:
    three = ["stage1", "stage2", "stage3"]
    six = [f"stage{i}" for i in range(1, 7)]
    assert matching_stages(["stage1", "stage2"], three, three) == ["stage1", "stage2"]
    assert matching_stages(["stage2", "stage4", "stage6"], six, three) == ["stage1", "stage2", "stage3"]


# ---- both objectives on fixed tensors, against references written from the paper's formulas -----------

B, C, T = 3, 5, 3.0
RNG = np.random.default_rng(7)
S_LOGITS, T_LOGITS = RNG.standard_normal((4 * B, C)), RNG.standard_normal((4 * B, C)) * 2
S_BRANCHES = [RNG.standard_normal((4 * B, 4 * C)) for _ in range(2)]
T_BRANCHES = [RNG.standard_normal((4 * B, 4 * C)) * 2 for _ in range(2)]
Y = np.array([4, 0, 2])

# Computed once with edgekd and checked against the references below; pasted here as fixtures.
PINNED_STUDENT = 7.8443557798360875
PINNED_TEACHER = 13.231330462045605


def ref_softmax(row: np.ndarray) -> np.ndarray:
    e = np.exp(row - row.max())
    return e / e.sum()


def ref_kl_t(student: np.ndarray, teacher: np.ndarray, temperature: float) -> float:
    """T^2 * mean over rows of KL(softmax(t / T) || softmax(s / T))."""
    rows = [(ref_softmax(t / temperature), ref_softmax(s / temperature)) for s, t in zip(student, teacher, strict=True)]
    return temperature**2 * float(np.mean([np.sum(p * (np.log(p) - np.log(q))) for p, q in rows]))


def ref_ce(logits: np.ndarray, labels: list[int]) -> float:
    return float(np.mean([-np.log(ref_softmax(row)[label]) for row, label in zip(logits, labels, strict=True)]))


def ref_joint(y: np.ndarray) -> list[int]:
    """Row k * B + b of the rotated batch is image b turned k times: label 4 * y[b] + k."""
    return [4 * int(y[b]) + k for k in range(4) for b in range(len(y))]


class Fixed(nn.Module):
    """Stands in for a branched network: the same fixed outputs for any input."""

    def __init__(self, logits: np.ndarray, branches: list[np.ndarray]) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.tensor(logits))
        self.branches = nn.ParameterList([nn.Parameter(torch.tensor(b)) for b in branches])

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        assert x.shape == (4 * B, 1, 4, 4)
        return self.logits, list(self.branches)


def test_student_loss_matches_the_reference() -> None:
    objective = BranchedDistillation(Fixed(T_LOGITS, T_BRANCHES), LOSSES.create("hssakd"))  # type: ignore[arg-type]
    student = Fixed(S_LOGITS, S_BRANCHES)
    loss, main = objective(student, torch.zeros(B, 1, 4, 4, dtype=torch.float64), torch.tensor(Y))
    expected = (
        ref_ce(S_LOGITS[:B], list(Y))
        + ref_kl_t(S_LOGITS, T_LOGITS, T)
        + sum(ref_kl_t(s, t, T) for s, t in zip(S_BRANCHES, T_BRANCHES, strict=True))
    )
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    assert loss.item() == pytest.approx(PINNED_STUDENT, rel=1e-12)
    assert torch.equal(main, student.logits[:B])
    loss.backward()
    assert all(p.grad is not None for p in student.parameters())


def test_teacher_loss_matches_the_reference() -> None:
    teacher = Fixed(T_LOGITS, T_BRANCHES)
    loss, main = BranchedSupervised()(teacher, torch.zeros(B, 1, 4, 4, dtype=torch.float64), torch.tensor(Y))
    expected = ref_ce(T_LOGITS[:B], list(Y)) + sum(ref_ce(z, ref_joint(Y)) for z in T_BRANCHES)
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    assert loss.item() == pytest.approx(PINNED_TEACHER, rel=1e-12)
    assert main.shape == (B, C)


# ---- teacher, student, export, resume ------------------------------------------------------------------


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory, fmnist_npz: Path) -> Path:
    out = tmp_path_factory.mktemp("teacher") / "t.pt"
    code, output = run(
        "train-teacher",
        "--arch",
        "cnn-s",
        "--hssakd",
        "--data",
        str(fmnist_npz),
        "--epochs",
        "1",
        "--limit",
        "192",
        "--batch-size",
        "64",
        "--out",
        str(out),
        "--json",
    )
    assert code == 0, output
    return out


def test_teacher_checkpoint_stays_a_plain_model(teacher: Path, tmp_path: Path) -> None:
    from edgekd.export.onnx import check_parity, export_onnx

    loaded, spec, meta = load_model(teacher)
    assert set(loaded.state_dict()) == set(build_model(spec).state_dict())
    onnx_path = export_onnx(loaded, SHAPE, tmp_path / "t.onnx")
    assert check_parity(loaded, onnx_path, np.random.default_rng(0).random((4, *SHAPE), dtype=np.float32)).samples == 4
    assert meta["hssakd_branches"] == ["stage1", "stage2"]
    saved = load_checkpoint(teacher)[BRANCHES_KEY]
    assert saved["after"] == ["stage1", "stage2"] and saved["num_classes"] == 10
    assert saved["state_dict"]["0.3.weight"].shape == (40, 48)  # branch 0's 4C-way layer on 4 * 12 features


def test_hssakd_student_exports_like_a_plain_student(teacher: Path, fmnist: str, tmp_path: Path) -> None:
    import onnx

    from edgekd.export.onnx import export_onnx

    out = tmp_path / "s.pt"
    code, output = run(
        "distill",
        "--teacher",
        str(teacher),
        "--student",
        "cnn-xs",
        "--method",
        "hssakd",
        "--data",
        fmnist,
        "--epochs",
        "1",
        "--limit",
        "128",
        "--out",
        str(out),
        "--json",
    )
    assert code == 0, output
    student, spec, meta = load_model(out)
    assert meta["method"] == "hssakd" and meta["student_branches"] == ["stage1", "stage2"]
    assert meta["distill"]["ce_weight"] == 1.0 and meta["distill"]["loss_params"] == {}

    def graph(m: nn.Module, name: str) -> tuple[list[str], list[tuple[int, ...]]]:
        proto = onnx.load(str(export_onnx(m, SHAPE, tmp_path / name)))
        return [n.op_type for n in proto.graph.node], sorted(tuple(i.dims) for i in proto.graph.initializer)

    # a trained plain student: fresh BatchNorm constants (weight 1, bias 0) would fold away differently
    plain = api.train_teacher("cnn-xs", fmnist, tmp_path / "plain.pt", TrainConfig(epochs=1, limit=128), progress=False)
    assert graph(student, "hssakd.onnx") == graph(load_model(plain.checkpoint)[0], "plain.onnx")


def test_resume_restores_the_branches_exactly(teacher: Path, fmnist: str, tmp_path: Path, interrupted: Any) -> None:
    task = DistillConfig(method="hssakd")
    straight = api.distill(teacher, "cnn-xs", fmnist, tmp_path / "a.pt", CFG, task, progress=False)

    with interrupted():
        api.distill(teacher, "cnn-xs", fmnist, tmp_path / "b.pt", CFG, task, progress=False)
    state = torch.load(state_path(tmp_path / "b.pt"), weights_only=True)
    n_params = len(list(model("cnn-xs").parameters()))
    assert any(k.startswith("branches.1.") for k in state["model"]) and len(state["opt"]["state"]) > n_params
    resumed = api.distill(teacher, "cnn-xs", fmnist, tmp_path / "b.pt", CFG, task, resume=True, progress=False)

    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in straight.history]
    a, b = load_model(straight.checkpoint)[0].state_dict(), load_model(resumed.checkpoint)[0].state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resuming_a_plain_run_with_branches_is_refused(
    fmnist: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def stop(self: Trainer, advance: object) -> None:
        self.epoch = 1
        self._save_state()
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "_epoch", stop)
    with pytest.raises(KeyboardInterrupt):
        api.train_teacher("cnn-xs", fmnist, tmp_path / "t.pt", CFG, progress=False)
    with pytest.raises(UserError, match="other training settings"):
        api.train_teacher("cnn-xs", fmnist, tmp_path / "t.pt", CFG, resume=True, progress=False, hssakd=True)


# ---- the CLI's errors: exit 2, one line naming the problem and the fix ----------------------------------


def test_cli_non_square_images(tmp_path: Path) -> None:
    data = tmp_path / "wide.npz"
    np.savez(data, x=np.zeros((40, 28, 20), dtype=np.uint8), y=np.arange(40) % 10)
    assert_one_line_error(
        ["train-teacher", "--arch", "cnn-xs", "--hssakd", "--data", str(data), "--out", str(tmp_path / "t.pt")],
        "needs square images",
        "28 x 20",
    )
    assert not (tmp_path / "t.pt").exists()


def test_cli_branch_on_a_missing_stage(tmp_path: Path, fmnist: str) -> None:
    assert_one_line_error(
        [
            "train-teacher",
            "--arch",
            "resnet",
            "--hssakd",
            "--branches",
            "stage1,block9",
            "--data",
            fmnist,
            "--out",
            str(tmp_path / "t.pt"),
        ],
        "no stage 'block9' to branch after; valid: stage1, stage2, stage3",
    )


def test_cli_branches_without_hssakd(tmp_path: Path, fmnist: str) -> None:
    assert_one_line_error(
        [
            "train-teacher",
            "--arch",
            "resnet",
            "--branches",
            "stage1",
            "--data",
            fmnist,
            "--out",
            str(tmp_path / "t.pt"),
        ],
        "add --hssakd",
    )


@pytest.fixture
def plain_teacher(tmp_path: Path) -> Path:
    spec = parse_arch("cnn-xs")
    path = tmp_path / "plain.pt"
    save_checkpoint(path, build_model(spec), spec, {})
    return path


def test_cli_teacher_without_branches(plain_teacher: Path, fmnist: str, tmp_path: Path) -> None:
    assert_one_line_error(
        [
            "distill",
            "--teacher",
            str(plain_teacher),
            "--student",
            "cnn-xs",
            "--method",
            "hssakd",
            "--data",
            fmnist,
            "--out",
            str(tmp_path / "s.pt"),
        ],
        "has no HSSAKD branches; train it with 'edgekd train-teacher --hssakd'",
    )
    assert not (tmp_path / "s.pt").exists()


def test_cli_hssakd_refuses_an_auxiliary_teacher(plain_teacher: Path, fmnist: str, tmp_path: Path) -> None:
    assert_one_line_error(
        [
            "distill",
            "--teacher",
            str(plain_teacher),
            "--student",
            "cnn-xs",
            "--method",
            "hssakd",
            "--auxiliary",
            "auto",
            "--data",
            fmnist,
            "--out",
            str(tmp_path / "s.pt"),
        ],
        "drop --auxiliary",
    )


# ---- the teacher-output cache ----------------------------------------------------------------------------


def test_rotated_rows_go_to_samples_and_back() -> None:
    from edgekd.distill.hssakd import per_sample, rotation_major

    x = torch.arange(2 * 3 * 2, dtype=torch.float32).reshape(2, 1, 3, 2)[:, :, :2]  # 2 samples, 2 x 2
    rows = rotate(x).flatten(1)  # 8 rows, rotation-major
    samples = per_sample(rows, 2)
    assert samples.shape == (2, 4, 4)
    for i in range(2):
        for k in range(4):
            assert torch.equal(samples[i, k], torch.rot90(x[i], k, dims=(1, 2)).flatten())
    assert torch.equal(rotation_major(samples), rows)


def test_cached_teacher_matches_the_live_teacher(teacher: Path, fmnist: str, tmp_path: Path) -> None:
    import json

    def distil(out: str, cache: bool) -> list[dict[str, float]]:
        return api.distill(
            teacher, "cnn-xs", fmnist, tmp_path / out, CFG, DistillConfig(method="hssakd", cache=cache), progress=False
        ).history

    live = distil("live.pt", cache=False)
    cached = distil("cached.pt", cache=True)
    assert [r["teacher_cached"] for r in cached] == [0.0, 1.0] and "teacher_cached" not in live[0]
    assert cached[0]["train_loss"] == live[0]["train_loss"]  # epoch 1 runs the teacher live in both
    # epoch 2 reads float32 logits recorded from other batches: equal up to the kernels' batch-size noise
    assert cached[1]["train_loss"] == pytest.approx(live[1]["train_loss"], rel=1e-5)
    a, b = load_model(tmp_path / "live.pt")[0].state_dict(), load_model(tmp_path / "cached.pt")[0].state_dict()
    assert max(float((a[k].float() - b[k].float()).abs().max()) for k in a) < 1e-4

    metas = [json.loads(m.read_text()) for m in (tmp_path / "cache" / "teacher-outputs").glob("*/meta.json")]
    (meta,) = [m for m in metas if m["key"]["taps"][1:] == ["logits.branch0", "logits.branch1"]]
    assert [(t["shape"], t["dtype"]) for t in meta["taps"].values()] == [
        ([4, 10], "float32"),
        ([4, 40], "float32"),
        ([4, 40], "float32"),
    ]
    assert all(t["max_abs_err"] == 0.0 for t in meta["taps"].values())
    assert [r["teacher_cached"] for r in distil("again.pt", cache=True)] == [1.0, 1.0]  # reused from epoch 1
