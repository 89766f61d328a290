"""The edgekd command line: each command parses, builds a config, makes one API call and prints.

Exit status: 0 on success, 2 on bad input (one line naming the problem and the fix), 1 on a failure
inside edgekd.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

import click

from edgekd import __version__
from edgekd.bench.protocol import ProtocolError
from edgekd.errors import EdgekdError, UserError

PathArg = click.Path(path_type=Path)


def _fail(message: str, code: int) -> None:
    click.echo(f"edgekd: error: {message}", err=True)
    sys.exit(code)


def guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn edgekd's errors into the CLI contract: one line on stderr, exit 2 (bad input) or 1."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (UserError, ProtocolError) as err:
            _fail(str(err), 2)
        except EdgekdError as err:
            _fail(str(err), 1)
        except KeyboardInterrupt:
            _fail("interrupted; rerun the same command with --resume to continue from the last checkpoint", 130)
        except Exception as err:  # a bug: say so in one line, keep the traceback for EDGEKD_DEBUG=1
            if os.environ.get("EDGEKD_DEBUG"):
                raise
            _fail(f"internal error: {type(err).__name__}: {err} (rerun with EDGEKD_DEBUG=1 for the traceback)", 1)

    return wrapper


def _emit(obj: dict[str, Any], as_json: bool, human: Callable[[dict[str, Any]], None]) -> None:
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun, rank 0 alone reports
        return
    if as_json:
        click.echo(json.dumps(obj, indent=2, sort_keys=True, default=str))
    else:
        human(obj)


def training_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    for decorator in reversed(
        [
            click.option(
                "--data",
                default="fashion-mnist",
                show_default=True,
                help="fashion-mnist, a folder of class sub-folders, or an .npz with x and y",
            ),
            click.option("--epochs", type=click.IntRange(min=1), default=5, show_default=True),
            click.option("--out", type=PathArg, required=True, help="checkpoint to write"),
            click.option("--limit", type=click.IntRange(min=1), default=None, help="use the first N training samples"),
            click.option("--seed", type=int, default=0, show_default=True),
            click.option("--batch-size", type=click.IntRange(min=1), default=128, show_default=True),
            click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=2e-3, show_default=True),
            click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N"),
            click.option("--resume", is_flag=True, help="continue from the last epoch checkpoint of --out"),
            click.option("--store", type=PathArg, default=None, help="results store (default: beside --out)"),
            click.option("--json", "as_json", is_flag=True, help="print the result as JSON"),
        ]
    ):
        fn = decorator(fn)
    return fn


def weight_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--temperature, --ce-weight and --kd-weight (every command that distils)."""
    for decorator in reversed(
        [
            click.option(
                "--temperature",
                type=click.FloatRange(min=0, min_open=True),
                default=None,
                help="KD temperature (students of a few thousand parameters: try 1, see distill --list-methods)",
            ),
            click.option("--ce-weight", type=click.FloatRange(min=0), default=None, help="default: the method's"),
            click.option("--kd-weight", type=click.FloatRange(min=0), default=None, help="default: the method's"),
        ]
    ):
        fn = decorator(fn)
    return fn


def _weights(temperature: float | None, ce_weight: float | None, kd_weight: float | None) -> dict[str, Any]:
    """The DistillConfig fields `weight_options` set (None: the method's default)."""
    return {
        "ce_weight": ce_weight,
        "kd_weight": kd_weight,
        "loss_params": {"temperature": temperature} if temperature is not None else {},
    }


def _train_config(epochs: int, limit: int | None, seed: int, batch_size: int, lr: float, device: str) -> Any:
    from edgekd.config import TrainConfig, parse

    return parse(
        TrainConfig,
        {"epochs": epochs, "limit": limit, "seed": seed, "batch_size": batch_size, "lr": lr, "device": device},
        "training options",
    )


def _print_training(result: dict[str, Any]) -> None:
    click.echo(
        f"wrote {result['checkpoint']}: test accuracy {result['test_accuracy']:.4f}"
        f" (val {result['val_accuracy']:.4f}), {result['seconds']:.0f} s"
    )


