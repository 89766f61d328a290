"""`edgekd demo` end to end on a small plan: every stage runs for real and the summary says what it measured."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgekd.cli import cli
from edgekd.demo import TARGETS, DemoPlan, _teacher, run_demo

SPACE = """
families:
  - family: cnn
    width: [4, 8]
    depth: [1]
image_size: [28]
in_channels: 1
num_classes: 10
"""


@pytest.mark.usefixtures("fmnist")
def test_demo_selects_a_student_per_target(tmp_path: Path) -> None:
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    plan = DemoPlan("cnn-s", str(space), teacher_epochs=2, student_epochs=2, limit=1500)
    summary = run_demo(tmp_path / "demo", plan=plan, budget_ms=100.0)
    rows = summary["rows"]
    assert [(r["name"], r["target"]) for r in rows] == [
        (name, t) for t in TARGETS for name in ("teacher", f"chosen-{t}")
    ]
    assert {r["bench"]["fingerprint"]["runtime"] for r in rows} == {"onnxruntime", "openvino"}
    for row in rows:
        assert row["artifact"]["parity"]["max_abs_diff"] < 1e-3
        assert row["bench"]["latency_ms"]["p50"] > 0
        assert 0.1 < row["bench"]["accuracy"] <= 1.0  # 10k real test images, above chance
        assert abs(row["bench"]["accuracy"] - row["test_acc_torch"]) < 0.01
    first, second = summary["selections"]
    for sel in (first, second):
        assert sel["budget_ms"] == 100.0 and sel["met_budget"] and sel["budget_source"] == "given"
        assert sel["chosen"]["arch"] in {"cnn(depth=1,width=4)", "cnn(depth=1,width=8)"}
        assert sum(c["fate"] == "chosen" for c in sel["candidates"]) == 1
    # the second target's study finds every student the first one trained: it trains nothing again
    assert first["compute"]["student_epochs"] > 0
    assert second["compute"]["student_epochs"] == 0
    assert second["compute"]["reused_epochs"] == first["compute"]["student_epochs"]
    files = summary["files"]
    assert json.loads(Path(files["json"]).read_text())["rows"][1]["method"] == "kd, selected"
    markdown = Path(files["markdown"]).read_text()
    assert all(f"## Selection for {t}" in markdown for t in TARGETS)
    html = Path(files["html"]).read_text()
    assert all(f"Selection for {t}" in html for t in TARGETS) and html.count("<svg") >= 5
    # the teacher is cached: a second demo reuses it instead of training again
    _, reused = _teacher(plan, tmp_path)
    assert reused and (tmp_path / "teacher.pt").is_file()


def test_demo_refuses_a_budget_that_is_not_positive(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["demo", "--quick", "--workdir", str(tmp_path / "d"), "--budget-ms", "0"])
    assert result.exit_code == 2
    assert "budget must be a positive number" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "d").exists()
