"""Selection from an ensemble run on 1000 real Fashion-MNIST images: the family's students are measured on
the target, the budget filters them, the most accurate in budget is built and re-measured, and the
training time the ensemble saved is estimated from real epochs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgekd import api
from edgekd.bench import TimingConfig
from edgekd.bench.protocol import StopRule
from edgekd.cli import cli
from edgekd.config import TrainConfig
from edgekd.distill.ensemble_run import load_manifest
from edgekd.distill.task import DistillConfig
from edgekd.errors import UserError
from edgekd.select.ensemble import select_from_ensemble
from edgekd.select.verdicts import Fate
from edgekd.store import STORE_NAME, Store

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")

FAST = TimingConfig(warmup_iters=2, warmup_s=0.0, min_iters=20, min_time_s=0.05)
SHORT = StopRule(min_rounds=3, max_rounds=4, time_cap_s=5.0, resamples=200)  # few rounds: tests stay quick
TRAIN = TrainConfig(epochs=2, batch_size=64, limit=300)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, fmnist_npz: Path) -> Path:
    out = tmp_path_factory.mktemp("ensemble")
    api.ensemble("cnn(width=8,depth=1)", str(fmnist_npz), out, TRAIN, "1.0,0.5,0.25", progress=False)
    return out


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One results store for the module: the students' latencies are measured once, then read from its cache."""
    return tmp_path_factory.mktemp("store") / STORE_NAME


