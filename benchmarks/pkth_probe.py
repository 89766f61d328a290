#!/usr/bin/env python3
"""A small probe of the authors' infoflow recipe against edgekd's (issue 14 item 1): one seed, few epochs.

    python -m benchmarks.pkth_probe --teacher TEACHER.pt --out DIR [--student cnn-xs] [--limit 6000]
        [--epochs 10] [--auxiliary-epochs 16] [--threads 1] [--variants a,b,...] [--seed 0]

Variants (`VARIANTS`): the student alone on labels; infoflow with edgekd's recipe through an auxiliary
teacher; infoflow with `--recipe pkth` (transfer alone, critical period per real epoch, Adam constant,
the auxiliary on its own phases), on the student as is and with a learned 64-d hidden layer before the
head (`hidden=64`, the authors' fc1). Each run reports test accuracy, edgekd's retrieval mAP
(leave-one-out over the first `--map-samples` test images) and the authors' (the training split as the
database, every test image a query, cosine, 11-point interpolated; `standard` and `pkth`, the latter
with their interpolation bug), for the student and for the auxiliary it distilled from. A finished run
writes `DIR/runs/<variant>.json`, and is skipped when that exists. A probe, not a comparison: one seed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

#: variant -> (student arch suffix params, DistillConfig fields or None for the student alone)
VARIANTS: dict[str, tuple[str, dict[str, Any] | None]] = {
    "alone": ("", None),
    "alone-hidden": ("hidden=64", None),
    "edgekd": ("", {"method": "infoflow", "auxiliary": "auto"}),
    "pkth": ("", {"method": "infoflow", "auxiliary": "auto", "recipe": "pkth"}),
    "pkth-hidden": ("hidden=64", {"method": "infoflow", "auxiliary": "auto", "recipe": "pkth"}),
    # the authors' recipe with CE added back at weight 1 (their student's head never sees a label)
    "pkth-hidden-ce": ("hidden=64", {"method": "infoflow", "auxiliary": "auto", "recipe": "pkth", "ce_weight": 1.0}),
}


def arch(student: str, extra: str) -> str:
    """`cnn-xs` + `hidden=64` -> `cnn(width=8,depth=1,hidden=64)`."""
    from edgekd.models.zoo import PRESETS

    if not extra:
        return student
    family, params = PRESETS[student]
    args = ",".join([f"{k}={v}" for k, v in params.items()] + [extra])
    return f"{family}({args})"


def scores(ckpt: Path, data: str, cfg: Any, map_samples: int) -> dict[str, float]:
    """edgekd's mAP (leave-one-out, first `map_samples` test images) and the authors' (train -> test)."""
    from edgekd.data import load_data
    from edgekd.distill.retrieval import database_map, penultimate_features, retrieval_map
    from edgekd.models import load_model

    model, _, _ = load_model(ckpt)
    split = load_data(data, val_fraction=cfg.val_fraction, seed=cfg.seed, limit=cfg.limit)
    train = penultimate_features(model, split.train)
    test = penultimate_features(model, split.test)
    n = min(map_samples, len(split.test))
    return {
        "map_edgekd": retrieval_map(test[:n], split.test.y[:n]),
        "map_pkth_standard": database_map(train, split.train.y, test, split.test.y),
        "map_pkth_bug": database_map(train, split.train.y, test, split.test.y, interpolation="pkth"),
    }


def run(variant: str, args: argparse.Namespace) -> dict[str, Any]:
    from edgekd.config import TrainConfig
    from edgekd.distill.run import distill, train_teacher
    from edgekd.distill.task import DistillConfig
    from edgekd.models import load_model

    extra, fields = VARIANTS[variant]
    student = arch(args.student, extra)
    cfg = TrainConfig(
        epochs=args.epochs, limit=args.limit, seed=args.seed, device="cpu", threads=args.threads, lr=args.lr
    )
    out = args.out / "scratch" / f"{variant}.pt"
    out.unlink(missing_ok=True)
    store = args.out / "scratch" / "edgekd.sqlite"
    if fields is None:
        result = train_teacher(student, args.data, out, cfg, store=store, progress=False)
    else:
        if fields.get("recipe") == "pkth":
            fields = {**fields, "auxiliary_epochs": args.auxiliary_epochs}
        task = DistillConfig(**fields)
        result = distill(args.teacher, student, args.data, out, cfg, task, store=store, progress=False)
    row: dict[str, Any] = {"variant": variant, "student": student, "test_acc": result.test_accuracy}
    row.update(scores(out, args.data, cfg, args.map_samples))
    aux = load_model(out)[2].get("auxiliary")
    if aux:
        aux_scores = scores(Path(aux), args.data, cfg, args.map_samples)
        row["auxiliary"] = {"path": aux, "test_acc": load_model(Path(aux))[2].get("test_acc"), **aux_scores}
    row["settings"] = {"cfg": cfg.model_dump(), "task": fields}
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--student", default="cnn-xs")
    parser.add_argument("--limit", type=int, default=6000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--lr", type=float, default=1e-3, help="every run's lr (the authors': 1e-3)")
    parser.add_argument("--auxiliary-epochs", type=int, default=16, help="pkth's auxiliary epochs on labels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--map-samples", type=int, default=2000)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args(argv)
    os.environ.setdefault("EDGEKD_CACHE", str(args.out / "cache"))
    import torch

    torch.set_num_threads(args.threads)
    (args.out / "runs").mkdir(parents=True, exist_ok=True)
    rows = []
    for variant in args.variants.split(","):
        path = args.out / "runs" / f"{variant}.json"
        if not path.is_file():
            path.write_text(json.dumps(run(variant, args), indent=2, default=str))
        rows.append(json.loads(path.read_text()))
    print("| variant | student | test acc | mAP edgekd | mAP pkth (11-pt) | mAP pkth (their bug) | auxiliary |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        a = r.get("auxiliary")
        aux = (
            f"acc {a['test_acc']:.4f}, mAP {a['map_edgekd']:.3f} / {a['map_pkth_standard']:.3f}"
            f" / {a['map_pkth_bug']:.3f}"
            if a
            else "-"
        )
        print(
            f"| {r['variant']} | {r['student']} | {r['test_acc']:.4f} | {r['map_edgekd']:.3f}"
            f" | {r['map_pkth_standard']:.3f} | {r['map_pkth_bug']:.3f} | {aux} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
