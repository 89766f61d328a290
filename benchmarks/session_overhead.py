"""How much does edgekd's Session add per call over the runtime's own Python API? Same process, same loop.

    python -m benchmarks.session_overhead [--batches 1,32] [--rounds 5] [--seconds 1] [--threads 1]

On the null model (`edgekd.bench.null_model`: the input and output shapes of a 1x28x28, 10-class model
and no compute) the per-call cost is all there is, so any overhead shows. Each row times, with THE loop
(`protocol.measure`) on one reused input array, in interleaved rounds:
- edgekd: the adapter's Session (`load(artifact).run`), as `edgekd bench` times it;
- raw: the runtime's plainest Python call (ORT `session.run(None, {name: x})`; OpenVINO
  `request.infer({0: x})`), what most code does;
- floor: the cheapest call the runtime's Python API allows (ORT `run_with_iobinding` on pre-bound input
  and output; OpenVINO `request.infer()` with shared input and output tensors already set).
OpenVINO also reports its own request latency (`InferRequest.latency`, the C++ side, no Python).
Prints medians over rounds (ms), the spread, and edgekd / floor.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.bench.null_model import write_null_onnx
from edgekd.bench.protocol import TimingConfig, measure
from edgekd.runtimes import Artifact, get_runtime

SHAPE = (1, 28, 28)


class Call:
    """Anything with `run(x)`, for THE loop."""

    def __init__(self, fn: Callable[[np.ndarray], Any]) -> None:
        self.run = fn


def ort_calls(path: Path, x: np.ndarray, threads: int) -> dict[str, Any]:
    art = Artifact("onnxruntime", "fp32", path, SHAPE, threads=threads)
    session = get_runtime("onnxruntime").load(art)
    raw = session._session  # the same InferenceSession, options and all
    name, out_name = raw.get_inputs()[0].name, raw.get_outputs()[0].name
    out = np.empty((len(x), 10), dtype=np.float32)
    binding = raw.io_binding()
    binding.bind_cpu_input(name, x)
    binding.bind_output(out_name, "cpu", 0, np.float32, list(out.shape), out.ctypes.data)
    return {
        "edgekd": session,
        "raw": Call(lambda a: raw.run(None, {name: a})),
        "floor": Call(lambda a: raw.run_with_iobinding(binding)),
    }


def ov_calls(path: Path, x: np.ndarray, threads: int) -> dict[str, Any]:
    art = Artifact("openvino", "fp32", path, SHAPE, threads=threads)
    session = get_runtime("openvino").load(art)
    session.run(x)  # compiles and binds for x's shape
    request = session._request  # the same compiled model and request
    plain = request.get_compiled_model().create_infer_request()  # a request of its own, no tensors set
    return {
        "edgekd": session,
        "raw": Call(lambda a: plain.infer({0: a})),
        "floor": Call(lambda a: request.infer()),
        "request.latency": request,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--batches", default="1,32")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    path = write_null_onnx(Path(tempfile.mkdtemp(prefix="edgekd-overhead-")) / "null.onnx", SHAPE, 10)
    timing = TimingConfig(warmup_iters=200, warmup_s=0.2, min_iters=500, min_time_s=args.seconds)
    print(f"null model {SHAPE}, {args.threads} threads, {args.rounds} rounds; medians over rounds in ms (min-max)")
    for runtime, make in (("onnxruntime", ort_calls), ("openvino", ov_calls)):
        for batch in (int(b) for b in args.batches.split(",")):
            x = np.random.default_rng(0).random((batch, *SHAPE), dtype=np.float32)
            calls = make(path, x, args.threads)
            timed = {k: v for k, v in calls.items() if k != "request.latency"}
            p50s: dict[str, list[float]] = {key: [] for key in calls}
            for _ in range(args.rounds):
                for key, call in timed.items():
                    p50s[key].append(measure(call, x, timing).p50_ms)
                if "request.latency" in calls:
                    request = calls["request.latency"]
                    own = []
                    for _ in range(2000):
                        request.infer()
                        own.append(request.latency)
                    p50s["request.latency"].append(float(np.median(own)))
            med = {k: statistics.median(v) for k, v in p50s.items()}
            row = "  ".join(f"{k} {med[k]:.4f} ({min(v):.4f}-{max(v):.4f})" for k, v in p50s.items())
            print(f"{runtime:11s} batch {batch:2d}  {row}  edgekd/floor {med['edgekd'] / med['floor']:.2f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
