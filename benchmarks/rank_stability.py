"""Do two independent measurements rank the same candidates the same way? Old protocol vs rounds.

    python -m benchmarks.rank_stability [--threads 1] [--target cpu-ort-fp32] [--space demo] [--n 5]
        [--rounds-ci 0.05] [--time-cap-s 90] [--workdir DIR]

The candidates of a search space (default: the demo space) are exported untrained (latency does not
depend on the weights) and built for the target, as `select` builds them. Then, side by side in one
run, each protocol measures all of them twice, independently:

  (a) single block: one `benchmark()` per candidate, each in a fresh process, one after the other
      (the protocol `select` used until now), ranked by p50;
  (b) rounds: one `compare()` of all candidates, warm workers in interleaved rounds until every 95%
      CI is within --rounds-ci of its median (or the time cap), beside the null model, ranked by the
      median over rounds.

The passes alternate (a, b, a, b) so the machine's drift falls on both. Printed: each candidate's
latencies, Kendall's tau between the two rankings of each protocol (1 = the same order twice), each
ranking's tau against the FLOPs order, the CI widths, and the null model's floor.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

from scipy.stats import kendalltau

from edgekd.bench import benchmark
from edgekd.bench.compare import Comparison, compare
from edgekd.bench.protocol import DEFAULT_TIMING, StopRule, cpu_model
from edgekd.config import load_target
from edgekd.runtimes import Artifact
from edgekd.select.latency import _build, _built, candidate_folder
from edgekd.select.space import Candidate, load_space


def build_all(space: str, target: str, threads: int, n: int, workdir: Path) -> list[tuple[Candidate, Artifact]]:
    profile = load_target(target).model_copy(update={"threads": threads})
    candidates = load_space(space).candidates()[:n]
    built = []
    for c in candidates:
        folder = candidate_folder(c, profile, workdir)
        built.append((c, _built(folder) or _build(c, profile, folder)))
    return built


def single_block(built: list[tuple[Candidate, Artifact]], threads: int) -> dict[str, float]:
    """The old protocol: one block per candidate, each in its own process, one after the other."""
    return {
        c.key: float(benchmark(a, batch=1, threads=threads, timing=DEFAULT_TIMING)["latency_ms"]["p50"])
        for c, a in built
    }


def rounds(built: list[tuple[Candidate, Artifact]], threads: int, rule: StopRule) -> Comparison:
    return compare({c.key: a for c, a in built}, batch=1, threads=threads, rule=rule)


def tau(a: dict[str, float], b: dict[str, float]) -> float:
    keys = list(a)
    return float(kendalltau([a[k] for k in keys], [b[k] for k in keys]).statistic)


def report(built: list[tuple[Candidate, Artifact]], old: list[dict[str, float]], new: list[Comparison]) -> None:
    medians = [{m.name: m.rounds.stats.median_ms for m in run.models} for run in new]
    stats = [{m.name: m.rounds.stats for m in run.models} for run in new]
    flops = {c.key: float(c.flops) for c, _ in built}
    print(f"{'candidate':<38} {'MFLOPs':>7} | {'(a) p50 #1':>10} {'#2':>8} | {'(b) median #1 [95% CI]':>28} {'#2':>28}")
    for c, _ in built:
        cells = [f"{s[c.key].median_ms:8.4f} [{s[c.key].ci_low_ms:.4f}-{s[c.key].ci_high_ms:.4f}]" for s in stats]
        a = f"{old[0][c.key]:10.4f} {old[1][c.key]:8.4f}"
        print(f"{c.arch:<38} {c.flops / 1e6:7.2f} | {a} | {cells[0]:>28} {cells[1]:>28}")
    print()
    print(
        f"Kendall tau, pass 1 vs pass 2:  (a) single block {tau(old[0], old[1]):+.3f}   (b) rounds {tau(*medians):+.3f}"
    )
    print(
        "Kendall tau vs FLOPs order:      (a) "
        + " ".join(f"{tau(o, flops):+.3f}" for o in old)
        + "   (b) "
        + " ".join(f"{tau(m, flops):+.3f}" for m in medians)
    )
    for i, run in enumerate(new, 1):
        widths = [m.rounds.stats.rel_width for m in run.models]
        r = run.models[0].rounds.stats
        print(
            f"(b) run {i}: {r.rounds} rounds, stopped by {r.stopped_by}; CI width {100 * min(widths):.2f}%"
            f"-{100 * max(widths):.2f}% of the median (target {100 * run.rule.rel_width:.1f}%)"
        )
        for f in run.floors:
            s = f.rounds.stats
            print(f"    null-model floor: {s.median_ms:.4f} ms [{s.ci_low_ms:.4f}-{s.ci_high_ms:.4f}]")
    spread = [max(o[k] for o in old) / min(o[k] for o in old) for k in old[0]]
    print(f"(a) largest pass-to-pass ratio of one candidate's p50: {max(spread):.2f}x")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--target", default="cpu-ort-fp32")
    parser.add_argument("--space", default="demo")
    parser.add_argument("--n", type=int, default=5, help="the first N candidates of the space")
    parser.add_argument("--rounds-ci", type=float, default=0.05)
    parser.add_argument("--time-cap-s", type=float, default=90.0, help="per compare() run")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    rule = StopRule(rel_width=args.rounds_ci, time_cap_s=args.time_cap_s)
    with tempfile.TemporaryDirectory(prefix="edgekd-rank-") as tmp:
        workdir = args.workdir or Path(tmp)
        built = build_all(args.space, args.target, args.threads, args.n, workdir)
        print(f"{len(built)} candidates of space {args.space} on {args.target}, threads {args.threads}")
        print(f"CPU: {cpu_model()} ({platform.machine()}), python {platform.python_version()}")
        start = time.monotonic()
        old: list[dict[str, float]] = []
        new: list[Comparison] = []
        for _ in range(2):  # alternate the protocols, so drift falls on both
            old.append(single_block(built, args.threads))
            new.append(rounds(built, args.threads, rule))
        print(f"measured in {time.monotonic() - start:.0f} s\n")
        report(built, old, new)


if __name__ == "__main__":
    main()
