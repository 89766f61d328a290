"""The distillation comparison (tracker item 7): methods x teacher-student pairs x data regimes x seeds.

    python -m benchmarks.kd_comparison [--pairs T:S,...] [--methods M,...] [--regimes full,10pct]
        [--seeds 0,1,2] [--epochs E | --epochs 10pct=E,full=E] [--teacher-epochs E] [--out DIR] [--resume]
        [--table-only] [--map-samples N]

Pairs (default): the built-in ResNet teacher -> two CNN students under 30k parameters (`cnn-xs`, `cnn-s`),
and the heterogeneous pair, a small vision transformer (`vit-s`) -> the smallest CNN (`cnn-xs`).
Methods: `alone` (the student trained on labels, `api.train_teacher` on the student arch), `kd`, `pkt`,
`sp`, `infoflow` and `infoflow-aux` (information flow through the auxiliary teacher). The auxiliary row
runs only when this edgekd's `DistillConfig` has an `auxiliary` field; otherwise it is reported as not
available. `hssakd` (`--methods ...,hssakd`, not in the default list: every batch is rotated four ways, so
a student epoch costs about 7x the student alone from the teacher cache, 28x with the teacher live, in
`distill_epoch --method hssakd`) distils from a second teacher per teacher arch, trained with HSSAKD
branches (`api.train_teacher(hssakd=True)`) like the plain one; its row's gap is taken against that
teacher, shown as its own `teacher-hssakd` row.
Regimes: `full` (the whole training set) and `10pct` (its first 10%, `TrainConfig.limit`); the validation
split (10%) is drawn from what is kept, and the test set is always the whole test split.

Every student of a regime, for every method and seed, trains for the same `--epochs` with the same
`TrainConfig` otherwise (only the seed and the limit change). `--epochs` is one number for every regime,
or one per regime (`10pct=30,full=8`: the whole training set needs fewer passes, and 30 of them cost
hours per run here). Each teacher is trained once, on the full
training set with seed 0 for `--teacher-epochs`, and kept in `<out>/teachers/` (reused by `--resume`):
`<arch>-e<E>.pt`, and `<arch>-hssakd-e<E>.pt` for `hssakd`.

Metrics per run: test accuracy; retrieval mAP of the penultimate representation (the input of the
`head`) over the first `--map-samples` test images (`edgekd.distill.retrieval`: each queries all the
others by cosine similarity, relevant = same class); epoch time (the trainer's `epoch_s`, mean over the
run's epochs: with the default teacher cache, the first epoch of a distillation also runs the teacher
and builds the cache; under each table, each method's epochs after the first and its whole run's wall
time, auxiliary teacher included, as ratios to the student alone's). Each run writes
`<out>/runs/<pair>/<regime>/<method>/seed<k>.json` atomically, so `--resume` skips what is done and an
interrupted comparison resumes (a record from other `--epochs` or `--map-samples` is refused, not mixed
in). `alone` does not involve the teacher: a pair whose student, regime, seed and epochs match an
`alone` run already made for another pair reuses that record (it names the pair in `shared_from`)
instead of training the same run again. Several workers may run over one `--out` at once (one per core,
say, with the pairs or seeds in different orders): each run and teacher is claimed by a lock file
(`<record>.lock`), so a worker skips a run another is making and waits for a teacher another is
training. `--table-only` trains nothing: it writes the table from the records there are (what is missing
shows as `n` = 0), e.g. while other processes still run other regimes or pairs. The table (mean +-
sample std over seeds, and the share of the teacher-student gap a method recovers, `(method - alone) /
(teacher - alone)` on the means) goes to `<out>/results.md` and `<out>/results.json`.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import socket
import statistics
import time
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from edgekd._io import pid_alive

DEFAULT_PAIRS = ("resnet:cnn-xs", "resnet:cnn-s", "vit-s:cnn-xs")
METHODS = ("alone", "kd", "pkt", "sp", "infoflow", "infoflow-aux", "hssakd")
DEFAULT_METHODS = METHODS[:-1]  # hssakd only on request (its cost: see the module docstring)
REGIMES = {"full": 1.0, "10pct": 0.1}
AUX = "infoflow-aux"
HSSAKD = "hssakd"
NOT_AVAILABLE = "not available in this edgekd (DistillConfig has no `auxiliary` field)"


def safe(name: str) -> str:
    """A folder-safe form of an arch or pair name."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically: a temporary file in the same folder, then renamed into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(_finite(data), indent=2, sort_keys=True, allow_nan=False))
    os.replace(tmp, path)


