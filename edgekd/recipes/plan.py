"""`edgekd run --dry-run`: what a recipe run would do, stage by stage, and what it would reuse.

Nothing is trained, built, measured or written: the stage records of the workdir (`stages.py`) are
only read, with the same keys the runner computes, so "reuse" here means the run will reuse it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgekd.recipes.budget import recorded_budget
from edgekd.recipes.measure import build_folder, measure_key
from edgekd.recipes.runner import cached_teacher, select_key, student_space
from edgekd.recipes.schema import Recipe
from edgekd.recipes.stages import StageLog, stage_key
from edgekd.select.space import load_space


def dry_run(recipe: Recipe) -> dict[str, Any]:
    """The plan of `recipe`'s run: teacher, per-target stages with their budgets, candidates, reports."""
    log = StageLog(recipe.outputs.workdir)
    teacher, teacher_file = _teacher(recipe, log)
    return {
        "name": recipe.name,
        "workdir": str(recipe.outputs.workdir),
        "data": recipe.data,
        "training": recipe.training.model_dump(mode="json"),
        "timing": recipe.timing.value,
        "method": recipe.distill.method,
        "calibration": recipe.calibration,
        "teacher": teacher,
        "candidates": candidates(recipe),
        "space": recipe.students.space or "archs",
        "targets": [_target(recipe, log, teacher_file, t) for t in recipe.targets],
        "reports": ["summary.md", "summary.json"] + [f"report.{f.value}" for f in recipe.outputs.reports],
    }


def candidates(recipe: Recipe) -> list[str]:
    """The students the selection would consider (a space's grid points, before its limits)."""
    if recipe.students.space is None:
        return list(recipe.students.archs or ())
    return [spec.label() for spec in load_space(recipe.students.space).specs()]


def _teacher(recipe: Recipe, log: StageLog) -> tuple[dict[str, Any], Path | None]:
    """What the teacher stage would do, and the checkpoint it would give when it exists already."""
    spec = recipe.teacher
    if spec.checkpoint is not None:
        return {"action": "use", "path": str(spec.checkpoint)}, spec.checkpoint
    cached, here = cached_teacher(recipe), recipe.outputs.workdir / "teacher.pt"
    base = {"arch": spec.arch, "epochs": spec.epochs}
    if log.finished("teacher", stage_key(cached.name), here) is not None:
        return {**base, "action": "reuse", "path": str(here)}, here
    if cached.is_file():
        return {**base, "action": "copy from cache", "path": str(cached)}, cached
    return {**base, "action": "train", "path": str(here)}, None


def _target(recipe: Recipe, log: StageLog, teacher: Path | None, target: str) -> dict[str, Any]:
    """The stages for one target, each 'reuse' or 'run', and the budget when it is known already."""
    plan: dict[str, Any] = {"target": target, "budget_rule": recipe.budget.rule(), "budget_ms": recipe.budget.ms}
    plan.update(build="run", select="run", chosen="run")
    if teacher is None:
        return plan
    key = measure_key(recipe, teacher, target, build_folder(recipe, "teacher", target))
    row = log.finished(f"measure teacher on {target}", key, build_folder(recipe, "teacher", target) / "artifact.json")
    if row is None:
        return plan
    space = student_space(recipe, teacher)
    budget = recorded_budget(log, recipe, space, target, row)
    plan.update(build="reuse", budget_ms=budget)
    if budget is None:  # a separable budget not placed yet
        return plan
    out = recipe.outputs.workdir / "select" / target / "selection.json"
    skey = select_key(recipe, teacher, space, target, budget)
    if log.finished(f"select for {target}", skey, out) is None:
        return plan
    chosen = json.loads(out.read_text())["chosen"]
    built = Path(chosen["artifact_dir"])
    ckey = measure_key(recipe, Path(chosen["checkpoint"]), target, built)
    done = log.finished(f"measure chosen-{target} on {target}", ckey, built / "artifact.json")
    plan.update(select="reuse", chosen_arch=chosen["arch"], chosen="reuse" if done is not None else "run")
    return plan
