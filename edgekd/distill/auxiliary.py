"""The auxiliary (proxy) teacher of information-flow KD (Passalis et al., CVPR 2020; PAPERS.md section 1).

When teacher and student are very different (a transformer teacher, a small CNN student), the student
distils from a network with its own layout at about twice its width instead: that network is trained
on the labels, then the teacher is transferred into it with the combined-kernel (infoflow) loss on the
final representation only (`penultimate` on both sides: the input of each model's logits Linear, `pool`
for built-in models). A `module:factory` student is widened by the factory's own width argument, given
as `--auxiliary-width name=value`. Built once per (teacher, student layout, data, training settings)
and cached under EDGEKD_CACHE, like the demo teacher.

With `recipe="pkth"` the auxiliary is built as the authors build theirs (`edgekd.distill.pkth`): its
own phases on labels, then transfer alone (no CE), each phase Adam at a constant rate.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from pathlib import Path
from typing import Any

from edgekd.config import TrainConfig, cache_dir
from edgekd.distill.blocks import PENULTIMATE
from edgekd.distill.task import DistillConfig, parse_width
from edgekd.errors import UserError
from edgekd.models import ArchSpec
from edgekd.store import Store

#: family -> the parameter that sets its width
WIDTH_PARAM = {"cnn": "width", "mobilenet": "width", "resnet": "width", "vit": "dim"}
#: the transfer step: infoflow on the final representation, with infoflow's default term weights
TRANSFER = DistillConfig(method="infoflow", pairs=((PENULTIMATE, PENULTIMATE),))


def auxiliary_spec(student: ArchSpec, width: str | None = None) -> ArchSpec:
    """The student's family, depth and layout at twice its width, or at `width` (`name=value`, a keyword
    argument of the student's family or factory)."""
    from edgekd.models.spec import _import_factory
    from edgekd.models.zoo import FAMILIES

    if width is not None:
        arg, value = parse_width(width)
        factory = _import_factory(student.family) if student.is_user else FAMILIES.get(student.family)
        params = inspect.signature(factory).parameters
        if arg not in params and not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            raise UserError(
                f"--auxiliary-width {width}: {student.family} takes no argument {arg!r}"
                f" (it takes: {', '.join(params) or 'none'})"
            )
        return student.model_copy(update={"params": {**student.params, arg: value}})
    key = WIDTH_PARAM.get(student.family)
    if key is None:
        raise UserError(
            f"no auxiliary teacher for model {student.label()}: pass --auxiliary-width NAME=VALUE (the"
            f" factory's width argument, e.g. width=32) or --auxiliary PATH (a trained checkpoint)"
        )
    default = inspect.signature(FAMILIES.get(student.family)).parameters[key].default
    return student.model_copy(update={"params": {**student.params, key: student.params.get(key, default) * 2}})


def uses_auxiliary(choice: str, teacher: ArchSpec, student: ArchSpec) -> bool:
    """`auto`: when teacher and student families differ; `none`: never; a path: always."""
    if choice == "auto":
        return teacher.family != student.family
    return choice != "none"


#: DistillConfig fields added after auxiliaries were first cached: left out of edgekd's key, so it stays the same
_LATER_FIELDS = {"recipe", "auxiliary_epochs"}


def cached_path(
    teacher_sha256: str, spec: ArchSpec, data_fingerprint: str, cfg: TrainConfig, recipe: Any = None
) -> Path:
    """Where the auxiliary for these inputs is cached; `recipe` (pkth's phases) joins the key when given."""
    parts: list[Any] = [
        teacher_sha256,
        spec.model_dump(),
        data_fingerprint,
        cfg.model_dump(),
        TRANSFER.model_dump(exclude=_LATER_FIELDS),
    ]
    if recipe is not None:
        parts.append(recipe)
    key = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return cache_dir() / "auxiliary" / f"{spec.family}-{key}.pt"