def _finite(data: Any) -> Any:
    """NaN and infinities as null, so the JSON is standard."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: _finite(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_finite(v) for v in data]
    return data


WAIT_S = 10.0  # how often a worker looks again for a teacher another worker is training


def lock_path(record: Path) -> Path:
    return record.with_name(record.name + ".lock")


def holder(record: Path) -> dict[str, Any] | None:
    """Who holds `record`'s lock ({"host", "pid"}), or None when nobody does. A lock left by a process of
    this host that no longer runs is stale: it is removed and counts as free."""
    lock = lock_path(record)
    try:
        owner = json.loads(lock.read_text())
    except FileNotFoundError:
        return None
    except ValueError:  # being written this instant: held
        return {"host": "?", "pid": 0}
    if owner.get("host") == socket.gethostname() and not pid_alive(int(owner.get("pid", 0))):
        lock.unlink(missing_ok=True)
        return None
    return owner


@contextmanager
def claimed(record: Path) -> Iterator[bool]:
    """Hold `<record>.lock` while this process makes `record`; yields False (holding nothing) when another
    live process holds it. Several workers can so share one `--out`: each skips the runs another is making.
    The lock is created exclusively (O_EXCL), holds this host and pid, and is removed on the way out; a
    lock whose process died on this host is taken over. A lock from another host is trusted: if that
    machine died, delete the `.lock` file by hand."""
    lock = lock_path(record)
    lock.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):  # a second try after removing a stale lock
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if holder(record) is not None:
                yield False
                return
            continue
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps({"host": socket.gethostname(), "pid": os.getpid()}))
        try:
            yield True
        finally:
            lock.unlink(missing_ok=True)
        return
    yield False


def has_auxiliary() -> bool:
    from edgekd.distill.task import DistillConfig

    return "auxiliary" in DistillConfig.model_fields


def auxiliary_value(override: str | None) -> Any:
    """What to pass as `DistillConfig.auxiliary` for the auxiliary row: `--auxiliary` when given, else
    True for a flag field, else "auto" (edgekd builds and trains the auxiliary network itself; note that
    "auto" uses one only when teacher and student families differ, true of every default pair)."""
    from edgekd.distill.task import DistillConfig

    if override is not None:
        return {"true": True, "false": False}.get(override.lower(), override)
    args = typing.get_args(DistillConfig.model_fields["auxiliary"].annotation)
    return True if bool in (args or (DistillConfig.model_fields["auxiliary"].annotation,)) else "auto"


def no_auxiliary() -> dict[str, Any]:
    """The explicit "without auxiliary teacher" setting for plain infoflow (empty: field absent)."""
    from edgekd.distill.task import DistillConfig

    if not has_auxiliary():
        return {}
    annotation = DistillConfig.model_fields["auxiliary"].annotation
    return {"auxiliary": False if bool in (typing.get_args(annotation) or (annotation,)) else "none"}


def task_for(method: str, args: argparse.Namespace) -> Any:
    from edgekd.distill.task import DistillConfig

    if method == AUX:
        return DistillConfig(method="infoflow", auxiliary=auxiliary_value(args.auxiliary))
    return DistillConfig(method=method, **(no_auxiliary() if method == "infoflow" else {}))


def measure(model_path: Path, data: str, map_samples: int) -> tuple[float, int]:
    """(retrieval mAP over the first `map_samples` test images, how many were used) of a checkpoint."""
    from edgekd.data import load_data
    from edgekd.distill.retrieval import penultimate_features, retrieval_map
    from edgekd.models import load_model

    model, _, _ = load_model(model_path)
    test = load_data(data).test.head(map_samples)
    return retrieval_map(penultimate_features(model, test), test.y), len(test)


def epochs_for(args: argparse.Namespace, regime: str) -> int:
    """The student epochs of a regime: `--epochs` is one number, or one per regime."""
    return args.epochs if isinstance(args.epochs, int) else args.epochs[regime]


def parse_epochs(text: str, regimes: list[str]) -> int | dict[str, int]:
    """`--epochs`: `N` (every regime), or `REGIME=N,...` naming each of `regimes`; ValueError says what is wrong."""
    if "=" not in text:
        epochs: int | dict[str, int] = int(text)
        given = {r: int(text) for r in regimes}
    else:
        parts = [p.split("=", 1) for p in csv(text)]
        given = epochs = {r.strip(): int(n) for r, n in parts}
        if missing := [r for r in regimes if r not in given]:
            raise ValueError(f"no epochs for {', '.join(missing)} (give REGIME=N for each of {', '.join(regimes)})")
    if bad := [r for r, n in given.items() if n < 1]:
        raise ValueError(f"epochs must be at least 1 ({', '.join(bad)})")
    return epochs


def check_record(record: dict[str, Any], what: str, epochs: int, map_samples: int, out: Path) -> dict[str, Any]:
    """A reused run record must come from the same student epochs and mAP sample count."""
    for key, want in (("epochs", epochs), ("map_samples", map_samples)):
        if record.get("status") == "done" and record.get(key) != want:
            raise SystemExit(
                f"{what}: the record in {out} has {key}={record.get(key)}, this run {want};"
                f" use another --out, or the settings it was run with"
            )
    return record


def map_count(args: argparse.Namespace) -> int:
    """How many test images a run's mAP uses: `--map-samples`, or the whole test split if it is smaller."""
    if getattr(args, "n_map", None) is None:
        from edgekd.data import load_data

        args.n_map = len(load_data(args.data).test.head(args.map_samples))
    return int(args.n_map)


