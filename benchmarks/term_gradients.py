#!/usr/bin/env python3
"""Each distillation term's gradient against CE's, at initialisation and after a short training (issue 14).

    python -m benchmarks.term_gradients --teacher T.pt --student cnn-xs [--method infoflow] [--recipe pkth]
        [--ce-weight W] [--kd-weight W] [--schedule NAME] [--limit 6000] [--epochs 2] [--batches 4]
        [--threads 1]

Prints, for the first `--batches` training batches, the norm of the gradient on the student's
parameters of every term as the task weights it (each layer pair with its schedule weight times the
kd weight, the whole distillation term, CE times its weight) over CE's at weight 1
(`edgekd.distill.term_gradients`): first at initialisation (epoch 0's schedule weights), then after
`--epochs` epochs of training with the task (the last trained epoch's weights). The teacher is used as
given (pass an auxiliary checkpoint as --teacher to measure distillation from it).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any


def table(title: str, rows: list[Any]) -> str:
    lines = [f"{title}", "| term | weight | grad norm | / CE's |", "|---|---|---|---|"]
    lines += [f"| {r.term} | {r.weight:g} | {r.grad_norm:.3e} | {r.ratio:.3g} |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", type=Path, required=True)
    parser.add_argument("--student", default="cnn-xs")
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--method", default="infoflow")
    parser.add_argument("--recipe", default="edgekd", choices=["edgekd", "pkth"])
    parser.add_argument("--ce-weight", type=float, default=None)
    parser.add_argument("--kd-weight", type=float, default=None)
    parser.add_argument("--schedule", default=None)
    parser.add_argument("--limit", type=int, default=6000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    import numpy as np
    import torch

    from edgekd.config import TrainConfig
    from edgekd.data import load_data
    from edgekd.distill import pkth
    from edgekd.distill.objectives import Distillation
    from edgekd.distill.task import DistillConfig, build_loss, method_pairs
    from edgekd.distill.term_gradients import term_gradients
    from edgekd.distill.trainer import Trainer, load_batch
    from edgekd.models import build_model, load_model, parse_arch
    from edgekd.store import Store

    torch.set_num_threads(args.threads)
    cfg = TrainConfig(epochs=args.epochs, limit=args.limit, lr=args.lr, device="cpu", threads=args.threads)
    fields = {"method": args.method, "recipe": args.recipe, "ce_weight": args.ce_weight, "kd_weight": args.kd_weight}
    task = DistillConfig(**{k: v for k, v in {**fields, "schedule": args.schedule}.items() if v is not None})
    split = load_data(args.data, val_fraction=cfg.val_fraction, seed=cfg.seed, limit=cfg.limit)
    shape = split.train.input_shape
    teacher, _, _ = load_model(args.teacher)
    spec = parse_arch(args.student, in_channels=shape[0], num_classes=split.train.num_classes, image_size=shape[1])
    torch.manual_seed(cfg.seed)
    student = build_model(spec)
    pairs = method_pairs(task, student, teacher, shape)
    loss = build_loss(task, pairs) if task.recipe != "pkth" else pkth.student_loss(task, pairs, cfg.epochs)
    size = cfg.batch_size
    batches = [load_batch(split.train, np.arange(i * size, (i + 1) * size)) for i in range(args.batches)]

    def measure(progress: float) -> list[Any]:
        if hasattr(loss, "set_progress"):
            loss.set_progress(progress)
        return term_gradients(student, teacher, loss, batches, ce_weight=task.ce_weight, kd_weight=task.kd_weight)

    print(f"task: {task.model_dump(exclude={'loss_params'})}")
    print(table("at initialisation (epoch 0's weights)", measure(0.0)))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "s.pt"
        objective = Distillation(teacher, loss, task.ce_weight, task.kd_weight, None)
        trainer = Trainer(student, spec, objective, split, cfg, out, Store(Path(tmp) / "s.sqlite"), "distill", {})
        if task.recipe == "pkth":
            pkth.constant_adam(trainer)
        trainer.fit(show_progress=False)
    student.cpu()
    print(
        table(f"after {cfg.epochs} epochs (epoch {cfg.epochs - 1}'s weights)", measure((cfg.epochs - 1) / cfg.epochs))
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
