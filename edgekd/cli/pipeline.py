"""Commands that chain the stages: `run`, `demo`, `select`, `report`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from edgekd.cli._app import (
    PathArg,
    cli,
    emit,
    guarded,
    train_config,
    weight_options,
    weights,
)
from edgekd.errors import UserError


def _run_recipe(recipe: Any, dry_run: bool, as_json: bool) -> None:
    """Run a loaded recipe (or, with dry_run, print its plan) and print where the summary went."""
    if dry_run:
        from edgekd.recipes.plan import dry_run as plan_of
        from edgekd.report.plan import render_plan

        emit(plan_of(recipe), as_json, lambda p: click.echo(render_plan(p)))
        return
    from edgekd.recipes.runner import run_recipe

    summary = run_recipe(recipe)
    emit(summary, as_json, lambda s: click.echo(f"summary: {s['files']['markdown']}"))


dry_run_option = click.option("--dry-run", is_flag=True, help="print the stages, budgets and reuse; run nothing")


@cli.command("demo")
@click.option("--quick", is_flag=True, help="a small slice of the data and one epoch per model (under 3 min)")
@click.option("--workdir", type=PathArg, default=None, help="run folder (default: edgekd-demo)")
@click.option(
    "--budget-ms",
    type=float,
    default=None,
    help="latency budget in ms on every target (default: the recipe's, placed between the candidates'"
    " latency intervals near half the teacher's p50 there)",
)
@dry_run_option
@click.option("--json", "as_json", is_flag=True)
@guarded
def demo_cmd(quick: bool, workdir: Path | None, budget_ms: float | None, dry_run: bool, as_json: bool) -> None:
    """The main job on the built-in default: train (or reuse) a teacher; on two CPU targets (ONNX
    Runtime and OpenVINO) measure it, then choose the most accurate student within a latency budget by
    measuring candidates there and distilling the ones in budget with KD; build, benchmark and report.
    It is the shipped recipe edgekd/recipes/demo.yaml (demo-quick.yaml with --quick), run as `edgekd run`
    runs any recipe; a rerun on the same workdir reuses the finished stages.

    \b
    Example:
      edgekd demo --quick --workdir /tmp/demo
    """
    from edgekd.demo import demo_recipe

    _run_recipe(demo_recipe(quick, workdir=workdir, budget_ms=budget_ms), dry_run, as_json)


@cli.command("run")
@click.argument("recipe", type=PathArg)
@click.option("--workdir", type=PathArg, default=None, help="run folder (default: the recipe's outputs.workdir)")
@dry_run_option
@click.option("--json", "as_json", is_flag=True)
@guarded
def run_cmd(recipe: Path, workdir: Path | None, dry_run: bool, as_json: bool) -> None:
    """Run the whole pipeline from one recipe: teacher, data, students, method, targets, budget,
    training, timing and outputs in one YAML file (see README, One recipe). A rerun on the same workdir
    reuses every finished stage (teacher, builds, selections) and runs the rest.

    \b
    Examples:
      edgekd run edgekd/recipes/demo-quick.yaml --dry-run
      edgekd run my-recipe.yaml --workdir runs/r1
    """
    from edgekd.recipes.load import Overrides, load_recipe

    overrides: Overrides = {("outputs", "workdir"): (str(workdir), "--workdir")} if workdir is not None else {}
    _run_recipe(load_recipe(recipe, overrides), dry_run, as_json)


@cli.command("report")
@click.argument("run_dir", type=PathArg)
@click.option("--format", "formats", default="html,md,json", show_default=True, help="comma list of html, md, json")
@guarded
def report_cmd(run_dir: Path, formats: str) -> None:
    """Write reports of a run folder (its results store): self-contained HTML with plots, Markdown, JSON.

    \b
    Example:
      edgekd report edgekd-demo --format html,md
    """
    from edgekd.report import write_reports

    for path in write_reports(run_dir, [f.strip() for f in formats.split(",") if f.strip()]):
        click.echo(f"wrote {path}")


@cli.command("select")
@click.option(
    "--teacher",
    type=PathArg,
    default=None,
    help="teacher checkpoint (from train-teacher); with --from-ensemble, only for the training-time estimate",
)
@click.option("--space", default=None, help="search space: a YAML file or a built-in space (small)")
@click.option(
    "--from-ensemble",
    type=PathArg,
    default=None,
    help="an `edgekd ensemble` run folder: its trained students are the candidates (instead of --space;"
    " its data and training settings apply)",
)
@click.option("--target", required=True, help="a profile name in targets/ (e.g. cpu-ort-fp32) or a YAML path")
@click.option("--budget-ms", type=float, default=None, help="latency budget in ms (default: the target's)")
@click.option(
    "--budget-rule",
    type=click.Choice(["upper", "p50"]),
    default="upper",
    show_default=True,
    help="the budget is met when the latency CI's upper end (upper) or its median over rounds (p50) is within it",
)
@click.option(
    "--data",
    default="fashion-mnist",
    show_default=True,
    help="fashion-mnist, a folder of class sub-folders, or an .npz with x and y",
)
@click.option("--out", type=PathArg, required=True, help="run folder: students, builds, selection.json/.md")
@click.option("--method", default="kd", show_default=True, help="distillation method (see distill --list-methods)")
@weight_options
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    default=9,
    show_default=True,
    help="the full training budget of a finished student (successive halving stops the rest early)",
)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="use the first N training samples")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--storage", default=None, help="study database URL (default: the run's store, sqlite:///OUT/edgekd.sqlite)"
)
@click.option("--study-name", default=None, help="join or resume this study (default: named after target and job)")
@click.option("--n-trials", type=click.IntRange(min=1), default=None, help="default: one per in-budget candidate")
@click.option(
    "--workers", type=click.IntRange(min=1), default=1, show_default=True, help="worker processes sharing the study"
)
@click.option(
    "--pruner",
    type=click.Choice(["sh", "hyperband"]),
    default="sh",
    show_default=True,
    help="successive halving or Hyperband over distillation epochs",
)
@click.option(
    "--finish-top",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="train this many of the best trials to the full budget if they were stopped early",
)
@click.option(
    "--students",
    type=PathArg,
    default=None,
    help="where candidates are distilled (default: OUT/students); selections for several targets that"
    " share it train each student once",
)
@click.option(
    "--rank-by",
    default="clean",
    show_default=True,
    help="rank finished students by validation accuracy: clean, under a corruption NAME-SEVERITY (blur-3,"
    " noise-2, ...), or mean-shift (the mean over every corruption at severity 3)",
)
@click.option("--store", type=PathArg, default=None, help="results store (default: OUT/edgekd.sqlite)")
@click.option("--json", "as_json", is_flag=True)
@guarded
def select_cmd(
    teacher: Path | None,
    space: str | None,
    from_ensemble: Path | None,
    target: str,
    budget_ms: float | None,
    budget_rule: str,
    data: str,
    out: Path,
    method: str,
    temperature: float | None,
    ce_weight: float | None,
    kd_weight: float | None,
    epochs: int,
    limit: int | None,
    seed: int,
    storage: str | None,
    study_name: str | None,
    n_trials: int | None,
    workers: int,
    pruner: str,
    finish_top: int,
    students: Path | None,
    rank_by: str,
    store: Path | None,
    as_json: bool,
) -> None:
    """Latency in the loop: choose the most accurate student that meets a latency budget on a target.

    Candidates over the budget (predicted, then measured) are dropped before any training; an Optuna
    study distils the rest with successive halving over epochs; the best are finished, built for the
    target (INT8 when it says so) and re-measured. Writes OUT/selection.json and OUT/selection.md: the
    chosen student, the Pareto front, and why every other candidate lost. Other processes or machines
    join the study with: python -m edgekd.select.search --storage URL --study NAME

    \b
    Example:
      edgekd select --teacher teacher.pt --space small --target cpu-ort-fp32 --budget-ms 0.2 \\
          --data fashion-mnist --epochs 9 --out runs/select
      edgekd select --from-ensemble runs/ens --target cpu-ort-fp32 --budget-ms 0.2 --out runs/select-ens
    """
    from edgekd.config import parse
    from edgekd.distill.task import DistillConfig
    from edgekd.report.selection import print_selection
    from edgekd.select.pipeline import SelectConfig, select

    options = parse(
        SelectConfig,
        {
            "budget_ms": budget_ms,
            "budget_rule": budget_rule,
            "n_trials": n_trials,
            "workers": workers,
            "pruner": pruner,
            "finish_top": finish_top,
            "storage": storage,
            "study_name": study_name,
            "students": students,
            "rank_by": rank_by,
        },
        "selection options",
    )
    if method == "kd" and temperature is None:
        # selection trains each candidate for a few epochs under successive halving: there kd's T = 4 costs
        # small students 6-13 points and T = 1 ties training alone (README, "Hinton KD on the smallest students")
        from edgekd.distill.presets import SAFE_KD_TEMPERATURE

        temperature = SAFE_KD_TEMPERATURE
    task = parse(
        DistillConfig, {"method": method, **weights(temperature, ce_weight, kd_weight)}, "distillation options"
    )
    if from_ensemble is not None:
        from edgekd.report.ensemble import print_ensemble_selection
        from edgekd.select.ensemble import select_from_ensemble

        chosen = select_from_ensemble(
            from_ensemble,
            target,
            out,
            budget_ms=budget_ms,
            teacher=teacher,
            task=task,
            store=store,
            progress=not as_json,
        )
        emit(chosen, as_json, print_ensemble_selection)
        return
    if teacher is None or space is None:
        raise UserError("select needs --teacher and --space, or --from-ensemble DIR (an `edgekd ensemble` run)")
    cfg = train_config(epochs, limit, seed, 128, 2e-3, "auto")
    selection = select(teacher, space, target, data, out, cfg, task, options, store=store, progress=not as_json)
    emit(selection, as_json, print_selection)