def _training_json(result: Any) -> dict[str, Any]:
    return {
        "checkpoint": str(result.checkpoint),
        "test_accuracy": result.test_accuracy,
        "val_accuracy": result.val_accuracy,
        "seconds": result.seconds,
        "history": result.history,
        "run_id": result.run_id,
    }


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgekd")
def cli() -> None:
    """edgekd: distil a compact student that meets a latency budget on an edge target.

    \b
    Quick start:
      edgekd demo --quick                 # the whole pipeline on Fashion-MNIST, in minutes
      edgekd train-teacher --arch resnet --data fashion-mnist --epochs 5 --out t.pt
      edgekd distill --teacher t.pt --student cnn-s --method kd --epochs 5 --out s.pt
      edgekd export s.pt --target cpu-ort-fp32 --out build/s
      edgekd bench build/s --data fashion-mnist
    """


@cli.command("train-teacher")
@click.option("--arch", required=True, help="built-in name (resnet, cnn-s, ...), family(k=v,...) or module:factory")
@click.option(
    "--hssakd",
    is_flag=True,
    help="also train HSSAKD's auxiliary branches on rotated images (for distill --method hssakd)",
)
@click.option(
    "--branches",
    default=None,
    help="with --hssakd: stages to branch after, e.g. stage1,stage2 (default: every stage but the last)",
)
@training_options
@guarded
def train_teacher_cmd(
    arch: str,
    hssakd: bool,
    branches: str | None,
    data: str,
    epochs: int,
    out: Path,
    limit: int | None,
    seed: int,
    batch_size: int,
    lr: float,
    device: str,
    resume: bool,
    store: Path | None,
    as_json: bool,
) -> None:
    """Train a teacher (or any model on labels alone).

    \b
    Examples:
      edgekd train-teacher --arch resnet --data fashion-mnist --epochs 5 --out teacher.pt
      edgekd train-teacher --arch resnet --hssakd --branches stage1,stage2 --epochs 5 --out teacher-hs.pt
    """
    from edgekd.distill.run import train_teacher

    cfg = _train_config(epochs, limit, seed, batch_size, lr, device)
    stages = [b.strip() for b in branches.split(",") if b.strip()] if branches is not None else None
    result = train_teacher(
        arch, data, out, cfg, resume=resume, store=store, progress=not as_json, hssakd=hssakd, branches=stages
    )
    _emit(_training_json(result), as_json, _print_training)


