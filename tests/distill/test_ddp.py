"""Data-parallel training under torchrun: 2 CPU processes with gloo, rank 0 writes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np

from edgekd.distill import _ddp
from edgekd.models import load_model
from edgekd.store import Store


def test_shards_partition_the_permutation() -> None:
    order = np.random.default_rng([0, 3]).permutation(101)
    shards = [_ddp.shard(order, _ddp.Rank(r, 2, r)) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == _ddp.shard_len(101, _ddp.Rank(0, 2, 0)) == 50
    joined = np.concatenate(shards)
    assert len(set(joined.tolist())) == 100 and set(joined.tolist()) == set(order[:100].tolist())
    assert _ddp.shard(order, _ddp.Rank()) is order  # a single process trains on the whole permutation


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_torchrun_two_processes_gloo(tmp_path: Path, fmnist: str) -> None:
    out = tmp_path / "t.pt"
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        f"--master_port={_free_port()}",
        "-m",
        "edgekd.cli",
        "train-teacher",
        "--arch",
        "cnn-xs",
        "--data",
        fmnist,
        "--epochs",
        "2",
        "--batch-size",
        "16",
        "--device",
        "cpu",
        "--out",
        str(out),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix in (".pt", ".state")) == ["t.pt"]
    store = Store(tmp_path / "edgekd.sqlite")
    runs = store.runs()
    assert len(runs) == 1
    metrics = store.metrics(runs[0]["id"])
    assert sorted(m["epoch"] for m in metrics if m["name"] == "train_loss") == [1, 2]
    _, spec, meta = load_model(out)
    assert spec.family == "cnn" and len(meta["history"]) == 2
    assert meta["val_acc"] > 0.3  # 720 real images, 2 epochs, batch 16 per rank: well above chance


def _torchrun(args: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        f"--master_port={_free_port()}",
        "-m",
        "edgekd.cli",
        *args,
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--device",
        "cpu",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_training_only_parts_train_under_torchrun_and_rank_0_alone_writes(tmp_path: Path, fmnist: str) -> None:
    """HSSAKD's branches and the ensemble's adapters live in the module DDP wraps (`Trainer(train_module=)`)."""
    from edgekd.distill.ensemble_run import load_manifest
    from edgekd.distill.hssakd import BRANCHES_KEY
    from edgekd.models.checkpoint import load_checkpoint

    _torchrun(["train-teacher", "--arch", "cnn-xs", "--hssakd", "--data", fmnist, "--out", str(tmp_path / "t.pt")])
    assert BRANCHES_KEY in load_checkpoint(tmp_path / "t.pt")
    _torchrun(
        ["ensemble", "--student", "cnn-s", "--widths", "1.0,0.5", "--data", fmnist, "--out", str(tmp_path / "ens")]
    )
    manifest = load_manifest(tmp_path / "ens")
    assert [s["fraction"] for s in manifest["students"]] == [1.0, 0.5]
    runs = Store(tmp_path / "ens" / "edgekd.sqlite").runs()
    assert sorted(r["name"] for r in runs) == ["family.pt", "student-w0.5.pt", "student-w1.0.pt"]  # once each
    assert not list(tmp_path.rglob("*.state"))
