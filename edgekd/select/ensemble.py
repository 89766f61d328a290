"""Selection from an ensemble run: the family's students are the candidates, already trained.

1. Screen: every student's latency on the target, measured with the selection's own machinery
   (`screen` -> `measure_candidate`: an untrained copy built for the target, THE timing loop, cached in the
   store); the ones over the budget drop out (when none meets it, the fastest and those tied with it go on).
2. Build and re-measure: every student left is exported and built for the target from its checkpoint and
   measured again with its accuracy (`pipeline.final_build`), in a folder staged beside DIR.
3. Choose: the most accurate on validation among those that re-measure within the budget (else the
   fastest), with every other student's reason (`verdicts.assemble`); DIR/selection.json and .md are
   written as for `select` over a space, so `edgekd report` reads the run alike, and the staged folder is
   renamed onto DIR (a failed or interrupted run leaves the previous outcome as it was).
4. Training time: the ensemble's measured training time against distilling each student separately for
   the same epochs. That is estimated from real epochs: each width is distilled for up to two epochs with
   the same data and settings (the teacher: `--teacher`, else the ensemble's guiding teacher, else labels
   alone), and its first epoch plus (epochs - 1) times its second counts as its full run. The teacher
   output cache is on, as in `edgekd distill`, so later epochs (and widths) read the teacher's outputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekd._io import atomic_dir, recover
from edgekd.bench import TimingConfig
from edgekd.bench.protocol import StopRule
from edgekd.config import TrainConfig, load_target
from edgekd.distill.ensemble_run import load_manifest
from edgekd.distill.task import DistillConfig
from edgekd.models import ArchSpec
from edgekd.select.pipeline import Finished, Pending, check_budget, final_build, log_selection, timed, write_selection
from edgekd.select.screen import Screening, screen
from edgekd.select.search import Entry, SearchJob, TrialRecord
from edgekd.select.space import Candidate, make_candidate, one_thread
from edgekd.store import Store, default_store

MEASURED_EPOCHS = 2  # per width, for the separate-distillation estimate


@dataclass(frozen=True)
class EnsembleJob(SearchJob):
    """The selection's job when the candidates come trained from an ensemble run: no study, and each
    candidate's checkpoint is its student file in the run folder."""

    paths: tuple[tuple[str, str], ...] = ()  # (candidate key, checkpoint path)

    def checkpoint(self, key: str) -> Path:
        return Path(dict(self.paths)[key])


