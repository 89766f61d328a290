"""The federated report: a table of final accuracies with bytes per round, and an accuracy-per-round plot."""

from __future__ import annotations

from pathlib import Path

from edgekd.report.federated import final_table, write_federated_report


def history(*accs: float) -> list[dict[str, float]]:
    return [{"round": i + 1, "test_acc": a, "bytes_down": 2000.0, "bytes_up": 1000.0} for i, a in enumerate(accs)]


def test_final_table_formats_mean_and_std_over_runs() -> None:
    table = final_table({"fedgen α=0.1": [history(0.5, 0.7), history(0.5, 0.8)], "fedavg α=0.1": [history(0.6)]})
    lines = table.splitlines()
    assert lines[2] == "| fedgen α=0.1 | 2 | 2 | 75.00 ± 7.07 | 2.0 | 1.0 |"
    assert lines[3] == "| fedavg α=0.1 | 1 | 1 | 60.00 | 2.0 | 1.0 |"


def test_report_writes_markdown_beside_the_plot(tmp_path: Path) -> None:
    md = write_federated_report({"fedgen": history(0.2, 0.4), "fedavg": history(0.3, 0.35)}, tmp_path)
    assert "| fedgen | 1 | 2 | 40.00 |" in md.read_text()
    svg = (tmp_path / "federated.svg").read_text()
    assert svg.startswith("<svg") and "fedavg" in svg
