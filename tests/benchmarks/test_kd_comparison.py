"""The distillation comparison suite: per-regime epochs, the training recipe, refused resumes, the table and
the goal lines on synthetic run records, and one tiny real run of the user-style pair from a given teacher
(more tiny real runs are in test_family_comparison.py, which drives the same `run_one`)."""

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


def test_a_pair_may_name_an_architecture_with_its_arguments() -> None:
    args = kdc.parse_args(["--pairs", "vit-s:cnn(width=16,depth=2),benchmarks.user_models:wide_convnet:cnn-xs"])
    assert args.pairs == [("vit-s", "cnn(width=16,depth=2)"), ("benchmarks.user_models:wide_convnet", "cnn-xs")]
    assert kdc.safe("vit-s--cnn(width=16,depth=2)") == "vit-s--cnn_width_16_depth_2_"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--epochs", "10pct=30"], "--epochs: no epochs for full (give REGIME=N for each of full, 10pct)"),
        (["--epochs", "full=0,10pct=3"], "--epochs: epochs must be at least 1 (full)"),
        (["--epochs", "0"], "--epochs: epochs must be at least 1"),
        (["--epochs", "ten"], "--epochs: invalid literal"),
        (["--methods", "kd,nope"], "--methods: unknown nope"),
        (["--methods", "kd+kd"], "--methods: unknown kd+kd"),
        (["--regimes", "half"], "--regimes: unknown half"),
        (["--pairs", "resnet"], "--pairs: give teacher:student"),
        (["--views", "4"], "--views: at least 1, and more than 1 only with --augment standard"),
        (["--teacher", "mobilenet=t.pt"], "--teacher: 'mobilenet=t.pt': give ARCH=PATH with ARCH one of the pairs'"),
        (["--teacher", "vit-s=/no/such.pt"], "--teacher: 'vit-s=/no/such.pt': no such file /no/such.pt"),
        (["--auxiliary-epochs", "full=3"], "--auxiliary-epochs: no epochs for 10pct"),
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


def test_a_pair_splits_at_its_last_colon_so_a_teacher_may_be_module_factory(tmp_path: Path) -> None:
    args = kdc.parse_args(["--pairs", "benchmarks.user_models:wide_convnet:cnn-xs,resnet:cnn-s"])
    assert args.pairs == [("benchmarks.user_models:wide_convnet", "cnn-xs"), ("resnet", "cnn-s")]
    ckpt = tmp_path / "t.pt"
    ckpt.write_bytes(b"")
    given = kdc.parse_args(
        ["--pairs", "benchmarks.user_models:wide_convnet:cnn-xs,vit-s:cnn-xs", "--teacher", f"vit-s={ckpt}"]
        + ["--teacher", f"benchmarks.user_models:wide_convnet={ckpt}"]
    )
    assert given.teacher == {"vit-s": str(ckpt), "benchmarks.user_models:wide_convnet": str(ckpt)}


def test_the_recipe_is_recorded_checked_on_resume_and_names_the_teachers(tmp_path: Path) -> None:
    argv = ["--epochs", "8", "--out", str(tmp_path), "--resume", "--map-samples", "50"]
    old = kdc.parse_args(argv)
    assert (
        kdc.recipe(old)
        == kdc.default_recipe()
        == {
            "augment": "none",
            "views": 1,
            "warmup_epochs": 0.0,
            "lr": 2e-3,
            "kd_temperature": 4.0,  # what `edgekd distill` uses without --temperature
        }
    )
    assert kdc.teacher_tag(old) == ""  # the teachers of earlier comparisons keep their names
    new = kdc.parse_args([*argv, "--augment", "standard", "--views", "4", "--warmup-epochs", "1", "--lr", "1e-3"])
    assert kdc.teacher_tag(new) == "-standard-v4-w1-lr0.001"
    cfg = kdc.train_config(new, 8, 0, None)
    assert (cfg.views, cfg.warmup_epochs, cfg.lr, cfg.augment.pad) == (4, 1.0, 1e-3, 4)
    old.n_map = new.n_map = 50
    record = tmp_path / "runs" / "resnet--cnn-xs" / "full" / "kd" / "seed0.json"
    # a record from before the recipe options has the default recipe: reused by the default, refused otherwise
    kdc.write_json(record, {"status": "done", "epochs": 8, "map_samples": 50, "method": "kd", "seed": 0})
    assert kdc.run_one(("resnet", "cnn-xs"), tmp_path / "t.pt", "full", None, "kd", 0, old)["epochs"] == 8
    with pytest.raises(SystemExit, match="has recipe=.*'augment': 'none'.*this run .*'augment': 'standard'"):
        kdc.run_one(("resnet", "cnn-xs"), tmp_path / "t.pt", "full", None, "kd", 0, new)
    # infoflow-pkth's auxiliary epochs are checked too
    pkth = tmp_path / "runs" / "resnet--cnn-xs" / "full" / "infoflow-pkth" / "seed0.json"
    kdc.write_json(pkth, {"status": "done", "epochs": 8, "map_samples": 50, "auxiliary_epochs": 16, "seed": 0})
    with pytest.raises(SystemExit, match="has auxiliary_epochs=16, this run 8"):
        kdc.run_one(("resnet", "cnn-xs"), tmp_path / "t.pt", "full", None, "infoflow-pkth", 0, old)


