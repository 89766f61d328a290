"""Four worker processes on one selection study, in SQLite and in PostgreSQL: every trial accounted for
(each candidate trained by exactly one trial, none lost, none left running), every candidate trained to
the same accuracy as one worker trains it, and a student as accurate as one worker's chosen.

PostgreSQL: set EDGEKD_TEST_POSTGRES to a database URL (`.ci/run` starts a local server and sets it);
without it that case skips."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import pytest

from edgekd.bench import TimingConfig
from edgekd.bench.protocol import StopRule
from edgekd.config import TrainConfig
from edgekd.distill.task import DistillConfig
from edgekd.select import SearchSpace
from edgekd.select.pipeline import SelectConfig, select
from edgekd.select.search import join_study, trial_records
from edgekd.store import STORE_NAME

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")

FAST = TimingConfig(warmup_iters=2, warmup_s=0.0, min_iters=20, min_time_s=0.05)
SHORT = StopRule(min_rounds=3, max_rounds=4, time_cap_s=5.0, resamples=200)
SPACE = {"family": "cnn", "width": [2, 4, 6, 8], "depth": [1]}
TRAIN = TrainConfig(epochs=2, batch_size=64, limit=400)
POSTGRES = os.environ.get("EDGEKD_TEST_POSTGRES")


@pytest.fixture(scope="module")
def teacher(fmnist_npz: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgekd import api

    out = tmp_path_factory.mktemp("teacher") / "teacher.pt"
    api.train_teacher("cnn(width=4,depth=1)", str(fmnist_npz), out, TrainConfig(epochs=1), progress=False)
    return out


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One results store: the candidates' latencies are measured once, then read from its cache."""
    return tmp_path_factory.mktemp("store") / STORE_NAME


def run(teacher: Path, data: Path, out: Path, store: Path, workers: int, storage: str | None) -> dict[str, Any]:
    options = SelectConfig(
        budget_ms=50.0,  # every candidate meets it: the choice is the most accurate on validation
        probes=2,
        finish_top=len(SPACE["width"]),  # every candidate trained fully, whatever the pruner stopped
        workers=workers,
        storage=storage,
        study_name=f"many-{uuid.uuid4().hex[:8]}",
    )
    space = SearchSpace.model_validate(SPACE)
    return select(
        teacher, space, "cpu-ort-fp32", str(data), out, TRAIN, DistillConfig(), options, timing=FAST, rule=SHORT,
        store=store, progress=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def one_worker(teacher: Path, fmnist_npz: Path, store: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    return run(teacher, fmnist_npz, tmp_path_factory.mktemp("one") / "run", store, 1, None)


@pytest.mark.parametrize(
    "database",
    [
        "sqlite",
        pytest.param(
            "postgresql",
            marks=pytest.mark.skipif(POSTGRES is None, reason="EDGEKD_TEST_POSTGRES is not set (.ci/run sets it)"),
        ),
    ],
)
def test_four_workers_account_for_every_trial_and_choose_as_one(
    database: str, teacher: Path, fmnist_npz: Path, store: Path, one_worker: Any, tmp_path: Path
) -> None:
    storage = POSTGRES if database == "postgresql" else None
    sel = run(teacher, fmnist_npz, tmp_path / "run", store, 4, storage)

    url = storage or f"sqlite:///{store}"
    study, job = join_study(url, sel["study"]["name"])
    records = trial_records(study)
    keys = sorted(r.key for r in records)
    assert keys == sorted(e.key for e in job.entries)  # each candidate once: none lost, none duplicated
    assert all(r.state in ("complete", "pruned") for r in records)  # none left running or failed
    assert sel["study"]["workers"] == 4 and len({r["trial"] for r in sel["candidates"]}) == len(SPACE["width"])
    logs = sorted(p.name for p in (tmp_path / "run" / "workers").iterdir())
    assert logs == [f"worker-{i}.log" for i in range(4)]
    # Every candidate is trained alike whichever worker trains it, so the same one is the most accurate.
    # Equally accurate ones are told apart by latency, which each run measures afresh (sub-0.1 ms models
    # here, a few rounds): among those the choice may differ, so it is checked by accuracy.
    accuracy = {r["arch"]: r.get("val_acc") for r in one_worker["candidates"]}
    assert {r["arch"]: r.get("val_acc") for r in sel["candidates"]} == accuracy
    top = max(v for v in accuracy.values() if v is not None)
    assert sel["chosen"]["val_acc"] == one_worker["chosen"]["val_acc"] == top
    assert accuracy[sel["chosen"]["arch"]] == top


def test_a_killed_workers_trial_is_retried_and_counted_once(
    teacher: Path, fmnist_npz: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker SIGKILLed mid-trial leaves it running with no heartbeat: the next worker fails it after
    the grace period, queues it again and trains it (resuming its checkpoint); it counts once."""
    import signal
    import subprocess
    import sys
    import time

    from optuna.trial import TrialState

    from edgekd.select import search

    entries = tuple(
        search.Entry(f"key{i}", f"cnn(depth=1,width={w})", 0.1, 100 * w, 1000 * w) for i, w in enumerate((2, 4))
    )
    job = search.SearchJob(
        teacher=str(teacher), data=str(fmnist_npz), out=str(tmp_path), store=str(tmp_path / STORE_NAME),
        train=TrainConfig(epochs=2, batch_size=64).model_dump(mode="json"),
        task=DistillConfig().model_dump(mode="json"), entries=entries, n_trials=2,
    )  # fmt: skip
    url = f"sqlite:///{tmp_path / STORE_NAME}"
    study = search.open_study(job, url, "killed")
    worker = subprocess.Popen([sys.executable, "-m", "edgekd.select.search", "--storage", url, "--study", "killed"])
    deadline = time.monotonic() + 120
    while not study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)  # its first heartbeat is written
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    monkeypatch.setattr(search, "GRACE_S", 2)
    monkeypatch.setattr(search, "HEARTBEAT_S", 1)
    again, job = search.join_study(url, "killed")
    search.run_trials(again, job)

    records = search.trial_records(again)
    assert sorted(r.key for r in records) == ["key0", "key1"]
    assert all(r.state in ("complete", "pruned") for r in records)
    states = [t.state for t in again.get_trials(deepcopy=False)]
    assert TrialState.RUNNING not in states and TrialState.WAITING not in states
    assert states.count(TrialState.FAIL) <= 1  # the killed one, retried (none if the kill came after it ended)


def test_a_rerun_with_re_measured_latencies_joins_the_same_study(tmp_path: Path) -> None:
    """The study's name and identity leave out the measured latencies: a rerun that measures them again
    (the cached intervals too wide for its stop rule) resumes its study instead of starting another."""
    from edgekd.select import search

    def job(latency: float, arch: str = "cnn(depth=1,width=2)") -> search.SearchJob:
        return search.SearchJob(
            teacher="t.pt", data="d", out=str(tmp_path), store=str(tmp_path / STORE_NAME), train={"epochs": 2},
            task={}, entries=(search.Entry("key0", arch, latency, 100, 1000),), n_trials=1,
        )  # fmt: skip

    assert job(0.0223).digest() == job(0.0231).digest()
    assert job(0.0223).digest() != job(0.0223, "cnn(depth=1,width=4)").digest()
    url = f"sqlite:///{tmp_path / STORE_NAME}"
    search.open_study(job(0.0223), url, "named")
    search.open_study(job(0.0231), url, "named")  # --study-name on a rerun: accepted, not "another selection"