def train_config(args: argparse.Namespace, epochs: int, seed: int, limit: int | None) -> Any:
    from edgekd.config import TrainConfig

    return TrainConfig(epochs=epochs, seed=seed, limit=limit, batch_size=args.batch_size, device=args.device)


def summarise(result: Any, path: Path, data: str, map_samples: int, extra: dict[str, Any]) -> dict[str, Any]:
    epoch_s = [float(row["epoch_s"]) for row in result.history if "epoch_s" in row]
    mean_ap, n_map = measure(path, data, map_samples)
    return {
        **extra,
        "test_accuracy": float(result.test_accuracy),
        "val_accuracy": float(result.val_accuracy),
        "map": mean_ap,
        "map_samples": n_map,
        "epoch_s": epoch_s,
        "epoch_s_mean": statistics.fmean(epoch_s) if epoch_s else math.nan,
        "seconds": float(result.seconds),
        "checkpoint": str(result.checkpoint),
    }


def hssakd_key(arch: str) -> str:
    """The key of the HSSAKD teacher of `arch` among the teachers (and its name, `<arch>-hssakd`)."""
    return f"{arch}-{HSSAKD}"


def teacher(arch: str, args: argparse.Namespace, hssakd: bool = False) -> tuple[Path, dict[str, Any]]:
    """Train (or reuse) the teacher `arch`: full training set, seed 0, `--teacher-epochs`; with `hssakd`,
    the same teacher trained with HSSAKD branches. A teacher another worker is training (its lock) is
    waited for, then reused."""
    folder = args.out / "teachers"
    name = f"{safe(hssakd_key(arch) if hssakd else arch)}-e{args.teacher_epochs}"
    ckpt, record = folder / f"{name}.pt", folder / f"{name}.json"
    if (args.resume or getattr(args, "table_only", False)) and record.is_file() and ckpt.is_file():
        return ckpt, json.loads(record.read_text())
    if getattr(args, "table_only", False):
        raise SystemExit(f"--table-only: teacher {name} is not in {folder}; run without --table-only to train it")
    waited = False
    while True:
        with claimed(record) as mine:
            if mine:
                if waited and record.is_file() and ckpt.is_file():  # another worker has just trained it
                    return ckpt, json.loads(record.read_text())
                return _train_teacher(arch, args, hssakd, ckpt, record)
        if not waited:
            print(f"teacher {name}: another worker is training it ({holder(record)}); waiting", flush=True)
            waited = True
        time.sleep(WAIT_S)


