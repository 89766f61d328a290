"""The budgeted search as an Optuna study: which in-budget candidate distils best, with successive halving.

One trial distils one candidate. The search space is a categorical over the candidates that survived
latency screening (over-budget ones never reach the study); the objective distils the candidate with
`edgekd.distill.run.distill` for the full epoch budget and reports validation accuracy after every epoch, and the
pruner (successive halving, or Hyperband) stops the trials that trail at a rung. A pruned trial keeps
its checkpoint (`<student>.pt.state`), so the pipeline can finish it later by resuming.

Optuna's successive halving is asynchronous: a trial reaching a rung is compared with the trials that
reached it before, and the first ones are promoted while they lead. So the order matters, and when
there are trials for every survivor they are enqueued largest first (by FLOPs): a strong reference
early lets the pruner stop the rest after one epoch. With fewer trials than survivors, the seeded TPE
sampler picks them (a repeated candidate is skipped without training).

Everything a worker needs (teacher, data, training settings, candidates) is stored in the study's user
attributes, so any process that reaches the storage can join with only its URL and the study name:

    python -m edgekd.select.search --storage sqlite:///run/edgekd.sqlite --study NAME

Trials are handed out by the storage, so several workers (processes, or machines on one PostgreSQL)
share the `n_trials` between them; the files the job names (teacher, data, out) must be reachable by all.

A running trial beats a heartbeat into the storage. One whose worker was killed (or whose machine went
away) stops beating; after `GRACE_S` any worker marks it failed and queues it again, and the retry resumes
the candidate from its checkpoint. A worker stops only when the study holds its trials and none is
running, so every worker (and a rerun after a kill) ends with every trial accounted for.
"""

from __future__ import annotations

import argparse
import enum
import hashlib
import json
import os
import re
import subprocess
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekd.config import TrainConfig
from edgekd.distill.task import DistillConfig
from edgekd.errors import EdgekdError, UserError

if TYPE_CHECKING:
    import optuna

JOB_ATTR = "edgekd_job"
SKIPPED = "skipped"
REUSED = "reused_epochs"  # epochs a trial took from an earlier study's training instead of training them
HEARTBEAT_S, GRACE_S = 5, 30  # a running trial's heartbeat; silent this long, it is failed and retried


class PrunerKind(str, enum.Enum):
    SUCCESSIVE_HALVING = "sh"
    HYPERBAND = "hyperband"


@dataclass(frozen=True)
class Entry:
    """A screened candidate as the study knows it: enough to distil it and to say what it costs."""

    key: str
    arch: str
    latency_ms: float
    params: int
    flops: int


@dataclass(frozen=True)
class SearchJob:
    """What every trial of one study distils, and how; stored in the study so workers can join."""

    teacher: str
    data: str
    out: str
    store: str
    train: dict[str, Any]
    task: dict[str, Any]
    entries: tuple[Entry, ...]
    n_trials: int
    pruner: PrunerKind = PrunerKind.SUCCESSIVE_HALVING
    reduction_factor: int = 3
    seed: int = 0
    students: str | None = None  # where candidates are distilled; None = <out>/students
    teacher_sha256: str = ""

    @property
    def epochs(self) -> int:
        return int(self.train["epochs"])

    def entry(self, key: str) -> Entry:
        return next(e for e in self.entries if e.key == key)

    def checkpoint(self, key: str) -> Path:
        """Where candidate `key` is distilled: one folder per candidate and training settings, so trials
        of one study never share one, and a study over the same `students` folder (another target, a
        rerun) finds what an earlier one trained with the same teacher, data and settings."""
        entry = self.entry(key)
        slug = re.sub(r"[^A-Za-z0-9.]+", "-", entry.arch).strip("-")
        root = Path(self.students) if self.students else Path(self.out) / "students"
        return root / f"{slug}-{key[:6]}-{self.training_digest()}" / "student.pt"

    def training_digest(self) -> str:
        """What decides a distilled student's weights, besides its architecture."""
        settings = [self.teacher_sha256 or self.teacher, self.data, self.train, self.task]
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "pruner": self.pruner.value, "entries": [asdict(e) for e in self.entries]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SearchJob:
        return cls(
            **{**data, "pruner": PrunerKind(data["pruner"]), "entries": tuple(Entry(**e) for e in data["entries"])}
        )

    def digest(self) -> str:
        """What names the study: the job but the candidates' measured latencies, which a rerun measures
        again when the cached ones are too wide for its stop rule, and which move with the noise; with
        them in, a rerun after a kill would start a new study (or refuse a --study-name) instead of
        resuming its own."""
        data = self.to_json()
        data["entries"] = [{k: v for k, v in e.items() if k != "latency_ms"} for e in data["entries"]]
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]


