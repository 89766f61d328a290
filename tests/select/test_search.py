"""Budgeted selection end to end on a tiny space, a tiny teacher and 1000 real Fashion-MNIST images:
screening, the Optuna study (pruning, several workers on one study), finishing, the final build, the
verdicts, and the CLI's errors."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from edgekd.bench import TimingConfig
from edgekd.bench.protocol import StopRule
from edgekd.cli import cli
from edgekd.config import TrainConfig
from edgekd.distill.task import DistillConfig
from edgekd.errors import UserError
from edgekd.report.text import fmt_ms
from edgekd.runtimes import get_runtime
from edgekd.select import SearchSpace, search
from edgekd.select.pipeline import SelectConfig, select
from edgekd.select.search import Entry, SearchJob, open_study, run_trials, spawn_workers, trial_records
from edgekd.select.verdicts import Fate
from edgekd.store import STORE_NAME, Store

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")

FAST = TimingConfig(warmup_iters=2, warmup_s=0.0, min_iters=20, min_time_s=0.05)
SHORT = StopRule(min_rounds=3, max_rounds=4, time_cap_s=5.0, resamples=200)  # few rounds: tests stay quick
SPACE = {"family": "cnn", "width": [2, 4, 8], "depth": [1]}
TRAIN = TrainConfig(epochs=2, batch_size=64)


@pytest.fixture(scope="module")
def teacher(fmnist_npz: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgekd import api

    out = tmp_path_factory.mktemp("teacher") / "teacher.pt"
    api.train_teacher("cnn(width=4,depth=1)", str(fmnist_npz), out, TrainConfig(epochs=1), progress=False)
    return out


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One results store for the module: candidates are measured once, then read from its cache."""
    return tmp_path_factory.mktemp("store") / STORE_NAME


def run_select(teacher: Path, data: Path, out: Path, store: Path, **options: Any) -> dict[str, Any]:
    space = SearchSpace.model_validate(SPACE)
    return select(
        teacher,
        space,
        "cpu-ort-fp32",
        str(data),
        out,
        TRAIN,
        DistillConfig(),
        SelectConfig(**options),
        timing=FAST,
        rule=SHORT,
        store=store,
        progress=False,
    )


def test_select_chooses_a_student_within_budget_and_says_why_the_others_lost(
    teacher: Path, fmnist_npz: Path, shared_store: Path, tmp_path: Path
) -> None:
    sel = run_select(teacher, fmnist_npz, tmp_path / "run", shared_store, budget_ms=1.0, probes=2)

    assert sel["met_budget"] and sel["missed_by_ms"] is None and sel["budget_rule"] == "upper"
    chosen = sel["chosen"]
    assert chosen["ci_high_ms"] <= 1.0 and Path(chosen["checkpoint"]).is_file()
    # every latency is an interval over rounds, measured beside a null model (the floor)
    assert chosen["ci_low_ms"] <= chosen["p50_ms"] <= chosen["ci_high_ms"] and 3 <= chosen["rounds"] <= 4
    assert sel["floor"]["median_ms"] > 0 and sel["final_floor"]["median_ms"] > 0
    assert (Path(chosen["artifact_dir"]) / "artifact.json").is_file()
    rows = {r["arch"]: r for r in sel["candidates"]}
    assert len(rows) == 3 and rows[chosen["arch"]]["fate"] == Fate.CHOSEN.value
    assert all(r["why"] for r in rows.values())
    losers = [r for r in rows.values() if r["fate"] != Fate.CHOSEN.value]
    assert all(r["fate"] in {"pruned", "dominated", "less_accurate"} for r in losers)
    # the predictor screened (2 probes, one candidate predicted) and was checked on the measured rest
    assert sum(r["probe"] for r in rows.values()) == 2 and sel["predictor"]["measured_held_out"] == 1
    # the compute is every epoch trained (which trials the pruner stops is tested with pinned accuracies)
    assert sel["compute"]["exhaustive_epochs"] == 3 * TRAIN.epochs
    assert sel["compute"]["student_epochs"] == sum(r.get("epochs", 0) for r in rows.values())
    assert all(1 <= r["epochs"] <= TRAIN.epochs for r in rows.values())
    assert [c["arch"] for c in sel["front"]][0:1] and chosen["arch"] in [c["arch"] for c in sel["front"]]

    written = json.loads((tmp_path / "run" / "selection.json").read_text())
    assert written["chosen"]["arch"] == chosen["arch"]
    markdown = (tmp_path / "run" / "selection.md").read_text()
    assert "Pareto front" in markdown and chosen["arch"] in markdown and "Per-call floor" in markdown
    assert f"[{fmt_ms(chosen['ci_low_ms'])}-{fmt_ms(chosen['ci_high_ms'])}] ({chosen['rounds']} rounds)" in markdown
    store = Store(shared_store)
    assert [r["name"] for r in store.runs("select")] == ["select-cpu-ort-fp32"]
    assert any(b["accuracy"] is not None for b in store.benchmarks())