def _train_teacher(
    arch: str, args: argparse.Namespace, hssakd: bool, ckpt: Path, record: Path
) -> tuple[Path, dict[str, Any]]:
    from edgekd import api
    from edgekd.models import build_model, parse_arch
    from edgekd.models.zoo import count_params

    print(
        f"training {'HSSAKD ' if hssakd else ''}teacher {arch} ({args.teacher_epochs} epochs, full training set)",
        flush=True,
    )
    cfg = train_config(args, args.teacher_epochs, 0, None)
    result = api.train_teacher(arch, args.data, ckpt, cfg, progress=False, hssakd=hssakd, resume=args.resume)
    params = count_params(build_model(parse_arch(arch)))
    info = summarise(
        result, ckpt, args.data, args.map_samples, {"arch": arch, "params": params, "seed": 0, "hssakd": hssakd}
    )
    write_json(record, info)
    return ckpt, info


def run_one(
    pair: tuple[str, str],
    t_ckpt: Path,
    regime: str,
    limit: int | None,
    method: str,
    seed: int,
    args: argparse.Namespace,
    h_ckpt: Path | None = None,
) -> dict[str, Any]:
    """One student run (skipped with --resume when its JSON exists); returns its record. `hssakd` distils
    from `h_ckpt`, the HSSAKD teacher. A run another worker holds (its lock) is skipped, returned with the
    status "running elsewhere"."""
    t_arch, s_arch = pair
    folder = args.out / "runs" / safe(f"{t_arch}--{s_arch}") / regime / method
    record = folder / f"seed{seed}.json"
    epochs = epochs_for(args, regime)
    table_only = getattr(args, "table_only", False)

    def recorded() -> dict[str, Any]:
        return check_record(
            json.loads(record.read_text()),
            f"{t_arch} -> {s_arch} {regime} {method} seed {seed}",
            epochs,
            map_count(args),
            args.out,
        )

    if (args.resume or table_only) and record.is_file():
        return recorded()
    base = {
        "teacher": t_arch,
        "student": s_arch,
        "regime": regime,
        "limit": limit,
        "method": method,
        "seed": seed,
        "epochs": epochs,
    }
    if method == "alone" and (shared := shared_alone(base, record, args)) is not None:
        if not table_only:
            write_json(record, shared)
        return shared
    if table_only:
        return {**base, "status": "missing", "note": "not run yet"}
    if method == AUX and not has_auxiliary():
        return {**base, "status": "not available", "note": NOT_AVAILABLE}
    if method == "alone" and (busy := alone_elsewhere(base, record, args)):
        return {**base, "status": "running elsewhere", "note": f"another worker is making it for {busy}"}
    with claimed(record) as mine:
        if not mine:
            return {**base, "status": "running elsewhere", "note": f"another worker is making it ({holder(record)})"}
        if args.resume and record.is_file():  # that worker finished it between the check above and the claim
            return recorded()
        return _train_student(
            pair,
            t_ckpt,
            method,
            cfg=train_config(args, epochs, seed, limit),
            args=args,
            base=base,
            folder=folder,
            record=record,
            h_ckpt=h_ckpt,
        )


def _train_student(
    pair: tuple[str, str],
    t_ckpt: Path,
    method: str,
    *,
    cfg: Any,
    args: argparse.Namespace,
    base: dict[str, Any],
    folder: Path,
    record: Path,
    h_ckpt: Path | None,
) -> dict[str, Any]:
    from edgekd import api

    t_arch, s_arch = pair
    seed = base["seed"]
    ckpt = folder / f"seed{seed}.pt"
    t0 = time.perf_counter()
    if method == "alone":
        result = api.train_teacher(s_arch, args.data, ckpt, cfg, progress=False, resume=args.resume)
        task = None
    else:
        task = task_for(method, args)
        source = h_ckpt if method == HSSAKD else t_ckpt
        if source is None:
            raise ValueError("the hssakd run needs the HSSAKD teacher's checkpoint (h_ckpt)")
        result = api.distill(source, s_arch, args.data, ckpt, cfg, task, progress=False, resume=args.resume)
    info = summarise(
        result,
        ckpt,
        args.data,
        args.map_samples,
        {**base, "status": "done", "task": task.model_dump(mode="json") if task else None},
    )
    info["wall_s"] = time.perf_counter() - t0
    info["code"] = code_version()
    write_json(record, info)
    return info


