"""Commands that train: `train-teacher`, `distill`, `ensemble`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from edgekd.cli._app import (
    PathArg,
    accel_options,
    augment_options,
    augment_settings,
    cli,
    emit,
    guarded,
    print_training,
    train_config,
    training_json,
    training_options,
    weight_options,
    weights,
)
from edgekd.cli._domains import domain_options, held_out_report, print_held_out


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
@accel_options
@augment_options
@domain_options
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
    amp_dtype: str,
    compile_: bool,
    augment: str,
    views: int,
    mixup: float,
    warmup_epochs: float,
    preset: str | None,
    domains: str | None,
    hold_out: str | None,
) -> None:
    """Train a teacher (or any model on labels alone).

    --augment, --warmup-epochs and --preset train it as `distill` trains a student (a student alone on
    the same recipe is the baseline a distilled one is compared with); --augment draws a fresh view of each
    sample every epoch, and --views K from K fixed views instead, as a distilled student with a K-view
    teacher cache sees them.

    \b
    Examples:
      edgekd train-teacher --arch resnet --data fashion-mnist --epochs 5 --out teacher.pt
      edgekd train-teacher --arch resnet --hssakd --branches stage1,stage2 --epochs 5 --out teacher-hs.pt
      edgekd train-teacher --arch resnet --domains clean,contrast-2,blur-2 --hold-out rotate-3 --out t-dg.pt
      edgekd train-teacher --arch vit-s --augment standard --warmup-epochs 1 --epochs 40 --out t.pt
    """
    from edgekd.data.domains import parse_plan
    from edgekd.distill.run import train_teacher

    extra, _ = augment_settings(
        click.get_current_context(),
        preset,
        "",
        {"epochs": epochs, "augment": augment, "views": views, "mixup": mixup, "warmup_epochs": warmup_epochs},
    )
    epochs = extra.pop("epochs")
    cfg = train_config(epochs, limit, seed, batch_size, lr, device, amp_dtype=amp_dtype, compile=compile_, **extra)
    stages = [b.strip() for b in branches.split(",") if b.strip()] if branches is not None else None
    plan = parse_plan(domains, hold_out)
    result = train_teacher(
        arch,
        data,
        out,
        cfg,
        resume=resume,
        store=store,
        progress=not as_json,
        hssakd=hssakd,
        branches=stages,
        domains=plan,
    )
    emit({**training_json(result), **held_out_report(result, data, plan, limit)}, as_json, _printer)


def _list_methods(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from edgekd.distill.losses import LOSSES
    from edgekd.distill.methods import DEFAULTS, FALLBACK

    for name in LOSSES.names():
        d = DEFAULTS.get(name, FALLBACK)
        click.echo(f"{name:10s} ce-weight {d.ce_weight:g}, kd-weight {d.kd_weight:g}  {d.note}")
    click.echo(
        "recipes:   --recipe edgekd (default) | pkth: the authors' infoflow recipe (transfer loss alone unless"
        " --ce-weight, critical period per real epoch, Adam at a constant --lr, an auxiliary on its own"
        " settings: --auxiliary-epochs on labels, default 80, then half as many of transfer alone)"
    )
    click.echo(
        "logits:    --logit-kd W adds Hinton KD on the logits (--logit-temperature, default 1) to pkt, sp or"
        " infoflow. ViT -> cnn-xs, 100 epochs, 10% data, 3 seeds: pkt 85.0 -> 86.3%, sp 85.7 -> 86.0%,"
        " infoflow 83.7 -> 85.6%; kd alone 86.1% (benchmarks/results/kd_comparison-patient)"
    )
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
@click.option(
    "--no-cache",
    "--teacher-live",
    "no_cache",
    is_flag=True,
    help="run the teacher live on every batch (online distillation; needed for --mixup) instead of caching",
)
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
@click.option(
    "--recipe",
    type=click.Choice(["edgekd", "pkth"]),
    default="edgekd",
    show_default=True,
    help="pkth: the authors' infoflow recipe (see --list-methods)",
)
@click.option(
    "--auxiliary-epochs",
    type=click.IntRange(min=2),
    default=None,
    help="with --recipe pkth: the auxiliary's epochs on labels (default the authors' 80; transfer: half)",
)
@click.option(
    "--gradient-filter",
    type=click.Choice(["none", "agree", "confidence"]),
    default=None,
    help="kddg's gradient filter: confidence (default: KD scaled by the teacher's probability of the label),"
    " agree (KD only where the teacher is right) or none (see --list-methods)",
)
@click.option(
    "--logit-kd",
    "logit_kd",
    type=click.FloatRange(min=0),
    default=None,
    help="add a Hinton KD term on the logits to a feature method (pkt, sp, infoflow), at this weight",
)
@click.option(
    "--logit-temperature",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="the --logit-kd term's temperature (default 1)",
)
@training_options
@accel_options
@augment_options
@domain_options
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
    recipe: str,
    auxiliary_epochs: int | None,
    gradient_filter: str | None,
    logit_kd: float | None,
    logit_temperature: float | None,
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
    amp_dtype: str,
    compile_: bool,
    augment: str,
    views: int,
    mixup: float,
    warmup_epochs: float,
    preset: str | None,
    domains: str | None,
    hold_out: str | None,
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
      edgekd distill --teacher teacher.pt --student cnn-xs --method sp --logit-kd 1 --out s-sp-kd.pt
      edgekd distill --teacher teacher-hs.pt --student cnn-s --method hssakd --out s-hs.pt
      edgekd distill --teacher teacher.pt --student cnn-xs --preset patient --out s-patient.pt
      edgekd distill --teacher t-dg.pt --student cnn-xs --method kddg --domains clean,contrast-2,blur-2 \\
          --hold-out rotate-3,noise-3 --out s-kddg.pt
    """
    from edgekd.config import parse
    from edgekd.data.domains import parse_plan
    from edgekd.distill.run import distill
    from edgekd.distill.task import DistillConfig
    from edgekd.errors import UserError

    ctx = click.get_current_context()
    extra, preset_params = augment_settings(
        ctx,
        preset,
        method,
        {"epochs": epochs, "augment": augment, "views": views, "mixup": mixup, "warmup_epochs": warmup_epochs},
    )
    if logit_temperature is not None and logit_kd is None:
        raise UserError("--logit-temperature sets the --logit-kd term's temperature: add --logit-kd WEIGHT")
    chosen = weights(temperature, ce_weight, kd_weight)
    chosen["loss_params"] = {**preset_params, **chosen["loss_params"]}  # --temperature beats the preset
    if gradient_filter is not None:
        if method != "kddg":
            raise UserError("--gradient-filter is kddg's switch; add --method kddg or drop it")
        chosen["loss_params"]["filter"] = gradient_filter
    task = parse(
        DistillConfig,
        {
            "method": method,
            **chosen,
            "pairs": pairs,
            "n_pairs": n_pairs,
            "schedule": schedule,
            "cache": not no_cache,
            "auxiliary": auxiliary,
            "auxiliary_width": auxiliary_width,
            "recipe": recipe,
            "auxiliary_epochs": auxiliary_epochs,
            "logit_weight": logit_kd,
            "logit_temperature": logit_temperature,
        },
        "distillation options",
    )
    epochs = extra.pop("epochs")
    cfg = train_config(epochs, limit, seed, batch_size, lr, device, amp_dtype=amp_dtype, compile=compile_, **extra)
    plan = parse_plan(domains, hold_out)
    result = distill(
        teacher, student, data, out, cfg, task, resume=resume, store=store, progress=not as_json, domains=plan
    )
    emit({**training_json(result), **held_out_report(result, data, plan, limit)}, as_json, _printer)


def _printer(result: dict[str, Any]) -> None:
    print_training(result)
    print_held_out(result)


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

    cfg = train_config(epochs, limit, seed, batch_size, lr, device)
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
    emit(manifest, as_json, lambda m: print_ensemble(m, out))
