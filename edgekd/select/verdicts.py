"""The outcome of a selection: the chosen student, the Pareto fronts, and why every other candidate lost.

Reasons are data (a `fate` and its numbers); `edgekd.report.selection.explain` turns them into the
sentences of selection.json and selection.md. Decisions use validation accuracy only; test accuracy is
reported beside it, never chosen on. Latencies are compared by their intervals (`intervals.py`): the
budget is met by the budget rule, overlapping intervals are a tie broken by accuracy then size, and the
Pareto front counts a student dominated only by one not clearly slower.
"""

from __future__ import annotations

import enum
from typing import Any

from edgekd.bench.protocol import RoundStats
from edgekd.config import TargetProfile
from edgekd.select.intervals import Interval, choose, clearly_faster, dominates, front, meets, missed_by, verdict
from edgekd.select.screen import Screened, Screening
from edgekd.select.search import SearchJob, TrialRecord


class Fate(str, enum.Enum):
    CHOSEN = "chosen"
    INPUT_MISMATCH = "input_mismatch"
    OVER_BUDGET = "over_budget"  # screening: predicted or measured over the budget
    SLOWER_THAN_FASTEST = "slower_than_fastest"  # nothing met the budget; the fastest went on alone
    NOT_TRIED = "not_tried"
    FAILED = "failed"
    PRUNED = "pruned"
    OVER_BUDGET_FINAL = "over_budget_final"  # trained, built, re-measured over the budget
    DOMINATED = "dominated"  # another finished student is at least as fast and at least as accurate
    LESS_ACCURATE = "less_accurate"  # on the front, faster than the chosen one but less accurate


def assemble(
    profile: TargetProfile,
    screening: Screening,
    mismatched: list[tuple[Any, tuple[int, ...]]],
    records: list[TrialRecord],
    finished: list[Any],
    job: SearchJob,
    clock: dict[str, float],
) -> dict[str, Any]:
    """selection.json's content (less the study block, which the pipeline adds)."""
    from edgekd.report.selection import explain

    budget, rule = screening.budget_ms, screening.budget_rule

    def size(f: Any) -> int:
        return int(job.entry(f.record.key).params)

    chosen = choose(finished, lambda f: f.interval, lambda f: f.score, size, budget, rule)
    on_front = [finished[i] for i in front([(f.interval, f.score, size(f)) for f in finished])]
    rows = [_row(s, screening, records, finished, chosen, job) for s in screening.rows]
    rows += [
        {
            **_describe(c),
            "fate": Fate.INPUT_MISMATCH.value,
            "reason": {"shape": list(c.input_shape), "data_shape": list(shape)},
        }
        for c, shape in mismatched
    ]
    for row in rows:
        row["why"] = explain(row["fate"], row["reason"])
    epochs = sum(r.epochs - r.reused for r in records) + sum(f.added_epochs for f in finished)
    reused = sum(r.reused for r in records)
    exhaustive = len(screening.survivors) * job.epochs
    return {
        "target": {
            "name": profile.name,
            "runtime": profile.runtime,
            "precision": profile.precision.value,
            "device": profile.device,
            "threads": profile.resolved_threads(),
            "batch": profile.batch,
        },
        "budget_ms": budget,
        "budget_rule": rule.value,
        "met_budget": meets(chosen.interval, budget, rule),
        "budget_verdict": verdict(chosen.interval, budget, rule).value,
        "missed_by_ms": None if meets(chosen.interval, budget, rule) else missed_by(chosen.interval, budget, rule),
        "floor": _stats_json(screening.floor),
        "drift": screening.drift,
        "final_floor": chosen.final.get("floor"),
        "chosen": _finished_json(chosen, job),
        "front": [_finished_json(f, job) for f in on_front],
        "front_at_epoch": _early_front(records, screening),
        "candidates": rows,
        "predictor": {
            "mape_pct": screening.mape_pct,
            "measured_held_out": screening.mape_count,
            "margin": screening.margin,
        },
        "compute": {
            "student_epochs": epochs,
            "reused_epochs": reused,
            "exhaustive_epochs": exhaustive,
            "ratio": epochs / exhaustive if exhaustive else None,
            "epochs_per_student": job.epochs,
            "seconds": clock,
        },
    }