@functools.cache
def code_version() -> str | None:
    """The git commit of the edgekd source this process runs (`+dirty` with uncommitted changes), or None
    outside a git checkout: run records made across several sessions say which code made them. Read once
    per process, when it starts (`main`): the checkout may move on while a long comparison runs."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "") if head else None


def shared_alone(base: dict[str, Any], record: Path, args: argparse.Namespace) -> dict[str, Any] | None:
    """The `alone` record of the same student, regime, limit, seed and epochs made for another pair, if
    there is one: training the student on labels does not involve the teacher, so pairs that share a
    student share these runs (the copy names the pair it came from in `shared_from`)."""
    want = {k: base[k] for k in ("student", "regime", "limit", "seed", "epochs")}
    pattern = f"*/{base['regime']}/alone/seed{base['seed']}.json"
    for path in sorted((args.out / "runs").glob(pattern)):
        other = json.loads(path.read_text()) if path != record else {}
        if (
            other.get("status") == "done"
            and other.get("map_samples") == map_count(args)
            and {k: other.get(k) for k in want} == want
        ):
            origin = other.get("shared_from") or f"{other['teacher']} -> {other['student']}"
            return {**other, "teacher": base["teacher"], "shared_from": origin}
    return None


def alone_elsewhere(base: dict[str, Any], record: Path, args: argparse.Namespace) -> str | None:
    """The pair folder of another pair whose `alone` run of the same student, regime and seed a worker is
    making now (to be shared once it is done), or None."""
    pattern = f"*--{safe(base['student'])}/{base['regime']}/alone/seed{base['seed']}.json.lock"
    for lock in sorted((args.out / "runs").glob(pattern)):
        other = lock.with_name(lock.name[: -len(".lock")])
        if other != record and holder(other) is not None:
            return other.parents[2].name
    return None


# -- the table --------------------------------------------------------------------------------------


def stats(values: list[float]) -> tuple[float, float]:
    """(mean, sample std); std is NaN for a single value."""
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else math.nan


def fmt(mean: float, std: float, scale: float = 1.0, digits: int = 1) -> str:
    if math.isnan(mean):
        return "n/a"
    s = f"{mean * scale:.{digits}f}"
    return s + (f" ± {std * scale:.{digits}f}" if not math.isnan(std) else " (n=1)")


def aggregate(
    runs: list[dict[str, Any]], teachers: dict[str, dict[str, Any]], args: argparse.Namespace
) -> list[dict[str, Any]]:
    """One row per pair x regime x method (plus the teacher's), with means, stds and gap recovered."""
    from edgekd.models import build_model, parse_arch
    from edgekd.models.zoo import count_params

    rows = []
    for t_arch, s_arch in args.pairs:
        s_params = count_params(build_model(parse_arch(s_arch)))
        t_info = teachers[t_arch]
        # the teacher each method distils from (and its gap is taken against): hssakd has its own
        own = {m: teachers.get(hssakd_key(t_arch), {}) if m == HSSAKD else t_info for m in args.methods}
        shown = [("teacher", t_info)] + ([(f"teacher-{HSSAKD}", own[HSSAKD])] if own.get(HSSAKD) else [])
        for regime in args.regimes:
            group = [r for r in runs if (r["teacher"], r["student"], r["regime"]) == (t_arch, s_arch, regime)]
            done = {m: [r for r in group if r["method"] == m and r.get("status") == "done"] for m in args.methods}
            acc_alone = stats([r["test_accuracy"] for r in done.get("alone", [])])[0]
            map_alone = stats([r["map"] for r in done.get("alone", [])])[0]
            key = {
                "pair": f"{t_arch} -> {s_arch}",
                "teacher": t_arch,
                "student": s_arch,
                "regime": regime,
                "student_params": s_params,
                "teacher_params": t_info["params"],
            }
            for name, info in shown:
                rows.append(
                    {
                        **key,
                        "method": name,
                        "n": 1,
                        "acc": (info["test_accuracy"], math.nan),
                        "map": (info["map"], math.nan),
                        "epoch_s": (info["epoch_s_mean"], math.nan),
                        "gap_acc": math.nan,
                        "gap_map": math.nan,
                        "note": f"{args.teacher_epochs} epochs, full data",
                    }
                )
            for m in args.methods:
                rs = done[m]
                if not rs:
                    unavailable = [r for r in group if r["method"] == m and r.get("status") == "not available"]
                    rows.append(
                        {
                            **key,
                            "method": m,
                            "n": 0,
                            "acc": (math.nan, math.nan),
                            "map": (math.nan, math.nan),
                            "epoch_s": (math.nan, math.nan),
                            "gap_acc": math.nan,
                            "gap_map": math.nan,
                            "note": unavailable[0]["note"] if unavailable else "no runs",
                        }
                    )
                    continue
                acc, mean_ap = stats([r["test_accuracy"] for r in rs]), stats([r["map"] for r in rs])
                t_acc, t_map = own[m].get("test_accuracy", acc_alone), own[m].get("map", map_alone)
                gap_acc = (
                    (acc[0] - acc_alone) / (t_acc - acc_alone) if m != "alone" and t_acc != acc_alone else math.nan
                )
                gap_map = (
                    (mean_ap[0] - map_alone) / (t_map - map_alone) if m != "alone" and t_map != map_alone else math.nan
                )
                aux = rs[0].get("task", {}) or {}
                shared = sorted({r["shared_from"] for r in rs if r.get("shared_from")})
                note = (
                    f"gap vs teacher-{HSSAKD}"
                    if m == HSSAKD
                    else f"runs of {', '.join(shared)}"
                    if shared
                    else f"auxiliary={aux.get('auxiliary')!r}"
                    if "auxiliary" in aux and m in ("infoflow", AUX)
                    else ""
                )
                rows.append(
                    {
                        **key,
                        "method": m,
                        "n": len(rs),
                        "acc": acc,
                        "map": mean_ap,
                        "epoch_s": stats([r["epoch_s_mean"] for r in rs]),
                        "gap_acc": gap_acc,
                        "gap_map": gap_map,
                        "note": note,
                        "later_epoch_s": stats(
                            [statistics.fmean(r["epoch_s"][1:]) for r in rs if len(r.get("epoch_s") or ()) > 1]
                        )[0],
                        "wall_s": stats([r["wall_s"] for r in rs if whole_run(r)])[0],
                    }
                )
    return rows


def whole_run(record: dict[str, Any]) -> bool:
    """Whether a record's `wall_s` covers its whole run: a run resumed after an interruption times only
    its last process, which is shorter than the sum of its epochs."""
    return bool(record.get("wall_s")) and record["wall_s"] >= sum(record.get("epoch_s") or ())


def cost_line(group: list[dict[str, Any]]) -> str | None:
    """What each method costs against the student alone, in one pair and regime: its epochs after the
    first (the first runs the teacher and builds its cache) and its whole run's wall time (which, for
    `infoflow-aux`, includes training the auxiliary teacher; resumed runs left out), each as a ratio of
    the means."""
    alone = next((r for r in group if r["method"] == "alone" and r["n"] > 0), None)
    if alone is None:
        return None
    parts = []
    for r in group:
        if r["method"] in ("alone", "teacher", f"teacher-{HSSAKD}") or r["n"] == 0:
            continue
        epoch = r["later_epoch_s"] / alone["later_epoch_s"]
        wall = r["wall_s"] / alone["wall_s"]
        parts.append(
            f"{r['method']} {'n/a' if math.isnan(epoch) else f'{epoch:.2f}x'}"
            f" / {'n/a' if math.isnan(wall) else f'{wall:.2f}x'}"
        )
    return (
        (
            "Cost against the student alone (epochs after the first / the whole run's wall time, ratios of the"
            " means): " + "; ".join(parts) + "."
        )
        if parts
        else None
    )


def goal_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The tracker's goal, checked per heterogeneous (non-CNN teacher) pair and regime."""
    lines = []
    for row in rows:
        if row["method"] != "pkt" or row["teacher"].startswith(("resnet", "cnn", "mobilenet")):
            continue
        same = [r for r in rows if (r["pair"], r["regime"]) == (row["pair"], row["regime"])]
        for name in ("infoflow-aux", "infoflow"):
            info = next((r for r in same if r["method"] == name and r["n"] > 0), None)
            if info is not None:
                break
        if info is None:
            continue
        pkt = row
        std_map = max(_nan0(info["map"][1]), _nan0(pkt["map"][1]))
        std_acc = max(_nan0(info["acc"][1]), _nan0(pkt["acc"][1]))
        d_map, d_acc = info["map"][0] - pkt["map"][0], info["acc"][0] - pkt["acc"][0]
        map_ok, acc_ok = d_map > std_map, d_acc >= -std_acc
        lines.append(
            f"- {row['pair']}, {row['regime']} ({info['method']} vs pkt, n={info['n']}):"
            f" mAP {d_map * 100:+.1f} pts vs std {std_map * 100:.1f} -> {'met' if map_ok else 'NOT met'};"
            f" accuracy {d_acc * 100:+.1f} pts vs std {std_acc * 100:.1f} ->"
            f" {'met' if acc_ok else 'NOT met'}"
            + (
                f"; gap recovered {info['gap_acc'] * 100:.0f}% ->"
                f" {'met' if info['gap_acc'] >= 0.4 - 1e-9 else 'NOT met'} (goal: >= 40% in 10pct)"
                if row["regime"] == "10pct" and not math.isnan(info["gap_acc"])
                else ""
            )
        )
    return lines


def _nan0(x: float) -> float:
    return 0.0 if math.isnan(x) else x


def markdown(rows: list[dict[str, Any]], args: argparse.Namespace, wall_s: float) -> str:
    import torch

    seeds = ",".join(map(str, args.seeds))
    per_regime = [(r, epochs_for(args, r)) for r in args.regimes]
    (r0, n0), rest = per_regime[0], per_regime[1:]
    epochs = (
        f"{n0} epochs in {r0}" + "".join(f", {n} in {r}" for r, n in rest)
        if any(n != n0 for _, n in rest)
        else f"{n0} epochs"
    )
    out = [
        "# Distillation comparison",
        "",
        f"Data {args.data}; students {epochs}, seeds {seeds}; teachers {args.teacher_epochs} epochs"
        f" (full data, seed 0); batch {args.batch_size}; retrieval mAP over the first {args.map_samples}"
        f" test images; {torch.get_num_threads()} torch threads; device {args.device}. Mean ± sample std over"
        f" seeds (accuracy and mAP in %); gap = (method - alone) / (teacher - alone), on the means."
        + (
            " Table written from the run records (--table-only)."
            if getattr(args, "table_only", False)
            else f" Wall time of this invocation: {wall_s / 60:.1f} min."
        ),
        "",
    ]
    header = (
        "| method | test acc % | mAP % | epoch s | gap acc | gap mAP | n | note |\n|---|---|---|---|---|---|---|---|"
    )
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["pair"], row["regime"]), []).append(row)
    gap = lambda g: "" if math.isnan(g) else f"{g * 100:.0f}%"  # noqa: E731
    for group in groups.values():
        first = group[0]
        out += [
            "",
            f"## {first['pair']} ({first['teacher_params']:,} -> {first['student_params']:,} parameters),"
            f" {first['regime']} ({epochs_for(args, first['regime'])} epochs)",
            "",
            header,
        ]
        for row in group:
            acc, mean_ap, epoch_s = row["acc"], row["map"], row["epoch_s"]
            out.append(
                f"| {row['method']} | {fmt(acc[0], acc[1], 100)} | {fmt(mean_ap[0], mean_ap[1], 100)} |"
                f" {fmt(epoch_s[0], epoch_s[1], 1, 2)} | {gap(row['gap_acc'])} | {gap(row['gap_map'])} |"
                f" {row['n']} | {row['note']} |"
            )
        if (cost := cost_line(group)) is not None:
            out += ["", cost]
    goals = goal_lines(rows)
    if goals:
        out += [
            "",
            "## Goal (heterogeneous pair)",
            "",
            "infoflow (with the auxiliary teacher when available) vs pkt: mAP above pkt by more than the"
            " larger std; accuracy not below pkt by more than it; >= 40% of the accuracy gap in 10pct.",
            "",
            *goals,
        ]
    return "\n".join(out) + "\n"