def test_a_budget_below_the_floor_is_refused_before_any_training(
    teacher: Path, fmnist_npz: Path, shared_store: Path, tmp_path: Path
) -> None:
    with pytest.raises(UserError, match=r"budget 0.0001 ms is below the per-call floor .* measured on cpu-ort-fp32"):
        run_select(teacher, fmnist_npz, tmp_path / "run", shared_store, budget_ms=1e-4)
    assert not (tmp_path / "run" / "students").exists() and not (tmp_path / "run" / "selection.json").exists()


def test_a_budget_nothing_meets_gets_the_fastest_and_says_by_how_much(
    teacher: Path, fmnist_npz: Path, shared_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgekd.select import screen

    monkeypatch.setattr(screen, "check_floor", lambda *args: None)  # a budget no model can meet, floor or not
    sel = run_select(teacher, fmnist_npz, tmp_path / "run", shared_store, budget_ms=1e-4)

    assert not sel["met_budget"]
    assert sel["missed_by_ms"] == pytest.approx(sel["chosen"]["ci_high_ms"] - 1e-4)  # the upper end counts
    rows = {r["arch"]: r for r in sel["candidates"]}
    # the fastest as measured on this machine and those tied with it (overlapping intervals) go on
    fastest = rows[min(rows, key=lambda a: rows[a]["measured_ms"])]
    going = {a for a, r in rows.items() if r["fate"] != "slower_than_fastest"}
    assert fastest["arch"] in going and sel["chosen"]["arch"] in going
    assert all(rows[a]["ci_low_ms"] <= fastest["ci_high_ms"] for a in going)
    assert all(r["ci_low_ms"] > fastest["ci_high_ms"] for a, r in rows.items() if a not in going)
    assert 0 < sel["compute"]["student_epochs"] <= TRAIN.epochs * len(going)
    assert "misses it by" in rows[sel["chosen"]["arch"]]["why"]
    assert "BUDGET MISSED" in (tmp_path / "run" / "selection.md").read_text()


def fake_distill(accuracy: dict[str, float]) -> Any:
    """edgekd.distill.run.distill without training: each epoch reports the arch's accuracy scaled by progress."""
    from edgekd.distill.trainer import TrainResult

    def distill(
        teacher: Path,
        arch: str,
        data: str,
        out: Path,
        cfg: TrainConfig,
        task: Any,
        *,
        on_epoch_end: Any = None,
        **_: Any,
    ) -> TrainResult:
        history = []
        for epoch in range(1, cfg.epochs + 1):
            history.append({"epoch": epoch, "val_acc": accuracy[arch] * epoch / cfg.epochs})
            if on_epoch_end is not None:
                on_epoch_end(history[-1])
        return TrainResult(out, history, history[-1]["val_acc"], history[-1]["val_acc"], 0, 0.0)

    return distill


def job_of(tmp_path: Path, accuracy: dict[str, float], epochs: int, n_trials: int) -> SearchJob:
    entries = tuple(
        Entry(f"k{i}", arch, 0.1 * (i + 1), 100 * (i + 1), 1000 * (i + 1)) for i, arch in enumerate(accuracy)
    )
    return SearchJob(
        teacher="t.pt",
        data="d.npz",
        out=str(tmp_path),
        store=str(tmp_path / STORE_NAME),
        train=TrainConfig(epochs=epochs).model_dump(mode="json"),
        task=DistillConfig().model_dump(mode="json"),
        entries=entries,
        n_trials=n_trials,
    )


def test_successive_halving_stops_the_trailing_trials_after_one_epoch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgekd.distill import run as distill_run

    accuracy = {"a": 0.5, "b": 0.6, "c": 0.7, "d": 0.9}  # d is also the largest: it goes first
    monkeypatch.setattr(distill_run, "distill", fake_distill(accuracy))
    job = job_of(tmp_path, accuracy, epochs=9, n_trials=4)
    study = open_study(job, f"sqlite:///{tmp_path / 'study.sqlite'}", "s")
    run_trials(study, job)
    records = {job.entry(r.key).arch: r for r in trial_records(study)}
    assert records["d"].state == "complete" and records["d"].epochs == 9
    assert all(records[a].state == "pruned" and records[a].epochs == 1 for a in "abc")
    # the same study again: the job matches, nothing more runs; another job is refused
    run_trials(open_study(job, f"sqlite:///{tmp_path / 'study.sqlite'}", "s"), job)
    assert len(trial_records(study)) == 4
    other = job_of(tmp_path, {**accuracy, "e": 0.1}, epochs=9, n_trials=5)
    with pytest.raises(UserError, match="belongs to another selection"):
        open_study(other, f"sqlite:///{tmp_path / 'study.sqlite'}", "s")


def test_fewer_trials_than_candidates_are_sampled_without_repeats(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgekd.distill import run as distill_run

    accuracy = {a: 0.1 * i for i, a in enumerate("abcdef", 1)}
    monkeypatch.setattr(distill_run, "distill", fake_distill(accuracy))
    job = job_of(tmp_path, accuracy, epochs=2, n_trials=3)
    study = open_study(job, f"sqlite:///{tmp_path / 'study.sqlite'}", "s")
    run_trials(study, job)
    keys = [r.key for r in trial_records(study)]
    assert len(keys) == 3 and len(set(keys)) == 3


def test_hyperband_runs_every_candidate_and_keeps_the_best(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgekd.distill import run as distill_run

    accuracy = {"a": 0.5, "b": 0.9, "c": 0.7}
    monkeypatch.setattr(distill_run, "distill", fake_distill(accuracy))
    job = job_of(tmp_path, accuracy, epochs=9, n_trials=3)
    job = dataclasses.replace(job, pruner=search.PrunerKind.HYPERBAND)
    study = open_study(job, f"sqlite:///{tmp_path / 'study.sqlite'}", "hb")
    run_trials(study, job)
    records = {job.entry(r.key).arch: r for r in trial_records(study)}
    assert set(records) == {"a", "b", "c"} and records["b"].state == "complete"
    assert search.hide_password("postgresql://me:secret@db/x") == "postgresql://me:***@db/x"


def test_two_worker_processes_share_one_study(teacher: Path, fmnist_npz: Path, tmp_path: Path) -> None:
    """Two `python -m edgekd.select.search` processes on one SQLite study: every candidate trained
    once, none twice, none lost, and the trials add up to n_trials."""
    archs = ["cnn(depth=1,width=2)", "cnn(depth=1,width=4)", "cnn(depth=1,width=6)"]
    entries = tuple(Entry(f"key{i}", arch, 0.1, 100 * (i + 1), 1000 * (i + 1)) for i, arch in enumerate(archs))
    job = SearchJob(
        teacher=str(teacher),
        data=str(fmnist_npz),
        out=str(tmp_path),
        store=str(tmp_path / STORE_NAME),
        train=TrainConfig(epochs=2, batch_size=64).model_dump(mode="json"),
        task=DistillConfig().model_dump(mode="json"),
        entries=entries,
        n_trials=3,
    )
    url = f"sqlite:///{tmp_path / STORE_NAME}"
    study = open_study(job, url, "two-workers")
    spawn_workers(url, "two-workers", 2, tmp_path / "workers")

    records = trial_records(study)
    assert sorted(r.key for r in records) == ["key0", "key1", "key2"]
    assert all(r.state in ("complete", "pruned") and r.epochs >= 1 for r in records)
    assert len(study.trials) == 3  # nothing skipped, nothing beyond n_trials
    assert {p.name for p in (tmp_path / "workers").iterdir()} == {"worker-0.log", "worker-1.log"}


def test_a_worker_on_a_missing_study_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert search.main(["--storage", f"sqlite:///{tmp_path / 's.sqlite'}", "--study", "nope"]) == 2
    assert "no study 'nope'" in capsys.readouterr().err


def cli_select(teacher: Path, data: Path, out: Path, *extra: str, space: str | None = None) -> Any:
    args = [
        "select",
        "--teacher",
        str(teacher),
        "--space",
        space or "small",
        "--target",
        "cpu-ort-fp32",
        "--data",
        str(data),
        "--out",
        str(out),
        *extra,
    ]
    return CliRunner().invoke(cli, args)


def test_cli_refuses_a_budget_below_the_floor_in_one_line(
    teacher: Path, fmnist_npz: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgekd.select import latency

    monkeypatch.setattr(latency, "DEFAULT_RULE", SHORT)  # the CLI's rounds, shortened for a test
    space = tmp_path / "two.yaml"
    space.write_text("family: cnn\nwidth: [2, 4]\ndepth: [1]\n")
    result = cli_select(
        teacher, fmnist_npz, tmp_path / "run", "--budget-ms=0.00001", "--budget-rule=p50", space=str(space)
    )
    assert result.exit_code == 2, result.output
    assert "is below the per-call floor" in result.output and "give a budget above it" in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize("budget", ["0", "-1"])
def test_cli_refuses_a_budget_of_zero_or_less(teacher: Path, fmnist_npz: Path, tmp_path: Path, budget: str) -> None:
    result = cli_select(teacher, fmnist_npz, tmp_path / "run", f"--budget-ms={budget}")
    assert result.exit_code == 2
    assert "latency budget must be a positive number of ms" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "run").exists()


def test_cli_refuses_an_empty_space(teacher: Path, fmnist_npz: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("family: cnn\nwidth: [8, 16]\nmax_params: 10\n")
    result = cli_select(teacher, fmnist_npz, tmp_path / "run", "--budget-ms", "1", space=str(empty))
    assert result.exit_code == 2
    assert "has no candidate within its limits" in result.output
    assert len(result.output.strip().splitlines()) == 1
    no_family = tmp_path / "none.yaml"
    no_family.write_text("families: []\n")
    result = cli_select(teacher, fmnist_npz, tmp_path / "run", "--budget-ms", "1", space=str(no_family))
    assert result.exit_code == 2 and "names no family" in result.output


def test_cli_refuses_a_target_whose_runtime_is_absent(teacher: Path, fmnist_npz: Path, tmp_path: Path) -> None:
    if get_runtime("tensorrt", require=False).is_available():
        pytest.skip("TensorRT is installed here")
    result = CliRunner().invoke(
        cli,
        [
            "select",
            "--teacher",
            str(teacher),
            "--space",
            "small",
            "--target",
            "jetson-orin-trt-fp16",
            "--budget-ms",
            "1",
            "--data",
            str(fmnist_npz),
            "--out",
            str(tmp_path / "run"),
        ],
    )
    assert result.exit_code == 2
    assert "runtime tensorrt is not installed on this machine" in result.output
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_cli_select_with_two_workers(teacher: Path, fmnist_npz: Path, tmp_path: Path) -> None:
    space = tmp_path / "space.yaml"
    space.write_text("family: cnn\nwidth: [2, 4, 8]\ndepth: [1]\n")
    result = cli_select(
        teacher,
        fmnist_npz,
        tmp_path / "run",
        "--budget-ms",
        "1",
        "--epochs",
        "3",
        "--workers",
        "2",
        "--json",
        space=str(space),
    )
    assert result.exit_code == 0, result.output
    sel = json.loads(result.stdout)
    assert sel["met_budget"] and sel["study"]["workers"] == 2
    assert sorted(r["trial"] for r in sel["candidates"]) == [0, 1, 2]


@pytest.mark.slow
def test_select_builds_int8_when_the_target_asks(
    teacher: Path, fmnist_npz: Path, shared_store: Path, tmp_path: Path
) -> None:
    space = SearchSpace.model_validate(SPACE)
    sel = select(
        teacher,
        space,
        "cpu-ort-int8",
        str(fmnist_npz),
        tmp_path / "run",
        TRAIN,
        DistillConfig(),
        SelectConfig(budget_ms=1.0),
        timing=FAST,
        rule=SHORT,
        store=shared_store,
        progress=False,
    )
    info = json.loads((Path(sel["chosen"]["artifact_dir"]) / "artifact.json").read_text())
    assert sel["chosen"]["precision"] == info["precision"] == "int8"
    assert sel["chosen"]["artifact_accuracy"] is not None


def test_a_study_reuses_what_an_earlier_one_trained_with_the_same_settings_only(
    teacher: Path, fmnist_npz: Path, shared_store: Path, tmp_path: Path
) -> None:
    students = tmp_path / "students"
    first = run_select(teacher, fmnist_npz, tmp_path / "a", shared_store, budget_ms=1.0, students=students)
    again = run_select(teacher, fmnist_npz, tmp_path / "b", shared_store, budget_ms=1.0, students=students)
    assert first["compute"]["student_epochs"] > 0 and first["compute"]["reused_epochs"] == 0
    assert again["compute"]["student_epochs"] == 0
    assert again["compute"]["reused_epochs"] == first["compute"]["student_epochs"]
    assert again["chosen"]["val_acc"] == first["chosen"]["val_acc"]  # (a tie may go to either by latency)
    # other settings: other folders, nothing taken from the first study
    longer = select(
        teacher,
        SearchSpace.model_validate(SPACE),
        "cpu-ort-fp32",
        str(fmnist_npz),
        tmp_path / "c",
        TRAIN.model_copy(update={"epochs": 1}),
        DistillConfig(),
        SelectConfig(budget_ms=1.0, students=students),
        timing=FAST,
        rule=SHORT,
        store=shared_store,
        progress=False,
    )
    assert longer["compute"]["reused_epochs"] == 0 and longer["compute"]["student_epochs"] > 0
    assert Path(longer["chosen"]["checkpoint"]).parent != Path(first["chosen"]["checkpoint"]).parent


def test_trained_before_takes_only_a_checkpoint_made_with_the_same_settings(
    teacher: Path, fmnist_npz: Path, tmp_path: Path
) -> None:
    from edgekd import api
    from edgekd.select.search import trained_before

    out = tmp_path / "student.pt"
    assert trained_before(out, TRAIN, DistillConfig()).history == ()
    cfg = TRAIN.model_copy(update={"epochs": 1})
    result = api.distill(teacher, "cnn(width=2,depth=1)", str(fmnist_npz), out, cfg, DistillConfig(), progress=False)
    done = trained_before(out, cfg, DistillConfig())
    assert [row["val_acc"] for row in done.history] == [row["val_acc"] for row in result.history]
    assert done.test_acc == result.test_accuracy
    assert trained_before(out, TRAIN, DistillConfig()).history == ()  # other epochs
    assert trained_before(out, cfg, DistillConfig(method="pkt")).history == ()  # another method