def test_the_tasks_of_the_methods() -> None:
    args = kdc.parse_args(["--epochs", "10pct=30,full=10", "--kd-temperature", "1"])
    pkth = kdc.task_for("infoflow-pkth", args, regime="10pct")
    assert (pkth.method, pkth.recipe, pkth.ce_weight, pkth.auxiliary, pkth.auxiliary_epochs) == (
        "infoflow",
        "pkth",
        1.0,
        "auto",
        30,
    )
    assert kdc.task_for("infoflow-pkth", args, regime="full").auxiliary_epochs == 10
    assert kdc.task_for("kd", args).loss_params == {"temperature": 1.0}
    assert kdc.task_for("kd", kdc.parse_args([])).loss_params == {}  # as every earlier record
    assert not kdc.task_for("infoflow", args, cache=False).cache and kdc.task_for("sp", args).cache
    with_logits = kdc.task_for("infoflow-aux+kd", args)
    assert (with_logits.method, with_logits.auxiliary, with_logits.logit_weight, with_logits.logit_temperature) == (
        "infoflow",
        kdc.task_for("infoflow-aux", args).auxiliary,
        1.0,
        1.0,
    )
    assert kdc.task_for("pkt", args).logit_weight == 0.0
    assert kdc.parse_args(["--methods", "pkt+kd,infoflow+kd"]).methods == ["pkt+kd", "infoflow+kd"]


def test_goal_2_compares_infoflow_with_a_logit_term_against_pkt_with_one(rows: Any) -> None:
    args, _ = rows
    runs = [run("alone", s, 0.80, 0.60, db=0.65) for s in (0, 1)]
    runs += [run("pkt", s, 0.90, 0.90, db=0.90) for s in (0, 1)]
    runs += [run("pkt+kd", s, 0.83, 0.62, db=0.70) for s in (0, 1)]
    runs += [run("infoflow+kd", s, 0.84, 0.66, db=0.75) for s in (0, 1)]
    args.methods = ["alone", "pkt", "pkt+kd", "infoflow+kd"]
    lines = kdc.goal_lines(kdc.aggregate(runs, TEACHERS, args))
    assert lines == [
        "- vit-s -> cnn-xs, 10pct (infoflow+kd vs pkt+kd, n=2): accuracy +1.0 pts vs std 0.0 -> met;"
        " mAP +4.0 pts vs std 0.0 -> met; mAP db +5.0 pts vs std 0.0 -> met"
    ]


def test_the_map_count_is_capped_by_the_test_split(fmnist: str) -> None:
    args = argparse.Namespace(data=fmnist, map_samples=10**9)
    assert kdc.map_count(args) == args.n_map > 0


# -- the table on synthetic records ------------------------------------------------------------------------

TEACHERS = {
    "vit-s": {
        "params": 9000,
        "test_accuracy": 0.90,
        "map": 0.80,
        "map_db": 0.9,
        "map_db_by_regime": {"10pct": 0.85},
        "epoch_s_mean": 10.0,
    }
}


