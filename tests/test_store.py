from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from edgekd.store import Store

WRITER = """
import sys
from edgekd.store import Store
store = Store(sys.argv[1])
run = store.start_run("test", sys.argv[2], {})
for i in range(150):
    store.log_metric(run, "step", float(i), epoch=i)
"""


def test_two_processes_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "edgekd.sqlite"
    Store(path)
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), f"w{i}"]) for i in range(2)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    store = Store(path)
    runs = store.runs("test")
    assert sorted(r["name"] for r in runs) == ["w0", "w1"]
    for run in runs:
        assert [m["value"] for m in store.metrics(run["id"])] == [float(i) for i in range(150)]


def test_benchmark_record_round_trips(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite")
    result = {
        "batch": 1,
        "latency_ms": {"p50": 1.5, "mean": 1.6},
        "accuracy": 0.9,
        "fingerprint": {"runtime": "onnxruntime", "precision": "fp32"},
    }
    store.log_benchmark("a/model.onnx", result)
    (row,) = store.benchmarks()
    assert row["p50_ms"] == 1.5 and row["runtime"] == "onnxruntime" and row["result"] == result


def test_an_epochs_metric_is_written_once(tmp_path: Path) -> None:
    """A run resumed after a kill between logging an epoch and saving its state logs that epoch again."""
    store = Store(tmp_path / "s.sqlite")
    run = store.start_run("distill", "s.pt", {})
    for _ in range(2):
        store.log_metric(run, "val_acc", 0.5, 1)
        store.log_metric(run, "note", 1.0)  # no epoch: every call is a row
    assert store.metrics(run) == [
        {"epoch": 1, "name": "val_acc", "value": 0.5},
        {"epoch": None, "name": "note", "value": 1.0},
        {"epoch": None, "name": "note", "value": 1.0},
    ]
