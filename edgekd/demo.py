"""`edgekd demo`: the whole pipeline on the embedded default (Fashion-MNIST, built-in models, CPU).

The demo is a shipped recipe, edgekd/recipes/demo.yaml (demo-quick.yaml with --quick), run by the
same runner as `edgekd run` (`edgekd.recipes.runner`): teacher (trained once, then reused from the
cache) -> built and measured on two CPU targets (ONNX Runtime and OpenVINO, FP32) -> for each target,
a latency budget (half the teacher's measured p50 unless `--budget-ms` names one) and a latency-aware
selection over the demo's student space -> the chosen student per target, measured with the one timing
protocol -> Markdown + JSON summary and the HTML report. The two selections share one students folder,
so a student distilled for the first target is reused, not trained again, by the second.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekd.recipes import shipped
from edgekd.recipes.load import Overrides, load_recipe
from edgekd.recipes.runner import run_recipe, teacher_stage
from edgekd.recipes.schema import Recipe
from edgekd.recipes.stages import StageLog

TARGETS = ("cpu-ort-fp32", "cpu-openvino-fp32")  # the shipped demo recipes' targets


@dataclass(frozen=True)
class DemoPlan:
    """Another teacher, space or length for the demo's recipe (tests keep the demo small with it)."""

    teacher: str
    space: str  # a built-in search space or a YAML path
    teacher_epochs: int
    student_epochs: int
    limit: int | None


def demo_recipe(
    quick: bool = False, *, workdir: Path | None = None, budget_ms: float | None = None, plan: DemoPlan | None = None
) -> Recipe:
    """The shipped demo recipe, with the command line's (or a plan's) values in place of its own."""
    overrides: Overrides = {}
    if workdir is not None:
        overrides[("outputs", "workdir")] = (str(workdir), "--workdir")
    if budget_ms is not None:
        overrides[("budget",)] = (budget_ms, "--budget-ms")
    if plan is not None:
        overrides[("teacher", "arch")] = (plan.teacher, "plan teacher")
        overrides[("teacher", "epochs")] = (plan.teacher_epochs, "plan teacher_epochs")
        overrides[("students", "space")] = (plan.space, "plan space")
        overrides[("training", "epochs")] = (plan.student_epochs, "plan student_epochs")
        overrides[("training", "limit")] = (plan.limit, "plan limit")
    return load_recipe(shipped("demo-quick" if quick else "demo"), overrides)


def _teacher(plan: DemoPlan, workdir: Path) -> tuple[Path, bool]:
    """The demo teacher of `plan` in `workdir`: reused from the cache when an identical one was trained."""
    return teacher_stage(demo_recipe(workdir=workdir, plan=plan), StageLog(workdir))


def run_demo(
    workdir: Path, *, quick: bool = False, plan: DemoPlan | None = None, budget_ms: float | None = None
) -> dict[str, Any]:
    """Run the demo recipe in `workdir` (what `edgekd demo` does); returns what summary.json holds."""
    return run_recipe(demo_recipe(quick, workdir=workdir, budget_ms=budget_ms, plan=plan))
