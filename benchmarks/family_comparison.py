"""The ensemble and HSSAKD comparison (issue 5 item 3): online ensemble compression and HSSAKD against
training alone, `kd` and `infoflow`, per data regime, over seeds.

    python -m benchmarks.family_comparison [--student cnn-s] [--widths 1.0,0.8,0.6,0.4,0.2]
        [--teacher-arch resnet] [--methods M,...] [--regimes full,10pct] [--seeds 0,1,2] [--epochs E]
        [--teacher-epochs E] [--data D] [--out DIR] [--resume] [--report STEM] [--threads N] [--map-samples N]

Per regime and seed:

- Widths. One online-ensemble run (`api.ensemble`, `edgekd.distill.ensemble`: the `--student` at every
  `--widths` fraction, trained at once on a shared stem) and, with `ensemble-kd`, the same run guided by
  the teacher (`kd` on every student's logits), against every width trained on its own for the same
  `--epochs`: `alone` (labels only) and `kd` (from the teacher). A width's baseline is the exact arch the
  ensemble writes for it, e.g. `cnn(depth=1,stem=12,width=7)` for 0.6 of `cnn-s`, not the plain
  `cnn(width=7)`: the ensemble's students keep the shared stem at the base width, so the plain arch would
  have a narrower stem, fewer parameters and FLOPs, and the rows would mix the architecture with the
  training. With the exact arch, both rows are the same deployable model trained two ways, which is the
  choice the ensemble offers a user (the base width, fraction 1.0, is the `--student` itself).
- HSSAKD. The base student distilled with `hssakd` from a teacher trained with HSSAKD branches
  (`<arch>-hssakd-e<E>`) against `kd` and `infoflow` from the plain teacher, and `alone`; its gap is taken
  against its own teacher. Cost (measured here, 1 thread): an HSSAKD teacher epoch is 6.5-10x a plain
  one; an HSSAKD student epoch (every batch rotated four ways) about 4x less from the teacher cache than
  with the teacher live. An ensemble epoch (5 widths of cnn-s) costs about the sum of
  the 5 separate epochs.

Everything but the ensembles runs through `kd_comparison` (`teacher`, `run_one`) in its layout:
`<out>/teachers/`, `<out>/runs/<teacher>--<student>/<regime>/<method>/seed<k>.json`, so the two suites
share teachers and runs (the base student's alone/kd/infoflow are kd_comparison's own runs of that pair).
Each ensemble writes its run folder and record under `<out>/ensembles/<teacher>--<student>/w<widths>/
<regime>/<method>/seed<k>[.json]`. Records are written atomically; `--resume` skips what is done (and a
reused record must have the same `--epochs` and `--map-samples`).

Metrics as in kd_comparison: test accuracy, retrieval mAP (first `--map-samples` test images), epoch time
(an ensemble's is the whole family's epoch), gap recovered `(method - alone) / (teacher - alone)`, mean
+- sample std over seeds; and the time table: each ensemble run's trainer wall time (and its epochs' time)
against the sum over the widths of the separate runs' (`alone`, `kd`), per seed then averaged: the
training time one ensemble saves (positive) or costs. Regimes: `full`, `10pct` (as kd_comparison), and
`n<N>`, the first N training samples (smoke runs and tests). Output: `<out>/results.md` and `results.json`
(`--report STEM`: `<out>/STEM.md` and `.json`, e.g. to share kd_comparison's folder, its teacher and its
runs, without overwriting its results).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import time
from pathlib import Path
from typing import Any

from benchmarks import kd_comparison as kdc
from benchmarks.kd_comparison import fmt, safe, stats, write_json

SEPARATE = ("alone", "kd")  # trained at every width
ENSEMBLES = {"ensemble": None, "ensemble-kd": "kd"}  # method -> the teacher's guide loss (None: no teacher)
BASE_ONLY = ("infoflow", "hssakd")  # the base student only
METHODS = (*SEPARATE, *ENSEMBLES, *BASE_ONLY)
HSSAKD_TABLE = ("alone", "kd", "infoflow", "hssakd")
_N = re.compile(r"^n([1-9]\d*)$")


def regime_limit(regime: str, n_train: int) -> int | None:
    """The training-sample limit of a regime: None for `full`, a share for `10pct`, N for `n<N>`."""
    if (m := _N.match(regime)) is not None:
        return int(m.group(1))
    share = kdc.REGIMES[regime]
    return None if share == 1.0 else max(1, round(share * n_train))


def members(student: str, fractions: tuple[float, ...]) -> list[tuple[float, str]]:
    """(fraction, arch) of every ensemble student: the arch it is written as, or `student` for the base."""
    from edgekd.distill.ensemble import plan
    from edgekd.models import parse_arch

    base = parse_arch(student)
    return [(m.fraction, student if m.spec.params == base.params else m.spec.label()) for m in plan(base, fractions)]


def check_record(record: dict[str, Any], what: str, args: argparse.Namespace) -> dict[str, Any]:
    """A reused record must come from the same `--epochs` and mAP sample count (`args.n_map`)."""
    return kdc.check_record(record, what, args.epochs, args.n_map, args.out)


def ensemble_run(
    method: str, regime: str, limit: int | None, seed: int, t_ckpt: Path, args: argparse.Namespace
) -> dict[str, Any]:
    """One ensemble run (skipped with --resume when its record exists): every student measured."""
    from edgekd import api

    folder = (
        args.out
        / "ensembles"
        / safe(f"{args.teacher_arch}--{args.student}")
        / ("w" + "-".join(f"{f:g}" for f in args.widths))
        / regime
        / method
    )
    record = folder / f"seed{seed}.json"
    if args.resume and record.is_file():
        return check_record(json.loads(record.read_text()), f"{method} {regime} seed {seed}", args)
    guide = ENSEMBLES[method]
    cfg = kdc.train_config(args, args.epochs, seed, limit)
    t0 = time.perf_counter()
    manifest = api.ensemble(
        args.student,
        args.data,
        folder / f"seed{seed}",
        cfg,
        args.widths,
        teacher=t_ckpt if guide else None,
        guide=guide,
        resume=args.resume,
        progress=False,
    )
    students = []
    for (fraction, arch), row in zip(members(args.student, args.widths), manifest["students"], strict=True):
        path = folder / f"seed{seed}" / row["checkpoint"]
        mean_ap, n_map = kdc.measure(path, args.data, args.map_samples)
        students.append(
            {
                "fraction": fraction,
                "arch": arch,
                "written_as": row["arch"],
                "params": row["params"],
                "test_accuracy": row["test_acc"],
                "val_accuracy": row["val_acc"],
                "map": mean_ap,
                "map_samples": n_map,
                "checkpoint": str(path),
            }
        )
    info = {
        "teacher": args.teacher_arch,
        "student": args.student,
        "widths": list(args.widths),
        "regime": regime,
        "limit": limit,
        "method": method,
        "guide": guide,
        "seed": seed,
        "epochs": args.epochs,
        "map_samples": args.n_map,
        "status": "done",
        "train_seconds": manifest["train_seconds"],
        "wall_seconds": manifest["wall_seconds"],
        "epoch_s_mean": manifest["train_seconds"] / args.epochs,
        "ensemble_test_accuracy": manifest["ensemble"]["test_acc"],
        "students": students,
        "wall_s": time.perf_counter() - t0,
    }
    write_json(record, info)
    return info


def member_runs(ensembles: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each ensemble student as a run record of its width (what `kd_comparison.aggregate` reads)."""
    return [
        {
            "teacher": e["teacher"],
            "student": s["arch"],
            "regime": e["regime"],
            "method": e["method"],
            "seed": e["seed"],
            "status": e["status"],
            "test_accuracy": s["test_accuracy"],
            "map": s["map"],
            "epoch_s_mean": e["epoch_s_mean"],
            "task": None,
        }
        for e in ensembles
        for s in e["students"]
    ]