def select_from_ensemble(
    run_dir: Path,
    target: str,
    out: Path,
    *,
    budget_ms: float | None = None,
    teacher: Path | None = None,
    task: DistillConfig | None = None,
    timing: TimingConfig | None = None,
    rule: StopRule | None = None,
    store: Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Choose the ensemble student for `target` within the latency budget; returns what DIR/selection.json
    holds. The data and training settings are the ensemble's; `teacher` and `task` only serve the estimate
    of distilling each student separately."""
    from edgekd.runtimes import get_runtime
    from edgekd.select.verdicts import assemble

    manifest = load_manifest(run_dir)
    profile = load_target(target)
    budget = check_budget(budget_ms, profile)
    get_runtime(profile.runtime)  # an absent runtime fails here, before any work
    recover(out)  # a swap that a kill cut short is finished (or undone) before the store is opened
    out.mkdir(parents=True, exist_ok=True)
    results = Store(store or default_store(out))
    data, epochs = manifest["data"], int(manifest["epochs"])
    with one_thread():
        candidates = [make_candidate(ArchSpec.model_validate(_spec(run_dir, s))) for s in manifest["students"]]
    clock: dict[str, float] = {}
    screening = timed(
        clock,
        "screen",
        lambda: screen(
            candidates, profile, budget, out / "candidates", results, timing, probes=len(candidates), rule=rule
        ),
    )
    records = [
        TrialRecord(
            j, c.key, "complete", ((epochs, float(s["val_acc"])),), s["test_acc"], str(Path(run_dir) / s["checkpoint"])
        )
        for j, (c, s) in enumerate(zip(candidates, manifest["students"], strict=True))
    ]
    job = _job(manifest, out, results, candidates, screening, records, task)
    estimate = timed(
        clock,
        "separate timing",
        lambda: separate_estimate(manifest, out / "timing", teacher, task or DistillConfig(), results, progress),
    )
    pending = Pending()
    with atomic_dir(out, merge=True) as stage:  # the outcome is staged and renamed onto OUT in one step
        finished = timed(
            clock,
            "final",
            lambda: [
                Finished(
                    r,
                    float(r.val_acc or 0.0),
                    r.test_acc,
                    0,
                    final_build(
                        job.checkpoint(r.key),
                        target,
                        data,
                        stage / "final" / Path(str(r.checkpoint)).stem,
                        pending,
                        timing,
                        rule,
                        screening.budget_ms,
                    ),
                )
                for r in records
                if any(s.candidate.key == r.key for s in screening.survivors)
            ],
        )
        selection = assemble(profile, screening, [], records, finished, job, clock)
        selection.update(_ensemble_blocks(manifest, run_dir, estimate, clock, results))
        _explain_screened(selection)
        selection = write_selection(stage, out, selection)
        _append_savings(stage, selection)
    pending.commit(results, stage, out)
    log_selection(selection, results)
    return selection


def _spec(run_dir: Path, student: dict[str, Any]) -> dict[str, Any]:
    from edgekd.models import load_checkpoint

    result: dict[str, Any] = load_checkpoint(Path(run_dir) / student["checkpoint"])["arch"]
    return result


def _job(
    manifest: dict[str, Any],
    out: Path,
    store: Store,
    candidates: list[Candidate],
    screening: Screening,
    records: list[TrialRecord],
    task: DistillConfig | None,
) -> EnsembleJob:
    latency = {s.candidate.key: s.latency_ms for s in screening.rows}
    entries = tuple(Entry(c.key, c.arch, latency[c.key], c.params, c.flops) for c in candidates)
    guide = manifest.get("guide") or {}
    return EnsembleJob(
        teacher=guide.get("teacher") or "",
        data=manifest["data"],
        out=str(out.resolve()),
        store=str(store.path.resolve()),
        train=manifest["train"],
        task=(task or DistillConfig()).model_dump(mode="json"),
        entries=entries,
        n_trials=len(entries),
        paths=tuple((r.key, str(r.checkpoint)) for r in records),
    )


def separate_estimate(
    manifest: dict[str, Any], workdir: Path, teacher: Path | None, task: DistillConfig, store: Store, progress: bool
) -> dict[str, Any]:
    """Distil each width alone for up to MEASURED_EPOCHS epochs; its full run is estimated as the first
    epoch plus (epochs - 1) times the last measured one (epoch times only, as the ensemble's)."""
    from edgekd.distill.run import distill, train_teacher

    cfg = TrainConfig.model_validate(manifest["train"])
    short = cfg.model_copy(update={"epochs": min(MEASURED_EPOCHS, cfg.epochs)})
    guide = manifest.get("guide") or {}
    source = teacher or (Path(guide["teacher"]) if guide.get("teacher") else None)
    widths = []
    for s in manifest["students"]:
        out = workdir / f"{Path(s['checkpoint']).stem}-separate.pt"  # its run's name in the store
        if source is not None:
            result = distill(source, s["arch"], manifest["data"], out, short, task, store=store.path, progress=progress)
        else:
            result = train_teacher(s["arch"], manifest["data"], out, short, store=store.path, progress=progress)
        epoch_s = [float(h["epoch_s"]) for h in result.history]
        widths.append(
            {
                "fraction": s["fraction"],
                "arch": s["arch"],
                "epoch_s": epoch_s,
                "estimate_s": epoch_s[0] + (cfg.epochs - 1) * epoch_s[-1],
            }
        )
    return {
        "basis": f"distilled ({task.method}) from {source}" if source is not None else "trained on labels alone",
        "teacher": str(source) if source is not None else None,
        "measured_epochs": short.epochs,
        "widths": widths,
        "separate_estimate_s": sum(w["estimate_s"] for w in widths),
    }


def _ensemble_blocks(
    manifest: dict[str, Any], run_dir: Path, estimate: dict[str, Any], clock: dict[str, float], store: Store
) -> dict[str, Any]:
    """selection.json's compute block for an ensemble (every student trained every epoch, so the epochs are
    the exhaustive ones; its time against separate training is in `ensemble`), its study block (there was
    none) and the ensemble run it came from."""
    n, epochs = len(manifest["students"]), int(manifest["epochs"])
    ensemble_s, separate_s = float(manifest["train_seconds"]), float(estimate["separate_estimate_s"])
    return {
        "compute": {
            "student_epochs": n * epochs,
            "exhaustive_epochs": n * epochs,
            "epochs_per_student": epochs,
            "ratio": 1.0,
            "seconds": {"ensemble training": ensemble_s, "separate training (estimated)": separate_s, **clock},
            "ensemble": {
                **estimate,
                "ensemble_train_s": ensemble_s,
                "students": n,
                "epochs": epochs,
                "time_ratio": ensemble_s / separate_s if separate_s > 0 else None,
                "estimated": True,
            },
        },
        "study": {
            "name": f"none: the students of ensemble run {run_dir}",
            "pruner": "none",
            "reduction_factor": "-",
            "storage": str(store.path),
        },
        "ensemble": {
            "dir": str(run_dir),
            "run_id": manifest["run_id"],
            "base": manifest["base"],
            "fractions": manifest["fractions"],
            "val_acc": manifest["ensemble"]["val_acc"],
            "test_acc": manifest["ensemble"]["test_acc"],
        },
    }


def _explain_screened(selection: dict[str, Any]) -> None:
    """Students screened out were trained all the same (in the ensemble); their words say so."""
    from edgekd.report.ensemble import trained_in_ensemble
    from edgekd.select.verdicts import Fate

    for row in selection["candidates"]:
        if row["fate"] in (Fate.OVER_BUDGET.value, Fate.SLOWER_THAN_FASTEST.value):
            row["why"] = trained_in_ensemble(row["why"])


def _append_savings(out: Path, selection: dict[str, Any]) -> None:
    from edgekd._io import write_text
    from edgekd.report.ensemble import savings_line

    md = out / "selection.md"
    write_text(md, md.read_text() + f"\n{savings_line(selection)}.\n")
