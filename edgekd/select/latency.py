"""A candidate's latency before training: export it untrained, build it for the target, measure it.

Latency does not depend on the weights, so an untrained copy measures what the distilled student will
cost. Candidates are measured side by side (`edgekd.bench.compare.compare`: one warm worker each,
interleaved rounds, a null model as the per-call floor), so each latency is a median over rounds with
its confidence interval. Results are cached in the results store's file, in a table of their own
(`candidate_latency`), keyed by the candidate's key plus a hash of what decides latency on the target:
runtime and its version, precision, device, threads, batch and CPU model. A cached latency is reused
only with its interval, and only when that interval is at most as wide (relative to its median) as the
caller's stop rule asks; a wider one, or an old row without an interval, is measured again, and the
narrower of the two is kept. A new ONNX Runtime version or another CPU measures again.

A measurement that replaced a cached one remembers it (`LatencyResult.before`). When every candidate
measured again moved beyond its earlier interval, all the same way (`drift`), the machine's speed changed
between the two: another job, a thermal or power state, a neighbour on a shared host. No statistic within
one run can see a change that lasts the whole run, so it is reported, with the ratios, where the
decisions made on the earlier measurement (a budget placed between their intervals) are used.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import statistics
import time
from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from edgekd._io import write_json
from edgekd.bench import TimingConfig
from edgekd.bench.protocol import DEFAULT_RULE, ROUND_TIMING, RoundStats, StopRule, cpu_model
from edgekd.config import TargetProfile
from edgekd.errors import UserError
from edgekd.runtimes import Artifact
from edgekd.select.intervals import GAP_SHARE, MIN_GAP, Interval, stats_from_json
from edgekd.select.space import Candidate
from edgekd.store import Store

_BUILT = "candidate_artifact.json"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS candidate_latency (
    key TEXT PRIMARY KEY,
    candidate TEXT NOT NULL,
    arch TEXT NOT NULL,
    spec TEXT NOT NULL,
    target TEXT NOT NULL,
    p50_ms REAL NOT NULL,
    result TEXT NOT NULL,
    created REAL NOT NULL
);
"""
#: Columns added for intervals (rows written before them hold NULL: an interval too wide to reuse).
_INTERVAL_COLUMNS = {
    "ci_low_ms": "REAL",
    "ci_high_ms": "REAL",
    "rel_width": "REAL",
    "rounds": "INTEGER",
    "stopped_by": "TEXT",
    "floor": "TEXT",
}


@dataclass(frozen=True)
class LatencyResult:
    """One candidate's latency on one target: the median over rounds (`p50_ms`), its round statistics
    (`stats`, None for a row cached before intervals) and the per-call floor measured beside it;
    `cached` when no measurement ran."""

    p50_ms: float
    cached: bool
    result: dict[str, Any]
    stats: RoundStats | None = None
    floor: RoundStats | None = None
    before: Interval | None = None  # the cached interval this measurement replaced (too wide to reuse)

    @property
    def interval(self) -> Interval:
        return Interval.of(self.stats) if self.stats is not None else Interval.point(self.p50_ms)

    def narrow_enough(self, rule: StopRule) -> bool:
        """Reusable for `rule`: it has an interval no wider, relative to its median, than the rule asks."""
        return self.stats is not None and self.stats.rel_width <= rule.rel_width

    @classmethod
    def from_result(cls, result: dict[str, Any], cached: bool) -> LatencyResult:
        rounds, floor = result.get("rounds"), result.get("floor")
        stats = stats_from_json(rounds) if rounds else None
        floor_stats = stats_from_json({k: v for k, v in floor.items() if k != "name"}) if floor else None
        p50 = stats.median_ms if stats is not None else float(result["latency_ms"]["p50"])
        return cls(p50, cached, result, stats, floor_stats)


def target_fields(profile: TargetProfile, runtime_version: str) -> dict[str, Any]:
    """What decides a model's latency on a target, as the benchmark's fingerprint records it."""
    return {
        "runtime": profile.runtime,
        "runtime_version": runtime_version,
        "precision": profile.precision.value,
        "device": profile.device,
        "threads": profile.resolved_threads(),
        "batch": profile.batch,
        "cpu_model": cpu_model(),
    }


def cache_key(candidate: Candidate, fields: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]
    return f"{candidate.key}-{digest}"


