"""Is edgekd's timing protocol honest? Compare it with each runtime vendor's own measurement.

    python -m benchmarks.vendor_parity [--arch cnn-s] [--batches 1,32] [--rounds 3] [--seconds 5]

For the same model, shape, precision, threads and hint, side by side in one run, repeated:
- the OpenVINO IR: edgekd's protocol vs OpenVINO's own `benchmark_app` (sync API, latency hint, f32);
- the ONNX model: edgekd's protocol vs ONNX Runtime's own profiler (the `model_run` events' durations).
Prints each median and the ratio edgekd / vendor (goal: within 10%, i.e. 0.90 to 1.10). Every
measurement runs in its own process. The model is untrained: latency does not depend on weights.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from edgekd import api
from edgekd.bench import TimingConfig, benchmark, resolve_artifact

BENCHMARK_APP = """
import sys
sys.modules["openvino_telemetry"] = None  # telemetry off, as edgekd.runtimes.openvino does
from openvino.tools.benchmark.main import main
sys.argv = ["benchmark_app"] + sys.argv[1:]
sys.exit(main())
"""

ORT_PROFILE = """
import json, sys, numpy as np, onnxruntime as ort
path, prefix = sys.argv[1], sys.argv[6]
batch, threads, warmup, iters = (int(a) for a in sys.argv[2:6])
ort.disable_telemetry_events()
opts = ort.SessionOptions()
opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
opts.enable_profiling, opts.profile_file_prefix = True, prefix
s = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
i = s.get_inputs()[0]
x = np.random.default_rng(0).random((batch, *i.shape[1:]), dtype=np.float32)
for _ in range(warmup):
    s.run(None, {i.name: x})
for _ in range(iters):
    s.run(None, {i.name: x})
trace = json.load(open(s.end_profiling()))
runs = [e["dur"] / 1000.0 for e in trace if e.get("name") == "model_run"][warmup:]
print(json.dumps({"median_ms": float(np.median(runs)), "n": len(runs)}))
"""


def _build(arch: str, workdir: Path, target: str) -> Path:
    from edgekd.models import build_model, parse_arch, save_checkpoint

    ckpt = workdir / f"{arch}.pt"
    if not ckpt.exists():
        spec = parse_arch(arch)
        save_checkpoint(ckpt, build_model(spec).eval(), spec, {"input_shape": [1, 28, 28]})
    out = workdir / target
    api.export(str(ckpt), target, out, store=workdir / "edgekd.sqlite")
    return out


def _benchmark_app(xml: Path, batch: int, threads: int, seconds: float, workdir: Path) -> float:
    # benchmark_app refuses -nthreads beside -hint; a config file gives it exactly edgekd's settings.
    config = workdir / "benchmark_app.json"
    config.write_text(
        json.dumps(
            {
                "CPU": {
                    "PERFORMANCE_HINT": "LATENCY",
                    "NUM_STREAMS": "1",
                    "INFERENCE_NUM_THREADS": str(threads),
                    "INFERENCE_PRECISION_HINT": "f32",
                }
            }
        )
    )
    cmd = [
        sys.executable,
        "-c",
        BENCHMARK_APP,
        "-m",
        str(xml),
        "-d",
        "CPU",
        "-api",
        "sync",
        "-shape",
        f"[{batch},1,28,28]",
        "-load_config",
        str(config),
        "-t",
        str(max(1, round(seconds))),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    match = re.search(r"Median:\s+([\d.]+)\s+(ms|us)", out)
    if not match:
        raise RuntimeError(f"benchmark_app printed no median latency:\n{out[-2000:]}")
    return float(match.group(1)) / (1000.0 if match.group(2) == "us" else 1.0)


def _ort_profiler(onnx: Path, batch: int, threads: int, iters: int, workdir: Path) -> float:
    cmd = [
        sys.executable,
        "-c",
        ORT_PROFILE,
        str(onnx),
        str(batch),
        str(threads),
        "50",
        str(iters),
        str(workdir / "ort_profile"),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return float(json.loads(out)["median_ms"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="cnn-s")
    parser.add_argument("--batches", default="1,32")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="edgekd-vendor-"))
    ov_dir, ort_dir = _build(args.arch, workdir, "cpu-openvino-fp32"), _build(args.arch, workdir, "cpu-ort-fp32")
    ov_art, ort_art = resolve_artifact(ov_dir), resolve_artifact(ort_dir)
    timing = TimingConfig(warmup_iters=50, warmup_s=1.0, min_iters=200, min_time_s=args.seconds)
    print(f"model {args.arch}, {args.threads} threads, {args.rounds} rounds; medians in ms; ratio = edgekd / vendor")
    for batch in (int(b) for b in args.batches.split(",")):
        ratios: dict[str, list[float]] = {"openvino": [], "onnxruntime": []}
        for r in range(args.rounds):
            ours = benchmark(ov_art, batch=batch, threads=args.threads, timing=timing)["latency_ms"]["p50"]
            theirs = _benchmark_app(ov_art.path, batch, args.threads, args.seconds, workdir)
            ratios["openvino"].append(ours / theirs)
            print(
                f"batch {batch:3d} round {r + 1} openvino    edgekd {ours:8.4f}  benchmark_app {theirs:8.4f}"
                f"  ratio {ours / theirs:.3f}"
            )
            ours = benchmark(ort_art, batch=batch, threads=args.threads, timing=timing)["latency_ms"]["p50"]
            theirs = _ort_profiler(ort_dir / "model.onnx", batch, args.threads, 2000 if batch == 1 else 300, workdir)
            ratios["onnxruntime"].append(ours / theirs)
            print(
                f"batch {batch:3d} round {r + 1} onnxruntime edgekd {ours:8.4f}  ort profiler  {theirs:8.4f}"
                f"  ratio {ours / theirs:.3f}"
            )
        for runtime, values in ratios.items():
            print(f"batch {batch:3d} {runtime:12s} median ratio {statistics.median(values):.3f} (goal 0.90-1.10)")


if __name__ == "__main__":
    main()
