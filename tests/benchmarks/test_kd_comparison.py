"""The distillation comparison suite: per-regime epochs, refused resumes, the table and the goal lines on
synthetic run records (a tiny real run is in test_family_comparison.py, which drives the same `run_one`)."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import pytest

from benchmarks import kd_comparison as kdc


def test_epochs_are_one_number_or_one_per_regime() -> None:
    assert kdc.parse_args(["--epochs", "30"]).epochs == 30
    args = kdc.parse_args(["--epochs", "10pct=30,full=8"])
    assert args.epochs == {"10pct": 30, "full": 8}
    assert (kdc.epochs_for(args, "10pct"), kdc.epochs_for(args, "full")) == (30, 8)
    assert kdc.epochs_for(kdc.parse_args(["--epochs", "4"]), "full") == 4


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--epochs", "10pct=30"], "--epochs: no epochs for full (give REGIME=N for each of full, 10pct)"),
        (["--epochs", "full=0,10pct=3"], "--epochs: epochs must be at least 1 (full)"),
        (["--epochs", "0"], "--epochs: epochs must be at least 1"),
        (["--epochs", "ten"], "--epochs: invalid literal"),
        (["--methods", "kd,nope"], "--methods: unknown nope"),
        (["--regimes", "half"], "--regimes: unknown half"),
        (["--pairs", "resnet"], "--pairs: give teacher:student"),
    ],
)
def test_argument_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        kdc.parse_args(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_a_resumed_record_from_other_epochs_is_refused_not_mixed_in(tmp_path: Path) -> None:
    args = kdc.parse_args(["--epochs", "10pct=30,full=8", "--out", str(tmp_path), "--resume", "--map-samples", "50"])
    args.n_map = 50
    record = tmp_path / "runs" / "resnet--cnn-xs" / "full" / "kd" / "seed0.json"
    kdc.write_json(record, {"status": "done", "epochs": 30, "map_samples": 50, "method": "kd"})
    with pytest.raises(
        SystemExit,
        match="resnet -> cnn-xs full kd seed 0: the record in .* has epochs=30, this run 8; use another --out",
    ):
        kdc.run_one(("resnet", "cnn-xs"), tmp_path / "t.pt", "full", None, "kd", 0, args)
    kdc.write_json(record, {"status": "done", "epochs": 8, "map_samples": 50, "method": "kd"})
    assert kdc.run_one(("resnet", "cnn-xs"), tmp_path / "t.pt", "full", None, "kd", 0, args)["epochs"] == 8
    kdc.write_json(record, {"status": "done", "epochs": 8, "map_samples": 2000, "method": "kd"})
    with pytest.raises(SystemExit, match="has map_samples=2000, this run 50"):
        kdc.run_one(("resnet", "cnn-xs"), tmp_path / "t.pt", "full", None, "kd", 0, args)


def test_alone_is_shared_between_pairs_with_the_same_student_and_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgekd import api

    def refuse(*_a: Any, **_k: Any) -> None:
        raise AssertionError("trained a run that another pair had already made")

    monkeypatch.setattr(api, "train_teacher", refuse)
    args = kdc.parse_args(["--epochs", "8", "--out", str(tmp_path), "--map-samples", "50"])
    args.n_map = 50
    made = {
        "teacher": "resnet",
        "student": "cnn-xs",
        "regime": "full",
        "limit": None,
        "method": "alone",
        "seed": 1,
        "epochs": 8,
        "status": "done",
        "map_samples": 50,
        "test_accuracy": 0.87,
        "map": 0.75,
        "epoch_s_mean": 40.0,
    }
    kdc.write_json(tmp_path / "runs" / "resnet--cnn-xs" / "full" / "alone" / "seed1.json", made)
    got = kdc.run_one(("vit-s", "cnn-xs"), tmp_path / "t.pt", "full", None, "alone", 1, args)
    assert got == {**made, "teacher": "vit-s", "shared_from": "resnet -> cnn-xs"}
    assert json.loads((tmp_path / "runs" / "vit-s--cnn-xs" / "full" / "alone" / "seed1.json").read_text()) == got
    # a copy of a copy still names the pair that trained it; the table says whose runs they are
    again = kdc.run_one(("mobilenet", "cnn-xs"), tmp_path / "t.pt", "full", None, "alone", 1, args)
    assert again["shared_from"] == "resnet -> cnn-xs"
    table = kdc.aggregate(
        [got],
        {"vit-s": {**TEACHERS["vit-s"]}},
        kdc.parse_args(["--pairs", "vit-s:cnn-xs", "--methods", "alone", "--regimes", "full"]),
    )
    assert table[1]["note"] == "runs of resnet -> cnn-xs"
    # another student, seed, limit or epoch count is not the same run: each trains
    for pair, limit, seed, epochs in (
        (("vit-s", "cnn-s"), None, 1, 8),
        (("vit-s", "cnn-xs"), 5400, 1, 8),
        (("vit-s", "cnn-xs"), None, 2, 8),
        (("vit-s", "cnn-xs"), None, 1, 4),
    ):
        args.epochs = epochs
        with pytest.raises(AssertionError, match="already made"):
            kdc.run_one(
                pair,
                tmp_path / "t.pt",
                "full",
                limit,
                "alone",
                seed,
                kdc.argparse.Namespace(**{**vars(args), "resume": False}),
            )


def test_the_map_count_is_capped_by_the_test_split(fmnist: str) -> None:
    args = argparse.Namespace(data=fmnist, map_samples=10**9)
    assert kdc.map_count(args) == args.n_map > 0


# -- the table on synthetic records ------------------------------------------------------------------------

TEACHERS = {"vit-s": {"params": 9000, "test_accuracy": 0.90, "map": 0.80, "epoch_s_mean": 10.0}}


def run(method: str, seed: int, acc: float, mean_ap: float, regime: str = "10pct") -> dict[str, Any]:
    return {
        "teacher": "vit-s",
        "student": "cnn-xs",
        "regime": regime,
        "method": method,
        "seed": seed,
        "status": "done",
        "test_accuracy": acc,
        "map": mean_ap,
        "epoch_s_mean": 2.0 + seed,
        "task": None,
    }


@pytest.fixture
def rows() -> tuple[argparse.Namespace, list[dict[str, Any]]]:
    args = kdc.parse_args(
        [
            "--pairs",
            "vit-s:cnn-xs",
            "--methods",
            "alone,pkt,infoflow",
            "--regimes",
            "10pct,full",
            "--epochs",
            "10pct=30,full=8",
            "--seeds",
            "0,1",
        ]
    )
    runs = [run("alone", s, 0.80, 0.60 + 0.02 * s) for s in (0, 1)]
    runs += [run("pkt", s, 0.83 + 0.02 * s, 0.62) for s in (0, 1)]
    runs += [run("infoflow", s, 0.85, 0.66 + 0.02 * s) for s in (0, 1)]
    runs += [run("alone", 0, 0.85, 0.7, "full")]
    return args, kdc.aggregate(runs, TEACHERS, args)


def test_rows_hold_mean_std_gap_and_what_is_missing(rows: Any) -> None:
    _, table = rows
    assert [(r["regime"], r["method"], r["n"]) for r in table] == [
        ("10pct", "teacher", 1),
        ("10pct", "alone", 2),
        ("10pct", "pkt", 2),
        ("10pct", "infoflow", 2),
        ("full", "teacher", 1),
        ("full", "alone", 1),
        ("full", "pkt", 0),
        ("full", "infoflow", 0),
    ]
    info = table[3]
    assert info["acc"] == (pytest.approx(0.85), 0.0) and info["map"][0] == pytest.approx(0.67)
    assert info["gap_acc"] == pytest.approx((0.85 - 0.80) / (0.90 - 0.80))
    assert info["gap_map"] == pytest.approx((0.67 - 0.61) / (0.80 - 0.61))
    assert info["epoch_s"][0] == pytest.approx(2.5) and table[6]["note"] == "no runs"
    assert math.isnan(table[1]["gap_acc"])


def test_goal_lines_and_markdown_name_each_regime_and_its_epochs(rows: Any) -> None:
    args, table = rows
    # mAP +5.0 pts against a spread of 1.4: met; accuracy +1.0 within 1.4: met; gap 50%: met
    assert kdc.goal_lines(table) == [
        "- vit-s -> cnn-xs, 10pct (infoflow vs pkt, n=2): mAP +5.0 pts vs std 1.4 -> met;"
        " accuracy +1.0 pts vs std 1.4 -> met; gap recovered 50% -> met (goal: >= 40% in 10pct)"
    ]
    text = kdc.markdown(table, args, 60.0)
    assert "students 30 epochs in 10pct, 8 in full, seeds 0,1;" in text
    assert "## vit-s -> cnn-xs (9,000 -> 6,866 parameters), 10pct (30 epochs)" in text
    assert "## vit-s -> cnn-xs (9,000 -> 6,866 parameters), full (8 epochs)" in text
    assert "| infoflow | 85.0 ± 0.0 | 67.0 ± 1.4 | 2.50 ± 0.71 | 50% | 32% | 2 |  |" in text
    assert "| pkt | n/a | n/a | n/a |  |  | 0 | no runs |" in text


def test_the_results_json_is_standard_json(tmp_path: Path) -> None:
    kdc.write_json(tmp_path / "r.json", {"a": math.nan, "b": [math.inf, 1.0]})
    assert json.loads((tmp_path / "r.json").read_text()) == {"a": None, "b": [None, 1.0]}


def test_table_only_trains_nothing_and_tables_what_is_there(
    fmnist: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgekd import api

    def refuse(*_a: Any, **_k: Any) -> None:
        raise AssertionError("--table-only trained something")

    for name in ("train_teacher", "distill"):
        monkeypatch.setattr(api, name, refuse)
    argv = [
        "--data",
        fmnist,
        "--pairs",
        "vit-s:cnn-xs",
        "--methods",
        "alone,pkt",
        "--regimes",
        "10pct",
        "--seeds",
        "0,1",
        "--epochs",
        "3",
        "--map-samples",
        "50",
        "--out",
        str(tmp_path),
        "--table-only",
    ]
    with pytest.raises(SystemExit, match="--table-only: teacher vit-s-e10 is not in .*; run without --table-only"):
        kdc.main(argv)
    (tmp_path / "teachers").mkdir()
    (tmp_path / "teachers" / "vit-s-e10.pt").write_bytes(b"")
    kdc.write_json(tmp_path / "teachers" / "vit-s-e10.json", TEACHERS["vit-s"])
    kdc.write_json(
        tmp_path / "runs" / "vit-s--cnn-xs" / "10pct" / "pkt" / "seed1.json",
        {**run("pkt", 1, 0.8, 0.6), "epochs": 3, "map_samples": 50},
    )
    assert kdc.main(argv) == 0
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert [(r["method"], r["n"]) for r in rows] == [("teacher", 1), ("alone", 0), ("pkt", 1)]
    text = (tmp_path / "results.md").read_text()
    assert "| pkt | 80.0 (n=1) | 60.0 (n=1) |" in text and "Table written from the run records" in text


# -- several workers over one --out ------------------------------------------------------------------------


def _lock_of_live_process(record: Path, host: str | None = None) -> None:
    import os
    import socket

    record.parent.mkdir(parents=True, exist_ok=True)
    kdc.lock_path(record).write_text(json.dumps({"host": host or socket.gethostname(), "pid": os.getppid()}))


def test_a_run_is_claimed_by_one_worker_and_released_after(tmp_path: Path) -> None:
    record = tmp_path / "runs" / "seed0.json"
    with kdc.claimed(record) as mine:
        assert mine and kdc.holder(record) is not None
        with kdc.claimed(record) as again:
            assert not again  # held by a live process (this one)
        assert kdc.lock_path(record).is_file()
    assert not kdc.lock_path(record).exists() and kdc.holder(record) is None


def test_a_lock_left_by_a_dead_process_of_this_host_is_taken_over(tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys

    record = tmp_path / "seed0.json"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    kdc.lock_path(record).write_text(json.dumps({"host": socket.gethostname(), "pid": int(dead.stdout)}))
    with kdc.claimed(record) as mine:
        assert mine
    # another host's lock cannot be checked: it is trusted
    _lock_of_live_process(record, host="some-other-machine")
    with kdc.claimed(record) as mine:
        assert not mine


def test_a_run_another_worker_holds_is_skipped_not_trained_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgekd import api

    def refuse(*_a: Any, **_k: Any) -> None:
        raise AssertionError("trained a run another worker holds")

    for name in ("train_teacher", "distill"):
        monkeypatch.setattr(api, name, refuse)
    args = kdc.parse_args(["--epochs", "8", "--out", str(tmp_path), "--map-samples", "50", "--resume"])
    args.n_map = 50
    runs = tmp_path / "runs"
    _lock_of_live_process(runs / "resnet--cnn-xs" / "full" / "kd" / "seed0.json")
    got = kdc.run_one(("resnet", "cnn-xs"), tmp_path / "t.pt", "full", None, "kd", 0, args)
    assert got["status"] == "running elsewhere" and "another worker is making it" in got["note"]
    # the same student's `alone` run, being made for another pair, is waited for (shared when done)
    _lock_of_live_process(runs / "resnet--cnn-xs" / "full" / "alone" / "seed0.json")
    got = kdc.run_one(("vit-s", "cnn-xs"), tmp_path / "t.pt", "full", None, "alone", 0, args)
    assert (got["status"], got["note"]) == ("running elsewhere", "another worker is making it for resnet--cnn-xs")
    assert (
        kdc.aggregate(
            [got], TEACHERS, kdc.parse_args(["--pairs", "vit-s:cnn-xs", "--methods", "alone", "--regimes", "full"])
        )[1]["n"]
        == 0
    )


def test_a_teacher_another_worker_trains_is_waited_for_then_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from edgekd import api

    def refuse(*_a: Any, **_k: Any) -> None:
        raise AssertionError("trained a teacher another worker was training")

    monkeypatch.setattr(api, "train_teacher", refuse)
    monkeypatch.setattr(kdc, "WAIT_S", 0.05)
    args = kdc.parse_args(["--out", str(tmp_path), "--teacher-epochs", "3"])
    record = tmp_path / "teachers" / "vit-s-e3.json"
    _lock_of_live_process(record)

    def other_worker_finishes() -> None:
        (tmp_path / "teachers" / "vit-s-e3.pt").write_bytes(b"weights")
        kdc.write_json(record, TEACHERS["vit-s"])
        kdc.lock_path(record).unlink()

    timer = threading.Timer(0.3, other_worker_finishes)
    timer.start()
    try:
        ckpt, info = kdc.teacher("vit-s", args)
    finally:
        timer.cancel()
    assert ckpt == tmp_path / "teachers" / "vit-s-e3.pt" and info == TEACHERS["vit-s"]


def test_the_cost_line_compares_later_epochs_and_whole_runs_with_the_student_alone() -> None:
    args = kdc.parse_args(
        ["--pairs", "vit-s:cnn-xs", "--methods", "alone,pkt,infoflow-aux", "--regimes", "full", "--epochs", "3"]
    )
    runs = [
        {**run("alone", s, 0.8, 0.6, "full"), "epoch_s": [9.0, 5.0, 5.0 + s], "wall_s": 100.0 + 10 * s} for s in (0, 1)
    ]
    runs += [
        {**run("pkt", s, 0.8, 0.6, "full"), "epoch_s": [20.0, 6.0, 6.0 + 1.2 * s], "wall_s": 150.0 + 15 * s}
        for s in (0, 1)
    ]
    runs += [{**run("infoflow-aux", 0, 0.8, 0.6, "full"), "epoch_s": [30.0], "wall_s": 420.0}]
    # a resumed run timed only its last process (less than its epochs): its wall time is left out
    runs += [{**run("pkt", 2, 0.8, 0.6, "full"), "epoch_s": [20.0, 6.0, 6.6], "wall_s": 7.0}]
    table = kdc.aggregate(runs, TEACHERS, args)
    # alone: later epochs (5 + 5) / 2, then (5 + 6) / 2 -> 5.25; pkt (6 + 6) / 2, (6 + 7.2) / 2, (6 + 6.6) / 2 -> 6.3
    assert kdc.cost_line(table) == (
        "Cost against the student alone (epochs after the first / the whole run's wall"
        " time, ratios of the means): pkt 1.20x / 1.50x; infoflow-aux n/a / 4.00x."
    )
    assert kdc.cost_line(table) in kdc.markdown(table, args, 1.0)
    assert kdc.cost_line([r for r in table if r["method"] != "alone"]) is None


def test_records_name_the_code_that_made_them() -> None:
    import subprocess

    root = Path(kdc.__file__).resolve().parents[1]
    if not (root / ".git").exists():
        pytest.skip("not a git checkout (an installed edgekd): code_version is None there")
    head = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert (kdc.code_version() or "").split("+")[0] == head
