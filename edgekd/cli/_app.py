"""The CLI's shared parts: the click group, the error contract (`guarded`), output (`emit`) and the
option groups that several commands take. The commands live in `train`, `build` and `pipeline`."""

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


def emit(obj: dict[str, Any], as_json: bool, human: Callable[[dict[str, Any]], None]) -> None:
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


def weights(temperature: float | None, ce_weight: float | None, kd_weight: float | None) -> dict[str, Any]:
    """The DistillConfig fields `weight_options` set (None: the method's default)."""
    return {
        "ce_weight": ce_weight,
        "kd_weight": kd_weight,
        "loss_params": {"temperature": temperature} if temperature is not None else {},
    }


def train_config(
    epochs: int, limit: int | None, seed: int, batch_size: int, lr: float, device: str, **extra: Any
) -> Any:
    """The TrainConfig of the shared training options, plus any other TrainConfig fields in `extra`."""
    from edgekd.config import TrainConfig, parse

    return parse(
        TrainConfig,
        {"epochs": epochs, "limit": limit, "seed": seed, "batch_size": batch_size, "lr": lr, "device": device, **extra},
        "training options",
    )


def accel_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--amp-dtype and --compile (train-teacher, distill)."""
    for decorator in reversed(
        [
            click.option(
                "--amp-dtype",
                type=click.Choice(["float16", "bfloat16"]),
                default="float16",
                show_default=True,
                help="mixed precision on CUDA (float16 with a grad scaler); bfloat16 also runs AMP on the CPU",
            ),
            click.option("--compile", "compile_", is_flag=True, help="torch.compile the model that trains"),
        ]
    ):
        fn = decorator(fn)
    return fn


def augment_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--augment, --views, --mixup, --warmup-epochs and --preset (distill)."""
    for decorator in reversed(
        [
            click.option(
                "--augment",
                type=click.Choice(["none", "standard"]),
                default="none",
                show_default=True,
                help="training augmentation: standard = pad 4 + random crop, flip (3-channel images), erase 0.25",
            ),
            click.option(
                "--views",
                type=click.IntRange(min=0, max=64),
                default=0,
                show_default=True,
                help="with --augment: 0 = a fresh view of each sample every epoch (a teacher runs live);"
                " K = K fixed views per sample, whose teacher outputs are cached (the cache grows K times)",
            ),
            click.option(
                "--mixup",
                type=click.FloatRange(min=0),
                default=0.0,
                show_default=True,
                help="mixup Beta(a, a) with the live teacher (--teacher-live); 0 = off",
            ),
            click.option("--warmup-epochs", type=click.FloatRange(min=0), default=0.0, show_default=True),
            click.option(
                "--preset",
                type=click.Choice(["patient"]),
                default=None,
                help="patient: 30 epochs and at least 12,000 steps, warm-up + cosine, standard augmentation over 8"
                " cached views, kd at T = 1; options given explicitly win (--epochs drops the step floor too)",
            ),
        ]
    ):
        fn = decorator(fn)
    return fn


def augment_settings(
    ctx: click.Context, preset: str | None, method: str, values: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(TrainConfig fields, loss parameters) from `values` (CLI parameter name -> value) under `preset`:
    an option left at its default takes the preset's value."""
    from edgekd.distill.presets import with_preset

    given = {k for k in values if ctx.get_parameter_source(k) != click.core.ParameterSource.DEFAULT}
    return with_preset(preset, method, values, given)


def print_training(result: dict[str, Any]) -> None:
    click.echo(
        f"wrote {result['checkpoint']}: test accuracy {result['test_accuracy']:.4f}"
        f" (val {result['val_accuracy']:.4f}), {result['seconds']:.0f} s"
    )


def training_json(result: Any) -> dict[str, Any]:
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
