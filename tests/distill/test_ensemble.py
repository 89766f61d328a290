"""Online ensemble compression: the loss against an independent reference, the width plan and its errors,
training on real Fashion-MNIST with exact resume, and each student exported alone (exact logits, ONNX)."""

from __future__ import annotations

import json
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from edgekd import api
from edgekd.cli import cli
from edgekd.config import TrainConfig
from edgekd.data import load_data, to_float
from edgekd.distill.ensemble import (
    DEFAULT_FRACTIONS,
    EnsembleFamily,
    OnlineEnsemble,
    ensemble_family,
    make_adapters,
    online_ensemble_loss,
    parse_fractions,
    plan,
)
from edgekd.distill.ensemble_run import FAMILY, MANIFEST, load_manifest, student_file, work_dir
from edgekd.distill.losses.kd import HintonKD
from edgekd.distill.objectives import Distillation
from edgekd.distill.trainer import state_path
from edgekd.errors import UserError
from edgekd.models import build_model, load_checkpoint, load_model, parse_arch
from edgekd.store import STORE_NAME, Store

CFG = TrainConfig(epochs=2, batch_size=64, limit=300)
WIDTHS = "1.0,0.6,0.2"


def ref_softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def ref_loss(
    logits: list[np.ndarray],
    features: list[list[np.ndarray]],
    adapters: list[list[tuple[Any, Any]]],
    y: np.ndarray,
    t: float = 2.0,
) -> float:
    """The paper's loss written out in numpy: 0.7 sum CE + 0.15 sum MSE(adapted, widest) + 0.15 sum T^2 KL."""
    rows = np.arange(len(y))
    ce = sum(float(np.mean(-np.log(ref_softmax(s)[rows, y]))) for s in logits)
    p = ref_softmax(np.mean(logits, axis=0) / t)
    kl = sum(t**2 * float(np.mean(np.sum(p * (np.log(p) - np.log(ref_softmax(s / t))), axis=1))) for s in logits)
    mse = 0.0
    for row, row_adapters in zip(features[1:], adapters, strict=True):
        for f, f0, (w, b) in zip(row, features[0], row_adapters, strict=True):
            adapted = np.einsum("oi,bihw->bohw", w, f) + b[None, :, None, None]
            mse += float(np.mean((adapted - f0) ** 2))
    return 0.7 * ce + 0.15 * mse + 0.15 * kl


def test_loss_matches_an_independent_reference() -> None:
    rng = np.random.default_rng(0)
    channels, batch, classes = [4, 3, 2], 4, 5
    logits = [rng.normal(size=(batch, classes)) * 3 for _ in channels]
    features = [[rng.normal(size=(batch, c, 3, 3)), rng.normal(size=(batch, 2 * c, 2, 2))] for c in channels]
    adapters = [
        [(rng.normal(size=(m * channels[0], m * c)), rng.normal(size=m * channels[0])) for m in (1, 2)]
        for c in channels[1:]
    ]
    y = np.array([0, 3, 1, 4])

    t_logits = [torch.tensor(s, requires_grad=True) for s in logits]
    t_features = [[torch.tensor(f, requires_grad=True) for f in row] for row in features]
    convs = []
    for row in adapters:
        convs.append([])
        for w, b in row:
            conv = nn.Conv2d(w.shape[1], w.shape[0], 1).double()
            with torch.no_grad():
                conv.weight.copy_(torch.tensor(w)[:, :, None, None])
                conv.bias.copy_(torch.tensor(b))
            convs[-1].append(conv)
    loss = online_ensemble_loss(t_logits, t_features, convs, torch.tensor(y))

    assert loss.item() == pytest.approx(ref_loss(logits, features, adapters, y), rel=1e-10)
    loss.backward()
    # the ensemble teacher and the widest student's features are targets: no gradient reaches them as such
    assert all(f.grad is None for f in t_features[0])
    assert all(f.grad is not None for row in t_features[1:] for f in row)
    assert all(c.weight.grad is not None for row in convs for c in row)


