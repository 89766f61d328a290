"""The KDDG comparison on a tiny configuration: every method runs, records resume, the table and goal lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import kddg_comparison as kc


def test_argument_errors(capsys: pytest.CaptureFixture[str]) -> None:
    for argv, message in (
        (["--methods", "kd,nope"], "--methods: unknown nope"),
        (["--regimes", "half"], "--regimes: unknown half"),
        (["--held-out", "fog-3"], "unknown domain 'fog-3'"),
        (["--epochs", "full=3"], "no epochs for 10pct"),
    ):
        with pytest.raises(SystemExit) as exc:
            kc.parse_args(argv)
        assert exc.value.code == 2 and message in capsys.readouterr().err


def test_goal_line_needs_the_spread_and_the_clean_budget() -> None:
    kd = [{"held_out_mean": 0.50, "clean": 0.80}, {"held_out_mean": 0.52, "clean": 0.80}]
    better = [{"held_out_mean": 0.60, "clean": 0.799}, {"held_out_mean": 0.62, "clean": 0.799}]
    assert "**met**" in kc.goal_line({"kd": kd, "kddg": better}, "kddg")
    costly = [{"held_out_mean": 0.60, "clean": 0.79}, {"held_out_mean": 0.62, "clean": 0.79}]
    assert "not met" in kc.goal_line({"kd": kd, "kddg": costly}, "kddg")
    assert "too few seeds" in kc.goal_line({"kd": kd[:1], "kddg": better}, "kddg")


def test_tiny_comparison_runs_resumes_and_writes_the_table(
    fmnist: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "--data", fmnist, "--pairs", "cnn-xs:cnn-xs", "--regimes", "full", "--seeds", "0,1", "--epochs", "1",
        "--teacher-epochs", "1", "--train-limit", "200", "--test-limit", "100", "--threads", "1",
        "--sources", "clean,contrast-2", "--held-out", "blur-3,elastic-3", "--out", str(tmp_path),
    ]  # fmt: skip
    assert kc.main(argv) == 0
    printed = capsys.readouterr().out
    assert printed.count("teacher cnn-xs-domains-e1") == 1 and printed.count("teacher cnn-xs-clean-e1") == 1
    record = json.loads((tmp_path / "runs" / "cnn-xs--cnn-xs" / "full" / "kddg-filter" / "seed1.json").read_text())
    assert record["status"] == "done" and set(record["held_out"]) == {"blur-3", "elastic-3"}
    assert record["sources"] == "clean,contrast-2"
    assert (
        json.loads((tmp_path / "runs" / "cnn-xs--cnn-xs" / "full" / "kd" / "seed0.json").read_text())["sources"]
        == "clean"
    )
    text = (tmp_path / "results.md").read_text()
    assert "| teacher (clean) |" in text and "| teacher (domains) |" in text and "| kddg-filter |" in text
    assert "kddg vs kd: held-out mean" in text and "kddg-filter vs kd" in text
    stamp = (tmp_path / "runs" / "cnn-xs--cnn-xs" / "full" / "kd" / "seed0.pt").stat().st_mtime_ns
    assert kc.main([*argv, "--resume"]) == 0  # nothing retrained
    assert (tmp_path / "runs" / "cnn-xs--cnn-xs" / "full" / "kd" / "seed0.pt").stat().st_mtime_ns == stamp
    assert kc.main([*argv, "--table-only", "--regimes", "full,10pct", "--epochs", "1"]) == 0
    assert "cnn-xs -> cnn-xs, 10pct" in (tmp_path / "results.md").read_text()
    # another pair with the same student: its `alone` runs are copied, not trained (they never use the teacher)
    assert kc.main([*argv, "--pairs", "cnn-s:cnn-xs", "--methods", "alone"]) == 0
    assert "teacher cnn-s" not in capsys.readouterr().out
    for seed in (0, 1):
        here, there = (
            tmp_path / "runs" / f"{p}--cnn-xs" / "full" / "alone" / f"seed{seed}" for p in ("cnn-xs", "cnn-s")
        )
        copied = json.loads(there.with_suffix(".json").read_text())
        assert copied["teacher"] == "cnn-s" and copied["copied_from"] == str(here.with_suffix(".json"))
        assert there.with_suffix(".pt").read_bytes() == here.with_suffix(".pt").read_bytes()
