"""--domains and --hold-out (train-teacher, distill): source domains to train on, domains held out."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click


def domain_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    for decorator in reversed(
        [
            click.option(
                "--domains",
                default=None,
                help="source domains to train on: clean, NAME-SEVERITY (blur-2, contrast-2, noise-3, ...) or"
                " NAME=PATH, comma-separated; each training image is drawn into one (seeded)",
            ),
            click.option(
                "--hold-out",
                default=None,
                help="domains never trained on, scored on the test split after training (same names)",
            ),
        ]
    ):
        fn = decorator(fn)
    return fn


def held_out_report(result: Any, data: str, plan: Any, limit: int | None) -> dict[str, Any]:
    """The training JSON's `domains` block: the plan, and accuracy on clean and held-out test domains."""
    if plan is None:
        return {}
    from edgekd.distill.shift_eval import domain_accuracy

    scores = domain_accuracy(Path(result.checkpoint), data, list(plan.held_out), limit=limit) if plan.held_out else {}
    return {"domains": {**plan.to_json(), "accuracy": scores}}


def print_held_out(block: dict[str, Any]) -> None:
    d = block.get("domains") or {}
    if d.get("accuracy"):
        scores = ", ".join(f"{k} {100 * v:.2f}%" for k, v in d["accuracy"].items())
        click.echo(f"trained on {', '.join(d['sources'])}; test accuracy by domain: {scores}")
