"""`edgekd run RECIPE.yaml` (and `edgekd demo`, a shipped recipe): the whole pipeline, stage by stage.

teacher (a checkpoint, or trained once and cached) -> built and measured on every target -> per target
a budget (fixed, or a share of the teacher's latency there) and a latency-aware selection over the
students (`edgekd.select.pipeline.select`), every selection sharing one students folder so a student
distilled for one target is reused by the next -> the chosen student built and measured -> summary.md,
summary.json and the reports. Finished stages are recorded (`stages.py`) and reused by a rerun.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Any

from edgekd import __version__
from edgekd._io import file_sha256
from edgekd.bench.protocol import DEFAULT_RULE, QUICK_RULE, QUICK_TIMING
from edgekd.config import cache_dir
from edgekd.distill.run import train_teacher
from edgekd.recipes.budget import budget_stage
from edgekd.recipes.measure import measured, profile_for, target_profile
from edgekd.recipes.schema import Recipe
from edgekd.recipes.stages import StageLog, data_key, stage_key
from edgekd.report import write_demo_summary, write_reports
from edgekd.select.pipeline import SelectConfig, select
from edgekd.select.space import FamilyGrid, SearchSpace, load_space
from edgekd.store import STORE_NAME
from edgekd.ui import console


def run_recipe(recipe: Recipe, *, progress: bool = True) -> dict[str, Any]:
    """Run every stage of `recipe` not finished before in its workdir; returns what summary.json holds."""
    start = time.perf_counter()
    workdir = recipe.outputs.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    log = StageLog(workdir)
    teacher, reused = teacher_stage(recipe, log)
    space = student_space(recipe, teacher)
    entry = {"name": "teacher", "arch": teacher_arch(recipe, teacher), "checkpoint": teacher, "method": "labels"}
    rows, selections = [], []
    for target in recipe.targets:
        row = measured(log, recipe, {**entry, "reused": reused}, target)
        budget, source, why = budget_stage(log, recipe, teacher, space, target, row)
        selection = select_stage(log, recipe, teacher, space, target, budget, progress)
        selection["budget_source"], selection["budget_why"] = source, why
        chosen = selection["chosen"]
        student = {"name": f"chosen-{target}", "arch": chosen["arch"], "checkpoint": Path(chosen["checkpoint"])}
        built = Path(chosen["artifact_dir"])
        rows += [row, measured(log, recipe, {**student, "method": f"{recipe.distill.method}, selected"}, target, built)]
        selections.append(selection)
    summary: dict[str, Any] = {
        "name": recipe.name,
        "quick": recipe.quick,
        "plan": plan_fields(recipe),
        "recipe": recipe.model_dump(mode="json"),
        "seconds": time.perf_counter() - start,
        "rows": rows,
        "selections": [selection_summary(s) for s in selections],
        "stages": log.events,
    }
    summary["files"] = write_summary(recipe, summary)
    return summary


def write_summary(recipe: Recipe, summary: dict[str, Any]) -> dict[str, str]:
    """summary.md and summary.json, then the recipe's reports of the run's store."""
    workdir = recipe.outputs.workdir
    files = write_demo_summary(workdir, summary)
    for path in write_reports(workdir, [f.value for f in recipe.outputs.reports]):
        files["html" if path.suffix == ".html" else f"report-{path.suffix[1:]}"] = str(path)
    return files


def plan_fields(recipe: Recipe) -> dict[str, Any]:
    """The demo's plan (teacher, space, epochs, limit), as summary.json has always said it."""
    students = recipe.students
    return {
        "teacher": recipe.teacher.arch or str(recipe.teacher.checkpoint),
        "space": students.space if students.space is not None else list(students.archs or ()),
        "teacher_epochs": recipe.teacher.epochs,
        "student_epochs": recipe.training.epochs,
        "limit": recipe.training.limit,
    }


def cached_teacher(recipe: Recipe) -> Path:
    """Where an `arch` teacher of these settings is cached (EDGEKD_CACHE/teachers)."""
    arch, cfg = recipe.teacher.arch, recipe.teacher_config()
    parts = [__version__, arch, data_key(recipe.data), cfg.model_dump()]
    key = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir() / "teachers" / f"{arch}-{key}.pt"


def teacher_stage(recipe: Recipe, log: StageLog) -> tuple[Path, bool]:
    """The teacher checkpoint, and whether it was reused (given, finished here before, or cached)."""
    if recipe.teacher.checkpoint is not None:
        return recipe.teacher.checkpoint, True
    target, cached = recipe.outputs.workdir / "teacher.pt", cached_teacher(recipe)
    key = stage_key(cached.name)
    done = log.finished("teacher", key, target)
    if done is not None and done["sha256"] == file_sha256(target):
        console.print(f"[bold]teacher[/]: reusing {target}")
        log.reuse("teacher", key, target)
        return target, True
    reused = cached.is_file()
    if reused:
        console.print(f"[bold]teacher[/]: reusing {cached}")
        shutil.copyfile(cached, target)
    else:
        cfg = recipe.teacher_config()
        console.print(f"[bold]teacher[/]: training {recipe.teacher.arch} for {cfg.epochs} epoch(s)")
        store = recipe.outputs.workdir / STORE_NAME
        train_teacher(str(recipe.teacher.arch), recipe.data, target, cfg, resume=True, store=store)
        cached.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(target, cached)
    log.record("teacher", key, {"checkpoint": str(target), "sha256": file_sha256(target), "trained": not reused})
    return target, reused


