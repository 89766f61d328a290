"""Which training recipe lets Hinton KD pay on a small student with little data? Variants x seeds, paired.

    python -m benchmarks.kd_recipe --teacher T.pt VARIANT[,VARIANT...] [--seeds 0,1,2] [--student cnn-xs]
        [--limit 6000] [--data fashion-mnist] [--out DIR] [--threads N] [--table-only]

A variant is named by dash-separated tokens, so the name is the recipe:

    alone | kd             the student on labels, or distilled (the first token)
    std | light | none     augmentation: `standard` (pad 4, erase 0.25), pad 2 only, or none (default std)
    vK | fresh             K cached views per sample (default 4), or a new view every epoch
    eN                     epochs (default 30)
    half | pure            kd's weights: 0.5 CE + 0.5 KD (default), or KD alone
    tT                     kd's temperature (default 1)
    mixA                   mixup Beta(A, A); with kd the teacher then runs live on the mixed batch

e.g. `kd-none-e100-pure`: no augmentation, 100 epochs, KD alone at T = 1. Every run uses edgekd's
`TrainConfig` otherwise (lr 2e-3 AdamW with cosine, batch 128) and the first `--limit` training samples
(6,000: the comparison's 10% regime, 5,400 of them trained on); a seed gives every variant the same split
and initialisation. "minus alone" pairs each kd variant, seed by seed, with the `alone` variant of the same
augmentation, views, epochs and mixup, when it was run. One JSON per run under `<out>/runs/<variant>/`,
written atomically (a rerun skips what is done); the table goes to `<out>/results.md`.

Why: in the comparison (`benchmarks.kd_comparison`) no method lifted the 6.9k-parameter `cnn-xs` by a
point over training alone at 30 epochs, with or without augmentation. This measures what the recipe,
not the method, does: length, augmentation, views, the KD weight and temperature, mixup.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.kd_comparison import csv, fmt, stats, write_json

AUGMENTS: dict[str, Any] = {"std": "standard", "light": {"pad": 2}, "none": "none"}


@dataclass(frozen=True)
class Variant:
    name: str
    method: str  # alone or kd
    augment: str = "std"
    views: int = 4  # 0: a fresh view every epoch
    epochs: int = 30
    kd_weight: float = 0.5
    temperature: float = 1.0
    mixup: float = 0.0

    @property
    def baseline(self) -> str:
        """The name of the `alone` variant this one is paired with."""
        views = "fresh" if self.views == 0 else f"v{self.views}"
        parts = ["alone", self.augment] + ([views] if self.augment != "none" else []) + [f"e{self.epochs}"]
        return "-".join(parts + ([f"mix{self.mixup:g}"] if self.mixup else []))


def parse_variant(name: str) -> Variant:
    method, *tokens = name.split("-")
    if method not in ("alone", "kd"):
        raise ValueError(f"variant {name!r}: start with alone or kd")
    fields: dict[str, Any] = {}
    for tok in tokens:
        if tok in AUGMENTS:
            fields["augment"] = tok
        elif tok == "fresh":
            fields["views"] = 0
        elif tok in ("pure", "half"):
            fields["kd_weight"] = 1.0 if tok == "pure" else 0.5
        elif tok.startswith("mix"):
            fields["mixup"] = float(tok[3:])
        elif tok[:1] in ("v", "e", "t") and tok[1:].replace(".", "", 1).isdigit():
            key = {"v": "views", "e": "epochs", "t": "temperature"}[tok[0]]
            fields[key] = float(tok[1:]) if key == "temperature" else int(tok[1:])
        else:
            raise ValueError(f"variant {name!r}: unknown token {tok!r} (see --help)")
    return Variant(name, method, **fields)


def run_one(v: Variant, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    from edgekd import api
    from edgekd.config import TrainConfig
    from edgekd.distill.task import DistillConfig

    folder = args.out / "runs" / v.name
    record = folder / f"seed{seed}.json"
    if record.is_file():
        return dict(json.loads(record.read_text()))
    views = v.views if v.augment != "none" else 1
    cfg = TrainConfig(
        epochs=v.epochs,
        seed=seed,
        limit=args.limit,
        augment=AUGMENTS[v.augment],
        views=views,
        mixup=v.mixup,
    )
    ckpt = folder / f"seed{seed}.pt"
    t0 = time.perf_counter()
    if v.method == "alone":
        result = api.train_teacher(args.student, args.data, ckpt, cfg, progress=False, resume=True)
    else:
        live = v.mixup > 0 or views == 0  # a mixed batch or a fresh view has no cached teacher row
        task = DistillConfig(
            method="kd",
            kd_weight=v.kd_weight,
            ce_weight=1.0 - v.kd_weight,
            loss_params={"temperature": v.temperature},
            cache=not live,
        )
        result = api.distill(args.teacher, args.student, args.data, ckpt, cfg, task, progress=False, resume=True)
    info = {
        "variant": v.name,
        "seed": seed,
        "student": args.student,
        "teacher": str(args.teacher),
        "limit": args.limit,
        "train": cfg.model_dump(mode="json"),
        "test_accuracy": float(result.test_accuracy),
        "val_accuracy": float(result.val_accuracy),
        "seconds": time.perf_counter() - t0,
    }
    write_json(record, info)
    ckpt.unlink(missing_ok=True)  # the accuracy is the record; a student per run would fill the repository
    return info


def load_runs(out: Path) -> dict[str, dict[int, float]]:
    """variant -> seed -> test accuracy (%), from every record under `out`."""
    runs: dict[str, dict[int, float]] = {}
    for path in sorted((out / "runs").glob("*/seed*.json")):
        r = json.loads(path.read_text())
        runs.setdefault(r["variant"], {})[int(r["seed"])] = 100.0 * float(r["test_accuracy"])
    return runs


def table(runs: dict[str, dict[int, float]], args: argparse.Namespace) -> str:
    lines = [
        "# KD recipes on a small student, 10% of the data",
        "",
        f"Teacher {args.teacher}; student {args.student}; data {args.data}, first {args.limit} training samples;"
        " lr 2e-3 AdamW, cosine, batch 128. Test accuracy %, mean ± sample std over seeds; minus alone is"
        " paired by seed with the alone variant of the same augmentation, views, epochs and mixup.",
        "",
        "| variant | n | test acc % | minus alone (paired) | seeds |",
        "|---|---:|---:|---:|---|",
    ]
    for name in sorted(runs, key=lambda n: (parse_variant(n).epochs, parse_variant(n).baseline, n)):
        acc = runs[name]
        mean, std = stats(list(acc.values()))
        base = runs.get(parse_variant(name).baseline, {})
        paired = [acc[s] - base[s] for s in acc if s in base] if not name.startswith("alone") else []
        diff = fmt(*stats(paired), digits=2) + (f" (n={len(paired)})" if len(paired) > 1 else "") if paired else "-"
        seeds = ",".join(str(s) for s in sorted(acc))
        lines.append(f"| {name} | {len(acc)} | {fmt(mean, std, digits=2)} | {diff} | {seeds} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.kd_recipe", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("variants", nargs="?", default="", help="comma-separated variant names (see above)")
    parser.add_argument("--teacher", type=Path, required=True)
    parser.add_argument("--student", default="cnn-xs")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--limit", type=int, default=6000)
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--out", type=Path, default=Path("kd-recipe"))
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--table-only", action="store_true", help="train nothing: the table from the records")
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if not args.table_only:
        try:
            chosen = [parse_variant(n) for n in csv(args.variants)]
        except ValueError as err:
            parser.error(str(err))  # one line, exit status 2
        for seed in (int(s) for s in csv(args.seeds)):
            for v in chosen:
                r = run_one(v, seed, args)
                print(f"{v.name} seed {seed}: {100 * r['test_accuracy']:.2f}% in {r['seconds']:.0f} s", flush=True)
    text = table(load_runs(args.out), args)
    (args.out / "results.md").parent.mkdir(parents=True, exist_ok=True)
    (args.out / "results.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
