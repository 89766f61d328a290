"""Augmented distillation: the teacher sees the student's very view, cached per view or live."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from edgekd import api
from edgekd.config import TrainConfig
from edgekd.data import augment as aug
from edgekd.data import load_data, to_float
from edgekd.distill.task import DistillConfig
from edgekd.distill.trainer import state_path
from edgekd.errors import UserError
from edgekd.models import load_model

CFG = TrainConfig(epochs=2, batch_size=64, seed=1, augment="standard", views=3)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory, fmnist_npz: Path) -> Path:
    out = tmp_path_factory.mktemp("teacher") / "t.pt"
    return Path(
        api.train_teacher("cnn-xs", str(fmnist_npz), out, TrainConfig(epochs=1, seed=1), progress=False).checkpoint
    )


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_model(path)[0].state_dict()


def test_cache_holds_every_view_and_each_row_is_the_live_teacher_on_that_view(
    tmp_path: Path, fmnist: str, teacher: Path
) -> None:
    result = api.distill(teacher, "cnn-xs", fmnist, tmp_path / "s.pt", CFG, DistillConfig(method="kd"), progress=False)
    assert [row["teacher_cached"] for row in result.history] == [1.0, 1.0]  # filled before the first epoch
    _, _, meta = load_model(result.checkpoint)
    assert meta["augment"] == {"pad": 4, "flip": "auto", "erase": 0.25, "flips": False, "views": 3, "active": True}
    (folder,) = (tmp_path / "cache" / "teacher-outputs").iterdir()
    info = json.loads((folder / "meta.json").read_text())
    train = load_data(fmnist, val_fraction=CFG.val_fraction, seed=CFG.seed).train
    assert info["n"] == 3 * len(train) and "views=3" in info["key"]["augment"]
    logits = np.load(folder / info["taps"]["logits"]["file"])
    model = load_model(teacher)[0].eval()
    rows = np.array([0, 1, 2, 3 * 17 + 1, 3 * len(train) - 1])
    sample, view = rows // 3, rows % 3
    x = torch.from_numpy(to_float(aug.views_of(train.x[sample], CFG.augment, CFG.seed, sample, view)))
    with torch.no_grad():
        live = model(x).numpy()
    np.testing.assert_allclose(logits[rows], live, rtol=1e-4, atol=1e-4)  # float32 logits, other batch sizes
    assert not np.allclose(logits[0], logits[1], atol=1e-3)  # two views of one sample: other soft labels


def test_resume_with_augmentation_ends_with_the_same_weights(
    tmp_path: Path, fmnist: str, teacher: Path, interrupted: Any
) -> None:
    task = DistillConfig(method="kd")
    straight = api.distill(teacher, "cnn-xs", fmnist, tmp_path / "a.pt", CFG, task, progress=False)
    with interrupted():
        api.distill(teacher, "cnn-xs", fmnist, tmp_path / "b.pt", CFG, task, progress=False)
    assert state_path(tmp_path / "b.pt").exists()
    resumed = api.distill(teacher, "cnn-xs", fmnist, tmp_path / "b.pt", CFG, task, resume=True, progress=False)
    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in straight.history]
    a, b = _weights(straight.checkpoint), _weights(resumed.checkpoint)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_online_mode_with_mixup_resumes_exactly_and_mixup_refuses_the_cache(
    tmp_path: Path, fmnist: str, teacher: Path, interrupted: Any
) -> None:
    cfg = CFG.model_copy(update={"mixup": 0.2, "views": 1})
    live = DistillConfig(method="kd", cache=False)
    with pytest.raises(UserError, match="mixup needs the live teacher"):
        api.distill(teacher, "cnn-xs", fmnist, tmp_path / "c.pt", cfg, DistillConfig(method="kd"), progress=False)
    straight = api.distill(teacher, "cnn-xs", fmnist, tmp_path / "a.pt", cfg, live, progress=False)
    with interrupted():
        api.distill(teacher, "cnn-xs", fmnist, tmp_path / "b.pt", cfg, live, progress=False)
    resumed = api.distill(teacher, "cnn-xs", fmnist, tmp_path / "b.pt", cfg, live, resume=True, progress=False)
    a, b = _weights(straight.checkpoint), _weights(resumed.checkpoint)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert "teacher_cached" not in straight.history[0]


def test_evaluation_sees_the_stored_images(tmp_path: Path, fmnist: str) -> None:
    from edgekd.distill.trainer import evaluate

    cfg = TrainConfig(epochs=1, batch_size=64, seed=1, augment={"pad": 4, "flip": "on", "erase": 1.0})  # type: ignore[arg-type]
    result = api.train_teacher("cnn-xs", fmnist, tmp_path / "t.pt", cfg, progress=False)
    split = load_data(fmnist, val_fraction=cfg.val_fraction, seed=cfg.seed)
    model = load_model(result.checkpoint)[0]
    assert evaluate(model, split.test, torch.device("cpu"))[1] == result.test_accuracy
    assert evaluate(model, split.val, torch.device("cpu"))[1] == result.history[-1]["val_acc"]


def test_only_training_reaches_the_augmentation() -> None:
    """Evaluation, export, calibration and selection never import the augmentation: only the trainer and
    the teacher cache (which keys its views) do."""
    root = Path(__file__).resolve().parents[2] / "edgekd"
    users = set()
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.ImportFrom | ast.Import) else []
            module = node.module or "" if isinstance(node, ast.ImportFrom) else ""
            if (
                "edgekd.data.augment" in names
                or (module == "edgekd.data" and "augment" in names)
                or module == "edgekd.data.augment"
            ):
                users.add(path.relative_to(root).as_posix())
    assert users == {"distill/trainer.py", "distill/cache.py"}


def test_warmup_then_cosine() -> None:
    from edgekd.distill.trainer import lr_factor

    assert [lr_factor(s, 0, 4) for s in range(5)] == pytest.approx([1.0, 0.8535534, 0.5, 0.1464466, 0.0])
    assert [lr_factor(s, 3, 10) for s in range(4)] == pytest.approx([0.25, 0.5, 0.75, 1.0])


def test_patient_preset_fills_what_was_not_given(tmp_path: Path, fmnist: str, teacher: Path) -> None:
    from click.testing import CliRunner

    from edgekd.cli import cli

    args = ["distill", "--teacher", str(teacher), "--student", "cnn-xs", "--data", fmnist, "--out"]
    result = CliRunner().invoke(
        cli, [*args, str(tmp_path / "s.pt"), "--preset", "patient", "--epochs", "1", "--views", "2", "--json"]
    )
    assert result.exit_code == 0, result.output
    meta = load_model(tmp_path / "s.pt")[2]
    assert meta["train"]["epochs"] == 1 and meta["train"]["views"] == 2  # given: kept
    assert meta["train"]["augment"]["pad"] == 4 and meta["train"]["warmup_epochs"] == 1.0  # from the preset
    assert meta["train"]["min_steps"] is None  # the preset's step floor goes with its epochs, here given
    assert meta["distill"]["loss_params"] == {"temperature": 1.0}
    bad = CliRunner().invoke(cli, [*args, str(tmp_path / "m.pt"), "--mixup", "0.2", "--augment", "standard"])
    assert bad.exit_code == 2 and "mixup needs the live teacher" in bad.output


def test_rows_beyond_a_one_view_cache_run_the_teacher_live(tmp_path: Path) -> None:
    from contextlib import ExitStack

    from edgekd.distill.cache import LOGITS, CachedTeacher, CacheKey

    calls = []

    def live(x: torch.Tensor) -> dict[str, torch.Tensor]:
        calls.append(len(x))
        return {LOGITS: x.sum(dim=(1, 2, 3))[:, None].repeat(1, 3)}

    cached = CachedTeacher(live, tmp_path / "c", CacheKey("t", "d", (LOGITS,)), 4)
    with ExitStack() as stack:
        cached.open(stack)
        out = cached(torch.ones(2, 1, 2, 2), np.array([1, 6]))  # row 6: a view the 4-row cache has no room for
    assert out[LOGITS].shape == (2, 3) and calls == [2] and not cached.enabled


def test_a_state_written_before_augmentation_existed_resumes(tmp_path: Path, fmnist: str, interrupted: Any) -> None:
    cfg = TrainConfig(epochs=2, batch_size=64, seed=1)
    with interrupted():
        api.train_teacher("cnn-xs", fmnist, tmp_path / "b.pt", cfg, progress=False)
    path = state_path(tmp_path / "b.pt")
    state = torch.load(path, weights_only=True)
    for name in ("augment", "views", "mixup", "warmup_epochs"):
        del state["config"][name]
    torch.save(state, path)
    resumed = api.train_teacher("cnn-xs", fmnist, tmp_path / "b.pt", cfg, resume=True, progress=False)
    assert len(resumed.history) == 2


def test_min_steps_raises_the_epochs_to_fit_the_data_at_hand(tmp_path: Path, fmnist: str) -> None:
    """Patience in steps: a step floor above epochs x batches an epoch raises the epochs, never lowers them;
    the trainer resolves it on its own training split, and the checkpoint records the epochs it ran."""
    from edgekd.config import TrainConfig
    from edgekd.distill.presets import with_preset
    from edgekd.distill.run import train_teacher

    cfg = TrainConfig(epochs=3, min_steps=100)
    assert cfg.with_min_steps(43).epochs == 3 and cfg.with_min_steps(10).epochs == 10
    assert cfg.with_min_steps(7).epochs == 15  # ceil(100 / 7)
    assert TrainConfig(epochs=3).with_min_steps(1).epochs == 3
    train, _ = with_preset("patient", "kd", {"epochs": 5}, set())
    assert (train["epochs"], train["min_steps"]) == (30, 12000)
    # 200 samples, 180 trained on after the validation tenth, batch 64: 3 steps an epoch, 7 steps -> 3 epochs
    result = train_teacher(
        "cnn-xs",
        fmnist,
        tmp_path / "m.pt",
        TrainConfig(epochs=1, min_steps=7, limit=200, batch_size=64),
        progress=False,
    )
    meta = load_model(result.checkpoint)[2]
    assert meta["train"]["epochs"] == 3 and len(result.history) == 3
