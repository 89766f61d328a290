"""Fault injection: SIGKILL `distill`, `export`, `select` and `ensemble` at random moments, then rerun.

For each command, one uninterrupted reference run, then `--trials` trials. A trial starts the command
(on a copy of the reference's output where the command has one to overwrite), SIGKILLs its process
group at a seeded random moment within the reference's wall time, checks that the previous output is
still as it was, reruns it (`--resume` for distill and ensemble, a plain rerun for export and select,
which resumes its study), and checks what the rerun left:

- identical: the final metrics equal the reference's (test accuracy; the trained weights tensor for
  tensor; the ONNX files byte for byte; select's chosen student and its accuracies);
- integrity: `PRAGMA integrity_check` is ok on every SQLite file, no metric row is duplicated
  (same run, epoch and name) or orphaned (its run missing), and no row the reference has is lost;
  for select, every candidate has exactly one trial in the study and none is left running;
- no file is truncated: every JSON parses, every .pt loads with weights_only=True, every .onnx loads;
  no staging folder is left behind.

Tiny settings (Fashion-MNIST `--limit`, 2-3 epochs, a space of two candidates) keep a trial to seconds.
`select` runs `edgekd.select.pipeline.select` in a child process with the short timing the tests use (the
CLI measures with the full rounds) and a 2 s heartbeat / 6 s grace, so a killed trial is retried soon.
Resumable: one JSON record per trial in OUT/runs/; a rerun skips the trials recorded.

    python -m benchmarks.fault_injection --trials 20 --threads 1 --out runs/faults
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

COMMANDS = ("distill", "export", "select", "ensemble")
TARGET = "cpu-ort-fp32"
SPACE = {"family": "cnn", "width": [2, 4], "depth": [1]}
STUDENT = "cnn(width=4,depth=1)"


def edgekd(*args: str) -> list[str]:
    return [sys.executable, "-m", "edgekd.cli", *args]


def command(cmd: str, setup: Path, work: Path, limit: int, epochs: int, resume: bool) -> list[str]:
    """The command line of `cmd` writing into `work`; `resume` adds --resume where the command has it."""
    teacher, data = str(setup / "teacher.pt"), "fashion-mnist"
    small = ["--data", data, "--limit", str(limit), "--epochs", str(epochs), "--seed", "0", "--batch-size", "32"]
    again = ["--resume"] if resume else []
    if cmd == "distill":
        return edgekd(
            "distill", "--teacher", teacher, "--student", STUDENT, *small, "--out", str(work / "s.pt"), *again
        )
    if cmd == "ensemble":
        args = ["--student", "cnn(width=6,depth=1)", "--widths", "1.0,0.5", *small, "--out", str(work / "ens")]
        return edgekd("ensemble", *args, *again)
    if cmd == "export":
        return edgekd("export", str(setup / "student.pt"), "--target", TARGET, "--out", str(work / "build"))
    spec = {"teacher": teacher, "out": str(work / "sel"), "limit": limit, "epochs": epochs}
    return [sys.executable, "-m", "benchmarks.fault_injection", "--select-child", json.dumps(spec)]


def select_child(spec: dict[str, Any]) -> None:
    """`select` over SPACE with the tests' short timing (the process the trials kill)."""
    from edgekd.bench import TimingConfig
    from edgekd.bench.protocol import StopRule
    from edgekd.config import TrainConfig
    from edgekd.distill.task import DistillConfig
    from edgekd.select import SearchSpace, search
    from edgekd.select.pipeline import SelectConfig, select

    search.HEARTBEAT_S, search.GRACE_S = 2, 6
    select(
        Path(spec["teacher"]),
        SearchSpace.model_validate(SPACE),
        TARGET,
        "fashion-mnist",
        Path(spec["out"]),
        TrainConfig(epochs=spec["epochs"], limit=spec["limit"], batch_size=32),
        DistillConfig(),
        SelectConfig(budget_ms=50.0, probes=2, finish_top=len(SPACE["width"])),
        timing=TimingConfig(warmup_iters=2, warmup_s=0.0, min_iters=20, min_time_s=0.05),
        rule=StopRule(min_rounds=3, max_rounds=4, time_cap_s=5.0, resamples=200),
        progress=False,
    )


