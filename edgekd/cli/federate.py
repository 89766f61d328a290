"""`edgekd federate`: federated distillation (FedGen, FedAvg, FedProx) on Flower."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from edgekd.cli._app import PathArg, cli, emit, guarded


@cli.command("federate")
@click.option("--strategy", type=click.Choice(["fedgen", "fedavg", "fedprox"]), default="fedgen", show_default=True)
@click.option("--clients", type=int, default=20, show_default=True, help="clients (one Flower SuperNode each)")
@click.option("--sample", type=int, default=10, show_default=True, help="clients sampled per round")
@click.option("--rounds", type=int, default=10, show_default=True)
@click.option("--alpha", type=float, default=0.1, show_default=True, help="Dirichlet concentration of the label split")
@click.option("--out", type=PathArg, required=True, help="folder: model.pt, per-round state, report")
@click.option("--data", default="fashion-mnist", show_default=True)
@click.option("--arch", default="cnn-s", show_default=True, help="built-in name or family(k=v,...)")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--limit", type=int, default=None, help="use the first N training samples")
@click.option("--local-epochs", type=int, default=1, show_default=True)
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--lr", type=float, default=0.01, show_default=True, help="clients' SGD learning rate")
@click.option("--proximal-mu", type=float, default=0.01, show_default=True, help="FedProx's mu")
@click.option("--threads", type=int, default=1, show_default=True, help="CPU cores for the simulated clients")
@click.option("--resume", is_flag=True, help="continue from the last finished round in --out")
@click.option(
    "--flower-app",
    type=PathArg,
    default=None,
    help="write a Flower App folder for `flwr run` on a real SuperLink instead of simulating",
)
@click.option("--json", "as_json", is_flag=True, help="print the result as JSON")
@guarded
def federate_cmd(
    strategy: str,
    clients: int,
    sample: int,
    rounds: int,
    alpha: float,
    out: Path,
    data: str,
    arch: str,
    seed: int,
    limit: int | None,
    local_epochs: int,
    batch_size: int,
    lr: float,
    proximal_mu: float,
    threads: int,
    resume: bool,
    flower_app: Path | None,
    as_json: bool,
) -> None:
    """Train one model over clients that keep their data, with Flower's simulation engine.

    \b
    Examples:
      edgekd federate --strategy fedgen --clients 20 --sample 10 --rounds 50 --alpha 0.1 --out fed/
      edgekd federate --strategy fedavg --clients 20 --rounds 50 --alpha 0.1 --out fed-avg/ --resume
      edgekd federate --clients 2 --sample 2 --rounds 5 --out fed/ --flower-app app/   # then: flwr run app/
    """
    from edgekd.config import parse
    from edgekd.federate.config import FederationConfig

    fields = {
        "strategy": strategy,
        "data": data,
        "arch": arch,
        "clients": clients,
        "sample": sample,
        "rounds": rounds,
        "alpha": alpha,
        "seed": seed,
        "limit": limit,
        "local_epochs": local_epochs,
        "batch_size": batch_size,
        "lr": lr,
        "proximal_mu": proximal_mu,
    }
    cfg = parse(FederationConfig, fields, "federation options").check()
    if flower_app is not None:
        from edgekd.federate.app import write_flower_app

        path = write_flower_app(flower_app, cfg, out, resume)
        emit(
            {"flower_app": str(path)},
            as_json,
            lambda r: click.echo(f"wrote {r['flower_app']}; run: flwr run {path.parent}"),
        )
        return
    if threads < 1:
        raise click.BadParameter("must be at least 1", param_hint="--threads")
    from edgekd.federate.run import federate
    from edgekd.report.federated import write_federated_report

    result = federate(cfg, out, resume=resume, threads=threads)
    report = write_federated_report({cfg.strategy.value: result.history}, out)
    emit(
        {
            "checkpoint": str(result.checkpoint),
            "test_accuracy": result.test_accuracy,
            "rounds": result.rounds,
            "seconds": result.seconds,
            "history": result.history,
            "report": str(report),
        },
        as_json,
        _print,
    )


def _print(result: dict[str, Any]) -> None:
    click.echo(
        f"wrote {result['checkpoint']}: test accuracy {result['test_accuracy']:.4f} after {result['rounds']} rounds,"
        f" {result['seconds']:.0f} s; report {result['report']}"
    )