# -- the tables --------------------------------------------------------------------------------------


def _view(args: argparse.Namespace, pairs: list[tuple[str, str]], methods: list[str]) -> argparse.Namespace:
    return argparse.Namespace(pairs=pairs, regimes=args.regimes, methods=methods, teacher_epochs=args.teacher_epochs)


def width_rows(
    runs: list[dict[str, Any]],
    ensembles: list[dict[str, Any]],
    teachers: dict[str, dict[str, Any]],
    args: argparse.Namespace,
) -> list[dict[str, Any]]:
    """One row per regime x width x method (alone, kd, the ensembles), with `width` added; no teacher rows."""
    widths = members(args.student, args.widths)
    methods = [m for m in args.methods if m in SEPARATE or m in ENSEMBLES]
    view = _view(args, [(args.teacher_arch, arch) for _, arch in widths], methods)
    fraction = {arch: f for f, arch in widths}
    rows = kdc.aggregate(runs + member_runs(ensembles), teachers, view)
    return [
        {
            **r,
            "width": fraction[r["student"]],
            "note": "epoch: the whole family" if r["method"] in ENSEMBLES and r["n"] else _note(r),
        }
        for r in rows
        if not r["method"].startswith("teacher")
    ]


def _note(row: dict[str, Any]) -> str:
    """kd_comparison's note, less its `auxiliary='none'` (no auxiliary teacher runs here)."""
    return "" if row["note"] == "auxiliary='none'" else row["note"]


