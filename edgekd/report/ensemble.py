"""The ensemble's words: its students at a glance, and the training time a selection from it saved."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekd.report.selection import print_selection
from edgekd.report.text import fmt_pct


def print_ensemble(manifest: dict[str, Any], out_dir: Path) -> None:
    import click

    students = manifest["students"]
    click.echo(
        f"trained {len(students)} students of {manifest['base']} at once for {manifest['epochs']} epochs in"
        f" {manifest['train_seconds']:.0f} s; ensemble test acc {fmt_pct(manifest['ensemble']['test_acc'])}"
    )
    for s in students:
        click.echo(
            f"  {s['checkpoint']}: {s['arch']}, {s['params']:,} params, val acc {fmt_pct(s['val_acc'])},"
            f" test acc {fmt_pct(s['test_acc'])}"
        )
    click.echo(f"wrote {out_dir / manifest['manifest']}")


def savings_line(sel: dict[str, Any]) -> str:
    """How the ensemble's measured training time compares with distilling each student separately."""
    e = sel["compute"]["ensemble"]
    saved = e["separate_estimate_s"] - e["ensemble_train_s"]
    outcome = (
        f"{saved:.0f} s ({100 * saved / e['separate_estimate_s']:.0f}%) saved"
        if saved >= 0
        else f"the ensemble took {-saved:.0f} s more"
    )
    return (
        f"training time: the ensemble trained {e['students']} students in {e['ensemble_train_s']:.0f} s;"
        f" each {e['basis']} separately for the same {e['epochs']} epochs would take about"
        f" {e['separate_estimate_s']:.0f} s (estimated from {e['measured_epochs']} measured epoch(s) per width):"
        f" {outcome}"
    )


def trained_in_ensemble(why: str) -> str:
    """A screening verdict's words for a student that the ensemble trained anyway."""
    return why.removesuffix("; not trained") + "; trained in the ensemble, not built for the target"


def print_ensemble_selection(sel: dict[str, Any]) -> None:
    import click

    print_selection(sel)
    click.echo(savings_line(sel))
