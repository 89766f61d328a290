"""A recipe's budget on one target: fixed, a share of the teacher's latency, or placed where the
candidates differ beyond their latency intervals (`budget: separable`).

A budget that falls inside candidates' intervals decides by noise: a rerun may put a candidate on the
other side of it. `separable` measures the space's candidates on the target first (side by side, in
rounds, cached in the store: the selection's screening reuses them), and places the budget in the gap
between intervals nearest the share of the teacher's latency (`intervals.separable_budget`): two thirds
of the way from the upper end of the faster candidates to the lower end of the slower (the faster one,
chosen, is measured again on its final build and needs the margin more), in a gap at least 10% of
the budget wide (`MIN_GAP`). When the intervals leave no such gap (a noisy machine, or candidates alike),
the share of the teacher's latency is kept unless no candidate could meet it: then it is raised to 10%
above the lowest upper end of any candidate's interval, so the selection has a student to choose
(`intervals.reachable_budget`). The stage is recorded, so a rerun keeps the same budget (and can reuse
the selection).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekd.bench.protocol import DEFAULT_RULE, QUICK_RULE, QUICK_TIMING
from edgekd.config import load_target
from edgekd.recipes.measure import profile_for, target_profile
from edgekd.recipes.schema import Recipe
from edgekd.recipes.stages import StageLog, data_key, stage_key
from edgekd.select.intervals import MIN_GAP, reachable_budget, separable_budget
from edgekd.select.space import SearchSpace, load_space
from edgekd.store import STORE_NAME, Store
from edgekd.ui import console


def budget_stage(
    log: StageLog, recipe: Recipe, teacher: Path, space: str | SearchSpace, target: str, teacher_row: dict[str, Any]
) -> tuple[float, str, dict[str, Any] | None]:
    """The budget in ms on `target`, where it came from, and (separable) why it sits where it does."""
    budget, source = recipe.budget.resolve(teacher_row["bench"]["latency_ms"])
    if not recipe.budget.separable:
        return budget, source, None
    stage, key = f"budget for {target}", _key(recipe, space, target, budget)
    done = log.reuse(stage, key)
    if done is not None:
        return float(done["budget_ms"]), str(done["source"]), done["why"]
    placed, why = _place(recipe, teacher, space, target, budget)
    if why.get("no_gap"):
        source = f"{source} (no gap of {MIN_GAP:.0%} between the candidates' intervals" + (
            f"; raised to {MIN_GAP:.0%} above the upper end of the fastest, {why['fastest']})" if why["raised"] else ")"
        )
    else:
        source = recipe.budget.rule()
    log.record(stage, key, {"budget_ms": placed, "source": source, "why": why})
    return placed, source, why


def recorded_budget(
    log: StageLog, recipe: Recipe, space: str | SearchSpace, target: str, teacher_row: dict[str, Any]
) -> float | None:
    """The budget `budget_stage` gives without measuring anything (for `--dry-run`); None when a separable
    budget is not placed yet."""
    budget, _ = recipe.budget.resolve(teacher_row["bench"]["latency_ms"])
    if not recipe.budget.separable:
        return budget
    done = log.finished(f"budget for {target}", _key(recipe, space, target, budget))
    return None if done is None else float(done["budget_ms"])


def _key(recipe: Recipe, space: str | SearchSpace, target: str, anchor_ms: float) -> str:
    grid = (space if isinstance(space, SearchSpace) else load_space(space)).model_dump(mode="json")
    profile = target_profile(recipe, target).model_dump(mode="json")
    return stage_key(grid, profile, data_key(recipe.data), recipe.timing.value, recipe.budget_rule.value, anchor_ms)


def _place(
    recipe: Recipe, teacher: Path, space: str | SearchSpace, target: str, anchor_ms: float
) -> tuple[float, dict[str, Any]]:
    """Measure the space's candidates on the target and find the separable budget nearest `anchor_ms`;
    without a gap, the anchor raised where needed so that the fastest candidate can meet it."""
    from edgekd.select.latency import measure_candidates
    from edgekd.select.pipeline import match_data

    searchable = space if isinstance(space, SearchSpace) else load_space(space)
    candidates, _ = match_data(searchable.candidates(), teacher, recipe.data, recipe.training)
    profile = load_target(profile_for(recipe, target))
    console.print(f"[bold]budget for {target}[/]: measuring {len(candidates)} candidates side by side")
    out = recipe.outputs.workdir / "select" / target / "candidates"  # where the selection builds them too
    store = Store(recipe.outputs.workdir / STORE_NAME)
    timing, rule = (QUICK_TIMING, QUICK_RULE) if recipe.quick else (None, DEFAULT_RULE)
    measured = measure_candidates(candidates, profile, out, store, timing, rule)
    intervals = {c.arch: measured[c.key].interval for c in candidates}
    found = separable_budget(intervals, anchor_ms)
    latencies = {
        arch: {"median_ms": iv.median_ms, "ci_low_ms": iv.low_ms, "ci_high_ms": iv.high_ms}
        for arch, iv in intervals.items()
    }
    budget, why = found if found is not None else reachable_budget(intervals, anchor_ms)
    return budget, {**why, "candidates": latencies}
