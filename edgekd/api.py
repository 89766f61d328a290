"""The Python API: one function per pipeline stage, re-exported from the stage that owns it.

This module sits on top, beside the CLI: nothing inside edgekd imports it (tests/test_layers.py holds
that), so each stage calls the others' modules directly and this file stays a list of doors.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgekd._io import file_sha256
from edgekd.bench import bench_artifact as bench
from edgekd.config import TrainConfig
from edgekd.distill.cache import teacher_cache
from edgekd.distill.run import distill, train_teacher
from edgekd.distill.task import DistillConfig
from edgekd.export.run import export

__all__ = ["bench", "distill", "ensemble", "export", "file_sha256", "select", "teacher_cache", "train_teacher"]


def ensemble(
    student: str,
    data: str,
    out_dir: Path,
    cfg: TrainConfig,
    widths: str | Sequence[float] = "1.0,0.8,0.6,0.4,0.2",
    *,
    teacher: Path | None = None,
    guide: str | None = None,
    guide_weight: float | None = None,
    resume: bool = False,
    store: Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Online ensemble compression: train `student` at decreasing `widths` (fractions of its width) at once,
    on a shared stem, optionally guided by a `teacher` with the `guide` method on the logits (default kd).
    Writes OUT_DIR/family.pt, one OUT_DIR/student-w<fraction>.pt per width (a plain student, exported like
    any) and OUT_DIR/ensemble.json, the manifest it returns. See `edgekd.distill.ensemble`."""
    from edgekd.distill.ensemble_run import train_ensemble

    return train_ensemble(
        student,
        data,
        out_dir,
        cfg,
        widths,
        teacher=teacher,
        guide=guide,
        guide_weight=guide_weight,
        resume=resume,
        store=store,
        progress=progress,
    )


def select(
    teacher: Path,
    space: str | Path,
    target: str,
    data: str,
    out: Path,
    cfg: TrainConfig,
    task: DistillConfig,
    options: Any = None,
    *,
    timing: Any = None,
    store: Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Choose the most accurate student of `space` within a latency budget on `target` (measured there).

    `options` is an `edgekd.select.pipeline.SelectConfig` (budget, trials, pruner, workers, storage,
    shared students folder); `timing` an `edgekd.bench.TimingConfig`. Writes OUT/selection.json and
    OUT/selection.md and returns what the JSON holds. See `edgekd.select.pipeline` for the stages.
    """
    from edgekd.select.pipeline import select as run_selection

    return run_selection(
        teacher, space, target, data, out, cfg, task, options, timing=timing, store=store, progress=progress
    )
