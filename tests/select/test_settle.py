"""The final measurement's second pass: a student whose interval holds the budget, its rounds stopped
short of the asked width, is measured again and its rounds of both passes pooled; one measured to the
asked width, or clear of the budget, is left as it was."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edgekd.bench import TimingConfig
from edgekd.bench.protocol import RoundStats, StopRule
from edgekd.select.pipeline import Pending, _latency_fields, settle

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
torch = pytest.importorskip("torch", reason="torch is needed to make the test model")

FAST = TimingConfig(warmup_iters=2, warmup_s=0.0, min_iters=20, min_time_s=0.02)
SHORT = StopRule(min_rounds=3, max_rounds=4, time_cap_s=5.0, resamples=200)
BUDGET = 1.0


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgekd.export import export_onnx

    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Flatten(), torch.nn.LazyLinear(10))
    model(torch.zeros(1, 1, 28, 28))
    return export_onnx(model.eval(), (1, 28, 28), tmp_path_factory.mktemp("settle") / "model.onnx")


def final(p50s: list[float], stopped_by: str) -> dict[str, Any]:
    """A first pass's `final` record, as `measure_finals` writes it, from synthetic round medians."""
    return {"precision": "fp32", **_latency_fields(RoundStats.from_p50s(p50s, SHORT, stopped_by)), "accuracy": 0.5}


def test_only_an_undecided_final_is_measured_again_with_its_rounds_pooled(onnx_file: Path) -> None:
    wide = [0.7, 0.9, 1.0, 1.1, 1.3]  # its interval holds the 1.0 ms budget
    finals = {
        "undecided": final(wide, "time_cap"),
        "precise": final(wide, "precision"),  # the asked width was reached: the verdict stands
        "clear": final([0.2, 0.25, 0.3, 0.35, 0.4], "time_cap"),  # wide, but clear of the budget
    }
    builds = {name: (onnx_file, {"artifact": onnx_file.name, "precision": "fp32"}) for name in finals}
    pending = Pending()

    settled = settle(finals, builds, pending, FAST, SHORT, BUDGET)

    assert settled["precise"] is finals["precise"] and settled["clear"] is finals["clear"]
    again = settled["undecided"]
    first, second = again["passes"]
    assert first == finals["undecided"]["round_stats"] and second["rounds"] >= SHORT.min_rounds
    assert again["round_stats"]["p50s_ms"] == [*first["p50s_ms"], *second["p50s_ms"]]
    assert again["rounds"] == len(wide) + second["rounds"] and again["stopped_by"] == second["stopped_by"]
    assert again["ci_low_ms"] <= again["p50_ms"] <= again["ci_high_ms"]
    assert again["accuracy"] == 0.5  # measured in the first pass; the second times only
    assert len(pending.benchmarks) == 1  # the second pass is stored like any measurement


def test_nothing_is_measured_when_every_verdict_is_clear(onnx_file: Path) -> None:
    finals = {"met": final([0.2, 0.25, 0.3], "time_cap"), "over": final([1.5, 1.6, 1.7], "max_rounds")}
    builds = {name: (onnx_file, {"artifact": onnx_file.name, "precision": "fp32"}) for name in finals}
    pending = Pending()
    assert settle(finals, builds, pending, FAST, SHORT, BUDGET) is finals and not pending.benchmarks
