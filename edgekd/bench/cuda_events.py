"""GPU compute time of one batch, measured with CUDA events: the device-side twin of `protocol`.

`protocol.measure` times `session.run` with the host clock: copies in and out, the enqueue and the
wait, as an application sees it. On a GPU that is dominated by transfers and launch overhead for small
models, so edgekd also reports what `trtexec --noDataTransfers --useCudaGraph` reports as "GPU Compute
Time": the inputs are staged on the device once, the engine's work is captured in a CUDA graph, and
each sample is the time between two CUDA events recorded around one graph launch on the stream.

The same rules as `protocol`: warm-up by count and time, then samples until both a minimum count and a
minimum time are reached, the same input every time, one sample per run, the garbage collector off.
"""

from __future__ import annotations

import gc
import time
from typing import TYPE_CHECKING, Protocol

import numpy as np

from edgekd.bench.protocol import DEFAULT_TIMING, LatencyStats, TimingConfig

if TYPE_CHECKING:
    from edgekd.runtimes.cudart import Event


class DeviceRunner(Protocol):
    """What a GPU session offers for event timing (`edgekd.runtimes.tensorrt.TensorRTSession`)."""

    @property
    def stream_handle(self) -> int: ...

    def stage(self, inputs: np.ndarray, *, cuda_graph: bool = False) -> None: ...

    def enqueue(self) -> None: ...


def measure_gpu(
    runner: DeviceRunner, inputs: np.ndarray, config: TimingConfig = DEFAULT_TIMING, *, cuda_graph: bool = True
) -> LatencyStats:
    """Stage `inputs` once, warm up, then time each enqueue with a pair of CUDA events."""
    runner.stage(inputs, cuda_graph=cuda_graph)
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        samples = event_samples(runner, config)
    finally:
        if was_enabled:
            gc.enable()
    return LatencyStats.from_samples(samples, batch=len(inputs))


def event_samples(runner: DeviceRunner, config: TimingConfig) -> np.ndarray:
    """Per-run GPU durations in ns (int64): warm-up, then runs until `min_iters` and `min_time_s`."""
    from edgekd.runtimes.cudart import Event

    stream = runner.stream_handle
    start, end = Event(), Event()
    try:
        _warm_up(runner, end, config)
        samples = np.empty(config.max_iters, dtype=np.int64)
        min_time_ns = int(config.min_time_s * 1e9)
        count, began = 0, time.perf_counter_ns()
        while count < config.max_iters and (count < config.min_iters or time.perf_counter_ns() - began < min_time_ns):
            start.record(stream)
            runner.enqueue()
            end.record(stream)
            end.synchronize()  # one run at a time, no queueing ahead, as in protocol.timed_runs
            samples[count] = round(Event.elapsed_ms(start, end) * 1e6)
            count += 1
    finally:
        start.destroy()
        end.destroy()
    return samples[:count]


def _warm_up(runner: DeviceRunner, end: Event, config: TimingConfig) -> None:
    """Run until both `warmup_iters` runs and `warmup_s` seconds are done (as protocol.warm_up)."""
    deadline = time.perf_counter_ns() + int(config.warmup_s * 1e9)
    limit = max(config.warmup_iters, config.max_iters)
    count = 0
    while count < limit and (count < config.warmup_iters or time.perf_counter_ns() < deadline):
        runner.enqueue()
        end.record(runner.stream_handle)
        end.synchronize()
        count += 1
