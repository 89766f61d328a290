"""Commands that build and measure: `export`, `bench`, `package`, `ingest`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from edgekd.cli._app import (
    PathArg,
    cli,
    emit,
    guarded,
)


def _input_shape(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, int, int] | None:
    """`--input-shape C,H,W` parsed (one line, exit 2, when it is not three positive sizes)."""
    from edgekd.bench.artifacts import parse_input_shape
    from edgekd.errors import UserError

    try:
        return None if value is None else parse_input_shape(value)
    except UserError as err:
        raise click.BadParameter(str(err)) from None


_INPUT_SHAPE = click.option(
    "--input-shape",
    default=None,
    callback=_input_shape,
    help="C,H,W for a model whose file does not fix them (dynamic ONNX or IR dims, module:factory)",
)


def _shift_request(shift: str | None, severity: str, domains: tuple[str, ...]) -> dict[str, Any] | None:
    """The shift request of --shift, --severity and --domain (export and bench), or None."""
    from edgekd.data.shift import parse_domains, parse_shift

    if not shift and not domains:
        return None
    corruptions = parse_shift(shift, severity) if shift else []
    return {"corruptions": corruptions, "domains": parse_domains(domains), "seed": 0}


@cli.command("export")
@click.argument("model")
@click.option("--target", required=True, help="a profile name in targets/ (e.g. cpu-ort-fp32) or a YAML path")
@click.option("--out", type=PathArg, required=True, help="output folder")
@click.option("--data", default=None, help="data for parity and accuracy checks (default: the checkpoint's)")
@click.option("--calibration", default=None, help="calibration recipe for INT8 (name in calibration/ or YAML)")
@_INPUT_SHAPE
@click.option(
    "--batch", type=click.IntRange(min=1), default=None, help="batch to measure by default (default: the target's)"
)
@click.option(
    "--offline",
    is_flag=True,
    help="TensorRT targets, no TensorRT here: write the ONNX, trtexec.sh and the pre-check for the device",
)
@click.option("--shift", default=None, help="torch, ONNX and artifact accuracy under seeded corruptions: all or a,b")
@click.option("--severity", default="3", show_default=True, help="corruption severity for --shift: 1-5 or all")
@click.option("--domain", "domains", multiple=True, help="NAME=PATH: also score the chain on this data")
@click.option("--store", type=PathArg, default=None)
@click.option("--json", "as_json", is_flag=True)
@guarded
def export_cmd(
    model: str,
    target: str,
    out: Path,
    data: str | None,
    calibration: str | None,
    input_shape: tuple[int, int, int] | None,
    batch: int | None,
    offline: bool,
    shift: str | None,
    severity: str,
    domains: tuple[str, ...],
    store: Path | None,
    as_json: bool,
) -> None:
    """Export MODEL (checkpoint, .onnx or module:factory) to ONNX and build it for a target.

    \b
    Examples:
      edgekd export student.pt --target cpu-ort-fp32 --out build/student
      edgekd export mypkg.nets:small --input-shape 3,224,224 --target cpu-openvino-fp32 --out build/small
      edgekd export student.pt --target cpu-ort-int8 --out build/s-int8 --shift all   # accuracy per domain
    """
    from edgekd.export.run import export
    from edgekd.report.text import print_artifact

    info = export(
        model,
        target,
        out,
        data=data,
        calibration=calibration,
        store=store,
        offline=offline,
        input_shape=input_shape,
        batch=batch,
        shift=_shift_request(shift, severity, domains),
    )
    if offline:
        emit(
            info,
            as_json,
            lambda i: click.echo(
                f"wrote {out / i['onnx']}, {out / i['trtexec']} and {out / i['check']} ({i['errors']} errors,"
                f" {i['warnings']} warnings in the TensorRT pre-check); run trtexec.sh on the device"
            ),
        )
    else:
        emit(info, as_json, lambda i: print_artifact(i, out))


@cli.command("bench")
@click.argument("artifacts", type=PathArg, nargs=-1, required=True)
@click.option("--data", default=None, help="also measure accuracy on this data's test split")
@click.option("--batch", type=click.IntRange(min=1), default=None, help="batch size (default: the target's)")
@_INPUT_SHAPE
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
@click.option(
    "--shift", default=None, help="accuracy under seeded corruptions of the test split: all or name[,name...]"
)
@click.option("--severity", default="3", show_default=True, help="corruption severity for --shift: 1-5 or all")
@click.option("--domain", "domains", multiple=True, help="NAME=PATH: also score on this data (folder or .npz)")
@click.option("--store", type=PathArg, default=None)
@click.option("--json", "as_json", is_flag=True)
@guarded
def bench_cmd(
    artifacts: tuple[Path, ...],
    data: str | None,
    batch: int | None,
    input_shape: tuple[int, int, int] | None,
    threads: int | None,
    limit: int | None,
    quick: bool,
    rounds_ci: float,
    time_cap_s: float | None,
    shift: str | None,
    severity: str,
    domains: tuple[str, ...],
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
      edgekd bench model.xml --input-shape 1,28,28 --batch 32   # an IR with dynamic dims
      edgekd bench build/s-int8 --data fashion-mnist --shift all --severity all --domain photos=shots/
    """
    from edgekd.bench import bench_artifacts
    from edgekd.report.text import print_bench, print_comparison

    shift_request = _shift_request(shift, severity, domains)

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
        input_shape=input_shape,
        shift=shift_request,
    )
    emit(result, as_json, print_bench if len(artifacts) == 1 else print_comparison)


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
    emit(manifest, as_json, lambda m: click.echo(f"wrote bundle {out} (id {m.get('bundle_id', '?')})"))


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