def teacher_arch(recipe: Recipe, teacher: Path) -> str:
    if recipe.teacher.arch is not None:
        return recipe.teacher.arch
    from edgekd.models import ArchSpec
    from edgekd.models.checkpoint import load_checkpoint

    return ArchSpec.model_validate(load_checkpoint(teacher)["arch"]).label()


def student_space(recipe: Recipe, teacher: Path) -> str | SearchSpace:
    """The recipe's search space, or a space of its listed archs at the teacher's input and classes."""
    if recipe.students.space is not None:
        return recipe.students.space
    from edgekd.models import parse_arch
    from edgekd.models.checkpoint import load_checkpoint

    dims = load_checkpoint(teacher)["arch"]
    specs = [parse_arch(a) for a in recipe.students.archs or ()]
    return SearchSpace(
        name="archs",
        families=tuple(FamilyGrid.model_validate({"family": s.family, **s.params}) for s in specs),
        image_size=(int(dims["image_size"]),),
        in_channels=int(dims["in_channels"]),
        num_classes=int(dims["num_classes"]),
    )


def select_key(recipe: Recipe, teacher: Path, space: str | SearchSpace, target: str, budget: float) -> str:
    """What decides a selection: teacher weights, candidates, target, data, training, task, budget, timing."""
    grid = (space if isinstance(space, SearchSpace) else load_space(space)).model_dump(mode="json")
    settings = [
        recipe.training.model_dump(),
        recipe.distill.task().model_dump(),
        recipe.timing.value,
        recipe.budget_rule.value,
        *([rank_by(recipe)] if rank_by(recipe) != "clean" else []),  # a clean-ranked recipe keeps its old keys
    ]
    profile = target_profile(recipe, target).model_dump(mode="json")
    return stage_key(file_sha256(teacher), grid, profile, data_key(recipe.data), settings, budget)


def select_stage(
    log: StageLog, recipe: Recipe, teacher: Path, space: str | SearchSpace, target: str, budget: float, progress: bool
) -> dict[str, Any]:
    """The selection for `target` (WORKDIR/select/TARGET/selection.json), or the finished one."""
    out = recipe.outputs.workdir / "select" / target
    key, stage = select_key(recipe, teacher, space, target, budget), f"select for {target}"
    if log.reuse(stage, key, out / "selection.json") is not None:
        console.print(f"[bold]select for {target}[/]: reusing {out / 'selection.json'}")
        selection: dict[str, Any] = json.loads((out / "selection.json").read_text())
        return selection
    label = recipe.students.space or "the recipe's archs"
    console.print(f"[bold]select for {target}[/]: budget {budget:.4f} ms ({recipe.budget.rule()}), space {label}")
    options = SelectConfig(
        budget_ms=budget,
        budget_rule=recipe.budget_rule,
        students=recipe.outputs.workdir / "students",
        rank_by=rank_by(recipe),
    )
    timing, rule = (QUICK_TIMING, QUICK_RULE) if recipe.quick else (None, DEFAULT_RULE)
    store = recipe.outputs.workdir / STORE_NAME
    args = (teacher, space, profile_for(recipe, target), recipe.data, out, recipe.training, recipe.distill.task())
    selection = select(*args, options, timing=timing, rule=rule, store=store, progress=progress)
    log.record(stage, key, {"selection": str(out / "selection.json")})
    return selection


def rank_by(recipe: Recipe) -> str:
    """What the selection ranks finished students on: clean validation accuracy unless `shift.rank_by`."""
    return recipe.shift.rank_by if recipe.shift is not None else "clean"


def selection_summary(sel: dict[str, Any]) -> dict[str, Any]:
    """What the summary says of one selection (the whole of it is in its selection.json)."""
    keys = ("budget_ms", "budget_source", "budget_rule", "met_budget", "missed_by_ms", "chosen", "front", "compute")
    extra = ("budget_verdict", "budget_why", "drift", "floor", "files", "rank_by")
    return {
        "target": sel["target"]["name"],
        **{k: sel[k] for k in keys},
        **{k: sel.get(k) for k in extra},
        "candidates": [
            {k: row.get(k) for k in ("arch", "params", "measured_ms", "ci_low_ms", "ci_high_ms", "rounds")}
            | {k: row.get(k) for k in ("val_acc", "rank_acc", "fate", "why")}
            for row in sel["candidates"]
        ],
    }
