"""The ensemble and HSSAKD comparison suite: regimes, widths, argument errors, the tables on synthetic run
records, kd_comparison's `hssakd` method, and one tiny real run that a resume then only reads."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import pytest

from benchmarks import family_comparison as fc
from benchmarks import kd_comparison as kdc

SLIM = "cnn(depth=1,stem=12,width=6)"  # 0.5 of cnn-s, the shared stem kept


def test_regime_limits() -> None:
    assert fc.regime_limit("full", 60000) is None
    assert fc.regime_limit("10pct", 60000) == 6000
    assert fc.regime_limit("n300", 60000) == 300


def test_width_baselines_are_the_archs_the_ensemble_writes() -> None:
    assert fc.members("cnn-s", (1.0, 0.6, 0.2)) == [
        (1.0, "cnn-s"),
        (0.6, "cnn(depth=1,stem=12,width=7)"),
        (0.2, "cnn(depth=1,stem=12,width=2)"),
    ]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--methods", "kd,nope"], "--methods: unknown nope"),
        (["--regimes", "half"], "--regimes: unknown half"),
        (["--regimes", "n0"], "--regimes: unknown n0"),
        (["--widths", "0.5,1.0"], "not strictly decreasing"),
        (["--widths", "1.0"], "at least two widths"),
        (["--widths", "", "--methods", "infoflow"], "give at least 1 width(s), got 0"),
        (["--student", "resnet"], "does not support width scaling"),
        (["--student", "cnn-xs", "--widths", "1.0,0.5,0.45"], "not all distinct"),
        (["--seeds", "a"], "--seeds: give integers"),
        (["--epochs", "0"], "--epochs must be at least 1"),
        (["--report", "../x"], "--report: give a file name stem"),
    ],
)
def test_argument_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        fc.parse_args(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_one_width_is_enough_without_an_ensemble() -> None:
    args = fc.parse_args(["--widths", "1.0", "--methods", "alone,kd,infoflow,hssakd"])
    assert args.widths == (1.0,) and fc.members(args.student, args.widths) == [(1.0, "cnn-s")]


def test_kd_comparison_runs_hssakd_only_on_request() -> None:
    assert "hssakd" not in kdc.parse_args([]).methods
    assert kdc.parse_args(["--methods", "kd,hssakd"]).methods == ["kd", "hssakd"]
    assert kdc.hssakd_key("resnet") == "resnet-hssakd"


# -- the tables on synthetic records --------------------------------------------------------------------

TEACHERS = {
    "resnet": {"params": 1000, "test_accuracy": 0.90, "map": 0.80, "epoch_s_mean": 10.0},
    "resnet-hssakd": {"params": 1000, "test_accuracy": 0.92, "map": 0.85, "epoch_s_mean": 60.0},
}


def run(student: str, method: str, seed: int, acc: float, mean_ap: float, seconds: float = 10.0) -> dict[str, Any]:
    return {
        "teacher": "resnet",
        "student": student,
        "regime": "10pct",
        "method": method,
        "seed": seed,
        "status": "done",
        "test_accuracy": acc,
        "map": mean_ap,
        "epoch_s": [seconds / 2 - 0.5] * 2,
        "epoch_s_mean": seconds / 2 - 0.5,
        "seconds": seconds,
        "epochs": 2,
        "task": None,
    }


def ensemble(seed: int, accs: tuple[float, float]) -> dict[str, Any]:
    return {
        "teacher": "resnet",
        "student": "cnn-s",
        "regime": "10pct",
        "method": "ensemble",
        "seed": seed,
        "status": "done",
        "wall_seconds": 15.0,
        "train_seconds": 14.0,
        "epoch_s_mean": 7.0,
        "epochs": 2,
        "students": [
            {"arch": "cnn-s", "test_accuracy": accs[0], "map": 0.6},
            {"arch": SLIM, "test_accuracy": accs[1], "map": 0.5},
        ],
    }


@pytest.fixture
def synthetic() -> tuple[argparse.Namespace, list[dict[str, Any]], list[dict[str, Any]]]:
    args = fc.parse_args(
        [
            "--widths",
            "1.0,0.5",
            "--seeds",
            "0,1",
            "--regimes",
            "10pct",
            "--teacher-epochs",
            "3",
            "--methods",
            "alone,kd,ensemble,infoflow,hssakd",
        ]
    )
    runs = [
        run(arch, "alone", s, base + 0.02 * s, 0.5) for arch, base in (("cnn-s", 0.80), (SLIM, 0.70)) for s in (0, 1)
    ]
    runs += [
        run(arch, "kd", s, base + 0.02 * s, 0.6, 12.0) for arch, base in (("cnn-s", 0.84), (SLIM, 0.74)) for s in (0, 1)
    ]
    runs += [run("cnn-s", "infoflow", s, 0.85, 0.7) for s in (0, 1)]
    runs += [run("cnn-s", "hssakd", s, 0.86 + 0.01 * s, 0.65, 100.0) for s in (0, 1)]
    return args, runs, [ensemble(0, (0.82, 0.75)), ensemble(1, (0.84, 0.77))]


def pick(rows: list[dict[str, Any]], **key: Any) -> dict[str, Any]:
    found = [r for r in rows if all(r[k] == v for k, v in key.items())]
    assert len(found) == 1, key
    return found[0]


def test_width_rows_mean_std_and_gap(synthetic: Any) -> None:
    args, runs, ensembles = synthetic
    rows = fc.width_rows(runs, ensembles, TEACHERS, args)
    assert [(r["width"], r["method"]) for r in rows] == [
        (w, m) for w in (1.0, 0.5) for m in ("alone", "kd", "ensemble")
    ]
    alone = pick(rows, width=1.0, method="alone")
    assert alone["acc"][0] == pytest.approx(0.81) and alone["acc"][1] == pytest.approx(0.02 / math.sqrt(2))
    assert alone["student_params"] == 15046 and math.isnan(alone["gap_acc"])
    ens = pick(rows, width=0.5, method="ensemble")
    assert ens["acc"][0] == pytest.approx(0.76) and ens["n"] == 2
    assert ens["gap_acc"] == pytest.approx((0.76 - 0.71) / (0.90 - 0.71))
    assert ens["gap_map"] == pytest.approx(0.0) and ens["epoch_s"][0] == 7.0
    assert ens["note"] == "epoch: the whole family"


def test_hssakd_rows_take_its_gap_against_its_own_teacher(synthetic: Any) -> None:
    args, runs, _ = synthetic
    rows = fc.hssakd_rows(runs, TEACHERS, args)
    assert [r["method"] for r in rows] == ["teacher", "teacher-hssakd", "alone", "kd", "infoflow", "hssakd"]
    hs = pick(rows, method="hssakd")
    assert hs["acc"][0] == pytest.approx(0.865)
    assert hs["gap_acc"] == pytest.approx((0.865 - 0.81) / (0.92 - 0.81))
    assert pick(rows, method="infoflow")["gap_acc"] == pytest.approx((0.85 - 0.81) / (0.90 - 0.81))
    args.methods = ["alone", "kd", "ensemble"]
    assert fc.hssakd_rows(runs, TEACHERS, args) == []


def test_time_rows_compare_one_ensemble_with_the_sum_of_the_widths(synthetic: Any) -> None:
    args, runs, ensembles = synthetic
    rows = fc.time_rows(runs, ensembles, args)
    alone, kd = pick(rows, against="alone"), pick(rows, against="kd")
    assert alone["n"] == 2 and alone["runs"] == 2
    assert alone["ens_wall"][0] == 15.0 and alone["sep_wall"][0] == 20.0
    assert alone["ratio"][0] == pytest.approx(0.75) and alone["saved"][0] == pytest.approx(5.0)
    assert alone["sep_train"][0] == pytest.approx(2 * 2 * 4.5) and kd["saved"][0] == pytest.approx(9.0)
    del runs[0]  # cnn-s alone seed 0: that seed no longer has every width
    assert pick(fc.time_rows(runs, ensembles, args), against="alone")["n"] == 1


def test_markdown_pins_the_tables(synthetic: Any) -> None:
    args, runs, ensembles = synthetic
    text = fc.markdown(
        fc.width_rows(runs, ensembles, TEACHERS, args),
        fc.hssakd_rows(runs, TEACHERS, args),
        fc.time_rows(runs, ensembles, args),
        TEACHERS,
        args,
        120.0,
    )
    assert "teacher resnet (1,000 parameters, 3 epochs, full data, seed 0: test acc 90.0%, mAP 80.0%)" in text
    assert "## Ensemble vs separate training, 10pct" in text
    assert "| 1.0 | cnn-s (15,046) | alone | 81.0 ± 1.4 | 50.0 ± 0.0 | 4.50 ± 0.00 |  |  | 2 |  |" in text
    assert (
        f"| 0.5 | {SLIM} (4,354) | ensemble | 76.0 ± 1.4 | 50.0 ± 0.0 | 7.00 ± 0.00 | 26% | 0% | 2 |"
        " epoch: the whole family |" in text
    )
    assert "| ensemble | alone x 2 | 15 ± 0 | 20 ± 0 | 0.75 ± 0.00 | 5 ± 0 | 14 ± 0 | 18 ± 0 | 2 |" in text
    assert "## HSSAKD vs kd and infoflow, resnet -> cnn-s, 10pct" in text
    assert "| teacher-hssakd | 92.0 (n=1) | 85.0 (n=1) | 60.00 (n=1) |  |  | 1 | 3 epochs, full data |" in text
    assert "| hssakd | 86.5 ± 0.7 | 65.0 ± 0.0 | 49.50 ± 0.00 | 50% | 43% | 2 | gap vs teacher-hssakd |" in text
    assert "Wall time of this invocation: 2.0 min." in text


def test_a_resumed_record_from_other_settings_is_refused(synthetic: Any) -> None:
    args, runs, _ = synthetic
    args.n_map = 2000
    with pytest.raises(SystemExit, match="epochs=2, this run 10"):
        fc.check_record({**runs[0], "map_samples": 2000}, "cnn-s alone", args)
    args.epochs = 2
    with pytest.raises(SystemExit, match="map_samples=100, this run 2000"):
        fc.check_record({**runs[0], "map_samples": 100}, "cnn-s alone", args)


# -- one tiny real run ------------------------------------------------------------------------------------


def test_tiny_run_end_to_end_then_resume_only_reads(
    fmnist: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    argv = [
        "--data",
        fmnist,
        "--teacher-arch",
        "cnn-xs",
        "--teacher-epochs",
        "1",
        "--student",
        "cnn-xs",
        "--widths",
        "1.0,0.5",
        "--methods",
        "alone,kd,ensemble,hssakd",
        "--regimes",
        "n120",
        "--seeds",
        "0",
        "--epochs",
        "1",
        "--map-samples",
        "60",
        "--batch-size",
        "64",
        "--out",
        str(out),
    ]
    assert fc.main(argv) == 0
    slim = kdc.safe("cnn-xs--cnn(depth=1,stem=8,width=4)")
    for path in (
        "teachers/cnn-xs-e1.pt",
        "teachers/cnn-xs-hssakd-e1.json",
        "runs/cnn-xs--cnn-xs/n120/alone/seed0.json",
        f"runs/{slim}/n120/kd/seed0.json",
        "runs/cnn-xs--cnn-xs/n120/hssakd/seed0.json",
        "ensembles/cnn-xs--cnn-xs/w1-0.5/n120/ensemble/seed0.json",
        "ensembles/cnn-xs--cnn-xs/w1-0.5/n120/ensemble/seed0/student-w0.5.pt",
    ):
        assert (out / path).is_file(), path
    text = (out / "results.md").read_text()
    result = json.loads((out / "results.json").read_text())
    assert [(r["width"], r["method"], r["n"]) for r in result["widths"]] == [
        (w, m, 1) for w in (1.0, 0.5) for m in ("alone", "kd", "ensemble")
    ]
    assert [r["method"] for r in result["hssakd"]] == ["teacher", "teacher-hssakd", "alone", "kd", "hssakd"]
    assert result["times"][0]["n"] == 1 and result["ensembles"][0]["students"][1]["map_samples"] == 60

    def refuse(*_a: Any, **_k: Any) -> None:
        raise AssertionError("a resumed comparison retrained something")

    from edgekd import api

    for name in ("train_teacher", "distill", "ensemble"):
        monkeypatch.setattr(api, name, refuse)
    assert fc.main([*argv, "--resume", "--report", "again"]) == 0
    tables = lambda t: t[t.index("\n## ") :]  # noqa: E731  (the header holds the invocation's wall time)
    assert tables((out / "again.md").read_text()) == tables(text)


def test_kd_comparison_trains_the_hssakd_teacher_once_and_hands_it_to_the_hssakd_runs(
    fmnist: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trained: list[tuple[str, bool]] = []
    handed: list[tuple[str, Path | None]] = []

    def teacher(arch: str, args: argparse.Namespace, hssakd: bool = False) -> tuple[Path, dict[str, Any]]:
        trained.append((arch, hssakd))
        return tmp_path / f"{arch}-{hssakd}.pt", TEACHERS[kdc.hssakd_key(arch) if hssakd else arch]

    def run_one(
        pair: tuple[str, str],
        t_ckpt: Path,
        regime: str,
        limit: int | None,
        method: str,
        seed: int,
        args: argparse.Namespace,
        h_ckpt: Path | None = None,
    ) -> dict[str, Any]:
        handed.append((method, h_ckpt))
        return run(pair[1], method, seed, 0.86 if method == "hssakd" else 0.81, 0.6)

    monkeypatch.setattr(kdc, "teacher", teacher)
    monkeypatch.setattr(kdc, "run_one", run_one)
    argv = [
        "--data",
        fmnist,
        "--pairs",
        "resnet:cnn-s,resnet:cnn-xs",
        "--regimes",
        "10pct",
        "--seeds",
        "0",
        "--out",
        str(tmp_path / "out"),
    ]
    assert kdc.main([*argv, "--methods", "alone,hssakd"]) == 0
    assert trained == [("resnet", False), ("resnet", True)]
    assert handed[:2] == [("alone", tmp_path / "resnet-True.pt"), ("hssakd", tmp_path / "resnet-True.pt")]
    assert "| teacher-hssakd | 92.0 (n=1) |" in (tmp_path / "out" / "results.md").read_text()
    trained.clear()
    assert kdc.main([*argv, "--methods", "alone,kd"]) == 0
    assert trained == [("resnet", False)]
    assert "teacher-hssakd" not in (tmp_path / "out" / "results.md").read_text()