def storage(url: str) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage for `url`; SQLite waits for its lock (several workers on one file) and
    shares the file with the results store (Optuna's tables have their own names)."""
    import optuna

    if url.startswith("sqlite:"):
        database = url.split("///", 1)[-1]
        if database and not Path(database).parent.is_dir():
            raise UserError(f"study storage folder does not exist: {Path(database).parent}; create it first")
    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite:") else {}
    try:
        with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna 5 (stable since 2.9)
            warnings.simplefilter("ignore", category=optuna.exceptions.ExperimentalWarning)
            retry = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)  # Optuna >= 4.9
            callback = (
                {"heartbeat_stale_trial_callback": retry(max_retry=3)}
                if retry is not None
                else {"failed_trial_callback": optuna.storages.RetryFailedTrialCallback(max_retry=3)}
            )
            rdb = optuna.storages.RDBStorage(
                _driver(url), engine_kwargs=kwargs, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S, **callback
            )
    except (ImportError, ValueError) as err:
        raise UserError(
            f"cannot use study storage {hide_password(url)} ({err}); give a database URL"
            " such as sqlite:///run/optuna.sqlite or postgresql://user@host/db"
        ) from None
    if url.startswith("sqlite:"):
        _serialise(rdb.engine)
    return rdb


def _driver(url: str) -> str:
    """A plain postgresql:// URL with the driver that is installed: SQLAlchemy 2.1 takes it to mean psycopg
    (3), while the dev extra and the README install psycopg2-binary."""
    import importlib.util

    if url.startswith("postgresql://") and importlib.util.find_spec("psycopg") is None:
        if importlib.util.find_spec("psycopg2") is not None:
            return "postgresql+psycopg2://" + url[len("postgresql://") :]
    return url


def _serialise(engine: Any) -> None:
    """Every SQLite transaction takes the write lock when it begins (SQLAlchemy's pysqlite recipe).

    Optuna hands a queued trial to one worker by reading it WAITING and writing it RUNNING in one
    transaction, with SELECT ... FOR UPDATE, which SQLite ignores; with pysqlite's deferred
    transactions two workers both read WAITING and both run the trial. BEGIN IMMEDIATE makes the
    second one wait and then read RUNNING, as the PostgreSQL row lock does.
    """
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _autocommit(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # pysqlite issues no BEGIN of its own

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # connections opened before the listeners are dropped


def hide_password(url: str) -> str:
    return re.sub(r"(://[^:/@]+:)[^@]+@", r"\1***@", url)


def _pruner(job: SearchJob) -> optuna.pruners.BasePruner:
    import optuna

    if job.pruner is PrunerKind.HYPERBAND:
        return optuna.pruners.HyperbandPruner(
            min_resource=1, max_resource=job.epochs, reduction_factor=job.reduction_factor
        )
    return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=job.reduction_factor)


def _load(job: SearchJob, url: str, name: str, worker: int = 0) -> optuna.Study:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(
        storage=storage(url),
        study_name=name,
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=job.seed + worker),
        pruner=_pruner(job),
        load_if_exists=True,
    )


def open_study(job: SearchJob, url: str, name: str) -> optuna.Study:
    """Create the study for `job` (or open the one of that name, which must hold the same job) and
    enqueue one trial per candidate, largest first, when there are trials enough for all."""
    study = _load(job, url, name)
    held = study.user_attrs.get(JOB_ATTR)
    if held is not None and SearchJob.from_json(held).digest() != job.digest():
        raise UserError(
            f"study {name!r} in {hide_password(url)} belongs to another selection (other candidates,"
            " data or settings); give another --study-name or --out"
        )
    if held is None:
        study.set_user_attr(JOB_ATTR, job.to_json())
        if job.n_trials >= len(job.entries):
            for entry in sorted(job.entries, key=lambda e: (-e.flops, -e.params, e.key)):
                study.enqueue_trial({"candidate": entry.key}, skip_if_exists=True)
    return study


