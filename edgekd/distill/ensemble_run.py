"""An ensemble run folder: train the family (`edgekd.distill.ensemble`), then write each student alone.

What `edgekd ensemble --out DIR` leaves (the contract `select --from-ensemble` reads):
- `DIR/family.pt`: the family checkpoint (shared stem and every student; no adapters), loadable with
  `edgekd.models.load_model`;
- `DIR/student-w<fraction>.pt`, one per width: a plain built-in student (e.g. `cnn(depth=1,stem=12,width=7)`)
  with the shared stem copied in, whose meta records its width fraction, validation and test accuracy,
  the ensemble run it came from and the ensemble's training time; it exports like any student;
- `DIR/ensemble.json`: the manifest (`FORMAT`), listing the students and those numbers;
- `DIR/edgekd.sqlite`: the results store, unless another is named.

The folder is written whole or not at all: training runs in the work folder `.DIR.partial` beside it
(`family.pt.state` there is what `--resume` continues from), and the finished family, students and
manifest are staged beside DIR and renamed onto it (`edgekd._io.atomic_dir`), so a failed or interrupted
run leaves an earlier DIR as it was.

Times: `train_seconds` sums the training epochs' own time (optimisation steps only, across resumes), the
same measure a separate distillation's epochs record; `wall_seconds` is the last invocation end to end.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from edgekd._io import atomic_dir, recover, write_json
from edgekd.config import TrainConfig, parse
from edgekd.data import Split
from edgekd.distill import _ddp as ddp
from edgekd.distill.ensemble import (
    DEFAULT_FRACTIONS,
    TEMPERATURE,
    WEIGHTS,
    EnsembleFamily,
    EnsembleTraining,
    Member,
    OnlineEnsemble,
    extract_student,
    family_spec,
    make_adapters,
    parse_fractions,
    plan,
)
from edgekd.distill.objectives import Distillation
from edgekd.distill.task import DistillConfig
from edgekd.errors import UserError
from edgekd.store import Store, default_store

if TYPE_CHECKING:
    from edgekd.distill.trainer import TrainResult
    from edgekd.models import ArchSpec

FORMAT = "edgekd-ensemble-1"
MANIFEST = "ensemble.json"
FAMILY = "family.pt"


def work_dir(out_dir: Path) -> Path:
    """Where the family trains until it is done: beside OUT_DIR, so OUT_DIR changes only when complete."""
    return out_dir.parent / f".{out_dir.name}.partial"


def student_file(fraction: float) -> str:
    return f"student-w{float(fraction)}.pt"


def train_ensemble(
    student: str,
    data: str,
    out_dir: Path,
    cfg: TrainConfig,
    widths: str | Sequence[float] = DEFAULT_FRACTIONS,
    *,
    teacher: Path | None = None,
    guide: str | None = None,
    guide_weight: float | None = None,
    resume: bool = False,
    store: Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Online ensemble compression: train `student` at decreasing `widths` (fractions of its width) at once,
    on a shared stem, optionally guided by a `teacher` with the `guide` method on the logits (default kd).
    Writes OUT_DIR/family.pt, one OUT_DIR/student-w<fraction>.pt per width (a plain student, exported like
    any) and OUT_DIR/ensemble.json, the manifest it returns. See `edgekd.distill.ensemble`."""
    from edgekd.data import load_data
    from edgekd.distill.trainer import Trainer
    from edgekd.models import build_model, parse_arch

    fractions = parse_fractions(widths)
    if guide is not None and teacher is None:
        raise UserError(f"--guide {guide} needs a teacher to guide with; give --teacher CKPT, or drop --guide")
    plan(parse_arch(student), fractions)  # a family without width scaling fails before any data is loaded
    split = load_data(data, val_fraction=cfg.val_fraction, seed=cfg.seed, limit=cfg.limit)
    shape = split.train.input_shape
    base = parse_arch(student, in_channels=shape[0], num_classes=split.train.num_classes, image_size=shape[1])
    members = plan(base, fractions)
    guidance, guide_meta = _guide(teacher, guide or "kd", guide_weight, split) if teacher else (None, None)
    spec = family_spec(base, members)
    torch.manual_seed(cfg.seed)
    family = build_model(spec)
    assert isinstance(family, EnsembleFamily)
    adapters = make_adapters(family)
    task = {
        "method": "ensemble",
        "fractions": list(fractions),
        "temperature": TEMPERATURE,
        "weights": list(WEIGHTS),
        "guide": guide_meta,
    }
    meta = {
        "data": data,
        "classes": list(split.train.classes),
        "input_shape": list(shape),
        "method": "ensemble",
        "distill": task,
        "base": base.label(),
        "teacher": str(teacher) if teacher else None,
        "train": cfg.model_dump(),
    }
    recover(out_dir)  # a swap that a kill cut short is finished (or undone) before the store is opened
    out_dir.mkdir(parents=True, exist_ok=True)
    results = Store(store or default_store(out_dir))
    work = work_dir(out_dir)
    work.mkdir(exist_ok=True)
    trainer = Trainer(
        family,
        spec,
        OnlineEnsemble(adapters, guidance),
        split,
        cfg,
        work / FAMILY,
        results,
        "ensemble",
        meta,
        train_module=EnsembleTraining(family, adapters),
    )
    trained = _trained(work / FAMILY, family, spec, {**meta, "train": cfg.model_dump()}) if resume else None
    result = trained or trainer.fit(resume=resume, show_progress=progress)
    rank = ddp.from_env()
    if rank.main:  # under torchrun, rank 0 alone writes (the other ranks hold the same weights)
        with atomic_dir(out_dir, merge=True) as stage:
            shutil.copyfile(work / FAMILY, stage / FAMILY)
            students = _write_students(result, family, members, split, out_dir, stage, results, meta)
            write_json(stage / MANIFEST, students)
        shutil.rmtree(work, ignore_errors=True)
    ddp.barrier(rank)
    return load_manifest(out_dir)


