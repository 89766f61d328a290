"""The federated report: a table of final accuracies with bytes per round, and an accuracy-per-round plot."""

from __future__ import annotations

import json
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


def federation(folder: Path, strategy: str, *accs: float) -> None:
    """A federation's folder as `edgekd federate` leaves it: model.pt with each round in its meta."""
    from edgekd.models import build_model, parse_arch, save_checkpoint

    spec = parse_arch("cnn-xs", in_channels=1, num_classes=10, image_size=28)
    meta = {"kind": "federated", "federation": {"strategy": strategy}, "history": history(*accs)}
    folder.mkdir(parents=True)
    save_checkpoint(folder / "model.pt", build_model(spec), spec, meta)


def test_edgekd_report_plots_accuracy_per_round_for_each_federation_in_a_folder(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from edgekd.cli import cli

    federation(tmp_path / "avg", "fedavg", 0.3, 0.35)
    federation(tmp_path / "gen", "fedgen", 0.2, 0.4, 0.5)
    (tmp_path / "notes").mkdir()  # a folder without a model is no federation
    result = CliRunner().invoke(cli, ["report", str(tmp_path)])
    assert result.exit_code == 0, result.output
    page = (tmp_path / "report.html").read_text()
    assert "<svg" in page and "fedavg" in page and "<td>fedgen</td><td>1</td><td>3</td><td>50.00</td>" in page
    assert "| fedavg | 1 | 2 | 35.00 |" in (tmp_path / "federated.md").read_text()
    assert set(json.loads((tmp_path / "report.json").read_text())["federations"]) == {"fedavg", "fedgen"}


def test_a_folder_without_store_or_federation_is_one_line(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from edgekd.cli import cli

    result = CliRunner().invoke(cli, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "no results store" in result.output and "no federation" in result.output