def join_study(url: str, name: str, worker: int = 0) -> tuple[optuna.Study, SearchJob]:
    """Open an existing study and its job, as a worker does."""
    import optuna

    try:
        summary = optuna.load_study(study_name=name, storage=storage(url))
    except KeyError:
        raise UserError(f"no study {name!r} in {hide_password(url)}; start it with `edgekd select`") from None
    if JOB_ATTR not in summary.user_attrs:
        raise UserError(f"study {name!r} was not made by edgekd select (no job in its attributes)")
    job = SearchJob.from_json(summary.user_attrs[JOB_ATTR])
    return _load(job, url, name, worker), job


def run_trials(study: optuna.Study, job: SearchJob) -> None:
    """Run trials in this process until the study holds `job.n_trials` of them (any worker's) and none is
    running; a trial whose worker died (no heartbeat for GRACE_S) is failed, queued again and run."""
    import optuna
    from optuna.trial import TrialState

    def stop_when_taken(study: optuna.Study, _trial: optuna.trial.FrozenTrial) -> None:
        if _taken(study) >= job.n_trials:
            study.stop()

    while True:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
            if _taken(study) < job.n_trials or study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
                study.optimize(_objective(job), callbacks=[stop_when_taken], catch=(EdgekdError,), gc_after_trial=True)
                continue
        if study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            time.sleep(1.0)  # another worker's trial: wait for it to end, or to go stale
        else:
            return


def _retried(trials: list[optuna.trial.FrozenTrial]) -> set[int]:
    """The failed trials that were queued again (their retry stands for them)."""
    return {n for t in trials for n in t.system_attrs.get("retry_history", ())}


def _taken(study: optuna.Study) -> int:
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    retried = _retried(trials)
    return sum(
        1
        for t in trials
        if t.state is not TrialState.WAITING and SKIPPED not in t.user_attrs and t.number not in retried
    )


def _objective(job: SearchJob) -> Any:
    import optuna

    from edgekd.distill.run import distill

    keys = [e.key for e in job.entries]
    cfg, task = TrainConfig.model_validate(job.train), DistillConfig.model_validate(job.task)

    def objective(trial: optuna.Trial) -> float:
        key = trial.suggest_categorical("candidate", keys)
        entry = job.entry(str(key))
        for name, value in asdict(entry).items():
            trial.set_user_attr(name, value)
        reason = _skip_reason(trial, str(key), job.n_trials)
        if reason is not None:
            trial.set_user_attr(SKIPPED, reason)
            raise optuna.TrialPruned(reason)

        def report(row: dict[str, float]) -> None:
            epoch = int(row["epoch"])
            trial.report(float(row["val_acc"]), epoch)
            if epoch < job.epochs and trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {epoch}")

        out = job.checkpoint(entry.key)
        trial.set_user_attr("checkpoint", str(out))
        before = trained_before(out, cfg, task)
        trial.set_user_attr(REUSED, len(before.history))
        for row in before.history:  # what an earlier study trained: the pruner sees it as if trained now
            report(row)
        if before.test_acc is not None:
            trial.set_user_attr("test_acc", before.test_acc)
            return float(before.history[-1]["val_acc"])
        try:
            result = distill(
                Path(job.teacher),
                entry.arch,
                job.data,
                out,
                cfg,
                task,
                store=Path(job.store),
                resume=bool(before.history),
                progress=False,
                on_epoch_end=report,
            )
        except EdgekdError as err:  # the trial fails (recorded why); the study goes on
            trial.set_user_attr("error", str(err))
            raise
        trial.set_user_attr("test_acc", float(result.test_accuracy))
        return float(result.val_accuracy)

    return objective


@dataclass(frozen=True)
class Previous:
    """What an earlier study trained of a candidate: its epochs' metrics, and its test accuracy if done."""

    history: tuple[dict[str, float], ...] = ()
    test_acc: float | None = None


def trained_before(out: Path, cfg: TrainConfig, task: DistillConfig) -> Previous:
    """The finished checkpoint or the resumable state at `out`, if made with these settings.

    The folder is keyed by the settings already (`SearchJob.checkpoint`); the check here also keeps a
    file from another edgekd version, or a half-copied folder, from being taken for this run's."""
    import torch

    from edgekd.distill.trainer import state_path

    def same(train: Any, distill: Any) -> bool:
        result: bool = train == cfg.model_dump() and distill == task.model_dump()
        return result

    try:
        if state_path(out).is_file():
            state = torch.load(state_path(out), map_location="cpu", weights_only=True)
            if same(state.get("config"), state.get("task")):
                return Previous(tuple(state["history"]))
        elif out.is_file():
            from edgekd.models.checkpoint import load_checkpoint

            meta = load_checkpoint(out)["meta"]
            if same(meta.get("train"), meta.get("distill")) and meta.get("history"):
                return Previous(tuple(meta["history"]), float(meta["test_acc"]))
    except (OSError, RuntimeError, KeyError, TypeError, ValueError, UserError):
        pass  # unreadable: train afresh (the trainer writes atomically, so this is another file)
    return Previous()