# -- the command --------------------------------------------------------------------------------------


def csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.kd_comparison",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--pairs", default=",".join(DEFAULT_PAIRS), help="teacher:student,...")
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS), help=f"of {', '.join(METHODS)}")
    parser.add_argument("--regimes", default="full,10pct", help=f"of {', '.join(REGIMES)}")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument(
        "--epochs", default="10", help="student epochs, every method alike: N, or per regime, e.g. 10pct=30,full=8"
    )
    parser.add_argument("--teacher-epochs", type=int, default=10)
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--map-samples", type=int, default=2000, help="test images for retrieval mAP")
    parser.add_argument(
        "--auxiliary",
        default=None,
        help="value of DistillConfig.auxiliary for infoflow-aux (default: auto, or true for a flag field)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--out", type=Path, default=Path("kd-comparison"))
    parser.add_argument(
        "--resume",
        action="store_true",
        help="skip runs whose result JSON exists; an interrupted run continues from its last epoch",
    )
    parser.add_argument(
        "--table-only", action="store_true", help="train nothing: write the table from the run records already in --out"
    )
    args = parser.parse_args(argv)
    args.pairs = [tuple(p.split(":", 1)) for p in csv(args.pairs)]
    if any(len(p) != 2 or not all(p) for p in args.pairs):
        parser.error("--pairs: give teacher:student,...")
    args.methods = csv(args.methods)
    if unknown := set(args.methods) - set(METHODS):
        parser.error(f"--methods: unknown {', '.join(sorted(unknown))}; known: {', '.join(METHODS)}")
    args.regimes = csv(args.regimes)
    if unknown := set(args.regimes) - set(REGIMES):
        parser.error(f"--regimes: unknown {', '.join(sorted(unknown))}; known: {', '.join(REGIMES)}")
    args.seeds = [int(s) for s in csv(args.seeds)]
    try:
        args.epochs = parse_epochs(args.epochs, args.regimes)
    except ValueError as err:
        parser.error(f"--epochs: {err}")
    return args