def _stats_json(stats: RoundStats | None) -> dict[str, Any] | None:
    return None if stats is None else stats.to_json()


def _interval_json(stats: RoundStats | None) -> dict[str, Any]:
    """The interval fields of a latency: CI ends, rounds and why they stopped (None when unmeasured)."""
    if stats is None:
        return {"ci_low_ms": None, "ci_high_ms": None, "rounds": None, "stopped_by": None}
    return {
        "ci_low_ms": stats.ci_low_ms,
        "ci_high_ms": stats.ci_high_ms,
        "rounds": stats.rounds,
        "stopped_by": stats.stopped_by,
    }


def _describe(c: Any) -> dict[str, Any]:
    return {
        "arch": c.arch,
        "key": c.key,
        "family": c.spec.family,
        "image_size": c.spec.image_size,
        "params": c.params,
        "flops": c.flops,
    }


def _finished_json(f: Any, job: SearchJob) -> dict[str, Any]:
    entry = job.entry(f.record.key)
    return {
        "arch": entry.arch,
        "key": entry.key,
        "params": entry.params,
        "p50_ms": f.p50_ms,
        **_interval_json(f.stats),
        "passes": len(f.final.get("passes") or [f.final]),  # 2: its rounds of a second pass pooled in
        "screen_p50_ms": entry.latency_ms,
        "val_acc": f.val_acc,
        "rank_acc": f.rank_acc,
        "rank_scores": f.rank_scores,
        "test_acc": f.test_acc,
        "artifact_accuracy": f.final.get("accuracy"),
        "precision": f.final["precision"],
        "checkpoint": str(job.checkpoint(entry.key)),
        "artifact_dir": f.final["dir"],
        "trial": f.record.number,
    }


def _row(
    s: Screened, screening: Screening, records: list[TrialRecord], finished: list[Any], chosen: Any, job: SearchJob
) -> dict[str, Any]:
    row = {
        **_describe(s.candidate),
        "predicted_ms": s.predicted_ms,
        "measured_ms": s.measured_ms,
        **_interval_json(s.stats),
        "probe": s.probe,
    }
    record = next((r for r in records if r.key == s.candidate.key), None)
    done = next((f for f in finished if f.record.key == s.candidate.key), None)
    if record is not None:
        row.update(
            {
                "trial": record.number,
                "state": record.state,
                "epochs": record.epochs,
                "val_acc": record.val_acc,
                "history": [list(h) for h in record.history],
            }
        )
    if done is not None:
        row.update(
            {
                "epochs": job.epochs,
                "val_acc": done.val_acc,
                "rank_acc": done.rank_acc,  # under --rank-by's shift (None: ranked on clean val_acc)
                "test_acc": done.test_acc,
                "final": done.final,
            }
        )
    fate, reason = _fate(s, screening, record, done, records, finished, chosen, job)
    return {**row, "fate": fate.value, "reason": reason}


