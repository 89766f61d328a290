"""Budgeted selection, end to end: screen by latency, search by distilling, finish, build, re-measure.

1. Screen (`screen.py`): predicted, then measured latency of every candidate on the target; the ones
   over the budget are dropped before any training.
2. Search (`search.py`): an Optuna study distils the survivors; successive halving over epochs stops
   the trailing ones early. One or several worker processes, one study, in any database.
3. Finish: the best `finish_top` trials (furthest trained, then most accurate) that were pruned resume
   from their checkpoint to the full epoch budget.
4. Build and re-measure: every finished student is exported and built for the target (INT8 with
   calibration when the profile says so) and measured again, side by side in interleaved rounds beside
   a null model (`edgekd.bench.compare`), with its accuracy on the test split. A student whose interval
   holds the budget, its rounds stopped short of the asked width (time cap, round limit), is measured
   in a second pass and its rounds of both pooled; a budget still inside the pooled interval is reported
   as undetermined, not as met or missed.
5. Choose (`intervals.py`): the most accurate on validation among those whose latency interval meets
   the budget by the budget rule (upper end, or median, within it); when none does, the fastest and
   those tied with it (overlapping intervals), best by accuracy then size, with how much it misses by.
   Every other candidate gets the reason it lost (`verdicts.py`), and DIR/selection.json and
   DIR/selection.md are written.

What a rerun resumes from stays in DIR as it is written (the store with the study, students/,
candidates/, workers/; each file written atomically). The outcome, DIR/final/ and DIR/selection.json/.md,
is staged beside DIR and renamed onto it in one step (`edgekd._io.atomic_dir`), and its store records are
written after that: a failed or interrupted selection leaves the previous outcome as it was.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import Field, field_validator

from edgekd._io import atomic_dir, recover, relocate, relocated, write_json, write_text
from edgekd.bench import TimingConfig
from edgekd.bench.protocol import DEFAULT_RULE, ROUND_TIMING, STOP_PRECISION, RoundStats, StopRule
from edgekd.config import Frozen, TargetProfile, TrainConfig, load_target
from edgekd.distill.task import DistillConfig
from edgekd.errors import EdgekdError, UserError
from edgekd.select.intervals import BudgetRule, Interval, stats_from_json, undecided
from edgekd.select.screen import Screening, screen
from edgekd.select.search import (
    PrunerKind,
    SearchJob,
    TrialRecord,
    hide_password,
    open_study,
    run_trials,
    spawn_workers,
    trial_records,
)
from edgekd.select.shift_rank import check_rank_by, rank_under_shift
from edgekd.select.space import Candidate, SearchSpace, load_space
from edgekd.store import Store, default_store

T = TypeVar("T")


class SelectConfig(Frozen):
    """How the selection searches (the training itself is a TrainConfig and a DistillConfig)."""

    budget_ms: float | None = Field(default=None, description="latency budget in ms; None = the target's")
    budget_rule: BudgetRule = Field(
        default=BudgetRule.UPPER, description="met when the CI's upper end (upper) or the median (p50) is within it"
    )
    n_trials: int | None = Field(default=None, ge=1, description="None = one per in-budget candidate")
    workers: int = Field(default=1, ge=1, description="worker processes on the study")
    pruner: PrunerKind = PrunerKind.SUCCESSIVE_HALVING
    reduction_factor: int = Field(default=3, ge=2)
    finish_top: int = Field(default=1, ge=1, description="how many of the best trials to train fully")
    probes: int = Field(default=8, ge=2, description="candidates measured to fit the latency predictor")
    storage: str | None = Field(default=None, description="study database URL; None = the workspace store")
    study_name: str | None = None
    students: Path | None = Field(
        default=None,
        description="where candidates are distilled; None = OUT/students."
        " Selections for several targets that share it train each student once",
    )
    rank_by: str = Field(
        default="clean",
        description="rank finished students by validation accuracy: clean, NAME-SEVERITY or mean-shift (shift_rank.py)",
    )

    @field_validator("rank_by")
    @classmethod
    def _rank_by(cls, value: str) -> str:
        return check_rank_by(value)


@dataclass(frozen=True)
class Finished:
    """A student trained for the full budget, and its build for the target re-measured."""

    record: TrialRecord
    val_acc: float
    test_acc: float | None
    added_epochs: int
    final: dict[str, Any]
    rank_acc: float | None = None  # validation accuracy under --rank-by's shift (None: clean)
    rank_scores: dict[str, float] | None = None

    @property
    def score(self) -> float:
        """What the choice ranks on: validation accuracy, under --rank-by's shift when given."""
        return self.val_acc if self.rank_acc is None else self.rank_acc

    @property
    def p50_ms(self) -> float:
        """The median over rounds."""
        return float(self.final["p50_ms"])

    @property
    def stats(self) -> RoundStats | None:
        rounds = self.final.get("round_stats")
        return stats_from_json(rounds) if rounds else None

    @property
    def interval(self) -> Interval:
        stats = self.stats
        return Interval.of(stats) if stats is not None else Interval.point(self.p50_ms)


