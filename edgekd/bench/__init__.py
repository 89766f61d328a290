"""Benchmarking: THE timing loop (`protocol`), the device fingerprint, and one process per measurement.

`benchmark(artifact)` runs `edgekd.bench.worker` in a fresh subprocess and returns its JSON reply, so
every runtime is timed by the same loop and no runtime's thread pool shares a process with another's.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from edgekd.bench.artifacts import resolve_artifact
from edgekd.bench.protocol import DEFAULT_TIMING, QUICK_TIMING, LatencyStats, TimingConfig
from edgekd.errors import UserError
from edgekd.runtimes import Artifact
from edgekd.store import Store, default_store

__all__ = ["LatencyStats", "TimingConfig", "bench_artifact", "benchmark", "resolve_artifact"]


def benchmark(
    artifact: Artifact,
    *,
    batch: int | None = None,
    threads: int | None = None,
    data: str | None = None,
    limit: int | None = None,
    timing: TimingConfig = DEFAULT_TIMING,
    seed: int = 0,
) -> dict[str, Any]:
    """Measure `artifact` in its own process: latency, and top-1 accuracy on `data`'s test split.

    `batch` defaults to the artifact's (1 when it records none); `threads` overrides the artifact's
    (0 = all cores). Returns the `bench --json` object: latency_ms, throughput_per_s, batch, samples,
    accuracy, accuracy_samples, fingerprint, artifact.
    """
    from edgekd.bench.worker import call

    batch = batch if batch is not None else int(artifact.info.get("batch", 1))
    if batch < 1:
        raise UserError(f"batch must be >= 1, got {batch}")
    if threads is not None and threads < 0:
        raise UserError(f"threads must be >= 0 (0 = all cores), got {threads}")
    if limit is not None and limit < 1:
        raise UserError(f"limit must be >= 1, got {limit}")
    request = {
        "artifact": artifact.to_json(),
        "batch": batch,
        "threads": threads,
        "timing": timing.to_json(),
        "data": data,
        "limit": limit,
        "seed": seed,
    }
    resolved = (threads if threads is not None else artifact.threads) or os.cpu_count() or 1
    return call(request, resolved)


def bench_artifact(
    artifact: Path,
    *,
    data: str | None = None,
    batch: int | None = None,
    threads: int | None = None,
    limit: int | None = None,
    quick: bool = False,
    store: Path | None = None,
) -> dict[str, Any]:
    """Measure an artifact with the one timing protocol (in its own process); accuracy when data is given."""
    art = resolve_artifact(Path(artifact))
    timing = QUICK_TIMING if quick else DEFAULT_TIMING
    result = benchmark(art, batch=batch, threads=threads, data=data, limit=limit, timing=timing)
    folder = art.path.parent
    Store(store or default_store(folder)).log_benchmark(str(art.path), result)
    return result