def _trained(path: Path, family: EnsembleFamily, spec: ArchSpec, meta: dict[str, Any]) -> TrainResult | None:
    """The family a killed run finished training but had not yet written out (its checkpoint in the work
    folder, no resumable state left), if trained with these settings: loaded into `family`, so a resume
    writes it out without training again."""
    from edgekd.distill.trainer import TrainResult, state_path
    from edgekd.models import load_checkpoint

    if not path.is_file() or state_path(path).is_file():
        return None
    payload = load_checkpoint(path)
    held = payload.get("meta") or {}
    if payload.get("arch") != spec.model_dump() or any(held.get(k) != meta[k] for k in ("train", "distill")):
        return None
    family.load_state_dict(payload["state_dict"])
    history = list(held["history"])
    return TrainResult(path, history, float(held["test_acc"]), float(held["val_acc"]), int(held["run_id"]), 0.0)


def _write_students(
    result: TrainResult,
    family: EnsembleFamily,
    members: Sequence[Member],
    split: Split,
    out_dir: Path,
    stage: Path,
    store: Store,
    meta: dict[str, Any],
) -> dict[str, Any]:
    """Every student alone (`student-w<fraction>.pt`, written to `stage`, which becomes `out_dir`), and the
    manifest that lists them."""
    run = {
        "run_id": result.run_id,
        "family_checkpoint": str(out_dir / FAMILY),
        "manifest": str(out_dir / MANIFEST),
        "base": meta["base"],
        "fractions": [m.fraction for m in members],
        "train_seconds": sum(float(h["epoch_s"]) for h in result.history),
        "wall_seconds": result.seconds,
    }
    train = TrainConfig.model_validate(meta["train"])
    students = [
        _write_student(family, j, m, split, stage, store, {**meta, "ensemble": run}) for j, m in enumerate(members)
    ]
    data = meta["data"]
    return {
        **run,
        "format": FORMAT,
        "family_checkpoint": FAMILY,
        "manifest": MANIFEST,
        "data": str(Path(data).resolve()) if Path(data).exists() else data,  # read from elsewhere later
        "train": train.model_dump(mode="json"),
        "epochs": train.epochs,
        "teacher": meta["teacher"],
        "guide": meta["distill"]["guide"],
        "store": str(store.path),
        "ensemble": {"val_acc": result.val_accuracy, "test_acc": result.test_accuracy},
        "students": students,
    }