def test_guidance_adds_the_teachers_loss_on_every_student() -> None:
    torch.manual_seed(0)
    members = plan(parse_arch("cnn(width=6,depth=1)"), (1.0, 0.5))
    family = ensemble_family(students=[m.spec.params for m in members]).eval()
    teacher = build_model(parse_arch("cnn-xs")).eval()
    adapters = make_adapters(family)
    x, y = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
    with ExitStack() as stack:
        plain, guided = OnlineEnsemble(adapters), OnlineEnsemble(adapters, Distillation(teacher, HintonKD(4.0), 0, 0.3))
        plain.attach(family, stack)
        guided.attach(family, stack)
        base, _ = plain(family, x, y)
        total, ensemble = guided(family, x, y)
    with torch.no_grad():
        t = teacher(x)
        expected = sum(HintonKD(4.0)({"logits": family.path(j, x)}, {"logits": t}, y) for j in range(2))
    assert total.item() == pytest.approx(base.item() + 0.3 * float(expected), rel=1e-6)
    assert torch.allclose(ensemble, (family.path(0, x) + family.path(1, x)) / 2)


def test_widths_become_distinct_channel_counts_on_the_base_stem() -> None:
    members = plan(parse_arch("cnn-s"), DEFAULT_FRACTIONS)
    assert [m.spec.params.get("width") for m in members] == [12, 10, 7, 5, 2]
    assert members[0].spec == parse_arch("cnn-s")  # the widest is the base itself
    assert all(m.spec.params["stem"] == 12 and m.spec.family == "cnn" for m in members[1:])
    assert [m.spec.params["width"] for m in plan(parse_arch("cnn(width=3,depth=2)"), (1.0, 0.5, 0.1))] == [3, 2, 1]
    with pytest.raises(UserError, match=r"not all distinct.*wider base"):
        plan(parse_arch("cnn(width=4,depth=1)"), DEFAULT_FRACTIONS)  # 4, 3, 2, 2, 1


@pytest.mark.parametrize(
    "widths, needle",
    [
        ("", "at least two widths"),
        ("1.0", "at least two widths"),
        ("0.8,1.0", "not strictly decreasing"),
        ("1.0,0.5,0.5", "not strictly decreasing"),
        ("1.5,0.5", "outside (0, 1]"),
        ("1.0,0", "outside (0, 1]"),
        ("1.0,-0.2", "outside (0, 1]"),
        ("1.0,half", "not a list of numbers"),
    ],
)
def test_bad_width_lists_name_the_problem_and_the_fix(widths: str, needle: str) -> None:
    with pytest.raises(UserError, match="e.g. --widths 1.0,0.8") as err:
        parse_fractions(widths)
    assert needle in str(err.value)


@pytest.mark.parametrize("arch", ["resnet", "mobilenet-s", "vit-s"])
def test_families_without_width_scaling_are_refused(arch: str) -> None:
    with pytest.raises(UserError, match="does not support width scaling.*cnn-s"):
        plan(parse_arch(arch), DEFAULT_FRACTIONS)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, fmnist_npz: Path) -> Path:
    out = tmp_path_factory.mktemp("ensemble")
    api.ensemble("cnn-s", str(fmnist_npz), out, CFG, WIDTHS, progress=False)
    return out


def test_each_student_alone_gives_its_path_through_the_family(run: Path, fmnist_npz: Path) -> None:
    manifest = load_manifest(run)
    family, family_spec, _ = load_model(run / FAMILY)
    assert isinstance(family, EnsembleFamily) and not state_path(run / FAMILY).exists()
    assert not any("adapter" in k for k in load_checkpoint(run / FAMILY)["state_dict"])
    x = torch.from_numpy(to_float(load_data(str(fmnist_npz)).test.x[:64]))
    fractions = [float(f) for f in WIDTHS.split(",")]
    assert [s["fraction"] for s in manifest["students"]] == fractions
    for j, fraction in enumerate(fractions):
        student, spec, meta = load_model(run / student_file(fraction))
        assert spec.family == "cnn" and spec.params["width"] == round(12 * fraction)
        with torch.no_grad():
            assert torch.equal(student(x), family.eval().path(j, x))
        assert meta["width_fraction"] == fraction and 0 <= meta["val_acc"] <= 1 and 0 <= meta["test_acc"] <= 1
        assert meta["ensemble"]["run_id"] == manifest["run_id"]
        assert meta["ensemble"]["train_seconds"] == manifest["train_seconds"] > 0
        assert meta["val_acc"] == manifest["students"][j]["val_acc"]
    runs = Store(run / STORE_NAME).runs()
    assert [r["kind"] for r in runs] == ["ensemble"] + ["ensemble-student"] * len(fractions)