def test_a_budget_nothing_meets_builds_the_fastest_and_states_the_training_time_saved(
    run: Path, shared_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgekd.select import screen

    monkeypatch.setattr(screen, "check_floor", lambda *args: None)  # a budget no model can meet, floor or not
    sel = select_from_ensemble(
        run, "cpu-ort-fp32", tmp_path, budget_ms=1e-4, timing=FAST, rule=SHORT, store=shared_store, progress=False
    )
    manifest = load_manifest(run)

    rows = {r["arch"]: r for r in sel["candidates"]}
    assert len(rows) == 3 and all(r["measured_ms"] > 0 for r in rows.values())
    fastest = min(rows.values(), key=lambda r: r["measured_ms"])  # as measured here: on a busy machine, any
    # the fastest and those tied with it (overlapping intervals) are built; the chosen is one of them
    built = {a for a, r in rows.items() if r["fate"] != Fate.SLOWER_THAN_FASTEST.value}
    assert fastest["arch"] in built and sel["chosen"]["arch"] in built and not sel["met_budget"]
    source = next(s for s in manifest["students"] if s["arch"] == sel["chosen"]["arch"])
    assert Path(sel["chosen"]["checkpoint"]) == run / source["checkpoint"]
    assert (Path(sel["chosen"]["artifact_dir"]) / "artifact.json").is_file()
    others = [r for a, r in rows.items() if a not in built]
    assert all("trained in the ensemble" in r["why"] for r in others)
    assert {r["val_acc"] for r in rows.values()} == {s["val_acc"] for s in manifest["students"]}

    saved = sel["compute"]["ensemble"]
    assert saved["ensemble_train_s"] == manifest["train_seconds"] and saved["basis"] == "trained on labels alone"
    assert saved["measured_epochs"] == 2 and len(saved["widths"]) == 3
    for width in saved["widths"]:  # first measured epoch + (epochs - 1) x the last one
        assert width["estimate_s"] == pytest.approx(width["epoch_s"][0] + width["epoch_s"][-1])
    assert saved["separate_estimate_s"] == pytest.approx(sum(w["estimate_s"] for w in saved["widths"]))

    assert json.loads((tmp_path / "selection.json").read_text())["chosen"]["arch"] == sel["chosen"]["arch"]
    markdown = (tmp_path / "selection.md").read_text()
    assert "BUDGET MISSED" in markdown and "training time: the ensemble trained 3 students" in markdown
    assert "No front after epoch 1: no student has a per-epoch history" in markdown
    assert [r["name"] for r in Store(shared_store).runs("select")] == ["select-cpu-ort-fp32"]


@pytest.mark.slow
def test_a_generous_budget_chooses_the_most_accurate_on_validation(
    run: Path, fmnist_npz: Path, shared_store: Path, tmp_path: Path
) -> None:
    teacher = tmp_path / "t.pt"
    api.train_teacher("cnn-xs", str(fmnist_npz), teacher, TrainConfig(epochs=1, limit=300), progress=False)
    sel = select_from_ensemble(
        run,
        "cpu-ort-fp32",
        tmp_path / "sel",
        budget_ms=50.0,
        teacher=teacher,
        task=DistillConfig(method="kd"),
        timing=FAST,
        rule=SHORT,
        store=shared_store,
        progress=False,
    )

    best = max(load_manifest(run)["students"], key=lambda s: s["val_acc"])
    assert sel["met_budget"] and sel["chosen"]["val_acc"] == best["val_acc"]
    assert all(r["final"]["p50_ms"] <= 50.0 for r in sel["candidates"])  # every student built and re-measured
    assert sel["compute"]["ensemble"]["basis"] == f"distilled (kd) from {teacher}"


def test_cli_from_ensemble(run: Path, shared_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgekd.select import latency, pipeline

    for module in (latency, pipeline):  # the CLI's rounds, shortened for a test
        monkeypatch.setattr(module, "DEFAULT_RULE", SHORT)
    result = CliRunner().invoke(
        cli,
        [
            "select",
            "--from-ensemble",
            str(run),
            "--target",
            "cpu-ort-fp32",
            "--budget-ms",
            "50",
            "--out",
            str(tmp_path),
            "--store",
            str(shared_store),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    sel = json.loads(result.stdout)
    best = max(load_manifest(run)["students"], key=lambda s: s["val_acc"])
    assert sel["met_budget"] and sel["chosen"]["val_acc"] == best["val_acc"] and sel["ensemble"]["dir"] == str(run)


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--from-ensemble", "{empty}"], "is not an ensemble run"),
        ([], "needs --teacher and --space, or --from-ensemble"),
    ],
)
def test_cli_bad_input_exits_2_with_one_line(tmp_path: Path, args: list[str], needle: str) -> None:
    (tmp_path / "empty").mkdir()
    args = [a.format(empty=tmp_path / "empty") for a in args]
    result = CliRunner().invoke(cli, ["select", *args, "--target", "cpu-ort-fp32", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and needle in result.output
    assert result.output.strip().splitlines()[-1].startswith("edgekd: error:")


def test_cli_select_refuses_a_temperature_its_method_lacks_before_anything_runs(tmp_path: Path) -> None:
    teacher = tmp_path / "t.pt"
    teacher.write_bytes(b"")
    result = CliRunner().invoke(
        cli,
        [
            "select",
            "--teacher",
            str(teacher),
            "--space",
            "small",
            "--method",
            "sp",
            "--temperature",
            "1",
            "--target",
            "cpu-ort-fp32",
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert result.exit_code == 2 and "method 'sp' has no loss parameter 'temperature'" in result.output
    assert not (tmp_path / "o").exists()


def test_cli_select_hands_the_temperature_and_weights_to_every_candidate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import edgekd.select.pipeline as pipeline

    seen: list[DistillConfig] = []

    def fake_select(
        teacher: Path,
        space: str,
        target: str,
        data: str,
        out: Path,
        cfg: object,
        task: DistillConfig,
        *args: object,
        **kwargs: object,
    ) -> dict[str, object]:
        seen.append(task)
        raise UserError("stop here")

    monkeypatch.setattr(pipeline, "select", fake_select)
    teacher = tmp_path / "t.pt"
    teacher.write_bytes(b"")
    result = CliRunner().invoke(
        cli,
        [
            "select",
            "--teacher",
            str(teacher),
            "--space",
            "small",
            "--temperature",
            "1",
            "--ce-weight",
            "0.7",
            "--target",
            "cpu-ort-fp32",
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert result.exit_code == 2 and "stop here" in result.output
    assert seen[0].loss_params == {"temperature": 1.0} and (seen[0].ce_weight, seen[0].kd_weight) == (0.7, 0.5)
