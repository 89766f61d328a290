"""The selection's words and tables: why each candidate lost, selection.md, and the terminal summary."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edgekd.report.text import fmt_ms, fmt_pct


def fmt_interval(median: float | None, low: float | None, high: float | None, rounds: int | None = None) -> str:
    """A latency as decisions see it: `median [low-high]` (the CI over rounds) and the round count;
    the median alone when there is no interval (a prediction)."""
    if median is None:
        return "-"
    if low is None or high is None:
        return fmt_ms(median)
    text = f"{fmt_ms(median)} [{fmt_ms(low)}-{fmt_ms(high)}]"
    return f"{text} ({rounds} rounds)" if rounds else text


def fmt_latency(r: dict[str, Any], key: str = "p50_ms") -> str:
    """`fmt_interval` of a record holding `key` (the median) and ci_low_ms, ci_high_ms, rounds."""
    return fmt_interval(r.get(key), r.get("ci_low_ms"), r.get("ci_high_ms"), r.get("rounds"))


def fmt_floor(floor: dict[str, Any] | None) -> str:
    """The per-call floor (the null model's round statistics), or a dash when none was measured."""
    if not floor:
        return "-"
    return f"{fmt_interval(floor['median_ms'], floor['ci_low_ms'], floor['ci_high_ms'], floor['rounds'])} ms"


def fmt_rule(rule: str | None) -> str:
    """What meeting the budget means under a budget rule."""
    return "the median" if rule == "p50" else "the CI's upper end"


def _chosen(r: dict[str, Any]) -> str:
    if r["missed_by_ms"] > 0 and r.get("screen_met"):
        return (
            f"chosen, but no finished student re-measures within the {fmt_ms(r['budget_ms'])} ms budget: this,"
            f" the fastest, measures {fmt_latency(r)} ms (screened at {fmt_ms(r['screen_p50_ms'])} ms),"
            f" over by {fmt_ms(r['missed_by_ms'])} ms; bench it again, or finish more (--finish-top)"
        )
    if r["missed_by_ms"] > 0:
        return (
            f"chosen: nothing meets the {fmt_ms(r['budget_ms'])} ms budget; this is the fastest,"
            f" {fmt_latency(r)} ms, whose {fmt_rule(r.get('budget_rule'))} misses it by {fmt_ms(r['missed_by_ms'])} ms"
        )
    return (
        f"chosen: {fmt_latency(r)} ms, {fmt_rule(r.get('budget_rule'))} within the {fmt_ms(r['budget_ms'])} ms"
        f" budget, val acc {fmt_pct(r['val_acc'])}"
    )


def _dominated(r: dict[str, Any]) -> str:
    if r["by_chosen"]:
        pace = "tied with chosen on latency" if r.get("tied") else "slower than chosen"
        return (
            f"{pace} ({fmt_latency(r)} vs {fmt_ms(r['by_p50_ms'])} ms) with lower accuracy, or equal and larger"
            f" ({fmt_pct(r['val_acc'])} vs {fmt_pct(r['by_val_acc'])})"
        )
    return (
        f"dominated by {r['by']}: {fmt_ms(r['by_p50_ms'])} vs {fmt_latency(r)} ms, val acc"
        f" {fmt_pct(r['by_val_acc'])} vs {fmt_pct(r['val_acc'])}"
    )


_REASONS: dict[str, Callable[[dict[str, Any]], str]] = {
    "chosen": _chosen,
    "input_mismatch": lambda r: (
        f"takes {'x'.join(map(str, r['shape']))} inputs, the data is"
        f" {'x'.join(map(str, r['data_shape']))}: cannot be distilled on it"
    ),
    "over_budget": lambda r: (
        f"over budget by {fmt_ms(r['by_ms'])} ms ({r['source']} {fmt_latency(r, 'latency_ms')} ms,"
        f" {fmt_rule(r.get('budget_rule'))} against {fmt_ms(r['budget_ms'])} ms); not trained"
    ),
    "slower_than_fastest": lambda r: (
        f"nothing meets the budget, and it is slower ({fmt_ms(r['latency_ms'])} ms"
        f"{'' if r['measured'] else ' predicted'}) than the fastest, {r['fastest']}"
        f" ({fmt_ms(r['fastest_ms'])} ms); not trained"
    ),
    "not_tried": lambda r: f"in budget but not sampled by the study ({r['n_trials']} trials)",
    "failed": lambda r: f"trial {r['state']} after {r['epochs']} epoch(s): {r.get('error') or 'no error recorded'}",
    "pruned": lambda r: (
        f"pruned at epoch {r['epoch']} of {r['epochs']} with val acc {fmt_pct(r['val_acc'])}"
        f" (best at that epoch: {r['best_arch']}, {fmt_pct(r['best_val_acc'])})"
    ),
    "over_budget_final": lambda r: (
        f"trained, but the built student measures {fmt_latency(r)} ms, {fmt_rule(r.get('budget_rule'))} over"
        f" budget by {fmt_ms(r['by_ms'])} ms (screened at {fmt_ms(r['screen_p50_ms'])} ms)"
    ),
    "dominated": _dominated,
    "less_accurate": lambda r: (
        f"on the front, faster than chosen ({fmt_latency(r)} vs"
        f" {fmt_ms(r['chosen_p50_ms'])} ms) but less accurate ({fmt_pct(r['val_acc'])} vs"
        f" {fmt_pct(r['chosen_val_acc'])})"
    ),
}


def by_outcome(candidates: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A selection's candidates as its tables list them: the chosen first, then by validation accuracy."""
    return sorted(candidates, key=lambda r: (r["fate"] != "chosen", -(r.get("val_acc") or -1)))


def screened_ms(row: dict[str, Any]) -> float | None:
    """A candidate's screening latency: measured when it was, else predicted."""
    return row.get("measured_ms") if row.get("measured_ms") is not None else row.get("predicted_ms")


def screened_latency(row: dict[str, Any]) -> str:
    """A candidate's screening latency as text: the measured interval, else the prediction."""
    if row.get("measured_ms") is not None:
        return fmt_latency(row, "measured_ms")
    return fmt_ms(row.get("predicted_ms")) + (" predicted" if row.get("predicted_ms") is not None else "")


def explain(fate: str, reason: dict[str, Any]) -> str:
    """One sentence: why a candidate was chosen or lost."""
    return _REASONS[fate](reason)


def shifted(sel: dict[str, Any]) -> bool:
    """Whether the finished students were ranked under a shift (`--rank-by`), not on clean val acc."""
    return (sel.get("rank_by") or "clean") != "clean"


def headline(sel: dict[str, Any]) -> str:
    c = sel["chosen"]
    head = (
        f"chose {c['arch']} for {sel['target']['name']}: {fmt_latency(c)} ms"
        f" ({c['precision']}), val acc {fmt_pct(c['val_acc'])}, test acc {fmt_pct(c['test_acc'])}"
    )
    if shifted(sel):
        head += f", val acc under {sel['rank_by']} {fmt_pct(c.get('rank_acc'))} (what it was ranked on)"
    floor = f"; per-call floor {fmt_floor(sel.get('floor'))}" if sel.get("floor") else ""
    rule = fmt_rule(sel.get("budget_rule"))
    if sel["met_budget"]:
        return f"{head}; {rule} within the {fmt_ms(sel['budget_ms'])} ms budget{floor}"
    if sel.get("budget_verdict") == "undetermined":
        return f"{head}; BUDGET UNDETERMINED: {undetermined(sel)}{floor}"
    return (
        f"{head}; BUDGET MISSED: {fmt_ms(sel['budget_ms'])} ms, {rule} over by {fmt_ms(sel['missed_by_ms'])} ms{floor}"
    )


def undetermined(sel: dict[str, Any]) -> str:
    """Why a selection neither met nor missed its budget: the budget lies inside the chosen's interval."""
    c = sel["chosen"]
    return (
        f"the {fmt_ms(sel['budget_ms'])} ms budget lies inside the chosen's interval after {c.get('rounds')} rounds"
        f" in {c.get('passes', 1)} pass(es), stopped by {c.get('stopped_by')}: the machine was too noisy to tell"
        " on which side it is; measure it again when the machine is quiet (`edgekd bench` on its artifact)"
    )


def drift_lines(sel: dict[str, Any]) -> list[str]:
    """A warning paragraph when the screening found the machine's speed changed (`latency.drift`)."""
    from edgekd.select.latency import drift_message

    moved, target = sel.get("drift"), sel["target"]
    name = target["name"] if isinstance(target, dict) else str(target)  # the demo summary keeps only the name
    return ["", f"**Warning**: {drift_message(moved, name)}."] if moved else []


def compute_line(sel: dict[str, Any]) -> str:
    c = sel["compute"]
    ratio = "-" if c["ratio"] is None else f"{100 * c['ratio']:.0f}%"
    reused = f", {c['reused_epochs']} more taken from an earlier selection" if c.get("reused_epochs") else ""
    return (
        f"{c['student_epochs']} student-epochs trained{reused}, {ratio} of training every in-budget candidate"
        f" fully ({c['exhaustive_epochs']}); " + ", ".join(f"{k} {v:.0f} s" for k, v in c["seconds"].items())
    )


def _predictor(pred: dict[str, Any]) -> str:
    if pred["margin"] is None:
        return "not needed, the space was measured whole"
    if pred["mape_pct"] is None:
        return "no measured candidate outside its probes to check it on"
    return (
        f"MAPE {pred['mape_pct']:.1f}% on the {pred['measured_held_out']} measured candidates it was not fitted"
        f" on; predictions up to {100 * pred['margin']:.0f}% over the budget were measured"
    )


def render_markdown(sel: dict[str, Any]) -> str:
    t, study, pred = sel["target"], sel.get("study", {}), sel["predictor"]
    lines = [
        f"# Selection for {t['name']}",
        "",
        headline(sel) + ".",
        *drift_lines(sel),
        "",
        f"Target: {t['runtime']} {t['precision']} on {t['device']}, {t['threads']} threads, batch {t['batch']}."
        f" Compute: {compute_line(sel)}.",
        f"Study {study.get('name', '-')} ({study.get('pruner', '-')}, reduction factor"
        f" {study.get('reduction_factor', '-')}) in {study.get('storage', '-')}.",
        f"Latency predictor: {_predictor(pred)}.",
        f"Latencies: median over rounds [95% CI] (rounds), measured side by side with a null model; the budget"
        f" is met when {fmt_rule(sel.get('budget_rule'))} is within it, and overlapping intervals are a tie"
        f" (broken by accuracy, then size). Per-call floor: {fmt_floor(sel.get('floor'))} (screening),"
        f" {fmt_floor(sel.get('final_floor'))} (final builds).",
        "",
        "## Pareto front (finished students, built for the target)",
        "",
    ]
    under = f" val acc under {sel['rank_by']} |" if shifted(sel) else ""
    if shifted(sel):
        lines += [
            f"Finished students ranked by validation accuracy under {sel['rank_by']} (seeded corruption of their"
            " validation split, torch), not clean validation accuracy (`--rank-by`).",
            "",
        ]
    lines += [
        f"| student | latency ms | val acc |{under} test acc | artifact acc |",
        "|---|---:|---:|" + ("---:|" if under else "") + "---:|---:|",
    ]
    lines += [
        f"| {f['arch']} | {fmt_latency(f)} | {fmt_pct(f['val_acc'])} |"
        + (f" {fmt_pct(f.get('rank_acc'))} |" if under else "")
        + f" {fmt_pct(f['test_acc'])} | {fmt_pct(f['artifact_accuracy'])} |"
        for f in sel["front"]
    ]
    early = sel["front_at_epoch"]
    points = ", ".join(f"{p['arch']} {fmt_ms(p['latency_ms'])} ms {fmt_pct(p['val_acc'])}" for p in early["points"])
    lines += [
        "",
        f"Front after epoch {early['epoch']} (every trial): {points}"
        if points
        else f"No front after epoch {early['epoch']}: no student has a per-epoch history (an ensemble run's"
        " students are trained together and recorded once, at the end).",
        "",
        "## Every candidate",
        "",
        "| candidate | params | latency ms | epochs | val acc | outcome |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for row in by_outcome(sel["candidates"]):
        lines.append(
            f"| {row['arch']} | {row['params']:,} | {screened_latency(row)} | {row.get('epochs', 0)} |"
            f" {fmt_pct(row.get('val_acc'))} | {row['why']} |"
        )
    return "\n".join(lines) + "\n"


def print_selection(sel: dict[str, Any]) -> None:
    import click

    click.echo(headline(sel))
    click.echo(f"compute: {compute_line(sel)}")
    for row in sel["candidates"]:
        if row["fate"] != "chosen":
            click.echo(f"  {row['arch']}: {row['why']}")
    click.echo(f"wrote {sel['files']['json']} and {sel['files']['markdown']}")
