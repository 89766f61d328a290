"""KDDG: the gradient filter's switch changes the distillation gradient as documented, and the method
trains end to end on source domains, with held-out domains scored and the chain scored under shift."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from edgekd.cli import cli
from edgekd.distill.losses import LOSSES
from edgekd.distill.losses.kd import soft_kl
from edgekd.distill.losses.kddg import kddg_loss
from edgekd.models import load_model

TEACHER = torch.tensor([[4.0, 1.0, 0.0], [0.0, 3.0, 1.0], [2.0, 2.1, 0.0]])
LABELS = torch.tensor([0, 2, 1])  # the teacher is right on rows 0 and 2, wrong on row 1


def student_grad(mode: str) -> torch.Tensor:
    s = torch.tensor([[0.5, 0.2, -0.1], [0.3, 0.0, 0.4], [0.1, -0.2, 0.3]], requires_grad=True)
    kddg_loss(s, TEACHER, LABELS, 4.0, mode).backward()
    assert s.grad is not None
    return s.grad


def test_no_filter_is_hinton_kd() -> None:
    s = torch.randn(5, 3)
    t = torch.randn(5, 3)
    assert torch.allclose(kddg_loss(s, t, torch.zeros(5, dtype=torch.long), 4.0, "none"), soft_kl(s, t, 4.0))


def test_agree_filter_zeroes_the_kd_gradient_where_the_teacher_is_wrong() -> None:
    plain, agree = student_grad("none"), student_grad("agree")
    assert torch.count_nonzero(plain[1]) > 0 and torch.equal(agree[1], torch.zeros(3))
    assert torch.allclose(agree[[0, 2]], plain[[0, 2]])


def test_confidence_filter_scales_each_sample_by_the_teachers_label_probability() -> None:
    plain, soft = student_grad("none"), student_grad("confidence")
    p = torch.softmax(TEACHER, dim=1).gather(1, LABELS.view(-1, 1))
    assert torch.allclose(soft, plain * p, atol=1e-7)
    mixed = torch.nn.functional.one_hot(LABELS, 3).float()  # soft targets (mixup) give the same weights
    s = torch.zeros(3, 3)
    assert torch.allclose(kddg_loss(s, TEACHER, mixed, 4.0, "agree"), kddg_loss(s, TEACHER, LABELS, 4.0, "agree"))


def test_bad_filter_is_refused() -> None:
    with pytest.raises(ValueError, match="filter"):
        LOSSES.create("kddg", filter="sometimes")


def invoke(*args: str) -> tuple[int, str]:
    """Exit code and stdout (stderr when it failed): progress lines go to stderr."""
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout if result.exit_code == 0 else result.output


def test_kddg_trains_on_source_domains_and_exports_with_shift(fmnist: str, tmp_path: Path) -> None:
    common = ["--data", fmnist, "--limit", "200", "--epochs", "1", "--json"]
    domains = ["--domains", "clean,contrast-2,noise-2", "--hold-out", "blur-3,elastic-3"]
    teacher = tmp_path / "t.pt"
    code, output = invoke("train-teacher", "--arch", "cnn-xs", *common, *domains, "--out", str(teacher))
    assert code == 0, output
    record = json.loads(output)["domains"]
    assert record["sources"] == ["clean", "contrast-2", "gaussian_noise-2"]
    assert set(record["accuracy"]) == {"clean", "blur-3", "elastic-3"}
    assert load_model(teacher)[2]["split"]["domains"]["held_out"] == ["blur-3", "elastic-3"]

    student = tmp_path / "s.pt"
    args = ["distill", "--teacher", str(teacher), "--student", "cnn-xs", "--method", "kddg", *common, *domains]
    code, output = invoke(*args, "--gradient-filter", "agree", "--out", str(student))
    assert code == 0, output
    meta = load_model(student)[2]
    assert meta["distill"]["loss_params"]["filter"] == "agree"
    assert meta["teacher_domains"]["sources"] == record["sources"]

    code, output = invoke(*args[:5], "--method", "kd", "--gradient-filter", "agree", "--out", str(tmp_path / "x.pt"))
    assert code == 2 and "kddg" in output.strip().splitlines()[-1], output

    out = tmp_path / "build"
    export = ["export", str(student), "--target", "cpu-ort-fp32", "--out", str(out), "--data", fmnist]
    code, output = invoke(*export, "--shift", "blur,elastic", "--severity", "2", "--json")
    assert code == 0, output
    info = json.loads(output)
    assert set(info["shift"]) == {"blur-2", "elastic-2"}
    assert set(info["shift"]["blur-2"]) == {"torch", "onnx", "artifact"}
    assert info["shift"]["blur-2"]["torch"] == pytest.approx(info["shift"]["blur-2"]["artifact"], abs=0.01)
    assert set(info["mean_corruption_error"]) == {"torch", "onnx", "artifact"}
    code, output = invoke(*export, "--shift", "elastic")
    assert code == 0 and "along the export chain" in output and "elastic-3" in output, output


@pytest.mark.parametrize(
    ("option", "value", "needle"),
    [("--domains", "clean,fog-2", "fog-2"), ("--hold-out", "blur-7", "1-5"), ("--domains", "clean,blur", "blur")],
)
def test_bad_domain_names_exit_2_in_one_line(option: str, value: str, needle: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["train-teacher", "--arch", "cnn-xs", option, value, "--out", str(tmp_path / "t.pt")]
    )
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and needle in lines[0], result.output
