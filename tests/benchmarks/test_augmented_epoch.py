"""The augmented-epoch benchmark: one tiny real round of every mode (the cached epoch must read the K-view
cache) and a one-epoch accuracy check, reported side by side."""

from __future__ import annotations

from pathlib import Path

from benchmarks import augmented_epoch as ae


def test_one_round_and_the_accuracy_check(fmnist: str, tmp_path: Path) -> None:
    args = ae.parse_args(
        ["--data", fmnist, "--teacher", "cnn-xs", "--limit", "96", "--rounds", "1", "--batch-size", "32"]
        + ["--views", "2", "--accuracy-epochs", "1", "--teacher-epochs", "1"]
    )
    times = ae.timing(args, tmp_path)  # raises if the cached epoch ran the teacher live
    assert set(times["times"]) == {"alone", "cached", "online"} and all(len(t) == 1 for t in times["times"].values())
    acc = ae.accuracy(args, tmp_path)
    text = ae.report(times, acc, args)
    assert "2 views" in text and "cached" in text and "difference" in text