def _list_methods(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from edgekd.distill.losses import LOSSES
    from edgekd.distill.methods import DEFAULTS, FALLBACK

    for name in LOSSES.names():
        d = DEFAULTS.get(name, FALLBACK)
        click.echo(f"{name:10s} ce-weight {d.ce_weight:g}, kd-weight {d.kd_weight:g}  {d.note}")
    ctx.exit(0)


@cli.command("distill")
@click.option("--teacher", type=PathArg, required=True, help="teacher checkpoint (from train-teacher)")
@click.option(
    "--student", required=True, help="built-in name (cnn-s, mobilenet-s, ...), family(k=v,...) or module:factory"
)
@click.option("--method", default="kd", show_default=True, help="distillation method (see --list-methods)")
@click.option(
    "--list-methods",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_list_methods,
    help="list the methods with their default weights, and exit",
)
@click.option(
    "--pairs", default=None, help="layer pairs student:teacher,... (default: chosen at matching relative depth)"
)
@click.option(
    "--n-pairs",
    type=click.IntRange(min=1),
    default=None,
    help="how many pairs to choose automatically (default: the method's)",
)
@click.option(
    "--schedule",
    default=None,
    help="layer-weight schedule for infoflow: critical-period (default), constant, linear-decay, last-only",
)
@weight_options
@click.option("--no-cache", is_flag=True, help="run the teacher live every epoch instead of caching its outputs")
@click.option(
    "--auxiliary",
    default="none",
    show_default=True,
    help="auxiliary teacher: auto (when teacher and student families differ), none, or a checkpoint",
)
@click.option(
    "--auxiliary-width",
    default=None,
    help="build the auxiliary teacher at this width: the student factory's argument, e.g. width=32"
    " (for a module:factory student; built-in students default to twice their width)",
)
@training_options
@guarded
def distill_cmd(
    teacher: Path,
    student: str,
    method: str,
    pairs: str | None,
    n_pairs: int | None,
    schedule: str | None,
    temperature: float | None,
    ce_weight: float | None,
    kd_weight: float | None,
    no_cache: bool,
    auxiliary: str,
    auxiliary_width: str | None,
    data: str,
    epochs: int,
    out: Path,
    limit: int | None,
    seed: int,
    batch_size: int,
    lr: float,
    device: str,
    resume: bool,
    store: Path | None,
    as_json: bool,
) -> None:
    """Distil one student from a teacher with a named method.

    Pair-based methods (pkt, infoflow, sp) pair layers at matching relative depth unless --pairs names
    them. The teacher's outputs are cached after the first epoch (under EDGEKD_CACHE) unless --no-cache.
    hssakd needs a teacher trained with 'train-teacher --hssakd'; its outputs on the four rotations of
    every image are cached like any teacher's.

    \b
    Examples:
      edgekd distill --teacher teacher.pt --student cnn-s --method kd --data fashion-mnist \\
          --epochs 5 --out student.pt
      edgekd distill --teacher teacher.pt --student cnn-s --method infoflow --schedule critical-period \\
          --epochs 5 --out student-if.pt
      edgekd distill --teacher teacher.pt --student cnn-s --method pkt --pairs pool:pool --out s.pt
      edgekd distill --teacher teacher-hs.pt --student cnn-s --method hssakd --out s-hs.pt
    """
    from edgekd.config import parse
    from edgekd.distill.run import distill
    from edgekd.distill.task import DistillConfig

    task = parse(
        DistillConfig,
        {
            "method": method,
            **_weights(temperature, ce_weight, kd_weight),
            "pairs": pairs,
            "n_pairs": n_pairs,
            "schedule": schedule,
            "cache": not no_cache,
            "auxiliary": auxiliary,
            "auxiliary_width": auxiliary_width,
        },
        "distillation options",
    )
    cfg = _train_config(epochs, limit, seed, batch_size, lr, device)
    result = distill(teacher, student, data, out, cfg, task, resume=resume, store=store, progress=not as_json)
    _emit(_training_json(result), as_json, _print_training)


def _out_folder(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`training_options`, with --out a run folder instead of a checkpoint."""
    fn = training_options(fn)
    helps = {
        "out": "run folder: family.pt, student-w<fraction>.pt per width, ensemble.json",
        "store": "results store (default: OUT/edgekd.sqlite)",
    }
    for param in getattr(fn, "__click_params__", []):
        param.help = helps.get(param.name, param.help)
    return fn


@cli.command("ensemble")
@click.option("--student", required=True, help="base student, scaled in width: cnn-s, 'cnn(width=16,depth=1)', ...")
@click.option(
    "--widths",
    default="1.0,0.8,0.6,0.4,0.2",
    show_default=True,
    help="fractions of the base width, strictly decreasing, in (0, 1]; the first is the pseudo-teacher",
)
@click.option("--teacher", type=PathArg, default=None, help="optional external teacher guiding every student")
@click.option("--guide", default=None, help="teacher's loss on each student's logits: a distill method (default kd)")
@click.option("--guide-weight", type=click.FloatRange(min=0), default=None, help="default: the method's kd weight")
@_out_folder
@guarded
def ensemble_cmd(
    student: str,
    widths: str,
    teacher: Path | None,
    guide: str | None,
    guide_weight: float | None,
    data: str,
    epochs: int,
    out: Path,
    limit: int | None,
    seed: int,
    batch_size: int,
    lr: float,
    device: str,
    resume: bool,
    store: Path | None,
    as_json: bool,
) -> None:
    """Online ensemble compression: train students of decreasing width on one shared stem at once, each
    learning from labels, the ensemble of all and the widest one's features; then write each alone.

    Every student-w<fraction>.pt is a plain built-in student: export, bench and select take it like any.

    \b
    Examples:
      edgekd ensemble --student cnn-s --widths 1.0,0.8,0.6,0.4,0.2 --epochs 5 --out runs/ens
      edgekd ensemble --student cnn-m --teacher teacher.pt --guide kd --epochs 5 --out runs/ens-kd
      edgekd select --target cpu-ort-fp32 --budget-ms 0.2 --from-ensemble runs/ens --out runs/sel
    """
    from edgekd.distill.ensemble_run import train_ensemble
    from edgekd.report.ensemble import print_ensemble

    cfg = _train_config(epochs, limit, seed, batch_size, lr, device)
    manifest = train_ensemble(
        student,
        data,
        out,
        cfg,
        widths,
        teacher=teacher,
        guide=guide,
        guide_weight=guide_weight,
        resume=resume,
        store=store,
        progress=not as_json,
    )
    _emit(manifest, as_json, lambda m: print_ensemble(m, out))


@cli.command("export")
@click.argument("model")
@click.option("--target", required=True, help="a profile name in targets/ (e.g. cpu-ort-fp32) or a YAML path")
@click.option("--out", type=PathArg, required=True, help="output folder")
@click.option("--data", default=None, help="data for parity and accuracy checks (default: the checkpoint's)")
@click.option("--calibration", default=None, help="calibration recipe for INT8 (name in calibration/ or YAML)")
@click.option(
    "--offline",
    is_flag=True,
    help="TensorRT targets, no TensorRT here: write the ONNX, trtexec.sh and the pre-check for the device",
)
@click.option("--store", type=PathArg, default=None)
@click.option("--json", "as_json", is_flag=True)
@guarded
def export_cmd(
    model: str,
    target: str,
    out: Path,
    data: str | None,
    calibration: str | None,
    offline: bool,
    store: Path | None,
    as_json: bool,
) -> None:
    """Export MODEL (checkpoint, .onnx or module:factory) to ONNX and build it for a target.

    \b
    Example:
      edgekd export student.pt --target cpu-ort-fp32 --out build/student
    """
    from edgekd.export.run import export
    from edgekd.report.text import print_artifact

    info = export(model, target, out, data=data, calibration=calibration, store=store, offline=offline)
    if offline:
        _emit(
            info,
            as_json,
            lambda i: click.echo(
                f"wrote {out / i['onnx']}, {out / i['trtexec']} and {out / i['check']} ({i['errors']} errors,"
                f" {i['warnings']} warnings in the TensorRT pre-check); run trtexec.sh on the device"
            ),
        )
    else:
        _emit(info, as_json, lambda i: print_artifact(i, out))


@cli.command("bench")
@click.argument("artifacts", type=PathArg, nargs=-1, required=True)
@click.option("--data", default=None, help="also measure accuracy on this data's test split")
@click.option("--batch", type=click.IntRange(min=1), default=None, help="batch size (default: the target's)")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="threads (default: the target's)")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="accuracy on the first N test samples")
@click.option("--quick", is_flag=True, help="fewer rounds and a 15 s cap (for smoke tests)")
@click.option(
    "--rounds-ci",
    type=click.FloatRange(min=0, min_open=True),
    default=0.05,
    show_default=True,
    help="rounds go on until every model's 95% CI is narrower than this fraction of its median",
)
@click.option("--time-cap-s", type=click.FloatRange(min=0, min_open=True), default=None, help="stop rounds after S s")
@click.option("--store", type=PathArg, default=None)
@click.option("--json", "as_json", is_flag=True)
@guarded
def bench_cmd(
    artifacts: tuple[Path, ...],
    data: str | None,
    batch: int | None,
    threads: int | None,
    limit: int | None,
    quick: bool,
    rounds_ci: float,
    time_cap_s: float | None,
    store: Path | None,
    as_json: bool,
) -> None:
    """Measure latency (and accuracy with --data) of artifacts, ONNX files or OpenVINO IRs.

    Several artifacts are compared side by side in one run: each in a warm process of its own, timed
    in interleaved rounds until every median's 95% CI is within --rounds-ci (or --time-cap-s is hit),
    beside a null model (same shapes, no compute) whose latency is the per-call floor.

    \b
    Examples:
      edgekd bench build/student --data fashion-mnist --json
      edgekd bench build/a build/b build/c --rounds-ci 0.03 --time-cap-s 300
    """
    from edgekd.bench import bench_artifacts
    from edgekd.report.text import print_bench, print_comparison

    result = bench_artifacts(
        list(artifacts),
        data=data,
        batch=batch,
        threads=threads,
        limit=limit,
        quick=quick,
        rel_width=rounds_ci,
        time_cap_s=time_cap_s,
        store=store,
    )
    _emit(result, as_json, print_bench if len(artifacts) == 1 else print_comparison)


def _run_recipe(recipe: Any, dry_run: bool, as_json: bool) -> None:
    """Run a loaded recipe (or, with dry_run, print its plan) and print where the summary went."""
    if dry_run:
        from edgekd.recipes.plan import dry_run as plan_of
        from edgekd.report.plan import render_plan

        _emit(plan_of(recipe), as_json, lambda p: click.echo(render_plan(p)))
        return
    from edgekd.recipes.runner import run_recipe

    summary = run_recipe(recipe)
    _emit(summary, as_json, lambda s: click.echo(f"summary: {s['files']['markdown']}"))


dry_run_option = click.option("--dry-run", is_flag=True, help="print the stages, budgets and reuse; run nothing")


@cli.command("demo")
@click.option("--quick", is_flag=True, help="a small slice of the data and one epoch per model (under 3 min)")
@click.option("--workdir", type=PathArg, default=None, help="run folder (default: edgekd-demo)")
@click.option(
    "--budget-ms",
    type=float,
    default=None,
    help="p50 latency budget on every target (default: half the teacher's measured p50 there)",
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
@click.option("--budget-ms", type=float, default=None, help="p50 latency budget in ms (default: the target's)")
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
@click.option("--store", type=PathArg, default=None, help="results store (default: OUT/edgekd.sqlite)")
@click.option("--json", "as_json", is_flag=True)
@guarded
def select_cmd(
    teacher: Path | None,
    space: str | None,
    from_ensemble: Path | None,
    target: str,
    budget_ms: float | None,
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
            "n_trials": n_trials,
            "workers": workers,
            "pruner": pruner,
            "finish_top": finish_top,
            "storage": storage,
            "study_name": study_name,
            "students": students,
        },
        "selection options",
    )
    task = parse(
        DistillConfig, {"method": method, **_weights(temperature, ce_weight, kd_weight)}, "distillation options"
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
        _emit(chosen, as_json, print_ensemble_selection)
        return
    if teacher is None or space is None:
        raise UserError("select needs --teacher and --space, or --from-ensemble DIR (an `edgekd ensemble` run)")
    cfg = _train_config(epochs, limit, seed, 128, 2e-3, "auto")
    selection = select(teacher, space, target, data, out, cfg, task, options, store=store, progress=not as_json)
    _emit(selection, as_json, print_selection)


@cli.command("package")
@click.argument("artifact", type=PathArg)
@click.option("--out", type=PathArg, required=True, help="bundle folder to write")
@click.option("--target", default=None, help="check that the export was built for this profile")
@click.option("--store", type=PathArg, default=None)
@click.option("--json", "as_json", is_flag=True)
@guarded
def package_cmd(artifact: Path, out: Path, target: str | None, store: Path | None, as_json: bool) -> None:
    """Deployment bundle of an export folder: the artifact, manifest.json (shapes, labels, hashes) and
    run.py, a runner that needs only the runtime on the device (no edgekd, no torch).

    \b
    Example:
      edgekd package build/student --out bundle/student
      # on the device:  python run.py verify && python run.py bench > results.json
      edgekd ingest results.json
    """
    from edgekd.bundle import package

    manifest = package(artifact, out, target, store=store)
    _emit(manifest, as_json, lambda m: click.echo(f"wrote bundle {out} (id {m.get('bundle_id', '?')})"))


@cli.command("ingest")
@click.argument("results_json", type=PathArg)
@click.option("--bundle", type=PathArg, default=None, help="the bundle the results came from")
@click.option("--store", type=PathArg, default=None)
@guarded
def ingest_cmd(results_json: Path, bundle: Path | None, store: Path | None) -> None:
    """Read a device's `run.py bench` JSON back into the results store.

    \b
    Example:
      edgekd ingest results.json --bundle bundle/student
    """
    from edgekd.bundle import ingest

    row = ingest(results_json, store, bundle=bundle)
    click.echo(f"ingested {results_json} as benchmark {row}")


def main() -> None:
    cli(prog_name="edgekd")


if __name__ == "__main__":
    main()
