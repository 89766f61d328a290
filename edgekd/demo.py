"""`edgekd demo`: the whole pipeline on the embedded default (Fashion-MNIST, built-in models, CPU).

teacher (trained once, then reused from the cache) -> built and measured on two CPU targets (ONNX
Runtime and OpenVINO, FP32) -> for each target, a latency budget (half the teacher's measured p50
unless `--budget-ms` names one) and a latency-aware selection over the demo's student space: measure
every candidate there, distil the ones in budget with KD under successive halving, build the best and
re-measure it -> the chosen student per target, measured with the one timing protocol -> Markdown +
JSON summary and the HTML report (selection, Pareto fronts, latency, accuracy along the chain).

The two selections share one students folder, so a student distilled for the first target is reused,
not trained again, by the second.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekd import __version__
from edgekd.bench import bench_artifact
from edgekd.config import TrainConfig, cache_dir
from edgekd.distill.run import train_teacher
from edgekd.distill.task import DistillConfig
from edgekd.errors import UserError
from edgekd.export.run import export
from edgekd.report import write_demo_summary, write_reports
from edgekd.store import STORE_NAME
from edgekd.ui import console

DATA = "fashion-mnist"
TARGETS = ("cpu-ort-fp32", "cpu-openvino-fp32")
BUDGET_FRACTION = 0.5  # the default budget on a target: this share of the teacher's p50 there


@dataclass(frozen=True)
class DemoPlan:
    teacher: str
    space: str  # a built-in search space or a YAML path
    teacher_epochs: int
    student_epochs: int
    limit: int | None


FULL = DemoPlan("resnet", "demo", teacher_epochs=4, student_epochs=4, limit=None)
QUICK = DemoPlan("resnet", "demo", teacher_epochs=1, student_epochs=2, limit=6000)


def _teacher(plan: DemoPlan, workdir: Path) -> tuple[Path, bool]:
    """The demo teacher: reused from the cache when an identical one was trained before."""
    cfg = TrainConfig(epochs=plan.teacher_epochs, limit=plan.limit, seed=0)
    key = hashlib.sha256(
        json.dumps([__version__, plan.teacher, DATA, cfg.model_dump()], sort_keys=True).encode()
    ).hexdigest()[:16]
    cached = cache_dir() / "teachers" / f"{plan.teacher}-{key}.pt"
    target = workdir / "teacher.pt"
    if cached.is_file():
        console.print(f"[bold]teacher[/]: reusing {cached}")
        shutil.copyfile(cached, target)
        return target, True
    console.print(f"[bold]teacher[/]: training {plan.teacher} for {cfg.epochs} epoch(s)")
    train_teacher(plan.teacher, DATA, target, cfg, resume=True, store=workdir / STORE_NAME)
    cached.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(target, cached)
    return target, False


def run_demo(
    workdir: Path, *, quick: bool = False, plan: DemoPlan | None = None, budget_ms: float | None = None
) -> dict[str, Any]:
    from edgekd.bench import TimingConfig
    from edgekd.select.pipeline import SelectConfig, select

    plan = plan or (QUICK if quick else FULL)
    if budget_ms is not None and not budget_ms > 0:
        raise UserError(f"the latency budget must be a positive number of ms, got {budget_ms:g}; give --budget-ms > 0")
    start = time.perf_counter()
    workdir.mkdir(parents=True, exist_ok=True)
    store = workdir / STORE_NAME
    teacher, reused = _teacher(plan, workdir)
    timing = TimingConfig(warmup_iters=5, warmup_s=0.2, min_iters=30, min_time_s=0.5) if quick else None
    cfg = TrainConfig(epochs=plan.student_epochs, limit=plan.limit, seed=0)
    rows, selections = [], []
    for target in TARGETS:
        row = _measured(
            workdir,
            {"name": "teacher", "arch": plan.teacher, "checkpoint": teacher, "method": "labels", "reused": reused},
            target,
            quick,
            store,
        )
        rows.append(row)
        budget = budget_ms if budget_ms is not None else BUDGET_FRACTION * row["bench"]["latency_ms"]["p50"]
        source = "given" if budget_ms is not None else f"{BUDGET_FRACTION:g} x the teacher's p50 here"
        console.print(f"[bold]select for {target}[/]: budget {budget:.4f} ms ({source}), space {plan.space}")
        options = SelectConfig(budget_ms=budget, students=workdir / "students")
        selection = select(
            teacher,
            plan.space,
            target,
            DATA,
            workdir / "select" / target,
            cfg,
            DistillConfig(method="kd"),
            options,
            timing=timing,
            store=store,
        )
        selection["budget_source"] = source
        selections.append(selection)
        chosen = selection["chosen"]
        rows.append(
            _measured(
                workdir,
                {
                    "name": f"chosen-{target}",
                    "arch": chosen["arch"],
                    "checkpoint": Path(chosen["checkpoint"]),
                    "method": "kd, selected",
                },
                target,
                quick,
                store,
                built=Path(chosen["artifact_dir"]),
            )
        )
    summary: dict[str, Any] = {
        "quick": quick,
        "plan": plan.__dict__,
        "seconds": time.perf_counter() - start,
        "rows": rows,
        "selections": [_selection_summary(s) for s in selections],
    }
    files = write_demo_summary(workdir, summary)
    files["html"] = str(write_reports(workdir, ["html"])[0])
    summary["files"] = files
    return summary


def _measured(
    workdir: Path, entry: dict[str, Any], target: str, quick: bool, store: Path, built: Path | None = None
) -> dict[str, Any]:
    """A model built for `target` (or its existing build) and benchmarked, with its accuracy."""
    from edgekd.models import load_model
    from edgekd.models.zoo import count_params

    module, _, meta = load_model(entry["checkpoint"])
    if built is None:
        built = workdir / "build" / f"{entry['name']}-{target}"
        console.print(f"[bold]{entry['name']}[/]: export + build for {target}, then bench")
        info = export(str(entry["checkpoint"]), target, built, data=DATA, store=store)
    else:
        info = json.loads((built / "artifact.json").read_text())
    bench = bench_artifact(built, data=DATA, quick=quick, store=store)
    return {
        **{k: str(v) if isinstance(v, Path) else v for k, v in entry.items()},
        "target": target,
        "params": count_params(module),
        "test_acc_torch": meta["test_acc"],
        "artifact": info,
        "bench": bench,
    }


def _selection_summary(sel: dict[str, Any]) -> dict[str, Any]:
    """What the demo summary says of one selection (the whole of it is in its selection.json)."""
    return {
        "target": sel["target"]["name"],
        "budget_ms": sel["budget_ms"],
        "budget_source": sel["budget_source"],
        "met_budget": sel["met_budget"],
        "missed_by_ms": sel["missed_by_ms"],
        "chosen": sel["chosen"],
        "front": sel["front"],
        "compute": sel["compute"],
        "files": sel["files"],
        "candidates": [
            {k: row.get(k) for k in ("arch", "params", "measured_ms", "val_acc", "fate", "why")}
            for row in sel["candidates"]
        ],
    }
