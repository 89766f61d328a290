"""A candidate's latency before training: export it untrained, build it for the target, measure it.

Latency does not depend on the weights, so an untrained copy measures what the distilled student will
cost. Measurements go through `edgekd.bench.benchmark` (THE timing loop, in its own process), and are
cached in the results store's file, in a table of their own (`candidate_latency`), keyed by the
candidate's key plus a hash of what decides latency on the target: runtime and its version, precision,
device, threads, batch and CPU model. A second `select` on the same machine and target measures
nothing twice; a new ONNX Runtime version or another CPU measures again. The timing settings are not
part of the key: a cached number is reused whatever timing the caller asks for (the result records the
one it was measured with).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekd._io import write_json
from edgekd.bench import TimingConfig, benchmark
from edgekd.bench.protocol import DEFAULT_TIMING, cpu_model
from edgekd.config import TargetProfile
from edgekd.errors import UserError
from edgekd.runtimes import Artifact
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


@dataclass(frozen=True)
class LatencyResult:
    """p50 latency (ms) of one candidate on one target; `cached` when no measurement ran."""

    p50_ms: float
    cached: bool
    result: dict[str, Any]


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

    def _connect(self) -> AbstractContextManager[sqlite3.Connection]:
        return self.store.connect()

    def get(self, key: str) -> LatencyResult | None:
        with self._connect() as conn:
            row = conn.execute("SELECT p50_ms, result FROM candidate_latency WHERE key = ?", (key,)).fetchone()
        return None if row is None else LatencyResult(float(row["p50_ms"]), True, json.loads(row["result"]))

    def put(self, key: str, candidate: Candidate, fields: dict[str, Any], result: dict[str, Any]) -> None:
        # Two processes measuring the same candidate at once: the first number stays.
        with self._connect() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO candidate_latency(key, candidate, arch, spec, target, p50_ms, result, created)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key,
                    candidate.key,
                    candidate.arch,
                    candidate.spec.model_dump_json(),
                    json.dumps(fields, sort_keys=True),
                    float(result["latency_ms"]["p50"]),
                    json.dumps(result, sort_keys=True, default=str),
                    time.time(),
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


def measure_candidate(
    candidate: Candidate,
    profile: TargetProfile,
    workdir: Path,
    store: Store | Path,
    timing: TimingConfig | None = None,
    *,
    repeats: int = 1,
) -> LatencyResult:
    """p50 latency of the untrained `candidate` built for `profile`; cached in the store."""
    from edgekd.runtimes import get_runtime

    adapter = get_runtime(profile.runtime)  # an absent runtime fails here, before any work
    fields = target_fields(profile, adapter.version())
    key = cache_key(candidate, fields)
    cache = LatencyCache(store)
    hit = cache.get(key)
    if hit is not None:
        return hit
    result = benchmark_candidate(candidate, profile, Path(workdir) / key, timing, repeats=repeats)
    cache.put(key, candidate, fields, result)
    return LatencyResult(float(result["latency_ms"]["p50"]), False, result)


def candidate_folder(candidate: Candidate, profile: TargetProfile, workdir: Path) -> Path:
    """Where `measure_candidate` builds `candidate` for `profile`: one folder per cache key."""
    from edgekd.runtimes import get_runtime

    return Path(workdir) / cache_key(candidate, target_fields(profile, get_runtime(profile.runtime).version()))


def benchmark_candidate(
    candidate: Candidate, profile: TargetProfile, folder: Path, timing: TimingConfig | None = None, *, repeats: int = 1
) -> dict[str, Any]:
    """Benchmark one untrained candidate built in `folder` (no cache), exporting and building it first
    unless the folder already holds its build. With `repeats` > 1 the artifact is measured that many
    times, each in its own process, and the run with the lowest p50 is returned (load from other
    processes only ever adds time); `p50_runs` lists every run's p50."""
    if repeats < 1:
        raise UserError(f"repeats must be >= 1, got {repeats}")
    artifact = _built(folder) or _build(candidate, profile, folder)
    runs = [benchmark(artifact, batch=profile.batch, timing=timing or DEFAULT_TIMING) for _ in range(repeats)]
    best = min(runs, key=lambda r: float(r["latency_ms"]["p50"]))
    return {
        **best,
        "p50_runs": [float(r["latency_ms"]["p50"]) for r in runs],
        "candidate": {
            "arch": candidate.arch,
            "key": candidate.key,
            "image_size": candidate.spec.image_size,
            "params": candidate.params,
            "flops": candidate.flops,
        },
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
