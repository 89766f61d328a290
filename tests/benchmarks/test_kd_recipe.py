"""The recipe benchmark's variant names: each token sets one training setting, a kd variant is paired
with the alone variant of the same data recipe, and the table reports the paired difference."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from benchmarks.kd_recipe import Variant, load_runs, parse_variant, table


def test_a_name_is_its_recipe() -> None:
    v = parse_variant("kd-none-e100-pure-t2")
    assert (v.method, v.augment, v.epochs, v.kd_weight, v.temperature) == ("kd", "none", 100, 1.0, 2.0)
    assert parse_variant("kd") == Variant("kd", "kd")  # defaults: standard, 4 views, 30 epochs, half, T = 1
    assert parse_variant("alone-std-fresh-e100-mix0.2").views == 0
    assert parse_variant("alone-std-fresh-e100-mix0.2").mixup == pytest.approx(0.2)
    with pytest.raises(ValueError, match="unknown token 'x3'"):
        parse_variant("kd-x3")
    with pytest.raises(ValueError, match="start with alone or kd"):
        parse_variant("pkt-e30")


def test_a_bad_variant_is_refused_in_one_line_with_status_2(capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks.kd_recipe import main

    with pytest.raises(SystemExit) as exit_info:
        main(["kd-x3", "--teacher", "t.pt"])
    assert exit_info.value.code == 2 and "unknown token 'x3'" in capsys.readouterr().err


def test_kd_is_paired_with_alone_on_the_same_data_recipe() -> None:
    assert parse_variant("kd-none-e100-pure-t2").baseline == "alone-none-e100"  # views mean nothing unaugmented
    assert parse_variant("kd-std-v32-e30-half").baseline == "alone-std-v32-e30"
    assert parse_variant("kd-std-fresh-e100-mix0.2").baseline == "alone-std-fresh-e100-mix0.2"


def test_the_table_gives_the_difference_paired_by_seed(tmp_path: Path) -> None:
    accs = {"alone-none-e30": {0: 0.80, 1: 0.82}, "kd-none-e30-pure": {0: 0.81, 1: 0.84, 2: 0.90}}
    for name, by_seed in accs.items():
        for seed, acc in by_seed.items():
            path = tmp_path / "runs" / name / f"seed{seed}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"variant": name, "seed": seed, "test_accuracy": acc}))
    runs = load_runs(tmp_path)
    assert runs["kd-none-e30-pure"][2] == pytest.approx(90.0)
    args = argparse.Namespace(teacher="t.pt", student="cnn-xs", data="fashion-mnist", limit=6000)
    text = table(runs, args)
    # seed 2 has no alone run: the pairs are seeds 0 and 1, +1 and +2 points
    assert "| kd-none-e30-pure | 3 | 85.00 ± 4.58 | 1.50 ± 0.71 (n=2) | 0,1,2 |" in text
    assert "| alone-none-e30 | 2 | 81.00 ± 1.41 | - | 0,1 |" in text