def test_each_student_exports_to_onnx_with_parity(run: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    for fraction in (1.0, 0.2):
        info = api.export(str(run / student_file(fraction)), "cpu-ort-fp32", tmp_path / str(fraction))
        assert info["parity"]["max_abs_diff"] < 1e-4 and (tmp_path / str(fraction) / "model.onnx").is_file()


def test_resume_continues_exactly(run: Path, fmnist_npz: Path, tmp_path: Path, interrupted: Any) -> None:
    with interrupted():
        api.ensemble("cnn-s", str(fmnist_npz), tmp_path, CFG, WIDTHS, progress=False)
    assert state_path(work_dir(tmp_path) / FAMILY).exists() and not (tmp_path / MANIFEST).exists()
    resumed = api.ensemble("cnn-s", str(fmnist_npz), tmp_path, CFG, WIDTHS, resume=True, progress=False)

    straight = load_manifest(run)
    assert [s["test_acc"] for s in resumed["students"]] == [s["test_acc"] for s in straight["students"]]
    a, b = load_checkpoint(run / FAMILY)["state_dict"], load_checkpoint(tmp_path / FAMILY)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not work_dir(tmp_path).exists()  # the work folder goes once the run is written out


def invoke(*args: str) -> tuple[int, str, str]:
    """(exit code, stdout, stdout and stderr)."""
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.output


def test_cli_trains_a_guided_family(tmp_path: Path, fmnist: str) -> None:
    teacher = tmp_path / "t.pt"
    api.train_teacher("cnn-xs", fmnist, teacher, TrainConfig(epochs=1, limit=200), progress=False)
    code, stdout, output = invoke(
        "ensemble",
        "--student",
        "cnn(width=6,depth=1)",
        "--widths",
        "1.0,0.5",
        "--teacher",
        str(teacher),
        "--guide",
        "kd",
        "--data",
        fmnist,
        "--epochs",
        "2",
        "--limit",
        "200",
        "--out",
        str(tmp_path / "ens"),
        "--json",
    )
    assert code == 0, output
    manifest = json.loads(stdout)
    assert manifest["guide"]["method"] == "kd" and manifest["guide"]["teacher"] == str(teacher)
    assert [s["checkpoint"] for s in manifest["students"]] == ["student-w1.0.pt", "student-w0.5.pt"]
    assert all((tmp_path / "ens" / s["checkpoint"]).is_file() for s in manifest["students"])
    history = load_checkpoint(tmp_path / "ens" / FAMILY)["meta"]["history"]
    assert [h["teacher_cached"] for h in history] == [0.0, 1.0]  # the teacher ran live once, then from its cache


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--widths", ""], "at least two widths"),
        (["--widths", "0.5,1.0"], "not strictly decreasing"),
        (["--widths", "1.0,1.5"], "outside (0, 1]"),
        (["--widths", "1.0,0"], "outside (0, 1]"),
        (["--student", "resnet"], "does not support width scaling"),
        (["--guide", "kd"], "needs a teacher"),
    ],
)
def test_cli_bad_input_exits_2_with_one_line(tmp_path: Path, fmnist: str, args: list[str], needle: str) -> None:
    options = {"--student": "cnn-s", "--widths": "1.0,0.5", **dict(zip(args[::2], args[1::2], strict=True))}
    code, _, output = invoke(
        "ensemble", *[x for kv in options.items() for x in kv], "--data", fmnist, "--out", str(tmp_path / "ens")
    )
    assert code == 2, output
    assert "Traceback" not in output and needle in output
    assert output.strip().splitlines()[-1].startswith("edgekd: error:")
