"""Many workers on one selection study: `select` with N worker processes, on SQLite and on PostgreSQL.

One run with one worker (SQLite) is the reference; then one run with `--workers` processes per storage.
For each it counts the study's trials (by state), the candidates trained by no trial (lost) and by more
than one (duplicated), the trials left running, and whether the chosen student (and its validation
accuracy) is the one worker's. Every candidate is trained to the full budget (`finish_top` = all), so the
choice does not hang on the order in which the workers ran the trials. Records: OUT/<storage>.json.

    python -m benchmarks.many_workers --workers 4 --postgres postgresql://edgekd:edgekd@localhost/edgekd \\
        --out runs/many-workers
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

SPACE = {"family": "cnn", "width": [2, 4, 6, 8], "depth": [1]}


def run(args: argparse.Namespace, name: str, workers: int, storage: str | None) -> dict[str, Any]:
    from edgekd.bench import TimingConfig
    from edgekd.bench.protocol import StopRule
    from edgekd.config import TrainConfig
    from edgekd.distill.task import DistillConfig
    from edgekd.select import SearchSpace
    from edgekd.select.pipeline import SelectConfig, select
    from edgekd.select.search import join_study, trial_records

    record_path = args.out / f"{name}.json"
    if record_path.is_file():
        return dict(json.loads(record_path.read_text()))
    options = SelectConfig(
        budget_ms=50.0,
        probes=2,
        finish_top=len(SPACE["width"]),
        workers=workers,
        storage=storage,
        study_name=f"many-workers-{name}-{uuid.uuid4().hex[:8]}",
    )
    start = time.perf_counter()
    sel = select(
        args.out / "teacher.pt",
        SearchSpace.model_validate(SPACE),
        "cpu-ort-fp32",
        "fashion-mnist",
        args.out / name,
        TrainConfig(epochs=args.epochs, limit=args.limit, batch_size=64),
        DistillConfig(),
        options,
        timing=TimingConfig(warmup_iters=2, warmup_s=0.0, min_iters=20, min_time_s=0.05),
        rule=StopRule(min_rounds=3, max_rounds=4, time_cap_s=5.0, resamples=200),
        store=args.out / "edgekd.sqlite",
        progress=False,
    )
    seconds = time.perf_counter() - start
    study, job = join_study(storage or f"sqlite:///{args.out / 'edgekd.sqlite'}", sel["study"]["name"])
    trained = Counter(r.key for r in trial_records(study))
    record = {
        "storage": name,
        "workers": workers,
        "seconds": round(seconds, 1),
        "trials": len(study.trials),
        "states": dict(Counter(t.state.name.lower() for t in study.trials)),
        "candidates": len(job.entries),
        "lost": sum(1 for e in job.entries if trained[e.key] == 0),
        "duplicated": sum(n - 1 for n in trained.values() if n > 1),
        "running": sum(1 for r in trial_records(study) if r.state == "running"),
        "chosen": sel["chosen"]["arch"],
        "val_acc": sel["chosen"]["val_acc"],
        "test_acc": sel["chosen"].get("test_acc"),
    }
    record_path.write_text(json.dumps(record, indent=2) + "\n")
    return record


def table(reference: dict[str, Any], records: list[dict[str, Any]]) -> str:
    lines = [
        "| storage | workers | trials (states) | candidates | lost | duplicated | left running | chosen"
        " | same as one worker | wall s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in [reference, *records]:
        states = ", ".join(f"{k} {v}" for k, v in sorted(r["states"].items()))
        same = r["chosen"] == reference["chosen"] and r["val_acc"] == reference["val_acc"]
        lines.append(
            f"| {r['storage']} | {r['workers']} | {r['trials']} ({states}) | {r['candidates']} | {r['lost']}"
            f" | {r['duplicated']} | {r['running']} | {r['chosen']} ({r['val_acc']:.4f}) | {'yes' if same else 'NO'}"
            f" | {r['seconds']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.many_workers", description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument(
        "--postgres", help="a PostgreSQL database URL (default: $EDGEKD_TEST_POSTGRES; none: SQLite only)"
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--limit", type=int, default=1000, help="Fashion-MNIST training samples")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the main process")
    args = parser.parse_args(argv)
    import torch

    from edgekd import api
    from edgekd.config import TrainConfig

    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    if not (args.out / "teacher.pt").is_file():
        cfg = TrainConfig(epochs=2, limit=args.limit)
        api.train_teacher("cnn(width=8,depth=1)", "fashion-mnist", args.out / "teacher.pt", cfg, progress=False)
    reference = run(args, "sqlite-1", 1, None)
    records = [run(args, f"sqlite-{args.workers}", args.workers, None)]
    postgres = args.postgres or os.environ.get("EDGEKD_TEST_POSTGRES")
    if postgres:
        records.append(run(args, f"postgresql-{args.workers}", args.workers, postgres))
    text = table(reference, records)
    (args.out / "results.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
