"""How well does the latency predictor estimate candidates it was not fitted on?

    python -m benchmarks.predictor_accuracy --target cpu-ort-fp32 --space edgekd/select/spaces/small.yaml
        [--probes 16] [--held-out N] [--repeats 3] [--seconds 1.0] [--workdir DIR] [--json]

Side by side in one run, on one machine: probes chosen from the space and held-out candidates (the
rest of the space, or N of them spread over it) are measured, the predictor is fitted to the probes
alone, and each held-out candidate's predicted and measured p50 are printed with the error, then the
mean absolute percentage error (goal: under 10%). Every measurement is an untrained candidate
exported, built for the target and timed by THE timing loop in its own process. Probes and held-out
candidates are measured interleaved, in `--repeats` passes over all of them, so that the machine's
drift falls on both alike; on a shared machine other processes only ever add time, so a candidate's
lowest p50 counts, and the spread of its passes is printed as the measurement's own noise, the floor
under any predictor's error. The store is fresh (a
temporary folder) unless --workdir names a folder that holds one, so nothing from another run is reused.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from edgekd.bench import TimingConfig
from edgekd.config import TargetProfile, load_target
from edgekd.errors import UserError
from edgekd.runtimes import get_runtime
from edgekd.select import Candidate, load_space, measure_candidate
from edgekd.select.latency import benchmark_candidate, candidate_folder, target_fields
from edgekd.select.predictor import LatencyPredictor, choose_probes
from edgekd.store import STORE_NAME, Store


def held_out(candidates: list[Candidate], probes: list[Candidate], n: int | None) -> list[Candidate]:
    """The candidates not fitted on: all of them, or `n` spread over the space."""
    keys = {c.key for c in probes}
    rest = [c for c in candidates if c.key not in keys]
    return rest if n is None or n >= len(rest) else choose_probes(rest, n)[:n]


def measure_all(
    candidates: list[Candidate], profile: TargetProfile, workdir: Path, store: Store, timing: TimingConfig, repeats: int
) -> dict[str, list[float]]:
    """p50s of every candidate, `repeats` passes over all of them in one shuffled order: the machine's
    drift falls on probes and held-out candidates alike, and a candidate's repeats are minutes apart.
    The first pass is `measure_candidate` (cached in the store); later ones re-time the same build."""
    order = list(candidates)
    random.Random(0).shuffle(order)
    runs: dict[str, list[float]] = {c.key: [] for c in order}
    for i in range(repeats):
        for c in order:
            if i == 0:
                runs[c.key].append(measure_candidate(c, profile, workdir, store, timing).p50_ms)
            else:
                result = benchmark_candidate(c, profile, candidate_folder(c, profile, workdir), timing)
                runs[c.key].append(float(result["latency_ms"]["p50"]))
    return runs


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    started = time.perf_counter()  # the suite's own wall time; latencies come from edgekd.bench only
    profile = load_target(args.target)
    candidates = load_space(args.space).candidates()
    probes = choose_probes(candidates, args.probes)
    evaluate = held_out(candidates, probes, args.held_out)
    timing = TimingConfig(warmup_iters=10, warmup_s=0.2, min_iters=50, min_time_s=args.seconds)
    runs = measure_all(probes + evaluate, profile, workdir, Store(workdir / STORE_NAME), timing, args.repeats)
    measured = {key: min(p50s) for key, p50s in runs.items()}
    target = {"name": profile.name, **target_fields(profile, get_runtime(profile.runtime).version())}
    predictor = LatencyPredictor.fit_measured(probes, measured, target)
    predictor.save(workdir / "latency_predictor.json")
    rows: list[dict[str, Any]] = []
    for c in evaluate:
        predicted, got, p50s = predictor.predict(c), measured[c.key], runs[c.key]
        rows.append(
            {
                "arch": c.arch,
                "image_size": c.spec.image_size,
                "params": c.params,
                "flops": c.flops,
                "predicted_ms": predicted,
                "measured_ms": got,
                "p50_runs": p50s,
                "error_pct": abs(predicted - got) / got * 100.0,
                "noise_pct": (max(p50s) - min(p50s)) / min(p50s) * 100.0,
            }
        )
    return {
        "target": predictor.target,
        "space": str(args.space),
        "space_size": len(candidates),
        "probes": len(probes),
        "held_out": len(rows),
        "repeats": args.repeats,
        "timing": timing.to_json(),
        "vector": predictor.vector,
        "overhead_ms": predictor.overhead_ms(),
        "fit": predictor.fit_info,
        "rows": rows,
        "mape_pct": predictor.mape({c.key: measured[c.key] for c in evaluate}),
        "noise_pct_median": statistics.median(r["noise_pct"] for r in rows) if rows else None,
        "layer_table": predictor.table(candidates),
        "wall_s": time.perf_counter() - started,
    }


def show(report: dict[str, Any]) -> None:
    t = report["target"]
    print(
        f"target {t['name']}: {t['runtime']} {t['runtime_version']} {t['precision']} on {t['cpu_model']},"
        f" {t['threads']} threads, batch {t['batch']}"
    )
    print(
        f"space {report['space']}: {report['space_size']} candidates; fitted on {report['probes']} probes,"
        f" evaluated on {report['held_out']} held out; each measured {report['repeats']}x, lowest p50 counts"
    )
    print(
        f"per-layer model: vector width {report['vector']} (leave-one-out MAPE by width:"
        f" {', '.join(f'{k}: {v:.1f}%' for k, v in report['fit']['loo_mape_by_vector'].items())}),"
        f" {len(report['layer_table'])} layer configurations in the table"
    )
    print(f"\n{'candidate':48s} {'MFLOPs':>7s} {'predicted':>10s} {'measured':>9s} {'error':>7s} {'noise':>7s}")
    for r in report["rows"]:
        name = f"{r['arch']} @{r['image_size']}px"
        print(
            f"{name:48s} {r['flops'] / 1e6:7.1f} {r['predicted_ms']:8.4f}ms {r['measured_ms']:7.4f}ms"
            f" {r['error_pct']:6.1f}% {r['noise_pct']:6.1f}%"
        )
    print(
        f"\nMAPE on held-out candidates: {report['mape_pct']:.1f}% (goal < 10%); fit MAPE on the probes"
        f" {report['fit']['fit_mape']:.1f}%; measurement noise (spread of the repeats, median)"
        f" {report['noise_pct_median']:.1f}%"
    )
    print(f"wall time {report['wall_s']:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", default="cpu-ort-fp32")
    parser.add_argument("--space", default="small")
    parser.add_argument("--probes", type=int, default=16, help="candidates measured to fit the predictor")
    parser.add_argument("--held-out", type=int, default=None, help="held-out candidates (default: all the rest)")
    parser.add_argument("--repeats", type=int, default=3, help="measurements per candidate (lowest p50 counts)")
    parser.add_argument("--seconds", type=float, default=1.0, help="timed seconds per measurement")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the artifacts, store and predictor here")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    try:
        report = _run_in(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        show(report)


def _run_in(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="edgekd-predictor-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        return run(args, workdir)


if __name__ == "__main__":
    main()
