"""The distillation stage's entry points: train a model on labels (`train_teacher`), or distil a student
from a teacher with a registered method (`distill`). `edgekd.api` and the CLI call these; so do
selection and the ensemble, which sit above this stage."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edgekd._io import file_sha256
from edgekd.config import TrainConfig
from edgekd.data.domains import DomainPlan, source_split
from edgekd.distill.cache import teacher_cache
from edgekd.distill.task import DistillConfig
from edgekd.errors import UserError
from edgekd.store import Store, default_store


def store_for(out: Path, store: Path | None) -> Store:
    out.parent.mkdir(parents=True, exist_ok=True)
    return Store(store or default_store(out.parent))


def _check_input(spec_shape: tuple[int, int, int], data_shape: tuple[int, int, int], role: str) -> None:
    if spec_shape != data_shape:
        raise UserError(
            f"the {role} takes inputs of shape {spec_shape} (C, H, W) but the data has {data_shape};"
            f" use data of the {role}'s shape or a {role} built for this data"
        )


def train_teacher(
    arch: str,
    data: str,
    out: Path,
    cfg: TrainConfig,
    *,
    resume: bool = False,
    store: Path | None = None,
    progress: bool = True,
    hssakd: bool = False,
    branches: Sequence[str] | None = None,
    domains: DomainPlan | None = None,
) -> Any:
    """Train a model on labels alone (a teacher, or a student baseline). Returns a TrainResult.

    With `domains`, the training and validation images are drawn from its source domains
    (`edgekd.data.domains.source_split`) and the plan is recorded with the split.

    With `hssakd`, auxiliary branches after the stages `branches` (default: every stage but the last) train
    with it on rotated images and are stored in the checkpoint for `distill` with method `hssakd`.
    """
    from edgekd.data import load_data
    from edgekd.distill import hssakd as hs
    from edgekd.distill.objectives import Objective, Supervised
    from edgekd.distill.trainer import Trainer
    from edgekd.models import build_model, parse_arch
    from edgekd.models.probe import check_accepts

    split = source_split(
        load_data(data, val_fraction=cfg.val_fraction, seed=cfg.seed, limit=cfg.limit), domains, cfg.seed
    )
    c, h, _ = split.train.input_shape
    spec = parse_arch(arch, in_channels=c, num_classes=split.train.num_classes, image_size=h)
    import torch

    if hssakd and cfg.mixup > 0:  # its branches learn rotation labels (class x 4): mixed targets have none
        raise UserError("--mixup does not combine with --hssakd; drop one")
    if branches is not None and not hssakd:
        raise UserError("--branches places HSSAKD branches; add --hssakd (or drop --branches)")
    torch.manual_seed(cfg.seed)
    model = build_model(spec)
    check_accepts(model, split.train.input_shape, "model")
    meta: dict[str, Any] = {
        "data": data,
        "classes": list(split.train.classes),
        "input_shape": list(split.train.input_shape),
    }
    objective: Objective = Supervised()
    net = None
    if hssakd:
        objective, net = hs.teacher_task(model, branches, split.train.input_shape, split.train.num_classes)
        meta["hssakd_branches"] = net.after
    trainer = Trainer(model, spec, objective, split, cfg, out, store_for(out, store), "train", meta, train_module=net)
    result = trainer.fit(resume=resume, show_progress=progress)
    if net is not None:
        hs.save_branches(out, net)
    return result


def distill(
    teacher: Path,
    student: str,
    data: str,
    out: Path,
    cfg: TrainConfig,
    task: DistillConfig,
    *,
    resume: bool = False,
    store: Path | None = None,
    progress: bool = True,
    on_epoch_end: Callable[[dict[str, float]], None] | None = None,
    domains: DomainPlan | None = None,
) -> Any:
    """Distil a student from a teacher checkpoint with a registered method. Returns a TrainResult.
    With `domains`, the student trains on its source domains (as `train_teacher`); the teacher's own
    recorded domains are kept beside them in the checkpoint (`teacher_domains`).

    Layer pairs are resolved and checked on both models before any training; with `task.cache`, the
    teacher's outputs are cached by sample index under EDGEKD_CACHE after the first epoch.
    """
    import torch

    from edgekd.data import load_data
    from edgekd.distill import hssakd, pkth
    from edgekd.distill.objectives import Distillation, Objective
    from edgekd.distill.task import build_loss, method_pairs
    from edgekd.distill.trainer import Trainer, check_classes, output_count
    from edgekd.models import build_model, load_model, parse_arch
    from edgekd.models.probe import check_accepts

    t_model, t_spec, t_meta = load_model(teacher)
    split = source_split(
        load_data(data, val_fraction=cfg.val_fraction, seed=cfg.seed, limit=cfg.limit), domains, cfg.seed
    )
    shape = split.train.input_shape
    _check_input((t_spec.in_channels, t_spec.image_size, t_spec.image_size), shape, "teacher")
    check_classes(output_count(t_model, shape), split.train, "teacher")
    spec = parse_arch(student, in_channels=shape[0], num_classes=split.train.num_classes, image_size=shape[1])
    branched = task.method == "hssakd"  # from the teacher's auxiliary branches (edgekd.distill.hssakd)
    if branched:
        hssakd.check_task(task.auxiliary, shape)
    auxiliary = _auxiliary(task, teacher, t_spec, spec, data, cfg, out, store, progress)
    if auxiliary is not None:
        t_model, _, _ = load_model(auxiliary)
    torch.manual_seed(cfg.seed)
    model = build_model(spec)
    check_accepts(model, shape, "student")
    check_classes(output_count(model, shape), split.train, "student")
    pairs = method_pairs(task, model, t_model, shape)
    loss = build_loss(task, pairs) if task.recipe != "pkth" else pkth.student_loss(task, pairs, cfg.epochs)
    objective: Objective
    train_module, extra = None, dict[str, Any]()
    if cfg.mixup > 0 and branched:  # HSSAKD's loss takes rotation labels (class x 4): mixed targets have none
        raise UserError("--mixup does not combine with method hssakd; drop --mixup")
    if cfg.mixup > 0 and task.cache:  # a mixed pair is new every epoch: no cached row could hold it
        raise UserError("mixup needs the live teacher: add --teacher-live (--no-cache), or drop --mixup")
    cache = teacher_cache(split.train, cfg) if task.cache else None
    if branched:
        objective, train_module, extra = hssakd.distillation(
            teacher, t_model, model, loss, task.ce_weight, task.kd_weight, shape, split.train.num_classes, cache
        )
    else:
        objective = Distillation(
            t_model, loss, task.ce_weight, task.kd_weight, cache, task.logit_weight, task.logit_temperature
        )
    meta = {
        "data": data,
        "classes": list(split.train.classes),
        "input_shape": list(shape),
        "method": task.method,
        "distill": task.model_dump(),
        "teacher": str(teacher),
        "pairs": [list(p) for p in pairs] if pairs is not None else None,
        "schedule": task.schedule,
        "teacher_sha256": file_sha256(teacher),
        "teacher_test_acc": t_meta.get("test_acc"),
        "teacher_domains": (t_meta.get("split") or {}).get("domains"),
        "auxiliary": str(auxiliary) if auxiliary else None,
        "auxiliary_sha256": file_sha256(auxiliary) if auxiliary else None,
        **extra,
    }
    trainer = Trainer(
        model, spec, objective, split, cfg, out, store_for(out, store), "distill", meta, train_module=train_module
    )
    if task.recipe == "pkth":  # the authors' Adam at a constant rate, no weight decay
        pkth.constant_adam(trainer)
    return trainer.fit(resume=resume, show_progress=progress, on_epoch_end=on_epoch_end)


def _auxiliary(
    task: DistillConfig,
    teacher: Path,
    t_spec: Any,
    spec: Any,
    data: str,
    cfg: TrainConfig,
    out: Path,
    store: Path | None,
    progress: bool,
) -> Path | None:
    """The auxiliary teacher the student distils from, or None to distil from the teacher itself."""
    from edgekd.distill.auxiliary import train_auxiliary, uses_auxiliary

    choice = task.auxiliary
    if not uses_auxiliary(choice, t_spec, spec):
        return None
    if choice != "auto":
        path = Path(choice)
        if not path.is_file():
            raise UserError(f"auxiliary teacher not found: {path}; give a checkpoint, auto or none")
        return path
    return train_auxiliary(
        teacher,
        spec,
        data,
        cfg,
        store_for(out, store),
        progress=progress,
        width=task.auxiliary_width,
        recipe=task.recipe,
        label_epochs=task.auxiliary_epochs,
    )
