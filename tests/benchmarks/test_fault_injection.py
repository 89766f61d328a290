"""benchmarks/fault_injection.py: one killed-and-resumed distill trial end to end, and its store checks."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import fault_injection as fi
from edgekd.store import Store


def test_one_killed_distill_resumes_identical(tmp_path: Path, fmnist: str, capsys: object) -> None:
    out = tmp_path / "faults"
    args = ["--trials", "1", "--commands", "distill", "--limit", "200", "--epochs", "2", "--out", str(out)]
    assert fi.main(args) == 0
    record = json.loads((out / "runs" / "distill-000.json").read_text())
    assert record["rerun_rc"] == 0 and record["identical"], record
    assert record["corrupt_stores"] == record["duplicate_rows"] == record["orphan_rows"] == record["rows_lost"] == 0
    assert record["truncated"] == []
    assert record["previous_kept"] in (None, True)
    assert "| distill | 1 |" in (out / "results.md").read_text()
    assert fi.main(args) == 0  # resumable: the recorded trial is not run again
    assert json.loads((out / "runs" / "distill-000.json").read_text()) == record


def test_integrity_counts_duplicated_and_orphaned_rows(tmp_path: Path) -> None:
    store = Store(tmp_path / "edgekd.sqlite")
    run = store.start_run("distill", "s.pt", {})
    store.log_metric(run, "val_acc", 0.5, 1)
    with store.connect() as conn:  # what a resume that redid epoch 1 added before the store wrote it once
        sql = "INSERT INTO metrics(run_id, epoch, name, value, created) VALUES (?, 1, 'val_acc', 0.5, 0)"
        conn.execute(sql, (run,))
        conn.execute(sql, (run + 1,))  # a row of no run
    assert fi.integrity(tmp_path) == {"corrupt_stores": 0, "duplicate_rows": 1, "orphan_rows": 1}
    (tmp_path / "half.json").write_text('{"a": ')
    assert fi.truncated(tmp_path) == ["half.json (JSONDecodeError)"]
