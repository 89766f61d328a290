"""Benchmarking: THE timing loop (`protocol`), the device fingerprint, and one process per measurement.

`benchmark(artifact)` runs `edgekd.bench.worker` in a fresh subprocess and returns its JSON reply, so
every runtime is timed by the same loop and no runtime's thread pool shares a process with another's.
`bench_artifacts` measures several side by side in one run, in interleaved rounds (`compare`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from edgekd.bench.artifacts import resolve_artifact
from edgekd.bench.protocol import (
    DEFAULT_RULE,
    DEFAULT_TIMING,
    QUICK_RULE,
    QUICK_TIMING,
    ROUND_TIMING,
    LatencyStats,
    TimingConfig,
)
from edgekd.errors import UserError
from edgekd.runtimes import Artifact
from edgekd.store import Store, default_store

__all__ = ["LatencyStats", "TimingConfig", "bench_artifact", "bench_artifacts", "benchmark", "resolve_artifact"]


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
    from edgekd.bench.worker import adapter_module, call

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
        "adapter": adapter_module(artifact.runtime),
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
    input_shape: tuple[int, int, int] | None = None,
) -> dict[str, Any]:
    """Measure an artifact with the one timing protocol (in its own process); accuracy when data is given.
    `input_shape` (C, H, W) fills a model file's dynamic dimensions (`--input-shape`)."""
    art = resolve_artifact(Path(artifact), input_shape=input_shape)
    timing = QUICK_TIMING if quick else DEFAULT_TIMING
    result = benchmark(art, batch=batch, threads=threads, data=data, limit=limit, timing=timing)
    folder = art.path.parent
    Store(store or default_store(folder)).log_benchmark(str(art.path), result)
    return result


def bench_artifacts(
    artifacts: Sequence[Path],
    *,
    data: str | None = None,
    batch: int | None = None,
    threads: int | None = None,
    limit: int | None = None,
    quick: bool = False,
    rel_width: float = DEFAULT_RULE.rel_width,
    time_cap_s: float | None = None,
    store: Path | None = None,
    on_round: Callable[[int, float], None] | None = None,
    input_shape: tuple[int, int, int] | None = None,
    shift: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Measure artifacts side by side in one run (`edgekd.bench.compare`: warm workers, interleaved
    rounds, a null floor). One artifact: its `bench --json` record, with `rounds` and `floor`; several:
    `{"models": [record, ...], "floors": [...], "stopped_by", "rule", "timing", "order"}`. `input_shape`
    (C, H, W) fills the dynamic dimensions of model files built outside edgekd (`--input-shape`). `shift`
    ({"corruptions": [[name, severity], ...], "domains": {name: spec}, "seed"}) adds `shift` (accuracy per
    domain) and `mean_corruption_error` to each record; it needs `data`."""
    from edgekd.bench.compare import compare

    if shift and data is None:
        raise UserError("--shift and --domain score the model on shifted test data; give --data too")
    resolved: dict[str, Artifact] = {}
    for path in artifacts:  # the same path given twice is measured twice, as two models
        name = str(path) if str(path) not in resolved else f"{path}#{len(resolved) + 1}"
        resolved[name] = resolve_artifact(Path(path), input_shape=input_shape)
    base = QUICK_RULE if quick else DEFAULT_RULE
    cap = base.time_cap_s if time_cap_s is None else time_cap_s
    rule = replace(base, rel_width=rel_width, time_cap_s=cap)  # checked by StopRule: ProtocolError, exit 2
    result = compare(
        resolved,
        batch=batch,
        threads=threads,
        data=data,
        limit=limit,
        timing=ROUND_TIMING,
        rule=rule,
        on_round=on_round,
        shift=shift,
    )
    for measured in result.models:
        record = measured.to_json()
        Store(store or default_store(measured.artifact.path.parent)).log_benchmark(str(measured.artifact.path), record)
    return result.models[0].to_json() if len(result.models) == 1 else result.to_json()