def hssakd_rows(
    runs: list[dict[str, Any]], teachers: dict[str, dict[str, Any]], args: argparse.Namespace
) -> list[dict[str, Any]]:
    """kd_comparison's rows of the base pair for alone, kd, infoflow and hssakd (those asked for)."""
    methods = [m for m in HSSAKD_TABLE if m in args.methods]
    if not set(methods) & set(BASE_ONLY):
        return []
    rows = kdc.aggregate(runs, teachers, _view(args, [(args.teacher_arch, args.student)], methods))
    return [{**r, "note": _note(r)} for r in rows]


def time_rows(
    runs: list[dict[str, Any]], ensembles: list[dict[str, Any]], args: argparse.Namespace
) -> list[dict[str, Any]]:
    """Per regime, ensemble method and separate method: the ensemble's trainer wall time (and epochs' time)
    against the sum over all widths of the separate runs', over the seeds where every run is done."""
    archs = [arch for _, arch in members(args.student, args.widths)]
    done = {(r["student"], r["regime"], r["method"], r["seed"]): r for r in runs if r.get("status") == "done"}
    rows = []
    for regime in args.regimes:
        for method in (m for m in ENSEMBLES if m in args.methods):
            for against in (m for m in SEPARATE if m in args.methods):
                pairs: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
                for e in ensembles:
                    if (e["regime"], e["method"], e.get("status")) != (regime, method, "done"):
                        continue
                    sep = [done[key] for arch in archs if (key := (arch, regime, against, e["seed"])) in done]
                    if len(sep) == len(archs):
                        pairs.append((e, sep))
                ens_wall = [float(e["wall_seconds"]) for e, _ in pairs]
                sep_wall = [float(sum(r["seconds"] for r in sep)) for _, sep in pairs]
                ens_train = [float(e["train_seconds"]) for e, _ in pairs]
                sep_train = [float(sum(sum(r["epoch_s"]) for r in sep)) for _, sep in pairs]
                rows.append(
                    {
                        "regime": regime,
                        "ensemble": method,
                        "against": against,
                        "n": len(pairs),
                        "runs": len(archs),
                        "ens_wall": stats(ens_wall),
                        "sep_wall": stats(sep_wall),
                        "ratio": stats([e / s for e, s in zip(ens_wall, sep_wall, strict=True)]),
                        "saved": stats([s - e for e, s in zip(ens_wall, sep_wall, strict=True)]),
                        "ens_train": stats(ens_train),
                        "sep_train": stats(sep_train),
                    }
                )
    return rows


def _fmt(pair: tuple[float, float], digits: int) -> str:
    return fmt(pair[0], pair[1], 1.0, digits)


def _gap(g: float) -> str:
    return "" if math.isnan(g) else f"{g * 100:.0f}%"


def _row(r: dict[str, Any], first: list[str]) -> str:
    acc, mean_ap, epoch_s = r["acc"], r["map"], r["epoch_s"]
    cells = [
        *first,
        r["method"],
        fmt(acc[0], acc[1], 100),
        fmt(mean_ap[0], mean_ap[1], 100),
        fmt(epoch_s[0], epoch_s[1], 1, 2),
        _gap(r["gap_acc"]),
        _gap(r["gap_map"]),
        str(r["n"]),
        r["note"],
    ]
    return "| " + " | ".join(cells) + " |"