def run(
    method: str, seed: int, acc: float, mean_ap: float, regime: str = "10pct", db: float | None = None
) -> dict[str, Any]:
    return {
        **({"map_db": db} if db is not None else {}),
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
    runs = [run("alone", s, 0.80, 0.60 + 0.02 * s, db=0.65) for s in (0, 1)]
    runs += [run("pkt", s, 0.83 + 0.02 * s, 0.62, db=0.70) for s in (0, 1)]
    runs += [run("infoflow", s, 0.85, 0.66 + 0.02 * s, db=0.75 + 0.01 * s) for s in (0, 1)]
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
    # mAP db: the teacher's against the regime's database
    assert info["map_db"][0] == pytest.approx(0.755) and table[0]["map_db"][0] == 0.85
    assert info["gap_map_db"] == pytest.approx((0.755 - 0.65) / (0.85 - 0.65))
    assert info["epoch_s"][0] == pytest.approx(2.5) and table[6]["note"] == "no runs"
    assert math.isnan(table[1]["gap_acc"])


def test_goal_lines_and_markdown_name_each_regime_and_its_epochs(rows: Any) -> None:
    args, table = rows
    # accuracy +1.0 within 1.4: met; mAP +5.0 pts against a spread of 1.4: met; mAP db +5.5 vs 0.7: met
    assert kdc.goal_lines(table) == [
        "- vit-s -> cnn-xs, 10pct (infoflow vs pkt, n=2): accuracy +1.0 pts vs std 1.4 -> met;"
        " mAP +5.0 pts vs std 1.4 -> met; mAP db +5.5 pts vs std 0.7 -> met"
    ]
    assert kdc.small_student_lines(table) == [
        "- vit-s -> cnn-xs, 10pct: best infoflow (n=2) +5.00 pts over alone (std 0.00 / 0.00) -> met"
    ]
    assert kdc.teacher_lines(table) == [
        "- vit-s -> cnn-xs, 10pct: teacher 90.00% vs alone 80.00%: +10.00 pts -> met",
        "- vit-s -> cnn-xs, full: teacher 90.00% vs alone 85.00%: +5.00 pts -> met",
    ]
    assert kdc.gap_lines(table) == [
        "- vit-s -> cnn-xs, 10pct: best infoflow (n=2) recovers 50% of the accuracy gap -> met"
    ]
    text = kdc.markdown(table, args, 60.0)
    assert "students 30 epochs in 10pct, 8 in full, seeds 0,1;" in text
    assert "augmentation none, warm-up 0 epochs, lr 0.002, kd temperature 4;" in text
    assert "## vit-s -> cnn-xs (9,000 -> 6,866 parameters), 10pct (30 epochs)" in text
    assert "## vit-s -> cnn-xs (9,000 -> 6,866 parameters), full (8 epochs)" in text
    assert "| infoflow | 85.0 ± 0.0 | 67.0 ± 1.4 | 75.5 ± 0.7 | 2.50 ± 0.71 | 50% | 32% | 52% | 2 |  |" in text
    assert "| pkt | n/a | n/a | n/a | n/a |  |  |  | 0 | no runs |" in text
    for goal in ("Goal 1: distillation pays", "Goal 2: information flow vs pkt", "Goal 3: the gap recovered"):
        assert f"## {goal}" in text


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


# -- one tiny real run: the user-style pair from a given teacher ---------------------------------------------

USER = "benchmarks.user_models:wide_convnet"


def test_the_user_style_pair_runs_every_feature_method_from_a_given_teacher(
    fmnist: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgekd import api
    from edgekd.config import TrainConfig
    from edgekd.data import load_data

    monkeypatch.setenv("EDGEKD_CACHE", str(tmp_path / "cache"))
    # 900 samples x 2 views: infoflow's taps of this teacher (~50 kB a row) would need ~90 MB, more than
    # half of this limit, so it runs with the teacher live; pkt's (its pooled features) and sp's are cached
    monkeypatch.setenv("EDGEKD_CACHE_MAX_GB", "0.05")
    t_ckpt = tmp_path / "user-teacher.pt"
    api.train_teacher(USER, fmnist, t_ckpt, TrainConfig(epochs=1, device="cpu"), progress=False)
    methods = ["alone", "pkt", "sp", "infoflow", "infoflow-aux", "infoflow-pkth"]
    argv = ["--data", fmnist, "--pairs", f"{USER}:cnn-xs", "--teacher", f"{USER}={t_ckpt}", "--regimes", "full"]
    argv += ["--methods", ",".join(methods), "--seeds", "0", "--epochs", "1", "--augment", "standard"]
    argv += ["--views", "2", "--auxiliary-epochs", "2", "--map-samples", "50", "--device", "cpu"]
    argv += ["--out", str(tmp_path / "out"), "--resume"]
    assert kdc.main(argv) == 0
    runs = tmp_path / "out" / "runs" / kdc.safe(f"{USER}--cnn-xs") / "full"
    records = {m: json.loads((runs / m / "seed0.json").read_text()) for m in methods}
    n_train = len(load_data(fmnist).train)  # the database: the run's training split
    for m, r in records.items():
        assert r["status"] == "done" and 0 < r["map_db"] <= 1 and r["map_db_database"] == n_train, m
        assert r["recipe"] == {**kdc.default_recipe(), "augment": "standard", "views": 2}
    assert records["infoflow"]["cache"] is False and records["infoflow"]["task"]["cache"] is False
    assert records["pkt"]["cache"] is True and records["sp"]["cache"] is True and records["pkt"]["views"] == 2
    assert records["infoflow-pkth"]["task"]["recipe"] == "pkth" and records["infoflow-pkth"]["auxiliary_epochs"] == 2
    (given,) = (tmp_path / "out" / "teachers").glob("*-given-*.json")
    teacher = json.loads(given.read_text())
    assert teacher["path"] == str(t_ckpt.resolve()) and teacher["given"] and len(teacher["sha256"]) == 64
    assert teacher["map_db_by_regime"]["full"] == teacher["map_db"]
    text = (tmp_path / "out" / "results.md").read_text()
    assert (
        "| infoflow |" in text and "teacher live (cache would be 0.1 GB)" in text and "given: user-teacher.pt" in text
    )
    # the table again from the records, measuring nothing
    assert kdc.main([*argv, "--table-only"]) == 0
