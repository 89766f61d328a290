"""Folders are written whole or not at all (`edgekd._io.atomic_dir`), `edgekd export --out` included."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from edgekd import api
from edgekd._io import atomic_dir
from edgekd.cli import cli
from edgekd.config import TrainConfig
from edgekd.store import Store


def test_success_replaces_and_merges(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    (out / "keep.sqlite").write_text("store")
    with atomic_dir(out, merge=True) as tmp:
        (tmp / "old.txt").write_text("new")
        assert not (out / "old.txt").read_text() == "new"
    assert (out / "old.txt").read_text() == "new" and (out / "keep.sqlite").read_text() == "store"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_failure_leaves_the_old_folder(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "a").write_text("a")
    with pytest.raises(RuntimeError), atomic_dir(out) as tmp:
        (tmp / "a").write_text("half")
        raise RuntimeError
    assert (out / "a").read_text() == "a"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_killed_writers_staging_folder_is_swept(tmp_path: Path) -> None:
    import socket

    host = socket.gethostname().replace(".", "-")
    stale = tmp_path / f".out.{host}.999999999.abc.tmp"  # no such pid
    stale.mkdir()
    with atomic_dir(tmp_path / "out"):
        pass
    assert not stale.exists()


def test_failed_export_keeps_the_previous_one(tmp_path: Path, fmnist: str) -> None:
    teacher = tmp_path / "t.pt"
    api.train_teacher("cnn-xs", fmnist, teacher, TrainConfig(epochs=1, limit=100), progress=False)
    out = tmp_path / "build"
    ok = CliRunner().invoke(cli, ["export", str(teacher), "--target", "cpu-ort-fp32", "--out", str(out)])
    assert ok.exit_code == 0, ok.output
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir() if not p.name.startswith("edgekd.sqlite")}
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(os.urandom(64))
    failed = CliRunner().invoke(cli, ["export", str(bad), "--target", "cpu-ort-fp32", "--out", str(out)])
    assert failed.exit_code == 2, failed.output
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.name in before} == before
    again = CliRunner().invoke(cli, ["export", str(teacher), "--target", "cpu-ort-fp32", "--out", str(out)])
    assert again.exit_code == 0, again.output
    assert len(Store(out / "edgekd.sqlite").query("SELECT id FROM artifacts")) == 2  # the store was kept
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def _host() -> str:
    import socket

    return socket.gethostname().replace(".", "-")


def test_a_killed_writers_temporary_file_is_swept(tmp_path: Path) -> None:
    from edgekd._io import write_text

    stale = tmp_path / f".s.pt.state.{_host()}.999999999.abc.tmp"  # no such pid
    stale.write_bytes(b"half a checkpoint")
    write_text(tmp_path / "s.pt.state", "whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.pt.state"]


def test_a_swap_killed_between_its_renames_is_undone(tmp_path: Path) -> None:
    from edgekd._io import recover

    held = tmp_path / f".out.{_host()}.999999999.abc.old.tmp" / "out"  # the previous folder, moved aside
    held.mkdir(parents=True)
    (held / "a").write_text("previous")
    (tmp_path / f".out.{_host()}.999999999.xyz.tmp").mkdir()  # the new one, never renamed into place
    recover(tmp_path / "out")
    assert (tmp_path / "out" / "a").read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_merge_killed_half_way_is_finished(tmp_path: Path) -> None:
    held = tmp_path / f".out.{_host()}.999999999.abc.merge.old.tmp" / "out"
    held.mkdir(parents=True)
    (held / "edgekd.sqlite").write_text("store")
    (held / "a").write_text("previous")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a").write_text("new")
    with atomic_dir(tmp_path / "other"):
        pass  # another folder's writer leaves this one alone
    assert held.is_dir()
    with atomic_dir(tmp_path / "out", merge=True) as tmp:
        (tmp / "a").write_text("newer")
    assert (tmp_path / "out" / "edgekd.sqlite").read_text() == "store"
    assert (tmp_path / "out" / "a").read_text() == "newer"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other", "out"]


def _files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file() and ".sqlite" not in p.name
    }


def test_a_failed_or_interrupted_ensemble_keeps_the_previous_run(
    tmp_path: Path, fmnist: str, interrupted: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgekd.distill import ensemble_run

    out, cfg = tmp_path / "ens", TrainConfig(epochs=2, limit=200, batch_size=64)
    first = api.ensemble("cnn(width=6,depth=1)", fmnist, out, cfg, "1.0,0.5", progress=False)
    before = _files(out)
    with interrupted():
        api.ensemble("cnn(width=6,depth=1)", fmnist, out, cfg.model_copy(update={"seed": 1}), "1.0,0.5", progress=False)
    assert _files(out) == before

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("disk full")

    with monkeypatch.context() as m:
        m.setattr(ensemble_run, "_write_student", broken)
        with pytest.raises(RuntimeError):
            api.ensemble(
                "cnn(width=6,depth=1)", fmnist, out, cfg.model_copy(update={"seed": 1}), "1.0,0.5", resume=True
            )
    assert _files(out) == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    again = api.ensemble(
        "cnn(width=6,depth=1)", fmnist, out, cfg.model_copy(update={"seed": 1}), "1.0,0.5", resume=True
    )
    assert again["run_id"] != first["run_id"] and _files(out) != before
    assert not (tmp_path / ".ens.partial").exists()  # the work folder goes once the run is written


def test_a_failed_select_keeps_the_previous_selection(
    tmp_path: Path, fmnist_npz: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgekd.bench import TimingConfig
    from edgekd.bench.protocol import StopRule
    from edgekd.distill.task import DistillConfig
    from edgekd.select import SearchSpace, pipeline

    teacher = tmp_path / "t.pt"
    api.train_teacher("cnn(width=4,depth=1)", str(fmnist_npz), teacher, TrainConfig(epochs=1), progress=False)
    out = tmp_path / "sel"

    def select() -> dict[str, Any]:
        return pipeline.select(
            teacher, SearchSpace.model_validate({"family": "cnn", "width": [2, 4], "depth": [1]}), "cpu-ort-fp32",
            str(fmnist_npz), out, TrainConfig(epochs=1, batch_size=64), DistillConfig(),
            pipeline.SelectConfig(budget_ms=50.0, probes=2),
            timing=TimingConfig(warmup_iters=2, warmup_s=0.0, min_iters=20, min_time_s=0.05),
            rule=StopRule(min_rounds=3, max_rounds=3, time_cap_s=5.0, resamples=100), progress=False,
        )  # fmt: skip

    sel = select()
    assert Path(sel["chosen"]["artifact_dir"]).parent == out / "final" and (out / "selection.md").is_file()
    assert "/.sel." not in (out / "selection.json").read_text()  # no staging folder named
    built = Store(out / "edgekd.sqlite").query("SELECT path FROM artifacts")
    assert built and all(Path(r["path"]).parent.parent == out / "final" for r in built)
    before = {k: v for k, v in _files(out).items() if k.startswith(("final", "selection"))}

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the bench worker died")

    monkeypatch.setattr(pipeline, "measure_finals", broken)
    with pytest.raises(RuntimeError):
        select()
    assert {k: v for k, v in _files(out).items() if k.startswith(("final", "selection"))} == before
    assert len(Store(out / "edgekd.sqlite").runs("select")) == 1
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