def launch(argv: list[str], log: Path, env: dict[str, str], kill_after: float | None) -> tuple[int, bool, float]:
    """Run `argv`; SIGKILL its process group after `kill_after` s. (exit code, killed, seconds)."""
    start = time.perf_counter()
    with open(log, "a") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            rc = proc.wait(timeout=kill_after)
            killed = False
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            rc, killed = proc.wait(), True
    return rc, killed, time.perf_counter() - start


# -- what a run left --------------------------------------------------------------------------------


def outcome(cmd: str, work: Path) -> dict[str, Any]:
    """The final metrics a run left in `work`: what must equal the reference's."""
    import torch

    if cmd in ("distill", "ensemble"):
        path = work / ("s.pt" if cmd == "distill" else "ens/family.pt")
        payload = torch.load(path, map_location="cpu", weights_only=True)
        result = {"weights": weights(path), "test_acc": payload["meta"]["test_acc"]}
        if cmd == "ensemble":
            manifest = json.loads((work / "ens" / "ensemble.json").read_text())
            result["students"] = [(s["arch"], s["val_acc"], s["test_acc"]) for s in manifest["students"]]
        return result
    if cmd == "export":
        build = work / "build"
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(build.glob("*.onnx"))}
    sel = json.loads((work / "sel" / "selection.json").read_text())
    chosen = sel["chosen"]
    done = [Path(c["checkpoint"]) for c in sel["candidates"] if c.get("checkpoint")]
    students = {path.parent.name: weights(path) for path in done if path.is_file()}
    return {"chosen": chosen["arch"], "val_acc": chosen["val_acc"], "test_acc": chosen.get("test_acc"), **students}


def weights(path: Path) -> str:
    """sha256 over a checkpoint's tensors (its metadata holds times and paths that differ by run)."""
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    digest = hashlib.sha256()
    for key in sorted(state):
        digest.update(key.encode() + state[key].contiguous().numpy().tobytes())
    return digest.hexdigest()


def store_rows(cmd: str, work: Path) -> dict[str, Any]:
    """The final run's metric rows (distill, ensemble), the artifacts (export) or the study's trials (select)."""
    import torch

    if cmd in ("distill", "ensemble"):
        path = work / ("s.pt" if cmd == "distill" else "ens/family.pt")
        run_id = torch.load(path, map_location="cpu", weights_only=True)["meta"]["run_id"]
        db = path.parent / "edgekd.sqlite"
        rows = query(db, "SELECT epoch, name FROM metrics WHERE run_id = ?", (run_id,))
        return {"rows": sorted(f"{e}:{n}" for e, n in rows)}
    if cmd == "export":
        db = work / "build" / "edgekd.sqlite"
        return {"rows": [str(Path(p).name) for (p,) in query(db, "SELECT path FROM artifacts")][-1:]}
    return {
        "rows": sorted(study_keys(work / "sel" / "edgekd.sqlite")[0]),
        "running": study_keys(work / "sel" / "edgekd.sqlite")[1],
    }


def study_keys(db: Path) -> tuple[list[str], int]:
    """The candidate of every trial that stands (retried ones left out), and how many are left running."""
    import optuna

    from edgekd.select.search import trial_records

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = f"sqlite:///{db}"
    names = optuna.get_all_study_names(url)
    study = optuna.load_study(study_name=names[-1], storage=url)
    records = trial_records(study)
    return [r.key for r in records], sum(1 for r in records if r.state == "running")


