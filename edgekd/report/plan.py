"""The text of `edgekd run --dry-run`: a recipe's plan (from `edgekd.recipes.plan.dry_run`) as lines."""

from __future__ import annotations

from typing import Any

from edgekd.report.text import fmt_ms


def _teacher_line(t: dict[str, Any]) -> str:
    if t["action"] == "use":
        return f"teacher: use the checkpoint {t['path']}  [given]"
    if t["action"] == "train":
        return f"teacher: train {t['arch']} for {t['epochs']} epoch(s), then cache it  [run]"
    return f"teacher: {t['arch']}, {t['epochs']} epoch(s), {t['action']} {t['path']}  [reuse]"


def _budget(target: dict[str, Any]) -> str:
    if target["budget_ms"] is None:
        measured = "teacher and the candidates are" if target["budget_rule"].startswith("separable") else "teacher is"
        return f"{target['budget_rule']} (known once the {measured} measured)"
    rule = "" if target["budget_rule"] == "given" else f" = {target['budget_rule']}"
    return f"{fmt_ms(target['budget_ms'])} ms p50{rule}"


def render_plan(plan: dict[str, Any]) -> str:
    """The dry run's report: stages in order, each marked [run] or [reuse]; nothing ran."""
    train = plan["training"]
    limit = f"the first {train['limit']} training samples" if train["limit"] else "all training samples"
    lines = [
        f"recipe {plan['name']}: workdir {plan['workdir']}, timing {plan['timing']} (dry run: nothing runs)",
        f"data: {plan['data']}, {limit}, seed {train['seed']}",
        f"students: {len(plan['candidates'])} candidate(s) of {plan['space']}: {', '.join(plan['candidates'])}",
        f"distillation: {plan['method']}, up to {train['epochs']} epoch(s) per student (successive halving),"
        " one students folder shared by every target",
    ]
    if plan["calibration"]:
        lines.append(f"calibration: every build calibrates with {plan['calibration']}")
    lines += ["", f"1. {_teacher_line(plan['teacher'])}"]
    for i, target in enumerate(plan["targets"], start=2):
        name = target["target"]
        chosen = f" ({target['chosen_arch']})" if target.get("chosen_arch") else ""
        lines += [
            f"{i}. {name}: build + bench the teacher  [{target['build']}]",
            f"   budget: {_budget(target)}",
            f"   select a student within the budget  [{target['select']}]",
            f"   build + bench the chosen student{chosen}  [{target['chosen']}]",
        ]
    lines.append(f"{len(plan['targets']) + 2}. report: {', '.join(plan['reports'])}  [run]")
    return "\n".join(lines)
