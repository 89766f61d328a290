"""The Python API: one function per pipeline stage. The CLI is a thin layer over these."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edgekd.config import DistillConfig, TrainConfig, cache_dir, load_target
from edgekd.errors import UserError
from edgekd.store import Store, default_store


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _store_for(out: Path, store: Path | None) -> Store:
    out.parent.mkdir(parents=True, exist_ok=True)
    return Store(store or default_store(out.parent))


def _check_input(spec_shape: tuple[int, int, int], data_shape: tuple[int, int, int], role: str) -> None:
    if spec_shape != data_shape:
        raise UserError(
            f"the {role} takes inputs of shape {spec_shape} (C, H, W) but the data has {data_shape};"
            f" use data of the {role}'s shape or a {role} built for this data"
        )


def _cache_usable() -> bool:
    """False under torchrun: each rank sees only its shard of the first epoch, so no one rank could fill
    the teacher-output cache; the teacher then runs live on every rank."""
    from edgekd.distill import _ddp
    from edgekd.ui import console

    if not _ddp.from_env().active:
        return True
    if _ddp.from_env().main:
        console.print("teacher-output cache off under torchrun (each rank sees only its shard of the data)")
    return False


def train_teacher(arch: str, data: str, out: Path, cfg: TrainConfig, *, resume: bool = False,
                  store: Path | None = None, progress: bool = True, hssakd: bool = False,
                  branches: Sequence[str] | None = None) -> Any:
    """Train a model on labels alone (a teacher, or a student baseline). Returns a TrainResult.

    With `hssakd`, auxiliary branches after the stages `branches` (default: every stage but the last) train
    with it on rotated images and are stored in the checkpoint for `distill` with method `hssakd`.
    """
    from edgekd.data import load_data
    from edgekd.distill import hssakd as hs
    from edgekd.distill.objectives import Objective, Supervised
    from edgekd.distill.trainer import Trainer
    from edgekd.models import build_model, parse_arch

    split = load_data(data, val_fraction=cfg.val_fraction, seed=cfg.seed, limit=cfg.limit)
    c, h, _ = split.train.input_shape
    spec = parse_arch(arch, in_channels=c, num_classes=split.train.num_classes, image_size=h)
    import torch

    if branches is not None and not hssakd:
        raise UserError("--branches places HSSAKD branches; add --hssakd (or drop --branches)")
    torch.manual_seed(cfg.seed)
    model = build_model(spec)
    meta: dict[str, Any] = {"data": data, "classes": list(split.train.classes),
                            "input_shape": list(split.train.input_shape)}
    objective: Objective = Supervised()
    net = None
    if hssakd:
        objective, net = hs.teacher_task(model, branches, split.train.input_shape, split.train.num_classes)
        meta["hssakd_branches"] = net.after
    trainer = Trainer(model, spec, objective, split, cfg, out, _store_for(out, store), "train", meta,
                      train_module=net)
    result = trainer.fit(resume=resume, show_progress=progress)
    if net is not None:
        hs.save_branches(out, net)
    return result


def distill(teacher: Path, student: str, data: str, out: Path, cfg: TrainConfig, task: DistillConfig, *,
            resume: bool = False, store: Path | None = None, progress: bool = True,
            on_epoch_end: Callable[[dict[str, float]], None] | None = None) -> Any:
    """Distil a student from a teacher checkpoint with a registered method. Returns a TrainResult.

    Layer pairs are resolved and checked on both models before any training; with `task.cache`, the
    teacher's outputs are cached by sample index under EDGEKD_CACHE after the first epoch.
    """
    import torch

    from edgekd.data import load_data
    from edgekd.distill import hssakd
    from edgekd.distill.methods import build_loss, method_pairs
    from edgekd.distill.objectives import Distillation, Objective
    from edgekd.distill.trainer import Trainer, check_classes, output_count
    from edgekd.models import build_model, load_model, parse_arch

    t_model, t_spec, t_meta = load_model(teacher)
    split = load_data(data, val_fraction=cfg.val_fraction, seed=cfg.seed, limit=cfg.limit)
    shape = split.train.input_shape
    _check_input((t_spec.in_channels, t_spec.image_size, t_spec.image_size), shape, "teacher")
    check_classes(output_count(t_model, shape), split.train, "teacher")
    spec = parse_arch(student, in_channels=shape[0], num_classes=split.train.num_classes, image_size=shape[1])
    branched = task.method == "hssakd"  # from the teacher's auxiliary branches (edgekd.distill.hssakd)
    if branched:
        hssakd.check_task(task.auxiliary, shape)
    auxiliary = _auxiliary(task.auxiliary, teacher, t_spec, spec, data, cfg, out, store, progress)
    if auxiliary is not None:
        t_model, _, _ = load_model(auxiliary)
    torch.manual_seed(cfg.seed)
    model = build_model(spec)
    check_classes(output_count(model, shape), split.train, "student")
    pairs = method_pairs(task, model, t_model, shape)
    loss = build_loss(task, pairs)
    objective: Objective
    train_module, extra = None, dict[str, Any]()
    cache = teacher_cache(split.train) if task.cache else None
    if branched:
        objective, train_module, extra = hssakd.distillation(teacher, t_model, model, loss, task.ce_weight,
                                                             task.kd_weight, shape, split.train.num_classes, cache)
    else:
        objective = Distillation(t_model, loss, task.ce_weight, task.kd_weight, cache)
    meta = {"data": data, "classes": list(split.train.classes), "input_shape": list(shape),
            "method": task.method, "distill": task.model_dump(), "teacher": str(teacher),
            "pairs": [list(p) for p in pairs] if pairs is not None else None, "schedule": task.schedule,
            "teacher_sha256": file_sha256(teacher), "teacher_test_acc": t_meta.get("test_acc"),
            "auxiliary": str(auxiliary) if auxiliary else None,
            "auxiliary_sha256": file_sha256(auxiliary) if auxiliary else None, **extra}
    trainer = Trainer(model, spec, objective, split, cfg, out, _store_for(out, store), "distill", meta,
                      train_module=train_module)
    return trainer.fit(resume=resume, show_progress=progress, on_epoch_end=on_epoch_end)


def teacher_cache(train: Any) -> Any:
    """Where a teacher's outputs on the training split `train` are cached (an
    `edgekd.distill.cache.CacheSpec`), or None when no cache can be used here (under torchrun)."""
    from edgekd.distill.cache import CacheSpec

    return CacheSpec(cache_dir() / "teacher-outputs", train.fingerprint(), len(train)) if _cache_usable() else None


def _auxiliary(choice: str, teacher: Path, t_spec: Any, spec: Any, data: str, cfg: TrainConfig, out: Path,
               store: Path | None, progress: bool) -> Path | None:
    """The auxiliary teacher the student distils from, or None to distil from the teacher itself."""
    from edgekd.distill.auxiliary import train_auxiliary, uses_auxiliary

    if not uses_auxiliary(choice, t_spec, spec):
        return None
    if choice != "auto":
        path = Path(choice)
        if not path.is_file():
            raise UserError(f"auxiliary teacher not found: {path}; give a checkpoint, auto or none")
        return path
    return train_auxiliary(teacher, spec, data, cfg, _store_for(out, store), progress=progress)


def ensemble(student: str, data: str, out_dir: Path, cfg: TrainConfig,
             widths: str | Sequence[float] = "1.0,0.8,0.6,0.4,0.2", *, teacher: Path | None = None,
             guide: str | None = None, guide_weight: float | None = None, resume: bool = False,
             store: Path | None = None, progress: bool = True) -> dict[str, Any]:
    """Online ensemble compression: train `student` at decreasing `widths` (fractions of its width) at once,
    on a shared stem, optionally guided by a `teacher` with the `guide` method on the logits (default kd).
    Writes OUT_DIR/family.pt, one OUT_DIR/student-w<fraction>.pt per width (a plain student, exported like
    any) and OUT_DIR/ensemble.json, the manifest it returns. See `edgekd.distill.ensemble`."""
    from edgekd.distill.ensemble_run import train_ensemble

    return train_ensemble(student, data, out_dir, cfg, widths, teacher=teacher, guide=guide,
                          guide_weight=guide_weight, resume=resume, store=store, progress=progress)


def export(model: str, target: str, out_dir: Path, *, data: str | None = None,
           calibration: str | None = None, store: Path | None = None, offline: bool = False) -> dict[str, Any]:
    """Export a model to ONNX (parity-checked), build it for `target`, write `out_dir/artifact.json`.

    With `offline` (TensorRT targets on a host without TensorRT): the ONNX, `trtexec.sh` and the
    TensorRT pre-check for the device, described in `out_dir/offline.json`; nothing is built.
    """
    from edgekd.export.artifact import build_artifact, export_offline

    profile = load_target(target)
    out_dir.mkdir(parents=True, exist_ok=True)
    if offline:
        return export_offline(model, profile, out_dir, data=data)
    info = build_artifact(model, profile, out_dir, data=data, calibration=calibration)
    Store(store or default_store(out_dir)).log_artifact(out_dir / info["artifact"], info)
    return info


def bench(artifact: Path, *, data: str | None = None, batch: int | None = None, threads: int | None = None,
          limit: int | None = None, quick: bool = False, store: Path | None = None) -> dict[str, Any]:
    """Measure an artifact with the one timing protocol (in its own process); accuracy when data is given."""
    from edgekd.bench import TimingConfig, benchmark, resolve_artifact

    art = resolve_artifact(Path(artifact))
    timing = TimingConfig(warmup_iters=5, warmup_s=0.2, min_iters=30, min_time_s=0.5) if quick else TimingConfig()
    result = benchmark(art, batch=batch, threads=threads, data=data, limit=limit, timing=timing)
    folder = art.path.parent
    Store(store or default_store(folder)).log_benchmark(str(art.path), result)
    return result


def select(teacher: Path, space: str | Path, target: str, data: str, out: Path, cfg: TrainConfig,
           task: DistillConfig, options: Any = None, *, timing: Any = None, store: Path | None = None,
           progress: bool = True) -> dict[str, Any]:
    """Choose the most accurate student of `space` within a latency budget on `target` (measured there).

    `options` is an `edgekd.select.pipeline.SelectConfig` (budget, trials, pruner, workers, storage,
    shared students folder); `timing` an `edgekd.bench.TimingConfig`. Writes OUT/selection.json and
    OUT/selection.md and returns what the JSON holds. See `edgekd.select.pipeline` for the stages.
    """
    from edgekd.select.pipeline import select as run_selection

    return run_selection(teacher, space, target, data, out, cfg, task, options, timing=timing, store=store,
                         progress=progress)
