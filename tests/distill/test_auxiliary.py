"""The auxiliary (proxy) teacher: a 2x-wide copy of the student's layout between teacher and student."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edgekd import api
from edgekd.config import TrainConfig
from edgekd.distill.auxiliary import auxiliary_spec, uses_auxiliary
from edgekd.distill.task import DistillConfig
from edgekd.errors import UserError
from edgekd.models import load_model, parse_arch

CFG = TrainConfig(epochs=2, batch_size=64, limit=200, seed=0, device="cpu")


def test_auxiliary_spec_doubles_the_width() -> None:
    assert auxiliary_spec(parse_arch("cnn-xs")).params == {"width": 16, "depth": 1}
    assert auxiliary_spec(parse_arch("mobilenet-s")).params["width"] == 1.0
    assert auxiliary_spec(parse_arch("vit-s")).params["dim"] == 128
    assert auxiliary_spec(parse_arch("cnn(depth=2)")).params == {"width": 24, "depth": 2}
    vit, cnn = parse_arch("vit-s"), parse_arch("cnn-xs")
    assert uses_auxiliary("auto", vit, cnn) and not uses_auxiliary("auto", cnn, cnn)
    assert not uses_auxiliary("none", vit, cnn) and uses_auxiliary("some.pt", cnn, cnn)


def test_auxiliary_auto_none_path(tmp_path: Path, fmnist: str) -> None:
    teacher = api.train_teacher("vit-s", fmnist, tmp_path / "vit.pt", CFG, progress=False).checkpoint
    task = DistillConfig(method="infoflow", auxiliary="auto")
    result = api.distill(teacher, "cnn-xs", fmnist, tmp_path / "s.pt", CFG, task, progress=False)
    meta = load_model(result.checkpoint)[2]
    aux = Path(meta["auxiliary"])
    assert aux.is_file() and aux.is_relative_to(Path(os.environ["EDGEKD_CACHE"]))
    _, aux_spec, aux_meta = load_model(aux)
    assert aux_spec.family == "cnn" and aux_spec.params["width"] == 16
    assert [list(p) for p in aux_meta["distill"]["pairs"]] == [["penultimate", "penultimate"]]
    assert meta["auxiliary_sha256"]
    # the transfer into the auxiliary runs the teacher live in its first epoch only, then reads the cache
    assert [row.get("teacher_cached") for row in aux_meta["history"]] == [0.0] + [1.0] * (CFG.epochs - 1)
    assert meta["teacher"] == str(teacher)

    given = tmp_path / "given.pt"
    given.write_bytes(aux.read_bytes())
    path_task = DistillConfig(method="infoflow", auxiliary=str(given))
    meta = load_model(
        api.distill(teacher, "cnn-xs", fmnist, tmp_path / "p.pt", CFG, path_task, progress=False).checkpoint
    )[2]
    assert meta["auxiliary"] == str(given)

    none = DistillConfig(method="infoflow", auxiliary="none")
    meta = load_model(api.distill(teacher, "cnn-xs", fmnist, tmp_path / "n.pt", CFG, none, progress=False).checkpoint)[
        2
    ]
    assert meta["auxiliary"] is None

    bad = DistillConfig(method="infoflow", auxiliary=str(tmp_path / "missing.pt"))
    with pytest.raises(UserError, match="auxiliary teacher not found"):
        api.distill(teacher, "cnn-xs", fmnist, tmp_path / "b.pt", CFG, bad, progress=False)
