"""The KD-temperature suite: its arguments, and one tiny real run whose rerun only reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from benchmarks import kd_temperature as kt
from edgekd import api
from edgekd.config import TrainConfig


def test_arch_lists_split_outside_parentheses(tmp_path: Path) -> None:
    teacher = tmp_path / "t.pt"
    teacher.write_bytes(b"")
    students = lambda text: kt.parse_args(["--teacher", str(teacher), "--students", text]).students  # noqa: E731
    assert students("cnn(depth=1,width=2),cnn-s") == ["cnn(depth=1,width=2)", "cnn-s"]
    assert students("cnn-xs; cnn(width=3)") == ["cnn-xs", "cnn(width=3)"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--teacher", "{missing}"], "is not a file; give a checkpoint from `edgekd train-teacher`"),
        (["--temperatures", "4,0"], "temperatures must be positive"),
        (["--low-weight", "1.5"], "--low-weight in (0, 1)"),
        (["--seeds", "a"], "--temperatures/--seeds: invalid literal"),
        (["--epochs", "0"], "--epochs, --limit and --batch-size must be at least 1"),
    ],
)
def test_argument_errors(argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    teacher = tmp_path / "t.pt"
    teacher.write_bytes(b"")
    argv = [a.replace("{missing}", str(tmp_path / "nope.pt")) for a in argv]
    with pytest.raises(SystemExit) as exc:
        kt.parse_args(["--teacher", str(teacher), *argv])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_tiny_run_then_rerun_only_reads(fmnist: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    teacher = tmp_path / "t.pt"
    api.train_teacher("cnn-xs", fmnist, teacher, TrainConfig(epochs=1, limit=200), progress=False)
    argv = [
        "--teacher",
        str(teacher),
        "--data",
        fmnist,
        "--students",
        "cnn(depth=1,width=2)",
        "--temperatures",
        "4,1",
        "--seeds",
        "0",
        "--epochs",
        "1",
        "--limit",
        "120",
        "--batch-size",
        "64",
        "--out",
        str(tmp_path / "o"),
    ]
    assert kt.main(argv) == 0
    text = (tmp_path / "o" / "results.md").read_text()
    assert "## cnn(depth=1,width=2) (" in text
    for name in ("alone", "kd T=4", "kd T=1", "kd T=4, weight 0.1"):
        assert f"| {name} | 1 |" in text
    assert len(list((tmp_path / "o" / "runs").rglob("seed0.json"))) == 4

    def refuse(*_a: Any, **_k: Any) -> None:
        raise AssertionError("a rerun retrained something")

    for name in ("train_teacher", "distill"):
        monkeypatch.setattr(api, name, refuse)
    assert kt.main(argv) == 0
    assert (tmp_path / "o" / "results.md").read_text() == text
