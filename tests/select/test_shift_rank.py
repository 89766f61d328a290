"""`select --rank-by`: finished students ranked by validation accuracy under a shift instead of clean."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from edgekd.bench import TimingConfig
from edgekd.bench.protocol import StopRule
from edgekd.cli import cli
from edgekd.config import TrainConfig
from edgekd.distill.task import DistillConfig
from edgekd.errors import UserError
from edgekd.select import SearchSpace
from edgekd.select.pipeline import SelectConfig, select
from edgekd.select.shift_rank import rank_domains

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")


def test_rank_by_names() -> None:
    assert rank_domains("clean") == []
    assert [d.name for d in rank_domains("noise-2")] == ["gaussian_noise-2"]
    assert len(rank_domains("mean-shift")) == 9 and all(d.severity == 3 for d in rank_domains("mean-shift"))
    for bad in ("fog-3", "blur-9", "cam=x/"):
        with pytest.raises(UserError):
            rank_domains(bad)


def test_cli_refuses_a_bad_rank_by_in_one_line(tmp_path: Path) -> None:
    teacher = tmp_path / "t.pt"
    teacher.write_bytes(b"x")
    args = ["select", "--teacher", str(teacher), "--space", "small", "--target", "cpu-ort-fp32"]
    result = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "run"), "--rank-by", "fog-3"])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
    assert "fog-3" in result.output


def test_select_ranks_the_finals_by_shifted_validation_accuracy(fmnist_npz: Path, tmp_path: Path) -> None:
    from edgekd import api

    teacher = tmp_path / "teacher.pt"
    api.train_teacher("cnn(width=4,depth=1)", str(fmnist_npz), teacher, TrainConfig(epochs=1), progress=False)
    selection = select(
        teacher,
        SearchSpace.model_validate({"family": "cnn", "width": [2, 4], "depth": [1]}),
        "cpu-ort-fp32",
        str(fmnist_npz),
        tmp_path / "run",
        TrainConfig(epochs=1, batch_size=64),
        DistillConfig(),
        SelectConfig(budget_ms=1.0, probes=2, finish_top=2, rank_by="invert-5"),
        timing=TimingConfig(warmup_iters=2, warmup_s=0.0, min_iters=20, min_time_s=0.05),
        rule=StopRule(min_rounds=3, max_rounds=4, time_cap_s=5.0, resamples=200),
        progress=False,
    )
    assert selection["rank_by"] == "invert-5"
    chosen = selection["chosen"]
    assert set(chosen["rank_scores"]) == {"clean", "invert-5"}
    assert chosen["rank_acc"] == chosen["rank_scores"]["invert-5"]
    assert chosen["rank_scores"]["clean"] == pytest.approx(chosen["val_acc"], abs=1e-9)
    for other in selection["front"]:
        assert other["rank_acc"] is not None
    text = (tmp_path / "run" / "selection.md").read_text()
    assert "val acc under invert-5" in text.splitlines()[2]  # the headline says what the choice was ranked on
    assert "| student | latency ms | val acc | val acc under invert-5 | test acc | artifact acc |" in text
