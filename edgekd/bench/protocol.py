"""THE timing protocol: the only code that times anything, on the host and on the device.

Every runtime is measured the same way, so their latencies can be compared: warm-up until both a
count and a time are reached, then one `perf_counter_ns` pair around each `session.run` on the very
same input array, until both a minimum count and a minimum time are reached. Every measurement
carries the fingerprint of the machine and settings it was taken with.

This file imports only the standard library and numpy: `edgekd package` copies it, unchanged, into
every deployment bundle as `edgekd_protocol.py` beside the runner (`run.py`, from
scripts/edgekd_runner.py), and the manifest records its sha256. The device and the host run the very
same file; there is no second copy to keep in step.
"""

from __future__ import annotations

import gc
import hashlib
import os
import platform
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Protocol

import numpy as np

#: The name this file has inside a bundle, beside the runner.
BUNDLED_NAME = "edgekd_protocol.py"


class ProtocolError(ValueError):
    """Bad timing settings from the user (edgekd's CLI and the runner turn it into one line, exit 2)."""


class Runnable(Protocol):
    """What the loop times: anything with `run(inputs)` (a runtime session)."""

    def run(self, inputs: np.ndarray) -> Any: ...


# ---- settings -------------------------------------------------------------------------------------


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
            raise ProtocolError(f"timing: warm-up and minimum time must be >= 0, got {self.to_json()}")
        if not 1 <= self.min_iters <= self.max_iters:
            raise ProtocolError(f"timing: need 1 <= min_iters ({self.min_iters}) <= max_iters ({self.max_iters})")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TimingConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ProtocolError(f"timing: unknown field(s) {sorted(unknown)}; known: {sorted(known)}")
        return cls(**data)


DEFAULT_TIMING = TimingConfig()
#: `edgekd bench --quick` and `run.py bench --quick`: a shorter measurement, for smoke tests.
QUICK_TIMING = TimingConfig(warmup_iters=5, warmup_s=0.2, min_iters=30, min_time_s=0.5)


# ---- statistics -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LatencyStats:
    """Per-call latency of one batch, in milliseconds (floats; only edgekd's report/ formats them)."""

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
        return {"p50": self.p50_ms, "p90": self.p90_ms, "p99": self.p99_ms, "mean": self.mean_ms, "std": self.std_ms}

    def fields_json(self) -> dict[str, Any]:
        """The latency fields of a measurement record (`bench --json`, `run.py bench`)."""
        return {
            "latency_ms": self.to_json(),
            "latency_quantiles_ms": list(self.quantiles_ms),
            "throughput_per_s": self.throughput_per_s,
            "samples": self.samples,
            "batch": self.batch,
        }


# ---- the loop -------------------------------------------------------------------------------------


def measure(session: Runnable, inputs: np.ndarray, config: TimingConfig = DEFAULT_TIMING) -> LatencyStats:
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


def warm_up(session: Runnable, inputs: np.ndarray, config: TimingConfig) -> int:
    """Run until both `warmup_iters` runs and `warmup_s` seconds are done; returns the run count."""
    deadline = time.perf_counter_ns() + int(config.warmup_s * 1e9)
    limit = max(config.warmup_iters, config.max_iters)
    count = 0
    while count < limit and (count < config.warmup_iters or time.perf_counter_ns() < deadline):
        session.run(inputs)
        count += 1
    return count


def timed_runs(session: Runnable, inputs: np.ndarray, config: TimingConfig) -> np.ndarray:
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


# ---- what a measurement was taken on --------------------------------------------------------------

_CPUINFO = Path("/proc/cpuinfo")
# x86 says "model name"; ARM kernels say "Model" or "Hardware" (or only "CPU part" numbers).
_CPUINFO_KEYS = ("model name", "Model", "Hardware", "cpu model", "Processor")


def cpu_model() -> str:
    """The CPU's marketing name where the OS tells it, else the best platform string there is."""
    try:
        text = _CPUINFO.read_text(errors="replace")
    except OSError:
        text = ""
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in _CPUINFO_KEYS and value.strip():
            values.setdefault(key.strip(), " ".join(value.split()))
    found = next((values[k] for k in _CPUINFO_KEYS if k in values), None)
    return found or platform.processor() or platform.machine() or "unknown"


def usable_cores() -> int:
    """Cores this process may run on (a container or taskset may allow fewer than the machine has)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def fingerprint(
    runtime: str, runtime_version: str, precision: str, threads: int, batch: int, device: str
) -> dict[str, Any]:
    """The device and settings one measurement was taken with: numbers from two machines never mix."""
    return {
        "cpu_model": cpu_model(),
        "cores": os.cpu_count() or 1,
        "cores_usable": usable_cores(),
        "machine": platform.machine(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "runtime": runtime,
        "runtime_version": runtime_version,
        "precision": precision,
        "threads": threads,
        "batch": batch,
        "device": device,
    }


def sha256_file(path: Path) -> str:
    """The sha256 of a file, read in blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


#: The environment variables that size OpenMP/BLAS thread pools; pinned before a runtime loads.
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def fixed_input(shape: tuple[int, ...], batch: int, seed: int = 0) -> np.ndarray:
    """The one input every timed run reuses when there is no data: seeded uniform noise in [0, 1)."""
    return np.random.default_rng(seed).random((batch, *shape), dtype=np.float32)