def _skip_reason(trial: optuna.Trial, key: str, n_trials: int) -> str | None:
    """Why this trial must not train: its candidate is another trial's, or the study has its trials."""
    from optuna.trial import TrialState

    trials = trial.study.get_trials(deepcopy=False)
    retried = _retried(trials)
    earlier = [
        t
        for t in trials
        if t.number < trial.number
        and t.state is not TrialState.WAITING
        and SKIPPED not in t.user_attrs
        and t.number not in retried
    ]
    same = [t.number for t in earlier if t.params.get("candidate") == key]
    if same:
        return f"duplicate of trial {same[0]}"
    if len(earlier) >= n_trials:
        return f"beyond the study's {n_trials} trials"
    return None


@dataclass(frozen=True)
class TrialRecord:
    """One trial that trained (skipped ones are left out): its candidate, its validation accuracy per
    epoch, and how it ended (`complete`, `pruned`, `fail` or `running`)."""

    number: int
    key: str
    state: str
    history: tuple[tuple[int, float], ...]
    test_acc: float | None
    checkpoint: str | None
    error: str | None = None
    reused: int = 0  # epochs taken from an earlier study (trained before, not by this one)

    @property
    def epochs(self) -> int:
        return self.history[-1][0] if self.history else 0

    @property
    def val_acc(self) -> float | None:
        return self.history[-1][1] if self.history else None

    def at(self, epoch: int) -> float | None:
        return dict(self.history).get(epoch)


def trial_records(study: optuna.Study) -> list[TrialRecord]:
    """The trials that trained, first to last, whichever worker ran them."""
    from optuna.trial import TrialState

    records = []
    trials = study.get_trials(deepcopy=False)
    retried = _retried(trials)
    for t in trials:
        if t.state is TrialState.WAITING or SKIPPED in t.user_attrs or "candidate" not in t.params:
            continue
        if t.number in retried:
            continue
        records.append(
            TrialRecord(
                number=t.number,
                key=str(t.params["candidate"]),
                state=t.state.name.lower(),
                history=tuple(sorted((int(k), float(v)) for k, v in t.intermediate_values.items())),
                test_acc=t.user_attrs.get("test_acc"),
                checkpoint=t.user_attrs.get("checkpoint"),
                error=t.user_attrs.get("error"),
                reused=int(t.user_attrs.get(REUSED, 0)),
            )
        )
    return records


def spawn_workers(url: str, name: str, n: int, logs: Path) -> None:
    """Run `n` worker processes on the study and wait for them; each writes `logs/worker-I.log`."""
    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // n))}
    procs = []
    for i in range(n):
        with open(logs / f"worker-{i}.log", "w") as log:
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "edgekd.select.search",
                        "--storage",
                        url,
                        "--study",
                        name,
                        "--worker",
                        str(i),
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                )
            )
    failed = [(i, rc) for i, rc in enumerate(p.wait() for p in procs) if rc != 0]
    if failed:
        i, rc = failed[0]
        raise EdgekdError(f"search worker {i} exited with status {rc}; see {logs / f'worker-{i}.log'}")


def main(argv: list[str] | None = None) -> int:
    """A worker: join the study and run trials until it holds its `n_trials`."""
    parser = argparse.ArgumentParser(prog="python -m edgekd.select.search", description=main.__doc__)
    parser.add_argument("--storage", required=True, help="the study's database URL")
    parser.add_argument("--study", required=True, help="the study's name")
    parser.add_argument("--worker", type=int, default=0, help="worker index (seeds this worker's sampler)")
    args = parser.parse_args(argv)
    try:
        study, job = join_study(args.storage, args.study, args.worker)
        run_trials(study, job)
    except UserError as err:
        print(f"edgekd: error: {err}", file=sys.stderr)
        return 2
    except EdgekdError as err:
        print(f"edgekd: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