def main(argv: list[str] | None = None) -> int:
    import torch

    from edgekd.data import load_data

    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    code_version()  # the code this process loaded, before the checkout can move on
    start = time.perf_counter()
    n_train = len(load_data(args.data, val_fraction=0.0).train)
    limits = {r: None if REGIMES[r] == 1.0 else max(1, round(REGIMES[r] * n_train)) for r in args.regimes}
    teachers: dict[str, dict[str, Any]] = {}
    ckpts: dict[str, Path] = {}
    runs = []
    for pair in args.pairs:
        for key, hssakd in ((pair[0], False), (hssakd_key(pair[0]), True)):
            if key not in teachers and (not hssakd or HSSAKD in args.methods):
                ckpts[key], teachers[key] = teacher(pair[0], args, hssakd)
                t = teachers[key]
                print(
                    f"teacher {key}: test acc {t['test_accuracy'] * 100:.2f}%, mAP {t['map'] * 100:.2f}%,"
                    f" {t['epoch_s_mean']:.1f} s/epoch",
                    flush=True,
                )
        for regime in args.regimes:
            for seed in args.seeds:
                for method in args.methods:
                    r = run_one(
                        pair, ckpts[pair[0]], regime, limits[regime], method, seed, args, ckpts.get(hssakd_key(pair[0]))
                    )
                    runs.append(r)
                    if r.get("status") == "missing":
                        continue
                    if r.get("status") == "done":
                        print(
                            f"{pair[0]} -> {pair[1]} {regime} {method} seed {seed}:"
                            f" acc {r['test_accuracy'] * 100:.2f}%, mAP {r['map'] * 100:.2f}%,"
                            f" {r['epoch_s_mean']:.1f} s/epoch",
                            flush=True,
                        )
                    else:
                        print(f"{pair[0]} -> {pair[1]} {regime} {method} seed {seed}: {r['note']}", flush=True)
    rows = aggregate(runs, teachers, args)
    wall = time.perf_counter() - start
    text = markdown(rows, args, wall)
    write_json(
        args.out / "results.json",
        {
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "limits": limits,
            "teachers": teachers,
            "rows": rows,
            "runs": runs,
            "wall_s": wall,
        },
    )
    (args.out / "results.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
