"""The distillation-epoch benchmark: its teachers (with HSSAKD branches when asked), its arch lists, and
one tiny real round of every mode for hssakd, where the cached epoch must read the cache."""

from __future__ import annotations

from pathlib import Path

from benchmarks import distill_epoch as de
from edgekd.distill.hssakd import BRANCHES_KEY
from edgekd.models import load_checkpoint, load_model


def test_teachers_are_plain_or_carry_hssakd_branches(tmp_path: Path) -> None:
    params = de.make_teacher("cnn-xs", tmp_path / "plain.pt")
    assert BRANCHES_KEY not in load_checkpoint(tmp_path / "plain.pt")
    assert de.make_teacher("cnn-xs", tmp_path / "hs.pt", "hssakd") == params  # branches not counted
    assert load_checkpoint(tmp_path / "hs.pt")[BRANCHES_KEY]["after"] == ["stage1", "stage2"]
    assert set(load_model(tmp_path / "hs.pt")[0].state_dict()) == set(load_model(tmp_path / "plain.pt")[0].state_dict())


def test_teacher_lists_split_outside_parentheses() -> None:
    assert de.teacher_list("resnet(width=32,depth=1),cnn-s") == ["resnet(width=32,depth=1)", "cnn-s"]
    assert de.teacher_list("a; b") == ["a", "b"]


def test_one_round_of_hssakd_reads_the_cache(fmnist: str, tmp_path: Path) -> None:
    args = de.parse_args(
        [
            "--data",
            fmnist,
            "--method",
            "hssakd",
            "--student",
            "cnn-xs",
            "--limit",
            "96",
            "--rounds",
            "1",
            "--batch-size",
            "32",
        ]
    )
    result = de.measure("cnn-xs", args, tmp_path)  # raises if the cached epoch ran the teacher live
    assert set(result.times) == {"alone", "live", "cached"} and all(len(t) == 1 for t in result.times.values())
    assert "method hssakd" in de.table([result], args)
