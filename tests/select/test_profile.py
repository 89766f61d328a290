"""`edgekd profile`: a tiny space measured, predicted and written out, end to end (quick rounds)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgekd.cli import cli
from edgekd.report.latency_table import latency_markdown

pytestmark = pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None, reason="onnxruntime not installed")

TINY = """
family: cnn
width: [4, 6, 8]
image_size: [16]
in_channels: 1
num_classes: 3
"""


def test_profile_measures_predicts_and_writes_table_and_plot(tmp_path: Path) -> None:
    space = tmp_path / "tiny.yaml"
    space.write_text(TINY)
    out = tmp_path / "profile"
    args = ["profile", "--space", str(space), "--target", "cpu-ort-fp32", "--threads", "1", "--quick", "--json"]
    result = CliRunner().invoke(cli, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [Path(p).name for p in data["files"].values()] == ["latency.json", "latency.md", "latency.png"]
    assert (out / "latency.png").read_bytes()[:4] == b"\x89PNG"
    rows = data["rows"]
    assert len(rows) == 3 and sum(r["probe"] for r in rows) == 2
    assert [r["measured_ms"] for r in rows] == sorted(r["measured_ms"] for r in rows)
    for r in rows:
        assert r["ci_low_ms"] <= r["measured_ms"] <= r["ci_high_ms"] and r["predicted_ms"] > 0
        assert r["rounds"] >= 3 and r["params"] > 0 and r["flops"] > 0
    assert data["held_out"]["n"] == 1 and data["threads"] == 1 and data["batch"] == 1
    assert data["floor_ms"] is not None and data["floor_ms"] > 0
    table = (out / "latency.md").read_text()
    assert table == latency_markdown(json.loads((out / "latency.json").read_text()))
    assert "cnn(width=6)" in table and "held out" in table and "within +-10%" in table


def test_profile_refuses_a_bad_batch_with_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["profile", "--space", "edge96", "--target", "cpu-ort-fp32", "--batch", "0"])
    assert result.exit_code == 2
