"""The federated comparison's records and table: runs are found by path, the table averages over seeds,
and `--table-only` trains nothing."""

from __future__ import annotations

from pathlib import Path

from benchmarks import fed_comparison as fc
from benchmarks.kd_comparison import write_json


def test_table_only_reads_the_records(tmp_path: Path) -> None:
    for seed, acc in ((0, 0.6), (1, 0.7)):
        history = [
            {"round": 1, "test_acc": acc / 2, "bytes_down": 10.0, "bytes_up": 5.0},
            {"round": 2, "test_acc": acc},
        ]
        write_json(fc.record_path(tmp_path, 0.1, "fedgen", seed), {"history": history, "settings": {}})
    fc.main(["--out", str(tmp_path), "--table-only", "--alphas", "0.1,0.5", "--seeds", "0,1,2"])
    text = (tmp_path / "results.md").read_text()
    assert "| fedgen α=0.1 | 2 | 2 | 65.00 ± 7.07 |" in text
    assert (tmp_path / "alpha0.1.svg").is_file() and not (tmp_path / "alpha0.5.svg").exists()