class LatencyCache:
    """The `candidate_latency` table in the store's SQLite file (same WAL and busy-timeout settings)."""

    def __init__(self, store: Store | Path) -> None:
        self.store = store if isinstance(store, Store) else Store(Path(store))
        self.path = self.store.path
        with self._connect() as conn:
            conn.executescript(_SCHEMA)
            have = {row[1] for row in conn.execute("PRAGMA table_info(candidate_latency)")}
            for name, kind in _INTERVAL_COLUMNS.items():
                if name not in have:
                    conn.execute(f"ALTER TABLE candidate_latency ADD COLUMN {name} {kind}")

    def _connect(self) -> AbstractContextManager[sqlite3.Connection]:
        return self.store.connect()

    def get(self, key: str) -> LatencyResult | None:
        with self._connect() as conn:
            row = conn.execute("SELECT result FROM candidate_latency WHERE key = ?", (key,)).fetchone()
        return None if row is None else LatencyResult.from_result(json.loads(row["result"]), True)

    def put(self, key: str, candidate: Candidate, fields: dict[str, Any], result: dict[str, Any]) -> None:
        """Store a measurement; over an earlier one only when it is narrower (two processes measuring the
        same candidate at once keep the more precise number; a row without an interval always yields)."""
        got = LatencyResult.from_result(result, False)
        s = got.stats
        interval = (
            (s.ci_low_ms, s.ci_high_ms, s.rel_width, s.rounds, s.stopped_by)
            if s is not None
            else (None, None, None, None, None)
        )
        floor = json.dumps(result["floor"], sort_keys=True) if result.get("floor") else None
        with self._connect() as conn:
            conn.execute(
                "INSERT INTO candidate_latency(key, candidate, arch, spec, target, p50_ms, result, created,"
                " ci_low_ms, ci_high_ms, rel_width, rounds, stopped_by, floor)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(key) DO UPDATE SET p50_ms = excluded.p50_ms, result = excluded.result,"
                " created = excluded.created, ci_low_ms = excluded.ci_low_ms, ci_high_ms = excluded.ci_high_ms,"
                " rel_width = excluded.rel_width, rounds = excluded.rounds, stopped_by = excluded.stopped_by,"
                " floor = excluded.floor"
                " WHERE candidate_latency.rel_width IS NULL"
                " OR (excluded.rel_width IS NOT NULL AND excluded.rel_width < candidate_latency.rel_width)",
                (
                    key,
                    candidate.key,
                    candidate.arch,
                    candidate.spec.model_dump_json(),
                    json.dumps(fields, sort_keys=True),
                    got.p50_ms,
                    json.dumps(result, sort_keys=True, default=str),
                    time.time(),
                    *interval,
                    floor,
                ),
            )

    def count(self) -> int:
        with self._connect() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM candidate_latency").fetchone()[0])


def lookup(candidate: Candidate, profile: TargetProfile, store: Store | Path) -> LatencyResult | None:
    """The cached latency of `candidate` on `profile` on this machine, without measuring anything."""
    from edgekd.runtimes import get_runtime

    fields = target_fields(profile, get_runtime(profile.runtime).version())
    return LatencyCache(store).get(cache_key(candidate, fields))


def measure_candidates(
    candidates: list[Candidate],
    profile: TargetProfile,
    workdir: Path,
    store: Store | Path,
    timing: TimingConfig | None = None,
    rule: StopRule | None = None,
) -> dict[str, LatencyResult]:
    """Latency of each untrained candidate built for `profile` (by candidate key): the cached ones whose
    interval is narrow enough for `rule`, the others measured side by side in one comparison."""
    from edgekd.runtimes import get_runtime

    rule = rule or DEFAULT_RULE
    adapter = get_runtime(profile.runtime)  # an absent runtime fails here, before any work
    fields = target_fields(profile, adapter.version())
    cache = LatencyCache(store)
    found: dict[str, LatencyResult] = {}
    wide: dict[str, LatencyResult] = {}
    for c in candidates:
        hit = cache.get(cache_key(c, fields))
        if hit is not None and hit.narrow_enough(rule):
            found[c.key] = hit
        elif hit is not None and hit.stats is not None:
            wide[c.key] = hit
    todo = [c for c in candidates if c.key not in found]
    if todo:
        folders = {c.key: Path(workdir) / cache_key(c, fields) for c in todo}
        results = benchmark_candidates(todo, profile, folders, timing, rule)
        for c in todo:
            cache.put(cache_key(c, fields), c, fields, results[c.key])
            before = wide[c.key].interval if c.key in wide else None
            found[c.key] = replace(LatencyResult.from_result(results[c.key], False), before=before)
    return {c.key: found[c.key] for c in candidates}


#: The smallest move worth a warning: the median of the new/old ratios at least this far from 1. Intervals
#: of a few percent make a 2% move "clear of both"; but a budget placed in a gap sits at least
#: `MIN_GAP * GAP_SHARE` of itself above the faster candidate's upper end, so a common move smaller than
#: that cannot take the chosen candidate over it.
DRIFT_MIN = MIN_GAP * GAP_SHARE