def query(db: Path, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return list(conn.execute(sql, args).fetchall())


def integrity(work: Path) -> dict[str, int]:
    """Stores that fail `PRAGMA integrity_check`, duplicated and orphaned metric rows, over every store."""
    bad = dup = orphan = 0
    for db in work.rglob("*.sqlite"):
        if query(db, "PRAGMA integrity_check")[0][0] != "ok":
            bad += 1
        tables = {t for (t,) in query(db, "SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "metrics" in tables:
            dup += sum(
                n - 1
                for (n,) in query(
                    db,
                    "SELECT COUNT(*) FROM metrics WHERE epoch IS NOT NULL"
                    " GROUP BY run_id, epoch, name HAVING COUNT(*) > 1",
                )
            )
            orphan += query(db, "SELECT COUNT(*) FROM metrics WHERE run_id NOT IN (SELECT id FROM runs)")[0][0]
    return {"corrupt_stores": bad, "duplicate_rows": dup, "orphan_rows": orphan}


def truncated(work: Path) -> list[str]:
    """Files that do not load whole (JSON, torch checkpoints and states, ONNX), and staging leftovers."""
    import onnx
    import torch

    broken = []
    for path in sorted(work.rglob("*")):
        if path.name.endswith(".tmp"):
            broken.append(f"{path.relative_to(work)} (staging left behind)")
            continue
        if not path.is_file():
            continue
        try:
            if path.suffix == ".json":
                json.loads(path.read_text())
            elif path.suffix in (".pt", ".state"):
                torch.load(path, map_location="cpu", weights_only=True)
            elif path.suffix == ".onnx":
                onnx.load(str(path))
        except Exception as err:  # any failure to load counts: that is what is measured
            broken.append(f"{path.relative_to(work)} ({type(err).__name__})")
    return broken


def whole(cmd: str, work: Path, ref: dict[str, Any]) -> bool:
    """Whether the output a killed run left is a complete one: every file loads, the metrics are the
    reference's."""
    try:
        return not truncated(work) and outcome(cmd, work) == ref["outcome"]
    except Exception:  # a missing or unreadable output is not whole
        return False


def snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder` but the store (which a killed run may append to)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and ".sqlite" not in p.name
    }


# -- the experiment ---------------------------------------------------------------------------------

PREVIOUS = {"distill": "s.pt", "export": "build", "ensemble": "ens"}  # outputs a trial starts from


def setup(out: Path, limit: int, env: dict[str, str]) -> Path:
    """A tiny teacher, and a student for `export` to build."""
    folder = out / "setup"
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "student.pt").is_file():
        small = ["--data", "fashion-mnist", "--limit", str(limit), "--epochs", "2", "--batch-size", "32"]
        subprocess.run(
            edgekd("train-teacher", "--arch", "cnn(width=8,depth=1)", *small, "--out", str(folder / "teacher.pt")),
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        subprocess.run(
            edgekd(
                "distill",
                "--teacher",
                str(folder / "teacher.pt"),
                "--student",
                STUDENT,
                *small,
                "--out",
                str(folder / "student.pt"),
            ),
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return folder


def reference(cmd: str, out: Path, args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    path = out / "reference" / f"{cmd}.json"
    if path.is_file():
        return dict(json.loads(path.read_text()))
    work = out / "reference" / cmd
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    argv = command(cmd, out / "setup", work, args.limit, args.epochs, resume=False)
    rc, _, seconds = launch(argv, work / "log.txt", env, None)
    if rc != 0:
        raise SystemExit(f"reference {cmd} failed ({rc}); see {work / 'log.txt'}")
    record = {"seconds": seconds, "outcome": outcome(cmd, work), "rows": store_rows(cmd, work)}
    path.write_text(json.dumps(record, indent=2) + "\n")
    return record


def trial(
    cmd: str, i: int, ref: dict[str, Any], out: Path, args: argparse.Namespace, env: dict[str, str]
) -> dict[str, Any]:
    rng = random.Random(f"{args.seed}-{cmd}-{i}")
    work = out / "trials" / cmd / str(i)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    previous = PREVIOUS.get(cmd)
    if previous is not None:  # start from the reference's output: the kill must leave it as it was
        src = out / "reference" / cmd / previous
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, work / previous)
    if cmd == "select":  # the reference's store: its latency cache spares the screening's measurements
        (work / "sel").mkdir()
        shutil.copy2(out / "reference" / cmd / "sel" / "edgekd.sqlite", work / "sel" / "edgekd.sqlite")
    before = snapshot(work / previous) if previous and (work / previous).is_dir() else None
    before_file = hashlib.sha256((work / previous).read_bytes()).hexdigest() if previous == "s.pt" else None
    kill_at = rng.uniform(0.05, 1.0) * ref["seconds"]
    log = work / "log.txt"
    argv = command(cmd, out / "setup", work, args.limit, args.epochs, resume=False)
    rc, killed, _ = launch(argv, log, env, kill_at)
    kept = None
    if killed and before is not None:
        kept = snapshot(work / previous) == before
    elif killed and before_file is not None:
        kept = hashlib.sha256((work / previous).read_bytes()).hexdigest() == before_file
    if kept is False:  # killed after its output was renamed into place (while exiting): whole, and new?
        kept = "replaced whole" if whole(cmd, work, ref) else False
    rerun = command(cmd, out / "setup", work, args.limit, args.epochs, resume=True)
    rc2, _, seconds = launch(rerun, log, env, None)
    record: dict[str, Any] = {"command": cmd, "trial": i, "kill_at_s": round(kill_at, 3), "killed": killed}
    record.update({"first_rc": rc, "previous_kept": kept, "rerun_rc": rc2, "rerun_s": round(seconds, 2)})
    if rc2 != 0:
        record.update(identical=False, error=log.read_text()[-2000:])
        return record
    got, rows = outcome(cmd, work), store_rows(cmd, work)
    record["identical"] = got == ref["outcome"]
    record["outcome"] = got
    want, have = ref["rows"]["rows"], rows["rows"]
    record["rows_lost"] = len([r for r in set(want) if have.count(r) < want.count(r)])
    record["rows_duplicated"] = len(have) - len(set(have)) if cmd == "select" else 0
    record["trials_running"] = rows.get("running", 0)
    record.update(integrity(work))
    record["truncated"] = truncated(work)
    return record


def table(records: list[dict[str, Any]]) -> str:
    head = (
        "| command | trials | killed before finish | previous output intact | resumed identical | integrity ok"
        " | rows lost | rows duplicated | orphan rows | truncated files |\n|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for cmd in COMMANDS:
        rs = [r for r in records if r["command"] == cmd]
        if not rs:
            continue
        killed = [r for r in rs if r["killed"]]
        kept = [r for r in killed if r["previous_kept"] is not None]
        replaced = sum(1 for r in kept if r["previous_kept"] == "replaced whole")
        ok = sum(1 for r in rs if r.get("corrupt_stores", 1) == 0)
        lines.append(
            f"| {cmd} | {len(rs)} | {len(killed)} | "
            + (f"{sum(1 for r in kept if r['previous_kept'])}/{len(kept)}" if kept else "n/a (fresh folder)")
            + (f" ({replaced} replaced whole: killed while exiting)" if replaced else "")
            + f" | {sum(1 for r in rs if r.get('identical'))}/{len(rs)} | {ok}/{len(rs)}"
            + f" | {sum(r.get('rows_lost', 0) for r in rs)} | {duplicated(rs)}"
            + f" | {sum(r.get('orphan_rows', 0) for r in rs)} | {sum(len(r.get('truncated', [])) for r in rs)} |"
        )
    return head + "\n".join(lines) + "\n"


def duplicated(records: list[dict[str, Any]]) -> int:
    return sum(r.get("rows_duplicated", 0) + r.get("duplicate_rows", 0) for r in records)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fault_injection", description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=20, help="trials per command")
    parser.add_argument("--threads", type=int, default=1, help="threads per process (OMP/MKL)")
    parser.add_argument("--out", type=Path, help="records, references and trials (required)")
    parser.add_argument("--commands", default=",".join(COMMANDS))
    parser.add_argument("--limit", type=int, default=600, help="Fashion-MNIST training samples")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--select-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.select_child:
        select_child(json.loads(args.select_child))
        return 0
    if args.out is None:
        parser.error("--out is required")
    threads = str(args.threads)
    env = {
        **os.environ,
        "OMP_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
        "EDGEKD_CACHE": str(args.out / "cache"),
    }
    env.pop("EDGEKD_STORE", None)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parent.parent), env.get("PYTHONPATH", "")])
    args.out.mkdir(parents=True, exist_ok=True)
    setup(args.out, args.limit, env)
    runs = args.out / "runs"
    runs.mkdir(exist_ok=True)
    records = []
    for cmd in args.commands.split(","):
        ref = reference(cmd, args.out, args, env)
        for i in range(args.trials):
            path = runs / f"{cmd}-{i:03d}.json"
            if not path.is_file():
                record = trial(cmd, i, ref, args.out, args, env)
                path.write_text(json.dumps(record, indent=2, default=str) + "\n")
                print(f"{cmd} #{i}: killed={record['killed']} identical={record.get('identical')}", flush=True)
            records.append(json.loads(path.read_text()))
    text = table(records)
    (args.out / "results.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
