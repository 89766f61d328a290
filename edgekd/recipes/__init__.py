"""Recipes: the whole pipeline as one validated YAML file (`edgekd run RECIPE.yaml`).

`schema.py` says what a recipe holds, `load.py` reads one and names the line of every bad field,
`runner.py` runs its stages (teacher, build and bench per target, selection, report) and resumes a run
that stopped, `plan.py` says what a run would do without doing it. The recipes edgekd ships (the
demo's) sit beside this file.
"""

from __future__ import annotations

from pathlib import Path

from edgekd.errors import UserError

RECIPES_DIR = Path(__file__).resolve().parent


def shipped(name: str) -> Path:
    """The path of a recipe shipped with edgekd (`demo`, `demo-quick`)."""
    path = RECIPES_DIR / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in RECIPES_DIR.glob("*.yaml")))
        raise UserError(f"unknown shipped recipe {name!r}; known: {known}")
    return path
