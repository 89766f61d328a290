"""Profile a search space on a target without training anything: what a user runs before choosing what
to distil.

Every candidate is exported untrained, built for the target and measured side by side with the others
(`edgekd.select.latency.benchmark_candidates`: one warm worker each, interleaved rounds, a bootstrap CI
per candidate and a null model as the per-call floor). The latency predictor is then fitted on some of
them (the probes, `choose_probes`) and predicts the rest, so the table shows, for the held-out
candidates, how far the estimate a screening would have used lies from the measurement. Nothing here
renders text: `edgekd.report.latency_table` writes the table and the plot.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgekd.bench.protocol import DEFAULT_RULE, ROUND_TIMING, StopRule, TimingConfig
from edgekd.config import TargetProfile, load_target
from edgekd.errors import UserError
from edgekd.select.kernels import NodeTime, profile_nodes
from edgekd.select.latency import (
    LatencyResult,
    benchmark_candidates,
    build_candidate,
    candidate_folder,
    target_fields,
)
from edgekd.select.predictor import LatencyPredictor, choose_probes
from edgekd.select.space import Candidate, load_space
from edgekd.select.yardstick import PredictionScore, score

FORMAT = "edgekd-latency-profile/1"
_ANY_BATCH = ("onnxruntime", "openvino")


@dataclass(frozen=True)
class ProfileRow:
    """One candidate: size, the measured median over rounds with its CI, and the predictor's estimate
    (`probe`: the predictor was fitted on it, so its error is a fit error, not a held-out one)."""

    arch: str
    family: str
    image_size: int
    key: str
    params: int
    flops: int
    measured_ms: float
    ci_low_ms: float
    ci_high_ms: float
    rounds: int
    predicted_ms: float
    probe: bool

    @property
    def error_pct(self) -> float:
        return (self.predicted_ms - self.measured_ms) / self.measured_ms * 100.0


@dataclass(frozen=True)
class LatencyProfile:
    """A space measured and predicted on one target at one batch and thread count."""

    space: str
    target: dict[str, Any]
    batch: int
    threads: int
    rows: tuple[ProfileRow, ...]
    floor_ms: float | None
    stopped_by: str
    held_out: PredictionScore | None
    predictor: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "space": self.space,
            "target": self.target,
            "batch": self.batch,
            "threads": self.threads,
            "floor_ms": self.floor_ms,
            "stopped_by": self.stopped_by,
            "held_out": self.held_out.to_json() if self.held_out is not None else None,
            "predictor": self.predictor,
            "rows": [{**asdict(r), "error_pct": r.error_pct} for r in self.rows],
        }


def target_for(target: str | TargetProfile, batch: int | None = None, threads: int | None = None) -> TargetProfile:
    """The target profile with the batch and thread count overridden where given."""
    profile = load_target(target) if isinstance(target, str) else target
    update: dict[str, Any] = {}
    if batch is not None:
        if batch < 1:
            raise UserError(f"batch must be >= 1, got {batch}")
        update["batch"] = batch
    if threads is not None:
        if threads < 0:
            raise UserError(f"threads must be >= 0 (0 = all cores), got {threads}")
        update["threads"] = threads
    return profile.model_copy(update=update) if update else profile


def measure_space(
    candidates: Sequence[Candidate],
    profile: TargetProfile,
    workdir: Path,
    timing: TimingConfig = ROUND_TIMING,
    rule: StopRule = DEFAULT_RULE,
) -> dict[str, LatencyResult]:
    """Every candidate measured side by side in one comparison (no cache: the numbers of one run)."""
    # ONNX Runtime and OpenVINO builds take any batch (the batch dimension stays dynamic), so one build
    # per candidate serves every batch; other runtimes (TensorRT's profiles) build per batch.
    built_for = profile.model_copy(update={"batch": 1}) if profile.runtime in _ANY_BATCH else profile
    folders = {c.key: candidate_folder(c, built_for, workdir) for c in candidates}
    results = benchmark_candidates(list(candidates), profile, folders, timing, rule)
    return {key: LatencyResult.from_result(result, False) for key, result in results.items()}


def profile_kernels(probes: Sequence[Candidate], profile: TargetProfile, workdir: Path) -> dict[str, list[NodeTime]]:
    """Per-node times of each probe on the target (`edgekd.select.kernels`: the runtime's profiler, one
    process per probe), built as `measure_space` builds it; empty for a runtime without per-node times."""
    from edgekd.select.kernels import has_profiler

    if not has_profiler(profile.runtime):
        return {}
    built_for = profile.model_copy(update={"batch": 1}) if profile.runtime in _ANY_BATCH else profile
    nodes = {}
    for c in probes:
        artifact = build_candidate(c, built_for, candidate_folder(c, built_for, workdir))
        threads = profile.resolved_threads()
        nodes[c.key] = profile_nodes(artifact.runtime, artifact.path, artifact.input_shape, profile.batch, threads)
    return nodes


def fit_and_predict(
    candidates: Sequence[Candidate],
    measured: dict[str, float],
    probes: Sequence[Candidate],
    target: dict[str, Any] | None = None,
    nodes: dict[str, list[NodeTime]] | None = None,
    *,
    choose: bool = True,
) -> tuple[LatencyPredictor, dict[str, float]]:
    """Fit the predictor on the probes' measured latencies and predict every candidate: on the probes'
    per-node times where `nodes` has them (`LatencyPredictor.fit_kernels`; `choose`: or on their totals
    where that has the lower leave-one-out error), else on their totals alone."""
    if nodes is None:
        predictor = LatencyPredictor.fit_measured(list(probes), measured, target)
    else:
        predictor = LatencyPredictor.fit_kernels(list(probes), measured, nodes, target, choose=choose)
    return predictor, {c.key: predictor.predict(c) for c in candidates}


def default_probes(n_candidates: int) -> int:
    """About half the space, at least two: enough to fit the per-kind costs, the rest held out."""
    return max(2, n_candidates // 2)


def profile_space(
    space: str | Path,
    target: str | TargetProfile,
    workdir: Path,
    *,
    batch: int | None = None,
    threads: int | None = None,
    probes: int | None = None,
    timing: TimingConfig = ROUND_TIMING,
    rule: StopRule = DEFAULT_RULE,
    progress: Callable[[str], None] | None = None,
) -> LatencyProfile:
    """Measure every candidate of `space` on `target`, fit the predictor on probes, predict the rest."""
    from edgekd.runtimes import get_runtime

    say = progress or (lambda _: None)
    profile = target_for(target, batch, threads)
    search = load_space(space)
    candidates = search.candidates()
    say(f"{len(candidates)} candidates of {search.name}; building and measuring them on {profile.name}")
    results = measure_space(candidates, profile, Path(workdir) / "builds", timing, rule)
    measured = {key: r.p50_ms for key, r in results.items()}
    chosen = choose_probes(candidates, probes or default_probes(len(candidates)))
    info = {"name": profile.name, **target_fields(profile, get_runtime(profile.runtime).version())}
    predictor, predicted = fit_and_predict(candidates, measured, chosen, info)
    probe_keys = {c.key for c in chosen}
    rows = tuple(_row(c, results[c.key], predicted[c.key], c.key in probe_keys) for c in candidates)
    held = [r for r in rows if not r.probe]
    first = next(iter(results.values()))
    return LatencyProfile(
        space=search.name,
        target=info,
        batch=profile.batch,
        threads=profile.resolved_threads(),
        rows=tuple(sorted(rows, key=lambda r: (r.measured_ms, r.key))),
        floor_ms=first.floor.median_ms if first.floor is not None else None,
        stopped_by=first.stats.stopped_by if first.stats is not None else "single block",
        held_out=score([r.predicted_ms for r in held], [r.measured_ms for r in held]) if held else None,
        predictor={
            "vector": predictor.vector,
            "own_padding": predictor.own_padding,
            "overhead_ms": predictor.overhead_ms(),
            "fit": predictor.fit_info,
        },
    )


def _row(c: Candidate, result: LatencyResult, predicted: float, probe: bool) -> ProfileRow:
    stats = result.stats
    return ProfileRow(
        arch=c.arch,
        family=c.spec.family,
        image_size=c.spec.image_size,
        key=c.key,
        params=c.params,
        flops=c.flops,
        measured_ms=result.p50_ms,
        ci_low_ms=stats.ci_low_ms if stats is not None else result.p50_ms,
        ci_high_ms=stats.ci_high_ms if stats is not None else result.p50_ms,
        rounds=stats.rounds if stats is not None else 1,
        predicted_ms=predicted,
        probe=probe,
    )