def train_auxiliary(
    teacher_ckpt: Path,
    student_spec: ArchSpec,
    data: str,
    cfg: TrainConfig,
    store: Store,
    *,
    progress: bool = True,
    width: str | None = None,
    recipe: str = "edgekd",
    label_epochs: int | None = None,
) -> Path:
    """The auxiliary checkpoint for this teacher and student: from the cache, else trained on labels
    and then taught by the teacher on the final representation (`recipe="pkth"`: the authors' way, with
    `label_epochs` on labels, default theirs)."""
    import torch

    from edgekd._io import file_sha256
    from edgekd.data import load_data
    from edgekd.distill.cache import teacher_cache
    from edgekd.distill.objectives import Distillation, Supervised
    from edgekd.distill.task import build_loss, method_pairs
    from edgekd.distill.trainer import Trainer
    from edgekd.models import build_model, load_model
    from edgekd.ui import console

    spec = auxiliary_spec(student_spec, width)
    split = load_data(data, val_fraction=cfg.val_fraction, seed=cfg.seed, limit=cfg.limit)
    if recipe == "pkth":
        from edgekd.distill import pkth

        phases = pkth.auxiliary_phases(label_epochs)
        # the student's epochs and optimiser settings do not shape this auxiliary: its phases do
        key_cfg = cfg.model_copy(update={"epochs": 1, "lr": 1.0, "weight_decay": 0.0})
        out = cached_path(file_sha256(teacher_ckpt), spec, split.train.fingerprint(), key_cfg, [recipe, phases])
    else:
        out = cached_path(file_sha256(teacher_ckpt), spec, split.train.fingerprint(), cfg)
    if out.is_file():
        console.print(f"[bold]auxiliary[/]: reusing {out}")
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    console.print(f"[bold]auxiliary[/]: {spec.label()}, on labels then from {teacher_ckpt.name}")
    meta: dict[str, Any] = {
        "data": data,
        "classes": list(split.train.classes),
        "input_shape": list(split.train.input_shape),
    }
    torch.manual_seed(cfg.seed)
    model = build_model(spec)
    if recipe == "pkth":
        return _train_pkth(teacher_ckpt, model, spec, split, cfg, phases, out, store, meta, progress)
    labels = out.with_name(out.stem + "-labels.pt")
    Trainer(model, spec, Supervised(), split, cfg, labels, store, "auxiliary-labels", meta).fit(
        resume=True, show_progress=progress
    )
    t_model, _, _ = load_model(teacher_ckpt)
    model, _, _ = load_model(labels)
    pairs = method_pairs(TRANSFER, model, t_model, split.train.input_shape)
    # the teacher's outputs are cached like any distillation's: it runs live in the first epoch only
    objective = Distillation(
        t_model,
        build_loss(TRANSFER, pairs),
        TRANSFER.ce_weight,
        TRANSFER.kd_weight,
        teacher_cache(split.train) if TRANSFER.cache else None,
    )
    meta = {**meta, "teacher": str(teacher_ckpt), "distill": TRANSFER.model_dump(), "role": "auxiliary"}
    Trainer(model, spec, objective, split, cfg, out, store, "auxiliary", meta).fit(resume=True, show_progress=progress)
    labels.unlink(missing_ok=True)
    return out


def _train_pkth(
    teacher_ckpt: Path,
    model: Any,
    spec: ArchSpec,
    split: Any,
    cfg: TrainConfig,
    phases: Any,
    out: Path,
    store: Store,
    meta: dict[str, Any],
    progress: bool,
) -> Path:
    """The authors' auxiliary: phases on labels, then phases of infoflow on the final layer alone."""
    import shutil

    from edgekd.distill import pkth
    from edgekd.distill.cache import teacher_cache
    from edgekd.distill.objectives import Distillation, Supervised
    from edgekd.distill.task import build_loss, method_pairs
    from edgekd.models import load_model

    on_labels, in_transfer = phases
    done = pkth.train_phases(
        model, spec, Supervised(), split, cfg, on_labels, out.with_name(out.stem + "-labels"), store,
        "auxiliary-labels", meta, progress,
    )  # fmt: skip
    t_model, _, _ = load_model(teacher_ckpt)
    task = pkth.TRANSFER_ONLY
    pairs = method_pairs(task, model, t_model, split.train.input_shape)
    objective = Distillation(
        t_model, build_loss(task, pairs), task.ce_weight, task.kd_weight, teacher_cache(split.train)
    )
    meta = {**meta, "teacher": str(teacher_ckpt), "distill": task.model_dump(), "role": "auxiliary", "recipe": "pkth"}
    done += pkth.train_phases(
        model, spec, objective, split, cfg, in_transfer, out.with_name(out.stem + "-transfer"), store, "auxiliary",
        meta, progress,
    )  # fmt: skip
    shutil.copyfile(done[-1], out)
    for path in done:
        path.unlink(missing_ok=True)
    return out
