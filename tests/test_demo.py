"""`edgekd demo` end to end on a small plan: every stage runs for real and the summary says what it measured."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgekd.demo import DemoPlan, _teacher, run_demo

TINY = DemoPlan("cnn-s", ("cnn-xs",), teacher_epochs=2, student_epochs=2, limit=1500)


@pytest.mark.usefixtures("fmnist")
def test_demo_runs_every_stage(tmp_path: Path) -> None:
    summary = run_demo(tmp_path / "demo", plan=TINY)
    rows = summary["rows"]
    assert [r["name"] for r in rows] == ["teacher", "student-cnn-xs"]
    for row in rows:
        assert row["artifact"]["parity"]["max_abs_diff"] < 1e-3
        assert row["bench"]["latency_ms"]["p50"] > 0 and row["bench"]["fingerprint"]["runtime"] == "onnxruntime"
        assert 0.1 < row["bench"]["accuracy"] <= 1.0  # 10k real test images, above chance
        assert abs(row["bench"]["accuracy"] - row["test_acc_torch"]) < 0.01
    files = summary["files"]
    assert json.loads(Path(files["json"]).read_text())["rows"][1]["method"] == "kd"
    assert "| cnn-xs | kd |" in Path(files["markdown"]).read_text()
    assert Path(files["html"]).read_text().count("<svg") >= 3
    # the teacher is cached: a second demo reuses it instead of training again
    _, reused = _teacher(TINY, tmp_path)
    assert reused and (tmp_path / "teacher.pt").is_file()