def markdown(
    widths: list[dict[str, Any]],
    hssakd: list[dict[str, Any]],
    times: list[dict[str, Any]],
    teachers: dict[str, dict[str, Any]],
    args: argparse.Namespace,
    wall_s: float,
) -> str:
    import torch

    t = teachers[args.teacher_arch]
    head = "| width | student (params) | method | test acc % | mAP % | epoch s | gap acc | gap mAP | n | note |"
    out = [
        "# Ensemble and HSSAKD comparison",
        "",
        f"Data {args.data}; student {args.student} at widths {', '.join(map(str, args.widths))};"
        f" every student {args.epochs} epochs, seeds {','.join(map(str, args.seeds))}; teacher"
        f" {args.teacher_arch} ({t['params']:,} parameters, {args.teacher_epochs} epochs, full data, seed 0:"
        f" test acc {t['test_accuracy'] * 100:.1f}%, mAP {t['map'] * 100:.1f}%); batch {args.batch_size};"
        f" retrieval mAP over the first {args.map_samples} test images; {torch.get_num_threads()} torch"
        f" threads; device {args.device}. Mean ± sample std over seeds (accuracy and mAP in %); gap ="
        f" (method - alone) / (teacher - alone), on the means. Wall time of this invocation:"
        f" {wall_s / 60:.1f} min.",
    ]
    for regime in args.regimes:
        rows = [r for r in widths if r["regime"] == regime]
        if rows:
            out += [
                "",
                f"## Ensemble vs separate training, {regime}",
                "",
                head,
                "|---|---|---|---|---|---|---|---|---|---|",
            ]
            out += [_row(r, [str(r["width"]), f"{r['student']} ({r['student_params']:,})"]) for r in rows]
        trows = [r for r in times if r["regime"] == regime]
        if trows:
            out += [
                "",
                f"Training time, {regime}: one ensemble run against the {trows[0]['runs']} separate runs"
                " (trainer wall time; epochs' time alone in the last columns); saved > 0: the ensemble is"
                " cheaper.",
                "",
                "| ensemble | against | ensemble s | separate s | ensemble / separate | saved s |"
                " ensemble epochs s | separate epochs s | n |",
                "|---|---|---|---|---|---|---|---|---|",
            ]
            out += [
                f"| {r['ensemble']} | {r['against']} x {r['runs']} | {_fmt(r['ens_wall'], 0)} |"
                f" {_fmt(r['sep_wall'], 0)} | {_fmt(r['ratio'], 2)} | {_fmt(r['saved'], 0)} |"
                f" {_fmt(r['ens_train'], 0)} | {_fmt(r['sep_train'], 0)} | {r['n']} |"
                for r in trows
            ]
        hrows = [r for r in hssakd if r["regime"] == regime]
        if hrows:
            out += [
                "",
                f"## HSSAKD vs kd and infoflow, {args.teacher_arch} -> {args.student}, {regime}",
                "",
                "| method | test acc % | mAP % | epoch s | gap acc | gap mAP | n | note |",
                "|---|---|---|---|---|---|---|---|",
            ]
            out += [_row(r, []) for r in hrows]
    return "\n".join(out) + "\n"


