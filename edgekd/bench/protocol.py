"""THE timing protocol: the only code that times anything, on the host and on the device.

Every runtime is measured the same way, so their latencies can be compared: warm-up until both a
count and a time are reached, then one `perf_counter_ns` pair around each `session.run` on the very
same input array, until both a minimum count and a minimum time are reached. Every measurement
carries the fingerprint of the machine and settings it was taken with. A latency that is compared or
trusted is that block repeated in rounds (`interleaved_rounds`): the median over rounds with a
bootstrap CI, rounds going on until the CI is narrow enough or a time cap is hit (`StopRule`).

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
from collections.abc import Callable, Mapping, Sequence
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


def _known_fields(cls: type, data: dict[str, Any], what: str) -> dict[str, Any]:
    """`data` checked against the dataclass `cls`'s fields: an unknown one is bad input, named with `what`."""
    known = {f.name for f in fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise ProtocolError(f"{what}: unknown field(s) {sorted(unknown)}; known: {sorted(known)}")
    return data


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
        return cls(**_known_fields(cls, data, "timing"))


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


# ---- rounds: the same measurement repeated, models interleaved ------------------------------------
#
# One timed block says little on a shared machine: its p50 moves with whatever else runs. So a latency
# is the median over several rounds (each round one warm-up + timed block per model), with a bootstrap
# confidence interval over rounds, and models that are compared take their rounds in turn, in one run,
# so that a drift of the machine hits every model alike. Rounds go on until every watched model's
# interval is narrow enough (`precision`), or the time cap (`time_cap`) or the round cap (`max_rounds`)
# is hit; the record says which.

STOP_PRECISION = "precision"
STOP_TIME_CAP = "time_cap"
STOP_MAX_ROUNDS = "max_rounds"
ORDERS = ("rotate", "shuffle")


@dataclass(frozen=True)
class StopRule:
    """When rounds stop: every watched model's CI is at most `rel_width` of its median (after at least
    `min_rounds` rounds), or `time_cap_s` seconds have passed, or `max_rounds` rounds are done. The cap is
    checked after each whole round, so it may be passed by up to one round."""

    rel_width: float = 0.05
    confidence: float = 0.95
    min_rounds: int = 5
    max_rounds: int = 50
    time_cap_s: float = 120.0
    resamples: int = 2000
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.rel_width > 0 or not 0 < self.confidence < 1:
            raise ProtocolError(f"rounds: need rel_width > 0 and 0 < confidence < 1, got {self.to_json()}")
        if not 1 <= self.min_rounds <= self.max_rounds:
            raise ProtocolError(f"rounds: need 1 <= min_rounds ({self.min_rounds}) <= max_rounds ({self.max_rounds})")
        if self.time_cap_s <= 0 or self.resamples < 100:
            raise ProtocolError(f"rounds: need time_cap_s > 0 and resamples >= 100, got {self.to_json()}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StopRule:
        return cls(**_known_fields(cls, data, "rounds"))


DEFAULT_RULE = StopRule()
#: `--quick`: fewer rounds and a short cap, for smoke tests.
QUICK_RULE = StopRule(min_rounds=3, max_rounds=10, time_cap_s=15.0)
#: One round's block when rounds repeat it: a short warm-up (the session stays loaded between rounds)
#: and a short timed block; precision comes from the rounds.
ROUND_TIMING = TimingConfig(warmup_iters=5, warmup_s=0.1, min_iters=20, min_time_s=0.5)


def bootstrap_ci(
    values: Sequence[float] | np.ndarray, confidence: float = 0.95, resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Percentile-bootstrap interval of the median of `values` (resampled with replacement; seeded, so
    the same values give the same interval). One value gives a zero-width interval at it."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        raise ValueError("no values to bootstrap")
    if v.size == 1:
        return float(v[0]), float(v[0])
    index = np.random.default_rng(seed).integers(0, v.size, size=(resamples, v.size))
    medians = np.median(v[index], axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(medians, [tail, 1.0 - tail])
    return float(low), float(high)


@dataclass(frozen=True)
class RoundStats:
    """One model's latency over rounds: the median of the per-round p50s, its bootstrap CI, the spread
    of the rounds, how many there were, and why they stopped (`met_target`: this model's own CI was
    within the rule's relative width when they did)."""

    median_ms: float
    ci_low_ms: float
    ci_high_ms: float
    rel_width: float
    confidence: float
    p50s_ms: tuple[float, ...]
    min_ms: float
    max_ms: float
    iqr_ms: float
    rounds: int
    stopped_by: str
    met_target: bool

    @classmethod
    def from_p50s(cls, p50s_ms: Sequence[float], rule: StopRule, stopped_by: str) -> RoundStats:
        v = np.asarray(p50s_ms, dtype=np.float64)
        median = float(np.median(v))
        low, high = bootstrap_ci(v, rule.confidence, rule.resamples, rule.seed)
        width = (high - low) / median if median > 0 else float("inf")
        q1, q3 = np.percentile(v, [25, 75])
        return cls(
            median_ms=median,
            ci_low_ms=low,
            ci_high_ms=high,
            rel_width=width,
            confidence=rule.confidence,
            p50s_ms=tuple(float(x) for x in v),
            min_ms=float(v.min()),
            max_ms=float(v.max()),
            iqr_ms=float(q3 - q1),
            rounds=int(v.size),
            stopped_by=stopped_by,
            met_target=width <= rule.rel_width,
        )

    def to_json(self) -> dict[str, Any]:
        """The `rounds` object of `bench --json` and `run.py bench`."""
        data = asdict(self)
        data["p50s_ms"] = list(self.p50s_ms)
        return data


@dataclass(frozen=True)
class ModelRounds:
    """Every round of one model, and their statistics."""

    stats: RoundStats
    per_round: tuple[LatencyStats, ...]

    def typical(self) -> LatencyStats:
        """The typical round: every latency field the median over rounds (so p50 is `stats.median_ms`),
        samples the total, throughput from that mean."""
        return typical_round(self.per_round)


def typical_round(rounds: Sequence[LatencyStats]) -> LatencyStats:
    """A LatencyStats whose fields are the medians over `rounds` (samples: their sum)."""
    if not rounds:
        raise ValueError("no rounds")

    def med(values: Any) -> float:
        return float(np.median(np.asarray(list(values), dtype=np.float64)))

    mean = med(r.mean_ms for r in rounds)
    batch = rounds[0].batch
    quantiles = [r.quantiles_ms for r in rounds if r.quantiles_ms]
    return LatencyStats(
        p50_ms=med(r.p50_ms for r in rounds),
        p90_ms=med(r.p90_ms for r in rounds),
        p99_ms=med(r.p99_ms for r in rounds),
        mean_ms=mean,
        std_ms=med(r.std_ms for r in rounds),
        samples=sum(r.samples for r in rounds),
        throughput_per_s=batch * 1000.0 / mean if mean > 0 else float("inf"),
        batch=batch,
        quantiles_ms=tuple(float(q) for q in np.median(np.asarray(quantiles), axis=0)) if quantiles else (),
    )


def interleaved_rounds(
    measure_round: Mapping[str, Callable[[], LatencyStats]],
    rule: StopRule = DEFAULT_RULE,
    order: str = "rotate",
    seed: int = 0,
    *,
    watch: Sequence[str] | None = None,
    clock: Callable[[], float] = time.monotonic,
    on_round: Callable[[int, float], None] | None = None,
) -> dict[str, ModelRounds]:
    """Run rounds until `rule` stops them; each round calls every model's `measure_round` once, in an
    order rotated by one per round (`rotate`) or shuffled with `seed` (`shuffle`). Only the `watch`ed
    names (default: all) must reach the relative CI width; the others (a null model) just take part.
    `on_round(rounds_done, elapsed_s)` is called after each round."""
    names = list(measure_round)
    watched = names if watch is None else list(watch)
    if not names or not set(watched) <= set(names):
        raise ProtocolError(f"rounds: nothing to measure, or watched names {watched} not among {names}")
    if order not in ORDERS:
        raise ProtocolError(f"rounds: order must be one of {', '.join(ORDERS)}, got {order!r}")
    rng = np.random.default_rng(seed)
    per_round: dict[str, list[LatencyStats]] = {name: [] for name in names}
    start = clock()
    done = 0
    stopped: str | None = None
    while stopped is None:
        for name in round_order(names, done, order, rng):
            per_round[name].append(measure_round[name]())
        done += 1
        elapsed = clock() - start
        if on_round is not None:
            on_round(done, elapsed)
        stopped = stop_reason({n: per_round[n] for n in watched}, rule, done, elapsed)
    return {
        name: ModelRounds(RoundStats.from_p50s([r.p50_ms for r in rounds], rule, stopped), tuple(rounds))
        for name, rounds in per_round.items()
    }


def round_order(names: Sequence[str], index: int, order: str, rng: np.random.Generator) -> list[str]:
    """The order of round `index`: rotated by one per round, or a fresh permutation."""
    if order == "shuffle":
        return [names[i] for i in rng.permutation(len(names))]
    shift = index % len(names)
    return list(names[shift:]) + list(names[:shift])


def stop_reason(
    watched: Mapping[str, Sequence[LatencyStats]], rule: StopRule, rounds: int, elapsed_s: float
) -> str | None:
    """Why rounds stop now (precision first: met and capped at once counts as met), or None."""
    if rounds >= rule.min_rounds:
        widths = [RoundStats.from_p50s([r.p50_ms for r in rs], rule, "").rel_width for rs in watched.values()]
        if all(w <= rule.rel_width for w in widths):
            return STOP_PRECISION
    if elapsed_s >= rule.time_cap_s:
        return STOP_TIME_CAP
    if rounds >= rule.max_rounds:
        return STOP_MAX_ROUNDS
    return None


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
