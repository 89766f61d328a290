"""The auxiliary (proxy) teacher of information-flow KD (Passalis et al., CVPR 2020; PAPERS.md section 1).

When teacher and student are very different (a transformer teacher, a small CNN student), the student
distils from a network with its own layout at about twice its width instead: that network is trained
on the labels, then the teacher is transferred into it with the combined-kernel (infoflow) loss on the
final representation only (pool:pool). Built once per (teacher, student layout, data, training settings)
and cached under EDGEKD_CACHE, like the demo teacher.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from pathlib import Path
from typing import Any

from edgekd.config import TrainConfig, cache_dir
from edgekd.distill.task import DistillConfig
from edgekd.errors import UserError
from edgekd.models import ArchSpec
from edgekd.store import Store

#: family -> the parameter that sets its width
WIDTH_PARAM = {"cnn": "width", "mobilenet": "width", "resnet": "width", "vit": "dim"}
#: the transfer step: infoflow on the final representation, with infoflow's default term weights
TRANSFER = DistillConfig(method="infoflow", pairs=(("pool", "pool"),))


def auxiliary_spec(student: ArchSpec) -> ArchSpec:
    """The student's family, depth and layout at twice its width."""
    from edgekd.models.zoo import FAMILIES

    key = WIDTH_PARAM.get(student.family)
    if key is None:
        raise UserError(
            f"no auxiliary teacher for model {student.label()}: edgekd widens only the built-in"
            f" families ({', '.join(WIDTH_PARAM)}); pass --auxiliary PATH or --auxiliary none"
        )
    width = student.params.get(key, inspect.signature(FAMILIES.get(student.family)).parameters[key].default)
    return student.model_copy(update={"params": {**student.params, key: width * 2}})


def uses_auxiliary(choice: str, teacher: ArchSpec, student: ArchSpec) -> bool:
    """`auto`: when teacher and student families differ; `none`: never; a path: always."""
    if choice == "auto":
        return teacher.family != student.family
    return choice != "none"


def cached_path(teacher_sha256: str, spec: ArchSpec, data_fingerprint: str, cfg: TrainConfig) -> Path:
    key = hashlib.sha256(
        json.dumps(
            [teacher_sha256, spec.model_dump(), data_fingerprint, cfg.model_dump(), TRANSFER.model_dump()],
            sort_keys=True,
        ).encode()
    ).hexdigest()[:16]
    return cache_dir() / "auxiliary" / f"{spec.family}-{key}.pt"


def train_auxiliary(
    teacher_ckpt: Path, student_spec: ArchSpec, data: str, cfg: TrainConfig, store: Store, *, progress: bool = True
) -> Path:
    """The auxiliary checkpoint for this teacher and student: from the cache, else trained on labels
    and then taught by the teacher on the final representation."""
    import torch

    from edgekd._io import file_sha256
    from edgekd.data import load_data
    from edgekd.distill.cache import teacher_cache
    from edgekd.distill.objectives import Distillation, Supervised
    from edgekd.distill.task import build_loss, method_pairs
    from edgekd.distill.trainer import Trainer
    from edgekd.models import build_model, load_model
    from edgekd.ui import console

    spec = auxiliary_spec(student_spec)
    split = load_data(data, val_fraction=cfg.val_fraction, seed=cfg.seed, limit=cfg.limit)
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
