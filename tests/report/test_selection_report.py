"""Selection reports show every latency as median [CI low-high] with its rounds, and the floor; the
plots draw the intervals as error bars."""

from __future__ import annotations

from typing import Any

from edgekd.report.plots import pareto_plot
from edgekd.report.selection import explain, fmt_interval, headline, render_markdown

FLOOR = {"median_ms": 0.0042, "ci_low_ms": 0.0041, "ci_high_ms": 0.0043, "rounds": 5}


def selection() -> dict[str, Any]:
    chosen = {
        "arch": "cnn(width=4)",
        "p50_ms": 0.12,
        "ci_low_ms": 0.11,
        "ci_high_ms": 0.13,
        "rounds": 7,
        "precision": "fp32",
        "val_acc": 0.8,
        "test_acc": 0.79,
        "artifact_accuracy": 0.79,
    }
    row = {"arch": "cnn(width=8)", "params": 1234, "measured_ms": 0.3, "ci_low_ms": 0.28, "ci_high_ms": 0.33}
    reason = {"latency_ms": 0.3, "ci_low_ms": 0.28, "ci_high_ms": 0.33, "rounds": 6, "by_ms": 0.08}
    reason["budget_ms"] = 0.25
    row.update(rounds=6, fate="over_budget", why=explain("over_budget", {**reason, "source": "measured"}))
    return {
        "target": {"name": "cpu-ort-fp32", "runtime": "onnxruntime", "precision": "fp32", "device": "cpu"}
        | {"threads": 2, "batch": 1},
        "budget_ms": 0.25,
        "budget_rule": "upper",
        "met_budget": True,
        "missed_by_ms": None,
        "floor": FLOOR,
        "final_floor": FLOOR,
        "chosen": chosen,
        "front": [chosen],
        "front_at_epoch": {"epoch": 1, "points": []},
        "candidates": [row],
        "predictor": {"mape_pct": None, "measured_held_out": 0, "margin": None},
        "compute": {"student_epochs": 2, "reused_epochs": 0, "exhaustive_epochs": 4, "ratio": 0.5, "seconds": {}},
    }


def test_intervals_rounds_and_floor_are_in_the_markdown() -> None:
    sel = selection()
    assert fmt_interval(0.12, 0.11, 0.13, 7) == "0.120 [0.110-0.130] (7 rounds)"
    assert fmt_interval(0.12, None, None) == "0.120"
    text = render_markdown(sel)
    assert "0.120 [0.110-0.130] (7 rounds)" in text and "0.300 [0.280-0.330] (6 rounds)" in text
    assert "Per-call floor: 0.0042 [0.0041-0.0043] (5 rounds) ms" in text
    assert "the CI's upper end within the 0.250 ms budget" in headline(sel)
    assert "measured 0.300 [0.280-0.330] (6 rounds) ms, the CI's upper end against 0.250 ms" in text


def test_a_budget_inside_the_chosen_interval_is_reported_undetermined_not_missed() -> None:
    sel = selection() | {"budget_ms": 0.125, "met_budget": False, "missed_by_ms": 0.005}
    sel["budget_verdict"] = "undetermined"
    sel["chosen"] |= {"stopped_by": "time_cap", "passes": 2}
    line = headline(sel)
    assert "BUDGET UNDETERMINED: the 0.125 ms budget lies inside the chosen's interval" in line
    assert "after 7 rounds in 2 pass(es), stopped by time_cap" in line and "MISSED" not in line
    assert line in render_markdown(sel)
    assert "BUDGET MISSED: 0.125 ms" in headline(sel | {"budget_verdict": "missed"})


def test_a_change_of_the_machine_s_speed_is_a_warning_in_the_markdown() -> None:
    sel = selection() | {"drift": {"direction": "slower", "candidates": 5, "ratio_min": 1.5, "ratio_max": 2.5}}
    text = render_markdown(sel)
    assert "**Warning**: the machine's speed changed on cpu-ort-fp32: all 5 candidates measured again are" in text
    assert "slower than their cached measurement (1.50-2.50x)" in text and "Warning" not in render_markdown(selection())


def test_the_pareto_plot_draws_error_bars_and_the_floor() -> None:
    svg = pareto_plot(["a", "b"], [0.12, 0.3], [0.8, 0.85], budget_ms=0.25, intervals=[(0.11, 0.13), None])
    plain = pareto_plot(["a", "b"], [0.12, 0.3], [0.8, 0.85], budget_ms=0.25)
    assert "95% CI" in svg and "95% CI" not in plain
    assert "per-call floor" in pareto_plot(["a"], [0.12], [0.8], intervals=[(0.11, 0.13)], floor_ms=0.004)
