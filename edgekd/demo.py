"""`edgekd demo`: the whole pipeline on the embedded default (Fashion-MNIST, built-in models, CPU).

teacher (trained once, then reused from the cache) -> two students distilled with KD -> ONNX ->
ONNX Runtime artifact for `cpu-ort-fp32` -> latency and accuracy with the one timing protocol ->
Markdown + JSON summary.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekd import __version__, api
from edgekd.config import DistillConfig, TrainConfig, cache_dir
from edgekd.store import STORE_NAME
from edgekd.ui import console

DATA = "fashion-mnist"
TARGETS = ("cpu-ort-fp32",)


@dataclass(frozen=True)
class DemoPlan:
    teacher: str
    students: tuple[str, ...]
    teacher_epochs: int
    student_epochs: int
    limit: int | None


FULL = DemoPlan("resnet", ("cnn-xs", "cnn-s"), teacher_epochs=4, student_epochs=4, limit=None)
QUICK = DemoPlan("resnet", ("cnn-xs", "cnn-s"), teacher_epochs=1, student_epochs=2, limit=6000)


def _teacher(plan: DemoPlan, workdir: Path) -> tuple[Path, bool]:
    """The demo teacher: reused from the cache when an identical one was trained before."""
    cfg = TrainConfig(epochs=plan.teacher_epochs, limit=plan.limit, seed=0)
    key = hashlib.sha256(json.dumps([__version__, plan.teacher, DATA, cfg.model_dump()],
                                    sort_keys=True).encode()).hexdigest()[:16]
    cached = cache_dir() / "teachers" / f"{plan.teacher}-{key}.pt"
    target = workdir / "teacher.pt"
    if cached.is_file():
        console.print(f"[bold]teacher[/]: reusing {cached}")
        shutil.copyfile(cached, target)
        return target, True
    console.print(f"[bold]teacher[/]: training {plan.teacher} for {cfg.epochs} epoch(s)")
    api.train_teacher(plan.teacher, DATA, target, cfg, resume=True, store=workdir / STORE_NAME)
    cached.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(target, cached)
    return target, False


def run_demo(workdir: Path, *, quick: bool = False, plan: DemoPlan | None = None) -> dict[str, Any]:
    from edgekd.models import load_model
    from edgekd.models.zoo import count_params
    from edgekd.report import write_demo_summary, write_reports

    plan = plan or (QUICK if quick else FULL)
    start = time.perf_counter()
    workdir.mkdir(parents=True, exist_ok=True)
    store = workdir / STORE_NAME
    teacher, reused = _teacher(plan, workdir)
    models: list[dict[str, Any]] = [{"name": "teacher", "arch": plan.teacher, "checkpoint": teacher,
                                     "method": "labels", "reused": reused}]
    for arch in plan.students:
        console.print(f"[bold]student {arch}[/]: distilling with kd for {plan.student_epochs} epoch(s)")
        out = workdir / f"student-{arch}.pt"
        api.distill(teacher, arch, DATA, out, TrainConfig(epochs=plan.student_epochs, limit=plan.limit, seed=0),
                    DistillConfig(method="kd"), resume=True, store=store)
        models.append({"name": f"student-{arch}", "arch": arch, "checkpoint": out, "method": "kd"})
    rows = []
    for entry in models:
        module, spec, meta = load_model(entry["checkpoint"])
        for target in TARGETS:
            build = workdir / "build" / f"{entry['name']}-{target}"
            console.print(f"[bold]{entry['name']}[/]: export + build for {target}, then bench")
            info = api.export(str(entry["checkpoint"]), target, build, data=DATA, store=store)
            bench = api.bench(build, data=DATA, quick=quick, store=store)
            rows.append({**{k: str(v) if isinstance(v, Path) else v for k, v in entry.items()},
                         "target": target, "params": count_params(module), "test_acc_torch": meta["test_acc"],
                         "artifact": info, "bench": bench})
    summary: dict[str, Any] = {"quick": quick, "plan": plan.__dict__, "seconds": time.perf_counter() - start,
                               "rows": rows}
    files = write_demo_summary(workdir, summary)
    files["html"] = str(write_reports(workdir, ["html"])[0])
    summary["files"] = files
    return summary