def drift(results: Iterable[LatencyResult]) -> dict[str, Any] | None:
    """Whether the machine's speed changed since the cached measurements that these replaced: at least
    two candidates measured again, every one's new interval clear of its earlier one, all slower or all
    faster, and the median ratio of new to old at least `DRIFT_MIN` from 1. Returns the direction and the
    range of new/old median ratios, or None."""
    moved = [(r.interval, r.before) for r in results if r.before is not None and not r.cached]
    if len(moved) < 2:
        return None
    slower = all(new.low_ms > old.high_ms for new, old in moved)
    faster = all(new.high_ms < old.low_ms for new, old in moved)
    if not (slower or faster):
        return None
    ratios = [new.median_ms / old.median_ms for new, old in moved if old.median_ms > 0]
    if not ratios or abs(statistics.median(ratios) - 1.0) < DRIFT_MIN:
        return None
    return {
        "direction": "slower" if slower else "faster",
        "candidates": len(moved),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
    }


def drift_message(moved: dict[str, Any], target: str) -> str:
    """One line for the user: which way, by how much, and what it means for the decisions made."""
    return (
        f"the machine's speed changed on {target}: all {moved['candidates']} candidates measured again are"
        f" {moved['direction']} than their cached measurement ({moved['ratio_min']:.2f}-{moved['ratio_max']:.2f}x),"
        " beyond both intervals. Another job, a power state or a neighbour on a shared host; a budget placed on"
        " the earlier measurement may not hold. Rerun when the machine is steady"
    )


def measure_candidate(
    candidate: Candidate,
    profile: TargetProfile,
    workdir: Path,
    store: Store | Path,
    timing: TimingConfig | None = None,
    *,
    repeats: int = 1,
    rule: StopRule | None = None,
) -> LatencyResult:
    """One candidate's latency (`measure_candidates` of one). `repeats` is accepted for older callers
    and ignored: the rounds of the stop rule replaced repeated processes."""
    del repeats
    return measure_candidates([candidate], profile, workdir, store, timing, rule)[candidate.key]


def candidate_folder(candidate: Candidate, profile: TargetProfile, workdir: Path) -> Path:
    """Where `measure_candidate` builds `candidate` for `profile`: one folder per cache key."""
    from edgekd.runtimes import get_runtime

    return Path(workdir) / cache_key(candidate, target_fields(profile, get_runtime(profile.runtime).version()))


def benchmark_candidates(
    candidates: list[Candidate],
    profile: TargetProfile,
    folders: dict[str, Path],
    timing: TimingConfig | None = None,
    rule: StopRule | None = None,
) -> dict[str, dict[str, Any]]:
    """Measure untrained candidates side by side (no cache), each built in its folder first unless the
    folder already holds its build: one `compare` run, interleaved rounds, a null model as the floor.
    Returns each candidate's `bench --json` record (with `rounds` and `floor`), by candidate key."""
    from edgekd.bench.compare import compare

    artifacts = {c.key: _built(folders[c.key]) or _build(c, profile, folders[c.key]) for c in candidates}
    comparison = compare(artifacts, batch=profile.batch, timing=timing or ROUND_TIMING, rule=rule or DEFAULT_RULE)
    by_key = {m.name: m.to_json() for m in comparison.models}
    return {c.key: {**by_key[c.key], "candidate": _describe(c)} for c in candidates}


def build_candidate(candidate: Candidate, profile: TargetProfile, folder: Path) -> Artifact:
    """The untrained candidate built for `profile` in `folder` (the build already there, if whole)."""
    return _built(folder) or _build(candidate, profile, folder)


def _describe(candidate: Candidate) -> dict[str, Any]:
    return {
        "arch": candidate.arch,
        "key": candidate.key,
        "image_size": candidate.spec.image_size,
        "params": candidate.params,
        "flops": candidate.flops,
    }


def _build(candidate: Candidate, profile: TargetProfile, folder: Path) -> Artifact:
    """Export the untrained candidate and build it for the target; `_BUILT` is written last."""
    from edgekd.export import export_onnx
    from edgekd.models import build_model
    from edgekd.runtimes import get_runtime

    shape = candidate.input_shape
    if profile.input_shape is not None and tuple(profile.input_shape) != shape:
        raise UserError(
            f"target {profile.name} takes input {list(profile.input_shape)} but candidate"
            f" {candidate.arch} takes {list(shape)}; set the space's image_size and in_channels"
            " to match the target"
        )
    adapter = get_runtime(profile.runtime)
    folder.mkdir(parents=True, exist_ok=True)
    onnx_path = export_onnx(build_model(candidate.spec), shape, folder / "model.onnx")
    artifact = adapter.build(onnx_path, profile.model_copy(update={"input_shape": shape}), folder)
    write_json(folder / _BUILT, artifact.to_json())
    return artifact


def _built(folder: Path) -> Artifact | None:
    """The build a previous call left in `folder` (the folder is per candidate and target), if whole."""
    try:
        artifact = Artifact.from_json(json.loads((folder / _BUILT).read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return artifact if artifact.path.exists() else None