# -- the command --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from edgekd.distill.ensemble import parse_fractions
    from edgekd.errors import UserError

    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.family_comparison",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--student", default="cnn-s", help="the ensemble's base student (a width-scalable arch)")
    parser.add_argument("--widths", default="1.0,0.8,0.6,0.4,0.2", help="decreasing width fractions")
    parser.add_argument("--teacher-arch", default="resnet")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"of {', '.join(METHODS)}")
    parser.add_argument("--regimes", default="full,10pct", help=f"of {', '.join(kdc.REGIMES)}, or n<N>")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=10, help="student epochs (every method and width alike)")
    parser.add_argument("--teacher-epochs", type=int, default=10)
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--map-samples", type=int, default=2000, help="test images for retrieval mAP")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--out", type=Path, default=Path("family-comparison"))
    parser.add_argument("--resume", action="store_true", help="skip runs whose result JSON exists")
    parser.add_argument("--report", default="results", help="the tables go to OUT/REPORT.md and OUT/REPORT.json")
    args = parser.parse_args(argv)
    if not args.report or safe(args.report) != args.report:
        parser.error(f"--report: give a file name stem (letters, digits, -_.), not {args.report!r}")
    args.methods = kdc.csv(args.methods)
    if not args.methods or (unknown := set(args.methods) - set(METHODS)):
        parser.error(f"--methods: unknown {', '.join(sorted(unknown)) or '(none given)'}; known: {', '.join(METHODS)}")
    args.regimes = kdc.csv(args.regimes)
    if not args.regimes or (bad := [r for r in args.regimes if r not in kdc.REGIMES and not _N.match(r)]):
        parser.error(f"--regimes: unknown {', '.join(bad) or '(none given)'}; known: {', '.join(kdc.REGIMES)}, n<N>")
    try:
        args.seeds = [int(s) for s in kdc.csv(args.seeds)]
    except ValueError:
        parser.error(f"--seeds: give integers, e.g. 0,1,2, not {args.seeds!r}")
    for name in ("epochs", "teacher_epochs", "map_samples", "batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if not args.seeds:
        parser.error("--seeds: give at least one seed")
    try:
        # one width is enough when no ensemble is trained (e.g. --widths 1.0 for infoflow and hssakd alone)
        args.widths = parse_fractions(args.widths, 2 if any(m in ENSEMBLES for m in args.methods) else 1)
        members(args.student, args.widths)
    except UserError as err:
        parser.error(f"--widths/--student: {err}")
    args.auxiliary = None  # read by kd_comparison.task_for (infoflow-aux only, not run here)
    return args


def main(argv: list[str] | None = None) -> int:
    import torch

    from edgekd.data import load_data

    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    n_train = len(load_data(args.data, val_fraction=0.0).train)
    kdc.map_count(args)  # args.n_map: as kd_comparison.measure counts
    limits = {r: regime_limit(r, n_train) for r in args.regimes}
    teachers: dict[str, dict[str, Any]] = {}
    t_ckpt, teachers[args.teacher_arch] = kdc.teacher(args.teacher_arch, args)
    h_ckpt = None
    if "hssakd" in args.methods:
        h_ckpt, teachers[kdc.hssakd_key(args.teacher_arch)] = kdc.teacher(args.teacher_arch, args, hssakd=True)
    for key, t in teachers.items():
        print(
            f"teacher {key}: test acc {t['test_accuracy'] * 100:.2f}%, mAP {t['map'] * 100:.2f}%,"
            f" {t['epoch_s_mean']:.1f} s/epoch",
            flush=True,
        )
    widths = members(args.student, args.widths)
    runs: list[dict[str, Any]] = []
    ensembles: list[dict[str, Any]] = []
    for regime in args.regimes:
        for seed in args.seeds:
            for method in (m for m in ENSEMBLES if m in args.methods):
                e = ensemble_run(method, regime, limits[regime], seed, t_ckpt, args)
                ensembles.append(e)
                print(
                    f"{args.student} {method} {regime} seed {seed}: "
                    + ", ".join(f"w{s['fraction']:g} {s['test_accuracy'] * 100:.2f}%" for s in e["students"])
                    + f"; {e['wall_seconds']:.0f} s",
                    flush=True,
                )
            todo = [(arch, m) for _, arch in widths for m in SEPARATE if m in args.methods]
            todo += [(args.student, m) for m in BASE_ONLY if m in args.methods]
            for arch, method in todo:
                r = kdc.run_one((args.teacher_arch, arch), t_ckpt, regime, limits[regime], method, seed, args, h_ckpt)
                runs.append(check_record(r, f"{arch} {method} {regime} seed {seed}", args))
                print(
                    f"{arch} {method} {regime} seed {seed}: acc {r['test_accuracy'] * 100:.2f}%,"
                    f" mAP {r['map'] * 100:.2f}%, {r['epoch_s_mean']:.1f} s/epoch",
                    flush=True,
                )
    rows, hrows, trows = (
        width_rows(runs, ensembles, teachers, args),
        hssakd_rows(runs, teachers, args),
        time_rows(runs, ensembles, args),
    )
    wall = time.perf_counter() - start
    text = markdown(rows, hrows, trows, teachers, args, wall)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    write_json(
        args.out / f"{args.report}.json",
        {
            "args": settings,
            "limits": limits,
            "teachers": teachers,
            "widths": rows,
            "hssakd": hrows,
            "times": trows,
            "runs": runs,
            "ensembles": ensembles,
            "wall_s": wall,
        },
    )
    (args.out / f"{args.report}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
