"""Folders are written whole or not at all (`edgekd._io.atomic_dir`), `edgekd export --out` included."""

from __future__ import annotations

import os
from pathlib import Path

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
