"""The authors' infoflow recipe (`--recipe pkth`): task defaults, the auxiliary's phases, the per-epoch
critical period, Adam at a constant rate, and one end-to-end run through the auxiliary."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from edgekd import api
from edgekd.config import TrainConfig
from edgekd.distill.auxiliary import TRANSFER
from edgekd.distill.pkth import Phase, auxiliary_phases, constant_adam, student_loss
from edgekd.distill.schedules import CriticalPeriod, per_epoch
from edgekd.distill.task import DistillConfig
from edgekd.errors import UserError
from edgekd.models import load_model


def test_task_defaults_and_checks() -> None:
    task = DistillConfig(method="infoflow", recipe="pkth")
    assert task.ce_weight == 0.0 and task.kd_weight == 1.0 and task.schedule == "critical-period"
    assert DistillConfig(method="infoflow", recipe="pkth", ce_weight=1.0).ce_weight == 1.0  # optional CE
    assert DistillConfig(method="infoflow").ce_weight == 1.0 and DistillConfig(method="infoflow").recipe == "edgekd"
    with pytest.raises(UserError, match="--method infoflow"):
        DistillConfig(method="kd", recipe="pkth")
    with pytest.raises(UserError, match="--recipe pkth"):
        DistillConfig(method="infoflow", auxiliary_epochs=8)


def test_edgekd_auxiliary_key_is_unchanged() -> None:
    """The fields added for pkth stay out of the edgekd auxiliary's cache key (and out of its meaning)."""
    dumped = TRANSFER.model_dump(exclude={"recipe", "auxiliary_epochs"})
    assert set(TRANSFER.model_dump()) - set(dumped) == {"recipe", "auxiliary_epochs"}


def test_auxiliary_phases_keep_the_authors_proportions() -> None:
    labels, transfer = auxiliary_phases()
    assert labels == (Phase(50, 1e-3), Phase(30, 1e-4)) and transfer == (Phase(30, 1e-3), Phase(10, 1e-4))
    labels, transfer = auxiliary_phases(16)
    assert labels == (Phase(10, 1e-3), Phase(6, 1e-4)) and transfer == (Phase(6, 1e-3), Phase(2, 1e-4))
    assert auxiliary_phases(2) == ((Phase(1, 1e-3), Phase(1, 1e-4)), (Phase(1, 1e-3),))


@pytest.mark.parametrize("run_epochs", [3, 7, 50])
def test_per_epoch_critical_period_reads_the_real_epoch(run_epochs: int) -> None:
    schedule = per_epoch(run_epochs)
    for epoch in range(run_epochs):
        weights = schedule.weights(epoch / run_epochs, 4)
        assert weights[:3] == [pytest.approx(100 * 0.7**epoch, rel=1e-12)] * 3 and weights[3] == 1.0
    # edgekd's default compresses the authors' 50 epochs into the run instead
    assert CriticalPeriod().weights(1 / run_epochs, 2)[0] == pytest.approx(100 * 0.7 ** (50 / run_epochs))


def test_student_loss_uses_the_per_epoch_schedule() -> None:
    task = DistillConfig(method="infoflow", recipe="pkth")
    pairs = [("stage1", "stage1"), ("pool", "pool")]
    loss = student_loss(task, pairs, run_epochs=5)
    loss.set_progress(2 / 5)  # type: ignore[operator]
    assert loss.last_weights == (pytest.approx(49.0), 1.0)
    other = student_loss(DistillConfig(method="infoflow", recipe="pkth", schedule="last-only"), pairs, 5)
    assert other.last_weights == (0.0, 1.0)


def test_constant_adam_keeps_the_rate() -> None:
    model = torch.nn.Linear(3, 1)
    trainer = SimpleNamespace(train_module=model, cfg=TrainConfig(lr=1e-3), opt=None, sched=None)
    constant_adam(trainer)
    assert isinstance(trainer.opt, torch.optim.Adam) and trainer.opt.param_groups[0]["weight_decay"] == 0.0
    for _ in range(5):
        model(torch.ones(2, 3)).sum().backward()
        trainer.opt.step()
        trainer.sched.step()
    assert trainer.opt.param_groups[0]["lr"] == 1e-3


def test_pkth_recipe_end_to_end(tmp_path: Path, fmnist: str) -> None:
    cfg = TrainConfig(epochs=2, batch_size=64, limit=200, seed=0, device="cpu")
    teacher = api.train_teacher("vit(dim=16,depth=1,heads=2)", fmnist, tmp_path / "t.pt", cfg, progress=False)
    task = DistillConfig(method="infoflow", recipe="pkth", auxiliary="auto", auxiliary_epochs=2)
    student = "cnn(width=4,depth=1,hidden=8)"
    result = api.distill(teacher.checkpoint, student, fmnist, tmp_path / "s.pt", cfg, task, progress=False)
    meta = load_model(result.checkpoint)[2]
    assert meta["distill"]["recipe"] == "pkth" and meta["distill"]["ce_weight"] == 0.0
    assert [row["pair_weight_0"] for row in meta["history"]] == [pytest.approx(100.0), pytest.approx(70.0)]
    _, aux_spec, aux_meta = load_model(Path(meta["auxiliary"]))
    assert aux_spec.params == {"width": 8, "depth": 1, "hidden": 8}
    assert aux_meta["recipe"] == "pkth" and aux_meta["distill"]["ce_weight"] == 0.0
    assert aux_meta["train"]["epochs"] == 1 and aux_meta["train"]["weight_decay"] == 0.0  # the last transfer phase
    again = api.distill(teacher.checkpoint, student, fmnist, tmp_path / "s2.pt", cfg, task, progress=False)
    assert load_model(again.checkpoint)[2]["auxiliary"] == meta["auxiliary"]  # cached, not retrained
