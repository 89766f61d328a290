from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from edgekd import api
from edgekd.config import TrainConfig
from edgekd.distill.task import DistillConfig
from edgekd.distill.trainer import state_path
from edgekd.errors import TrainingDiverged
from edgekd.models import load_model
from edgekd.store import Store

CFG = TrainConfig(epochs=2, batch_size=64, seed=1)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_model(path)[0].state_dict()


def test_train_records_metrics_and_checkpoint(tmp_path: Path, fmnist: str) -> None:
    result = api.train_teacher("cnn-xs", fmnist, tmp_path / "t.pt", CFG, progress=False)
    assert len(result.history) == 2 and 0.0 <= result.test_accuracy <= 1.0
    assert result.history[-1]["val_acc"] > 0.3  # 720 real images, 2 epochs: well above chance (0.1)
    store = Store(tmp_path / "edgekd.sqlite")
    names = {m["name"] for m in store.metrics(result.run_id)}
    assert {"train_loss", "val_acc", "epoch_s", "test_acc"} <= names
    _, spec, meta = load_model(result.checkpoint)
    assert meta["split"]["split_seed"] == 1 and spec.family == "cnn"
    assert not state_path(result.checkpoint).exists()


def test_resume_continues_exactly(tmp_path: Path, fmnist: str, interrupted: Any) -> None:
    straight = api.train_teacher("cnn-xs", fmnist, tmp_path / "a.pt", CFG, progress=False)

    with interrupted():
        api.train_teacher("cnn-xs", fmnist, tmp_path / "b.pt", CFG, progress=False)
    assert state_path(tmp_path / "b.pt").exists() and not (tmp_path / "b.pt").exists()
    resumed = api.train_teacher("cnn-xs", fmnist, tmp_path / "b.pt", CFG, resume=True, progress=False)

    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in straight.history]
    assert resumed.test_accuracy == straight.test_accuracy
    a, b = _weights(straight.checkpoint), _weights(resumed.checkpoint)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_ignores_views_without_augmentation(tmp_path: Path, fmnist: str, interrupted: Any) -> None:
    """A state saved when `views` defaulted to 1 resumes under today's 0 when nothing is augmented
    (views then mean nothing); with augmentation, other views are other settings and are refused."""
    from edgekd.config import Augment
    from edgekd.errors import UserError

    with interrupted():
        api.train_teacher("cnn-xs", fmnist, tmp_path / "a.pt", CFG.model_copy(update={"views": 1}), progress=False)
    resumed = api.train_teacher("cnn-xs", fmnist, tmp_path / "a.pt", CFG, resume=True, progress=False)
    assert len(resumed.history) == 2 and not state_path(resumed.checkpoint).exists()

    augmented = CFG.model_copy(update={"augment": Augment(pad=2), "views": 1})
    with interrupted():
        api.train_teacher("cnn-xs", fmnist, tmp_path / "b.pt", augmented, progress=False)
    with pytest.raises(UserError, match="other training settings"):
        fresh = augmented.model_copy(update={"views": 0})
        api.train_teacher("cnn-xs", fmnist, tmp_path / "b.pt", fresh, resume=True, progress=False)


def test_distill_with_kd(tmp_path: Path, fmnist: str) -> None:
    teacher = api.train_teacher("cnn-s", fmnist, tmp_path / "t.pt", CFG, progress=False)
    result = api.distill(
        teacher.checkpoint, "cnn-xs", fmnist, tmp_path / "s.pt", CFG, DistillConfig(method="kd"), progress=False
    )
    _, _, meta = load_model(result.checkpoint)
    assert meta["method"] == "kd" and meta["teacher_sha256"] and result.history[-1]["val_acc"] > 0.3


def test_nan_loss_stops_with_epoch_and_batch(tmp_path: Path, fmnist: str) -> None:
    cfg = TrainConfig(epochs=2, batch_size=64, lr=1e30, seed=0)
    with pytest.raises(TrainingDiverged, match=r"at epoch \d+, batch \d+"):
        api.train_teacher("cnn-xs", fmnist, tmp_path / "t.pt", cfg, progress=False)


def test_convolutional_networks_train_channels_last_with_the_same_results(
    tmp_path: Path, fmnist: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from torch import nn

    from edgekd.errors import UserError
    from edgekd.models import build_model, memory_format_for, parse_arch
    from edgekd.models.layout import LAYOUT_ENV

    assert memory_format_for(build_model(parse_arch("cnn-xs"))) == torch.channels_last
    assert memory_format_for(nn.Sequential(nn.Flatten(), nn.Linear(784, 10))) == torch.contiguous_format
    assert memory_format_for(build_model(parse_arch("vit-s"))) == torch.contiguous_format  # mostly linear
    assert memory_format_for(build_model(parse_arch("mobilenet-s"))) == torch.channels_last
    runs = {}
    for layout in ("contiguous", "channels_last"):
        monkeypatch.setenv(LAYOUT_ENV, layout)
        runs[layout] = api.train_teacher("cnn-xs", fmnist, tmp_path / f"{layout}.pt", CFG, progress=False)
    monkeypatch.setenv(LAYOUT_ENV, "nhwc")
    with pytest.raises(UserError, match="EDGEKD_MEMORY_FORMAT='nhwc' is not a layout; use auto, channels_last"):
        memory_format_for(nn.Linear(1, 1))
    # the layout changes strides, not the model: a checkpoint trained NHWC loads into a plain (NCHW) model,
    # and the two runs differ by float rounding only. Over 2 epochs of Adam on 720 images that rounding
    # reaches the losses' 5th digit; Adam's per-weight normalisation turns it into weight differences of
    # up to about 1% of a weight's scale (measured: 0.005 on a conv weight of magnitude 0.34)
    a, b = _weights(runs["contiguous"].checkpoint), _weights(runs["channels_last"].checkpoint)
    assert a.keys() == b.keys() and all(a[k].shape == b[k].shape for k in a)
    assert all(torch.allclose(a[k].float(), b[k].float(), rtol=0.02, atol=0.02) for k in a)
    for row_a, row_b in zip(runs["contiguous"].history, runs["channels_last"].history, strict=True):
        assert row_b["train_loss"] == pytest.approx(row_a["train_loss"], rel=2e-4)
