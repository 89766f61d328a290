"""The yardstick suite on synthetic measurements: a latency that the cost model can express is
predicted within 10% everywhere, and ranked as measured."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.predictor_yardstick import drift_removed, evaluate, spread
from edgekd.select.predictor import candidate_layers, choose_probes
from edgekd.select.space import SearchSpace

SPACE = {"families": [{"family": "cnn", "width": [2, 3, 4, 6, 8], "depth": [1, 2]}], "image_size": [12]}


def test_a_law_the_model_can_express_scores_perfectly(tmp_path: Path) -> None:
    candidates = SearchSpace.model_validate(SPACE).candidates()
    law = {c.key: 0.02 + sum(la.macs for la in candidate_layers(c)) * 1e-6 for c in candidates}
    noisy = {k: v * 1.03 for k, v in law.items()}  # a second run, 3% slower: the lower one counts
    data = {"target": {"name": "synthetic"}, "batch": 1, "runs": [law, noisy]}
    report = evaluate(candidates, data, choose_probes(candidates, 5), n_ranked=8, nodes={})
    assert report["method"].startswith("whole-model")  # no per-node times: the whole-model fit, and said
    assert report["held_out"] == report["held_out_whole_model"] == report["held_out_kernel"]
    assert report["measured_vs_measured_within"]["all"] == 1.0  # 3% apart
    assert report["held_out"]["n"] == len(candidates) - report["probes"]
    assert report["held_out"]["within"] == 1.0 and report["held_out"]["mape_pct"] < 2.0
    assert report["tau_measured_vs_measured"] == pytest.approx(1.0) and report["tau_predicted_vs_measured"] > 0.9
    assert report["ranked"] == 8 and [r["measured_ms"] for r in report["rows"]] == sorted(law.values())


def test_spread_takes_n_over_the_flops_order() -> None:
    candidates = SearchSpace.model_validate(SPACE).candidates()
    picked = spread(candidates, 4)
    ordered = sorted(candidates, key=lambda c: (c.flops, c.key))
    assert len(picked) == 4 and picked[0] == ordered[0] and picked[-1] == ordered[-1]
    assert spread(candidates, 50) == ordered


def test_drift_removed_scales_the_second_run_by_the_median_ratio() -> None:
    first, second = drift_removed([1.0, 2.0, 4.0], [1.3, 2.6, 4.0])
    assert first == [1.0, 2.0, 4.0] and second == pytest.approx([1.0, 2.0, 4.0 / 1.3])
