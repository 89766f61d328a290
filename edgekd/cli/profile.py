"""`edgekd profile`: a search space measured and predicted on a target, without training anything."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from edgekd.cli._app import PathArg, cli, emit, guarded


def _print_profile(data: dict[str, Any]) -> None:
    from edgekd.report.latency_table import latency_markdown

    click.echo(latency_markdown(data), nl=False)
    for kind, path in data["files"].items():
        click.echo(f"wrote {kind}: {path}")


@cli.command("profile")
@click.option("--space", required=True, help="search space: a YAML file or a built-in space (edge96, edge224, small)")
@click.option("--target", required=True, help="a profile name in targets/ (e.g. cpu-ort-fp32) or a YAML path")
@click.option("--batch", type=click.IntRange(min=1), default=None, help="batch size (default: the target's)")
@click.option("--threads", type=click.IntRange(min=0), default=None, help="threads (default: the target's; 0 = all)")
@click.option("--probes", type=click.IntRange(min=2), default=None, help="candidates the predictor is fitted on")
@click.option("--time-cap", type=click.FloatRange(min=1), default=None, help="seconds of rounds at most (default 120)")
@click.option("--quick", is_flag=True, help="few, short rounds: a smoke test, not numbers to keep")
@click.option("--out", type=PathArg, required=True, help="folder: latency.json, latency.md, latency.png, builds/")
@click.option("--json", "as_json", is_flag=True)
@guarded
def profile_cmd(
    space: str,
    target: str,
    batch: int | None,
    threads: int | None,
    probes: int | None,
    time_cap: float | None,
    quick: bool,
    out: Path,
    as_json: bool,
) -> None:
    """Training-free latency of a search space on a target: every candidate exported untrained, built and
    measured side by side (interleaved rounds, 95% CI, the per-call floor); the latency predictor fitted
    on some (probes) and checked on the rest. Writes the table (parameters, FLOPs, measured median and
    CI, predicted, error) and a plot: what to look at before choosing what to distil.

    \b
    Example:
      edgekd profile --space edge96 --target cpu-ort-fp32 --threads 1 --out runs/profile96
    """
    from dataclasses import replace

    from edgekd.bench.protocol import DEFAULT_RULE, QUICK_RULE, ROUND_TIMING, TimingConfig
    from edgekd.report.latency_table import write_latency_profile
    from edgekd.select.profile import profile_space

    rule = QUICK_RULE if quick else DEFAULT_RULE
    if time_cap is not None:
        rule = replace(rule, time_cap_s=time_cap)
    timing = TimingConfig(warmup_iters=2, warmup_s=0.02, min_iters=5, min_time_s=0.05) if quick else ROUND_TIMING
    say = (lambda _: None) if as_json else (lambda text: click.echo(text, err=True))
    result = profile_space(
        space, target, out, batch=batch, threads=threads, probes=probes, timing=timing, rule=rule, progress=say
    )
    data = result.to_json()
    files = write_latency_profile(data, out)
    emit({**data, "files": {k: str(v) for k, v in files.items()}}, as_json, _print_profile)
