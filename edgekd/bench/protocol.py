"""THE timing loop: the only place in edgekd that times anything.

Every runtime is measured the same way, so their latencies can be compared: warm-up until both a
count and a time are reached, then one `perf_counter_ns` pair around each `session.run` on the very
same input array, until both a minimum count and a minimum time are reached.

scripts/edgekd_runner.py (the deployment bundle's run.py, which cannot import edgekd) holds a copy of this
loop: change both together; tests/test_bundle.py runs the two on the same fake sessions.
"""

from __future__ import annotations

import gc
import time
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from edgekd.errors import UserError
from edgekd.runtimes import Session


@dataclass(frozen=True)
class TimingConfig:
    """How long to warm up and how long to measure; each phase ends when all its minimums are met."""

    warmup_iters: int = 10
    warmup_s: float = 0.5
    min_iters: int = 50
    min_time_s: float = 2.0
    max_iters: int = 100_000

    def __post_init__(self) -> None:
        if self.warmup_iters < 0 or self.warmup_s < 0 or self.min_time_s < 0:
            raise UserError(f"timing: warm-up and minimum time must be >= 0, got {self}")
        if not 1 <= self.min_iters <= self.max_iters:
            raise UserError(f"timing: need 1 <= min_iters ({self.min_iters}) <= max_iters ({self.max_iters})")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TimingConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise UserError(f"timing: unknown field(s) {sorted(unknown)}; known: {sorted(known)}")
        return cls(**data)


DEFAULT_TIMING = TimingConfig()


@dataclass(frozen=True)
class LatencyStats:
    """Per-call latency of one batch, in milliseconds (floats; only report/ formats them)."""

    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    std_ms: float
    samples: int
    throughput_per_s: float
    batch: int
    #: the 0th, 1st, ..., 100th percentiles: the whole distribution in 101 numbers, for plots
    quantiles_ms: tuple[float, ...] = ()

    @classmethod
    def from_samples(cls, samples_ns: np.ndarray, batch: int) -> LatencyStats:
        """Statistics of per-call durations in nanoseconds; std is the sample std (ddof=1)."""
        ms = np.asarray(samples_ns, dtype=np.float64) / 1e6
        if ms.size == 0:
            raise ValueError("no latency samples")
        p50, p90, p99 = np.percentile(ms, [50, 90, 99])
        mean = float(ms.mean())
        return cls(
            p50_ms=float(p50),
            p90_ms=float(p90),
            p99_ms=float(p99),
            mean_ms=mean,
            std_ms=float(ms.std(ddof=1)) if ms.size > 1 else 0.0,
            samples=int(ms.size),
            throughput_per_s=batch * 1000.0 / mean if mean > 0 else float("inf"),
            batch=batch,
            quantiles_ms=tuple(float(q) for q in np.percentile(ms, np.linspace(0, 100, 101))),
        )

    def to_json(self) -> dict[str, float]:
        """The `latency_ms` object of `bench --json`."""
        return {
            "p50": self.p50_ms,
            "p90": self.p90_ms,
            "p99": self.p99_ms,
            "mean": self.mean_ms,
            "std": self.std_ms,
        }


def measure(session: Session, inputs: np.ndarray, config: TimingConfig = DEFAULT_TIMING) -> LatencyStats:
    """Warm `session` up on `inputs`, then time repeated runs on that same array."""
    warm_up(session, inputs, config)
    # A collection pause inside the loop would land in one sample and fake a tail latency.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        samples = timed_runs(session, inputs, config)
    finally:
        if was_enabled:
            gc.enable()
    return LatencyStats.from_samples(samples, batch=len(inputs))


def warm_up(session: Session, inputs: np.ndarray, config: TimingConfig) -> int:
    """Run until both `warmup_iters` runs and `warmup_s` seconds are done; returns the run count."""
    deadline = time.perf_counter_ns() + int(config.warmup_s * 1e9)
    limit = max(config.warmup_iters, config.max_iters)
    count = 0
    while count < limit and (count < config.warmup_iters or time.perf_counter_ns() < deadline):
        session.run(inputs)
        count += 1
    return count


def timed_runs(session: Session, inputs: np.ndarray, config: TimingConfig) -> np.ndarray:
    """Per-run durations (ns) until both `min_iters` and `min_time_s` are met, or `max_iters`."""
    clock = time.perf_counter_ns
    run = session.run  # bound once: the attribute lookup stays out of the measured span
    samples = np.empty(config.max_iters, dtype=np.int64)
    min_time_ns = int(config.min_time_s * 1e9)
    count = 0
    start = end = clock()
    while count < config.max_iters and (count < config.min_iters or end - start < min_time_ns):
        t0 = clock()
        run(inputs)
        end = clock()
        samples[count] = end - t0
        count += 1
    return samples[:count]