def _guide(teacher: Path, method: str, weight: float | None, split: Split) -> tuple[Distillation, dict[str, Any]]:
    """The external teacher's guidance: `method`'s loss on each student's logits, weighted."""
    from edgekd._io import file_sha256
    from edgekd.config import cache_dir
    from edgekd.distill import _ddp
    from edgekd.distill.cache import CacheSpec
    from edgekd.distill.methods import LOGITS, loss_parameters
    from edgekd.distill.task import build_loss
    from edgekd.distill.trainer import check_classes, output_count
    from edgekd.models import load_model

    t_model, t_spec, _ = load_model(teacher)
    shape = split.train.input_shape
    if (t_spec.in_channels, t_spec.image_size, t_spec.image_size) != shape:
        raise UserError(
            f"the teacher takes {t_spec.in_channels}x{t_spec.image_size}x{t_spec.image_size} inputs"
            f" but the data has {'x'.join(map(str, shape))}; use the teacher's data"
        )
    check_classes(output_count(t_model, shape), split.train, "teacher")
    task = parse(DistillConfig, {"method": method, "kd_weight": weight}, "guide options")
    pairs = [(LOGITS, LOGITS)] if "pairs" in loss_parameters(method) else None  # logits only, for any method
    loss = build_loss(task, pairs)
    # as in `edgekd distill`: cached by sample index, except under torchrun (no rank sees a whole epoch)
    cache = (
        None
        if _ddp.from_env().active
        else CacheSpec(cache_dir() / "teacher-outputs", split.train.fingerprint(), len(split.train))
    )
    meta = {
        "method": method,
        "weight": task.kd_weight,
        "loss_params": dict(task.loss_params),
        "teacher": str(teacher),
        "teacher_sha256": file_sha256(teacher),
    }
    return Distillation(t_model, loss, 0.0, task.kd_weight, cache), meta


def _write_student(
    family: EnsembleFamily, index: int, member: Member, split: Split, out_dir: Path, store: Store, meta: dict[str, Any]
) -> dict[str, Any]:
    """Student `index` alone: evaluated, saved as a plain checkpoint, logged as a run of its own."""
    from edgekd.distill.trainer import evaluate
    from edgekd.models import save_checkpoint
    from edgekd.models.zoo import count_params

    model = extract_student(family, index, member.spec)
    cpu = torch.device("cpu")
    _, val_acc = evaluate(model, split.val, cpu)
    _, test_acc = evaluate(model, split.test, cpu)
    path = out_dir / student_file(member.fraction)
    row = {
        "fraction": member.fraction,
        "arch": member.spec.label(),
        "checkpoint": path.name,
        "params": count_params(model),
        "val_acc": val_acc,
        "test_acc": test_acc,
    }
    save_checkpoint(
        path,
        model,
        member.spec,
        {
            **meta,
            "kind": "ensemble-student",
            "arch": member.spec.label(),
            "width_fraction": member.fraction,
            "val_acc": val_acc,
            "test_acc": test_acc,
            "split": split.info,
        },
    )
    run = store.start_run(
        "ensemble-student",
        path.name,
        {"arch": member.spec.label(), "fraction": member.fraction, "ensemble_run": meta["ensemble"]["run_id"]},
    )
    store.log_metric(run, "val_acc", val_acc)
    store.log_metric(run, "test_acc", test_acc)
    return row


def load_manifest(run_dir: Path) -> dict[str, Any]:
    """The manifest of an ensemble run folder, its student checkpoints checked present."""
    import json

    path = Path(run_dir) / MANIFEST
    fix = "give a folder written by `edgekd ensemble --out DIR`"
    if not path.is_file():
        raise UserError(f"{run_dir} is not an ensemble run (no {MANIFEST}); {fix}")
    try:
        manifest = json.loads(path.read_text())
    except ValueError:
        raise UserError(f"{path} is not valid JSON; {fix}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise UserError(f"{path} is not an ensemble manifest ({FORMAT}); {fix}")
    missing = [s["checkpoint"] for s in manifest["students"] if not (Path(run_dir) / s["checkpoint"]).is_file()]
    if missing:
        raise UserError(f"ensemble run {run_dir} lacks {missing[0]}; rerun `edgekd ensemble` with the same --out")
    return manifest
