"""The demo-runs table: per run and target, the budget, the chosen, its interval and whether it met the
budget (undetermined and drift said beside it), and per target how many runs met it."""

from __future__ import annotations

from typing import Any

from benchmarks.demo_runs import table


def selection(target: str, met: bool, **extra: Any) -> dict[str, Any]:
    chosen = {"arch": "cnn(width=8)", "p50_ms": 0.05, "ci_low_ms": 0.049, "ci_high_ms": 0.051}
    return {"target": target, "budget_ms": 0.06, "met_budget": met, "chosen": chosen, "floor_ms": 0.003, **extra}


def test_the_table_counts_met_runs_per_target_and_says_why_one_was_not() -> None:
    drift = {"direction": "slower", "candidates": 5, "ratio_min": 1.52, "ratio_max": 2.53}
    missed = [selection("ort", False, drift=drift), selection("ov", False, budget_verdict="undetermined")]
    records = [
        {"run": 0, "selections": [selection("ort", True), selection("ov", True)]},
        {"run": 1, "selections": missed},
        {"run": 2, "exit": 1, "error": "boom"},
    ]
    text = table(records)
    assert "| 0 | ort | 0.0600 | cnn(width=8) | 0.0500 [0.0490-0.0510] | 0.0030 | yes |" in text
    assert "| NO; machine slower 1.52-2.53x |" in text and "| NO (undetermined) |" in text
    assert "| 2 | - | - | demo failed (exit 1) | - | - | no |" in text
    assert "- ort: 1 of 2 runs met the budget (goal: all)" in text
    assert "- ov: 1 of 2 runs met the budget (goal: all)" in text
