"""The Python API: one function per pipeline stage, re-exported from the stage that owns it.

This module sits on top, beside the CLI: nothing inside edgekd imports it (tests/test_layers.py holds
that), so each stage calls the others' modules directly and this file stays a list of doors.
"""

from __future__ import annotations

from edgekd._io import file_sha256
from edgekd.bench import bench_artifact as bench
from edgekd.data.domains import DomainPlan, parse_plan
from edgekd.data.shift import shifted
from edgekd.distill.cache import teacher_cache
from edgekd.distill.ensemble_run import train_ensemble as ensemble
from edgekd.distill.run import distill, train_teacher
from edgekd.distill.shift_eval import domain_accuracy
from edgekd.export.run import export
from edgekd.select.pipeline import select

__all__ = [
    "DomainPlan",
    "bench",
    "distill",
    "domain_accuracy",
    "ensemble",
    "export",
    "file_sha256",
    "parse_plan",
    "select",
    "shifted",
    "teacher_cache",
    "train_teacher",
]