def _fate(
    s: Screened,
    screening: Screening,
    record: TrialRecord | None,
    done: Any,
    records: list[TrialRecord],
    finished: list[Any],
    chosen: Any,
    job: SearchJob,
) -> tuple[Fate, dict[str, Any]]:
    budget, rule = screening.budget_ms, screening.budget_rule
    if done is chosen:
        return Fate.CHOSEN, {
            "p50_ms": chosen.p50_ms,
            "ci_low_ms": chosen.interval.low_ms,
            "ci_high_ms": chosen.interval.high_ms,
            "rounds": chosen.stats.rounds if chosen.stats is not None else None,
            "val_acc": chosen.val_acc,
            "budget_ms": budget,
            "budget_rule": rule.value,
            "missed_by_ms": max(0.0, missed_by(chosen.interval, budget, rule)),
            "screen_met": screening.met,
            "screen_p50_ms": job.entry(chosen.record.key).latency_ms,
        }
    if all(x.candidate.key != s.candidate.key for x in screening.survivors):
        if not screening.met:
            fastest = screening.survivors[0]
            return Fate.SLOWER_THAN_FASTEST, {
                "latency_ms": s.latency_ms,
                "measured": s.measured_ms is not None,
                "fastest": fastest.candidate.arch,
                "fastest_ms": fastest.latency_ms,
            }
        return Fate.OVER_BUDGET, {
            "latency_ms": s.latency_ms,
            "ci_low_ms": s.interval.low_ms,
            "ci_high_ms": s.interval.high_ms,
            "rounds": s.stats.rounds if s.stats is not None else None,
            "by_ms": missed_by(s.interval, budget, rule),
            "budget_ms": budget,
            "budget_rule": rule.value,
            "source": "measured" if s.measured_ms is not None else "predicted",
        }
    if done is not None:
        return _finished_fate(done, finished, chosen, screening, job)
    if record is None:
        return Fate.NOT_TRIED, {"n_trials": job.n_trials}
    if record.state != "pruned":
        return Fate.FAILED, {"state": record.state, "error": record.error, "epochs": record.epochs}
    return Fate.PRUNED, _pruned(record, records, job)


def _pruned(record: TrialRecord, records: list[TrialRecord], job: SearchJob) -> dict[str, Any]:
    epoch = record.epochs
    rivals = [(r.at(epoch), r) for r in records if r.at(epoch) is not None]
    best_acc, best = max(rivals, key=lambda p: p[0] or 0.0)
    return {
        "epoch": epoch,
        "val_acc": record.val_acc,
        "epochs": job.epochs,
        "best_arch": job.entry(best.key).arch,
        "best_val_acc": best_acc,
    }


def _finished_fate(
    done: Any, finished: list[Any], chosen: Any, screening: Screening, job: SearchJob
) -> tuple[Fate, dict[str, Any]]:
    budget, rule = screening.budget_ms, screening.budget_rule
    mine = {
        "p50_ms": done.p50_ms,
        "ci_low_ms": done.interval.low_ms,
        "ci_high_ms": done.interval.high_ms,
        "rounds": done.stats.rounds if done.stats is not None else None,
        "val_acc": done.val_acc,
        "rank_acc": done.rank_acc,
    }
    if not meets(done.interval, budget, rule):
        return Fate.OVER_BUDGET_FINAL, {
            **mine,
            "by_ms": missed_by(done.interval, budget, rule),
            "budget_ms": budget,
            "budget_rule": rule.value,
            "screen_p50_ms": job.entry(done.record.key).latency_ms,
        }

    def point(f: Any) -> tuple[Interval, float, int]:
        return f.interval, f.score, int(job.entry(f.record.key).params)

    better = [f for f in finished if f is not done and dominates(point(f), point(done))]
    if better:
        by = chosen if chosen in better else max(better, key=lambda f: f.score)
        return Fate.DOMINATED, {
            **mine,
            "by": job.entry(by.record.key).arch,
            "by_chosen": by is chosen,
            "tied": not clearly_faster(by.interval, done.interval),
            "by_p50_ms": by.p50_ms,
            "by_val_acc": by.val_acc,
        }
    return Fate.LESS_ACCURATE, {
        **mine,
        "chosen": job.entry(chosen.record.key).arch,
        "chosen_p50_ms": chosen.p50_ms,
        "chosen_val_acc": chosen.val_acc,
    }


def _early_front(records: list[TrialRecord], screening: Screening, epoch: int = 1) -> dict[str, Any]:
    """Every trial after its first epoch (all of them got that far): a front at equal, short training."""
    by_key = {s.candidate.key: s for s in screening.rows}
    points = [(r, r.at(epoch)) for r in records if r.at(epoch) is not None]
    kept = front([(by_key[r.key].interval, acc or 0.0, by_key[r.key].candidate.params) for r, acc in points])
    return {
        "epoch": epoch,
        "points": [
            {
                "arch": by_key[points[i][0].key].candidate.arch,
                "latency_ms": by_key[points[i][0].key].latency_ms,
                **_interval_json(by_key[points[i][0].key].stats),
                "val_acc": points[i][1],
            }
            for i in kept
        ],
    }
