"""benchmarks/infoflow_weighting.py: atomic, resumable run records, its own schedules, and the table."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from edgekd.distill.schedules import SCHEDULES
from edgekd.distill.task import DistillConfig


@pytest.fixture(scope="module")
def script() -> ModuleType:
    from benchmarks import infoflow_weighting

    return infoflow_weighting


@pytest.fixture
def own_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """The script's schedules land in a copy of the registry, dropped after the test."""
    SCHEDULES.names()  # discovered before the copy
    monkeypatch.setattr(SCHEDULES, "_entries", dict(SCHEDULES._entries))


def test_every_variant_is_a_valid_task(script: ModuleType, own_registry: None) -> None:
    script.register_schedules()
    script.register_schedules()  # idempotent
    for name, fields in script.VARIANTS.items():
        if fields is not None:
            assert DistillConfig(**fields).method in ("pkt", "infoflow"), name
    assert SCHEDULES.create("critical-period-x10").weights(0.1, 3) == pytest.approx([10 * 0.7**5] * 2 + [1.0])
    assert SCHEDULES.create("linear-decay-x1").weights(0.25, 2) == pytest.approx([0.75, 1.0])


def test_runs_are_written_atomically_skipped_when_done_and_tabled(
    script: ModuleType,
    own_registry: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    accs = {("alone", 0): 0.90, ("alone", 1): 0.91, ("pkt", 0): 0.905, ("pkt", 1): 0.915}
    calls: list[tuple[str, int]] = []

    def fake_run(variant: str, seed: int, args: Any) -> dict[str, Any]:
        calls.append((variant, seed))
        return {
            "variant": variant,
            "seed": seed,
            "test_acc": accs[variant, seed],
            "seconds": 60.0,
            "map": {"pkt": 0.70 + 0.02 * seed}.get(variant),
        }

    monkeypatch.setattr(script, "run_one", fake_run)
    argv = ["--teacher", "t.pt", "--out", str(tmp_path), "--variants", "alone,pkt", "--seeds", "0,1"]
    script.main(argv)
    assert calls == [("alone", 0), ("pkt", 0), ("alone", 1), ("pkt", 1)]
    runs = tmp_path / "runs"
    assert sorted(p.name for p in runs.iterdir()) == ["alone-s0.json", "alone-s1.json", "pkt-s0.json", "pkt-s1.json"]
    assert json.loads((runs / "pkt-s1.json").read_text())["test_acc"] == 0.915
    script.main(argv)  # everything done: nothing runs again
    assert len(calls) == 4
    out = capsys.readouterr().out
    std = statistics.stdev([90.0, 91.0])
    pkt_row = next(line for line in out.splitlines() if line.startswith("pkt "))
    # mean +- std over seeds, then the paired difference to alone (+0.5 on both seeds: std 0)
    assert f"91.00 +- {std:4.2f}" in pkt_row and "0.50 +- 0.00" in pkt_row and "s1 91.50" in pkt_row
    assert f"90.50 +- {std:4.2f}" in out
    # mAP (%) where a run scored it: mean +- std over the seeds; nothing for runs without it
    assert f"71.00 +- {statistics.stdev([70.0, 72.0]):4.2f}" in pkt_row
    assert "71.00" not in next(line for line in out.splitlines() if line.startswith("alone "))


def test_unknown_variant_is_refused(script: ModuleType) -> None:
    with pytest.raises(SystemExit):
        script.parse_args(["--teacher", "t.pt", "--variants", "nope"])