def select(
    teacher: Path,
    space: str | Path | SearchSpace,
    target: str,
    data: str,
    out: Path,
    cfg: TrainConfig,
    task: DistillConfig,
    options: SelectConfig | None = None,
    *,
    timing: TimingConfig | None = None,
    rule: StopRule | None = None,
    store: Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Choose the student for `target` within the latency budget; returns what DIR/selection.json holds.
    `timing` is one round's block and `rule` when rounds stop, for screening and final measurements."""
    from edgekd.runtimes import get_runtime

    options = options or SelectConfig()
    profile = load_target(target)
    budget = check_budget(options.budget_ms, profile)
    get_runtime(profile.runtime)  # an absent runtime fails here, before any work
    if not Path(teacher).is_file():
        raise UserError(f"teacher checkpoint not found: {teacher}; train one with `edgekd train-teacher`")
    searchable = space if isinstance(space, SearchSpace) else load_space(space)
    candidates, mismatched = match_data(searchable.candidates(), Path(teacher), data, cfg)
    recover(out)  # a swap that a kill cut short is finished (or undone) before the store is opened
    out.mkdir(parents=True, exist_ok=True)
    results = Store(store or default_store(out))
    clock: dict[str, float] = {}
    screening = timed(
        clock,
        "screen",
        lambda: screen(
            candidates,
            profile,
            budget,
            out / "candidates",
            results,
            timing,
            probes=options.probes,
            rule=rule,
            budget_rule=options.budget_rule,
        ),
    )
    job = make_job(teacher, data, out, results, cfg, task, screening, options)
    url = options.storage or f"sqlite:///{results.path.resolve()}"
    name = options.study_name or f"select-{profile.name}-{job.digest()}"
    study = open_study(job, url, name)
    timed(
        clock,
        "search",
        lambda: (
            spawn_workers(url, name, options.workers, out / "workers")
            if options.workers > 1
            else run_trials(study, job)
        ),
    )
    records = trial_records(study)
    resumed = timed(clock, "finish", lambda: finish(records, job, options.finish_top, progress))
    from edgekd.select.verdicts import assemble

    pending = Pending()
    with atomic_dir(out, merge=True) as stage:
        finished = timed(
            clock,
            "final",
            lambda: build_finals(records, resumed, job, target, stage, pending, timing, rule, screening.budget_ms),
        )
        finished = timed(clock, "rank", lambda: rank_under_shift(finished, job.checkpoint, job.data, options.rank_by))
        selection = assemble(profile, screening, mismatched, records, finished, job, clock)
        selection["rank_by"] = options.rank_by
        selection["study"] = {
            "storage": hide_password(url),
            "name": name,
            "pruner": job.pruner.value,
            "reduction_factor": job.reduction_factor,
            "n_trials": job.n_trials,
            "workers": options.workers,
            "finish_top": options.finish_top,
        }
        selection = write_selection(stage, out, selection)
    pending.commit(results, stage, out)
    log_selection(selection, results)
    return selection


def check_budget(budget_ms: float | None, profile: TargetProfile) -> float:
    budget = budget_ms if budget_ms is not None else profile.latency_budget_ms
    if budget is None:
        raise UserError(f"target {profile.name} names no latency_budget_ms; give --budget-ms")
    if not budget > 0:
        raise UserError(f"the latency budget must be a positive number of ms, got {budget:g}; give --budget-ms > 0")
    return float(budget)


def match_data(
    candidates: list[Candidate], teacher: Path, data: str, cfg: TrainConfig
) -> tuple[list[Candidate], list[tuple[Candidate, tuple[int, ...]]]]:
    """The candidates whose input and classes match the data (the teacher must too); the others with
    the data's shape. Students are distilled at the data's resolution, so other resolutions cannot be."""
    from edgekd.data import load_data
    from edgekd.models import load_model

    split = load_data(data, val_fraction=cfg.val_fraction, seed=cfg.seed, limit=cfg.limit)
    shape, classes = split.train.input_shape, split.train.num_classes
    _, t_spec, _ = load_model(teacher)
    if (t_spec.in_channels, t_spec.image_size, t_spec.image_size) != shape:
        raise UserError(
            f"the teacher takes {t_spec.in_channels}x{t_spec.image_size}x{t_spec.image_size} inputs but"
            f" the data has {'x'.join(map(str, shape))}; use the teacher's data"
        )
    fits = [c for c in candidates if c.input_shape == shape and c.spec.num_classes == classes]
    if not fits:
        raise UserError(
            f"no candidate of the space takes the data's {'x'.join(map(str, shape))} inputs with"
            f" {classes} classes; set the space's image_size, in_channels and num_classes to match"
        )
    return fits, [(c, shape) for c in candidates if c not in fits]


def make_job(
    teacher: Path,
    data: str,
    out: Path,
    store: Store,
    cfg: TrainConfig,
    task: DistillConfig,
    screening: Screening,
    options: SelectConfig,
) -> SearchJob:
    from edgekd.select.search import Entry

    entries = tuple(
        Entry(s.candidate.key, s.candidate.arch, s.latency_ms, s.candidate.params, s.candidate.flops)
        for s in screening.survivors
    )
    from edgekd._io import file_sha256

    spec = data if not Path(data).exists() else str(Path(data).resolve())  # workers may run elsewhere
    students = str(Path(options.students).resolve()) if options.students else None
    return SearchJob(
        teacher=str(Path(teacher).resolve()),
        teacher_sha256=file_sha256(Path(teacher)),
        students=students,
        data=spec,
        out=str(out.resolve()),
        store=str(store.path.resolve()),
        train=cfg.model_dump(mode="json"),
        task=task.model_dump(mode="json"),
        entries=entries,
        n_trials=min(options.n_trials or len(entries), len(entries)),
        pruner=options.pruner,
        reduction_factor=options.reduction_factor,
        seed=cfg.seed,
    )


def finish(records: list[TrialRecord], job: SearchJob, top: int, progress: bool) -> dict[int, tuple[Any, int]]:
    """Resume the best `top` trials that stopped early to the full budget: {trial number: (TrainResult,
    epochs added)}. Best = trained furthest, then most accurate there (what successive halving ranks)."""
    from edgekd.distill.run import distill
    from edgekd.distill.trainer import TrainResult, state_path
    from edgekd.select.search import trained_before

    cfg, task = TrainConfig.model_validate(job.train), DistillConfig.model_validate(job.task)
    ranked = sorted(
        (r for r in records if r.history and r.state in ("complete", "pruned")),
        key=lambda r: (r.epochs, r.val_acc or 0.0),
        reverse=True,
    )
    resumed = {}
    for r in ranked[:top]:
        if r.state == "complete":
            continue
        out = job.checkpoint(r.key)
        before = trained_before(out, cfg, task)
        if before.test_acc is not None:  # an earlier study (another target) already finished it
            history = list(before.history)
            resumed[r.number] = (TrainResult(out, history, before.test_acc, history[-1]["val_acc"], 0, 0.0), 0)
            continue
        added = job.epochs - r.epochs if state_path(out).is_file() else job.epochs
        result = distill(
            Path(job.teacher),
            job.entry(r.key).arch,
            job.data,
            out,
            cfg,
            task,
            resume=True,
            store=Path(job.store),
            progress=progress,
        )
        resumed[r.number] = (result, added)
    return resumed


@dataclass
class Pending:
    """Store records of builds made in a staging folder, written once it is renamed onto its output folder
    (`commit`), so the store names the output's paths and nothing of an output that never came to be."""

    artifacts: list[tuple[Path, dict[str, Any]]] = field(default_factory=list)
    benchmarks: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def commit(self, store: Store, stage: Path, out: Path) -> None:
        for path, info in self.artifacts:
            store.log_artifact(Path(relocated(str(path), stage, out)), relocated(info, stage, out))
        for artifact, result in self.benchmarks:
            store.log_benchmark(relocated(artifact, stage, out), relocated(result, stage, out))
        self.artifacts.clear()
        self.benchmarks.clear()


def build_finals(
    records: list[TrialRecord],
    resumed: dict[int, tuple[Any, int]],
    job: SearchJob,
    target: str,
    out: Path,
    pending: Pending,
    timing: TimingConfig | None,
    rule: StopRule | None = None,
    budget_ms: float | None = None,
) -> list[Finished]:
    """Export and build every student trained for the full budget into OUT/final (OUT: the staging folder),
    then re-measure them side by side (`measure_finals`); their store records are left in `pending`."""
    done: list[tuple[TrialRecord, float, float | None, int]] = []
    for r in records:
        if r.state == "complete" and r.val_acc is not None:
            done.append((r, r.val_acc, r.test_acc, 0))
        elif r.number in resumed:
            result, added = resumed[r.number]
            history = tuple((int(h["epoch"]), float(h["val_acc"])) for h in result.history)
            test = float(result.test_accuracy)
            record = TrialRecord(r.number, r.key, "finished", history, test, r.checkpoint)
            done.append((record, float(result.val_accuracy), test, added))
    if not done:
        errors = [r.error for r in records if r.error]
        raise EdgekdError(
            "no candidate finished training" + (f"; first error: {errors[0]}" if errors else "; see the workers' logs")
        )
    builds = {}
    for r, *_ in done:
        folder = out / "final" / job.checkpoint(r.key).parent.name
        builds[r.key] = (folder, export_final(job.checkpoint(r.key), target, job.data, folder, pending))
    finals = measure_finals(builds, job.data, pending, timing, rule, budget_ms)
    return [Finished(r, val, test, added, finals[r.key]) for r, val, test, added in done]


def export_final(checkpoint: Path, target: str, data: str, folder: Path, pending: Pending) -> dict[str, Any]:
    """The student built for the target as `edgekd export` builds it (its artifact.json fields), into
    `folder` inside a staging folder; its store record is left in `pending`."""
    from edgekd.export.artifact import build_artifact

    folder.mkdir(parents=True, exist_ok=True)
    info = build_artifact(str(checkpoint), load_target(target), folder, data=data)
    pending.artifacts.append((folder / info["artifact"], info))
    return info


def measure_finals(
    builds: dict[str, tuple[Path, dict[str, Any]]],
    data: str | None,
    pending: Pending,
    timing: TimingConfig | None,
    rule: StopRule | None,
    budget_ms: float | None = None,
) -> dict[str, dict[str, Any]]:
    """Measure built students side by side (`compare`: warm workers, interleaved rounds, a null floor),
    by the same round timing and stop rule as the screening, so the two latencies compare; each with
    its accuracy on `data`'s test split (None: not measured). Returns each student's `final` record, by
    name. With a budget, the students it leaves undecided get a second pass (`settle`)."""
    finals = _measure_once(builds, data, pending, timing, rule)
    return settle(finals, builds, pending, timing, rule, budget_ms) if budget_ms is not None else finals


def settle(
    finals: dict[str, dict[str, Any]],
    builds: dict[str, tuple[Path, dict[str, Any]]],
    pending: Pending,
    timing: TimingConfig | None,
    rule: StopRule | None,
    budget_ms: float,
) -> dict[str, dict[str, Any]]:
    """The finals whose interval holds the budget and whose rounds stopped short of the asked width (a
    busy spell during the pass, the time cap or round limit reached) measured again side by side, each
    one's rounds of both passes pooled into one interval (`passes` keeps each pass's statistics). One
    noisy pass then does not decide the verdict alone; where the pooled interval still holds the budget
    the verdict is "undetermined" (`intervals.verdict`)."""
    again = [
        name
        for name, f in finals.items()
        if f["stopped_by"] != STOP_PRECISION
        and undecided(Interval(f["p50_ms"], f["ci_low_ms"], f["ci_high_ms"]), budget_ms)
    ]
    if not again:
        return finals
    second = _measure_once({name: builds[name] for name in again}, None, pending, timing, rule)
    settled = dict(finals)
    for name in again:
        first, later = finals[name]["round_stats"], second[name]["round_stats"]
        pooled = RoundStats.from_p50s(
            [*first["p50s_ms"], *later["p50s_ms"]], rule or DEFAULT_RULE, str(later["stopped_by"])
        )
        settled[name] = {**finals[name], **_latency_fields(pooled), "passes": [first, later]}
    return settled


def _latency_fields(s: RoundStats) -> dict[str, Any]:
    return {
        "p50_ms": s.median_ms,
        "ci_low_ms": s.ci_low_ms,
        "ci_high_ms": s.ci_high_ms,
        "rounds": s.rounds,
        "stopped_by": s.stopped_by,
        "round_stats": s.to_json(),
    }


def _measure_once(
    builds: dict[str, tuple[Path, dict[str, Any]]],
    data: str | None,
    pending: Pending,
    timing: TimingConfig | None,
    rule: StopRule | None,
) -> dict[str, dict[str, Any]]:
    from edgekd.bench import resolve_artifact
    from edgekd.bench.compare import compare

    artifacts = {name: resolve_artifact(folder) for name, (folder, _) in builds.items()}
    comparison = compare(artifacts, data=data, timing=timing or ROUND_TIMING, rule=rule or DEFAULT_RULE)
    finals = {}
    for m in comparison.models:
        pending.benchmarks.append((str(m.artifact.path), m.to_json()))
        folder, info = builds[m.name]
        s = m.rounds.stats
        finals[m.name] = {
            "dir": str(folder),
            "artifact": info["artifact"],
            "precision": info["precision"],
            **_latency_fields(s),
            "floor": m.floor.rounds.stats.to_json() if m.floor is not None else None,
            "accuracy": m.ready.get("accuracy"),
            "quantization": info.get("quantization"),
        }
    return finals


def final_build(
    checkpoint: Path,
    target: str,
    data: str,
    folder: Path,
    pending: Pending,
    timing: TimingConfig | None,
    rule: StopRule | None = None,
    budget_ms: float | None = None,
) -> dict[str, Any]:
    """One student built for the target and measured in rounds beside the null model, with its accuracy
    (`export_final` + `measure_finals` of one)."""
    info = export_final(checkpoint, target, data, folder, pending)
    return measure_finals({"student": (folder, info)}, data, pending, timing, rule, budget_ms)["student"]


def write_selection(stage: Path, out: Path, selection: dict[str, Any]) -> dict[str, Any]:
    """selection.json and selection.md into the staging folder `stage` of `out`, naming `out`'s paths
    (in them and in the text files of the builds staged there); returns the selection so named."""
    from edgekd.report.selection import render_markdown

    named: dict[str, Any] = relocated(selection, stage, out)
    named["files"] = {"json": str(out / "selection.json"), "markdown": str(out / "selection.md")}
    relocate(stage, out)
    write_json(stage / "selection.json", named)
    write_text(stage / "selection.md", render_markdown(named))
    return named


def log_selection(selection: dict[str, Any], store: Store) -> None:
    """A `select` run in the results store, once the selection's folder is in place."""
    chosen = selection["chosen"]
    run = store.start_run(
        "select",
        f"select-{selection['target']['name']}",
        {
            "budget_ms": selection["budget_ms"],
            "budget_rule": selection["budget_rule"],
            "chosen": chosen["arch"],
            "met_budget": selection["met_budget"],
            "study": selection.get("study"),
            "selection": selection["files"]["json"],
        },
    )
    metrics = {
        "p50_ms": chosen["p50_ms"],
        "ci_high_ms": chosen.get("ci_high_ms"),
        "val_acc": chosen["val_acc"],
        "test_acc": chosen.get("test_acc"),
        "student_epochs": selection["compute"]["student_epochs"],
    }
    for name, value in metrics.items():
        if value is not None:
            store.log_metric(run, name, float(value))


def timed(clock: dict[str, float], stage: str, fn: Callable[[], T]) -> T:
    start = time.perf_counter()
    try:
        return fn()
    finally:
        clock[stage] = time.perf_counter() - start
