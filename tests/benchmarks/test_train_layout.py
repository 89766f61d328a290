"""The training-layout benchmark: one tiny real round per layout, and its table."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import train_layout as tl


def test_one_round_times_both_layouts_and_says_what_auto_picks(fmnist: str, tmp_path: Path) -> None:
    args = tl.parse_args(
        ["--data", fmnist, "--archs", "cnn-xs", "--limit", "96", "--rounds", "1", "--batch-size", "32"]
    )
    result = tl.measure("cnn-xs", args, tmp_path)
    assert {k: len(v) for k, v in result.times.items()} == {"contiguous": 1, "channels_last": 1}
    assert result.auto == "channels_last" and result.ratio > 0
    assert result.val_acc["channels_last"] == pytest.approx(result.val_acc["contiguous"], abs=0.05)
    row = tl.table([result], args).splitlines()[-1]
    assert row.startswith("cnn-xs") and "channels_last" in row
    assert tl.auto_layout("vit-s") == "contiguous"  # one convolution (patch embedding), then linear layers


def test_arguments_are_checked(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        tl.parse_args(["--rounds", "0"])
    assert exc.value.code == 2 and "--rounds >= 1" in capsys.readouterr().err
