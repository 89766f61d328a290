"""Is edgekd's timing protocol honest? Compare it with each runtime vendor's own measurement.

    python -m benchmarks.vendor_parity [--models 28,224] [--batches 1,32] [--rounds 3] [--seconds 3] [--threads 1]

For the same model, shape, precision (f32), threads and latency hint, side by side in one run:
- edgekd's call latency: `edgekd.bench.compare` (one warm worker per artifact, interleaved rounds, the
  median of per-round p50s with its 95% bootstrap CI), for the OpenVINO IR, the ONNX Runtime artifact and
  (28x28) an OpenVINO IR built outside edgekd with a dynamic batch, resolved with `--input-shape`'s code
  path (`resolve_artifact(xml, input_shape=...)`);
- OpenVINO's own figure: `benchmark_app` (sync API, `-shape [N,C,H,W]`, one stream, the same threads,
  f32 execution via `-load_config`), its median request latency, once per round;
- ONNX Runtime's own figure (onnxruntime_perf_test is not part of the Python wheel): `InferenceSession.run`
  timed by a bare Python loop in a process of its own (the vendor's documented call, no edgekd), and, for
  information, the sum of the per-node kernel times its profiler records per run (compute only; the
  profiler's `model_run` events are not used: profiling itself more than doubles a small model's call).
Models: cnn-s at 1x28x28 and a MobileNet-style `module:factory` (`mobilenet224` below) at 3x224x224,
exported with `--input-shape`'s code path; untrained (latency does not depend on weights).
Prints each median, the vendor rounds' spread and the ratio edgekd / vendor.
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
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from edgekd import api
from edgekd.bench import resolve_artifact
from edgekd.bench.compare import compare
from edgekd.bench.protocol import DEFAULT_RULE, RoundStats, TimingConfig
from edgekd.runtimes import Artifact

BENCHMARK_APP = """
import sys
sys.modules["openvino_telemetry"] = None  # telemetry off, as edgekd.runtimes.openvino does
from openvino.tools.benchmark.main import main
sys.argv = ["benchmark_app"] + sys.argv[1:]
sys.exit(main())
"""

ORT_OWN = """
import json, sys, time, numpy as np, onnxruntime as ort
path, prefix, shape = sys.argv[1], sys.argv[5], [int(d) for d in sys.argv[6].split(",")]
threads, warmup, iters = (int(a) for a in sys.argv[2:5])
ort.disable_telemetry_events()
def session(profile):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.enable_profiling, opts.profile_file_prefix = profile, prefix
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
x = np.random.default_rng(0).random(shape, dtype=np.float32)
s = session(False)
feed = {s.get_inputs()[0].name: x}
times = []
for i in range(warmup + iters):
    t0 = time.perf_counter_ns()
    s.run(None, feed)
    times.append(time.perf_counter_ns() - t0)
p = session(True)
for _ in range(warmup + min(iters, 500)):
    p.run(None, feed)
trace = json.load(open(p.end_profiling()))
kernels, run = {}, -1
for e in trace:  # events in order: each model_run's kernels come before its own event
    if e.get("name") == "model_run":
        run += 1
    elif e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
        kernels[run + 1] = kernels.get(run + 1, 0) + e["dur"] / 1000.0
print(json.dumps({"run_ms": float(np.median(times[warmup:]) / 1e6),
                  "kernels_ms": float(np.median([v for k, v in kernels.items() if k >= warmup]))}))
"""

#: --models keys: (arch or module:factory, C, H, W)
MODELS = {"28": ("cnn-s", (1, 28, 28)), "224": ("benchmarks.vendor_parity:mobilenet224", (3, 224, 224))}


def mobilenet224(num_classes: int = 10, in_channels: int = 3) -> Any:
    """A MobileNetV1-style net for 224x224 inputs: stride-2 stem, depthwise-separable blocks to 7x7."""
    from torch import nn

    def conv(cin: int, cout: int, k: int, stride: int, groups: int = 1) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout), nn.ReLU6()]

    layers = conv(in_channels, 16, 3, 2)
    for cin, cout, stride in [(16, 32, 2), (32, 64, 2), (64, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2)]:
        layers += conv(cin, cin, 3, stride, groups=cin) + conv(cin, cout, 1, 1)
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(256, num_classes)).eval()


def _build(arch: str, shape: tuple[int, int, int], workdir: Path, target: str) -> Path:
    """Export `arch` (a checkpoint of a built-in family, or a module:factory as it is) for `target`."""
    model = arch
    if ":" not in arch:
        from edgekd.models import build_model, parse_arch, save_checkpoint

        ckpt = workdir / f"{arch}.pt"
        if not ckpt.exists():
            spec = parse_arch(arch, in_channels=shape[0], image_size=shape[1])
            save_checkpoint(ckpt, build_model(spec).eval(), spec, {"input_shape": list(shape)})
        model = str(ckpt)
    out = workdir / f"{arch.split(':')[-1]}-{target}"
    api.export(model, target, out, store=workdir / "edgekd.sqlite", input_shape=shape)
    return out


def _foreign_ir(onnx: Path, shape: tuple[int, int, int], workdir: Path) -> Path:
    """An IR made by OpenVINO's own API (not edgekd's build) from the float ONNX, batch dynamic."""
    from edgekd.runtimes._openvino_import import import_openvino

    ov = import_openvino()
    model = ov.convert_model(str(onnx))
    model.reshape({0: ov.PartialShape([-1, *shape])})
    xml = workdir / f"foreign-{onnx.parent.name}.xml"
    ov.save_model(model, str(xml), compress_to_fp16=False)
    return xml


def _benchmark_app(xml: Path, shape: list[int], threads: int, seconds: float, workdir: Path) -> float:
    # benchmark_app refuses -nthreads beside -hint; a config file gives it exactly edgekd's settings,
    # including f32 execution (on a CPU with AMX, OpenVINO would otherwise run bf16).
    config = workdir / "benchmark_app.json"
    settings = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1", "INFERENCE_NUM_THREADS": str(threads)}
    config.write_text(json.dumps({"CPU": {**settings, "INFERENCE_PRECISION_HINT": "f32"}}))
    cmd = [sys.executable, "-c", BENCHMARK_APP, "-m", str(xml), "-d", "CPU", "-api", "sync"]
    cmd += ["-shape", f"[{','.join(map(str, shape))}]", "-load_config", str(config), "-t", str(max(1, round(seconds)))]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    match = re.search(r"Median:\s+([\d.]+)\s+(ms|us)", out)  # 2026.x prints microseconds
    if not match:
        raise RuntimeError(f"benchmark_app printed no median latency:\n{out[-2000:]}")
    return float(match.group(1)) / (1000.0 if match.group(2) == "us" else 1.0)


def _ort_own(onnx: Path, shape: list[int], threads: int, seconds: float, guess_ms: float, workdir: Path) -> Any:
    """(median `run` call in ms, median per-run kernel sum in ms) from ONNX Runtime on its own."""
    iters = max(50, min(5000, int(seconds * 1000 / max(guess_ms, 1e-3))))
    args = [str(onnx), str(threads), "20", str(iters), str(workdir / "ort_profile"), ",".join(map(str, shape))]
    out = subprocess.run([sys.executable, "-c", ORT_OWN, *args], capture_output=True, text=True, check=True)
    reply = json.loads(out.stdout)
    return float(reply["run_ms"]), float(reply["kernels_ms"])


def _row(name: str, ours: dict[str, Any], vendor: str, theirs: list[float], extra: str = "") -> str:
    median = statistics.median(theirs)
    return (
        f"  {name:22s} edgekd {ours['median_ms']:8.4f} [{ours['ci_low_ms']:.4f}, {ours['ci_high_ms']:.4f}]"
        f" ({ours['rounds']} rounds)   {vendor} {median:8.4f} ({min(theirs):.4f}-{max(theirs):.4f},"
        f" {len(theirs)} runs)   ratio {ours['median_ms'] / median:.2f}{extra}"
    )


def run_model(key: str, args: argparse.Namespace, workdir: Path) -> None:
    arch, shape = MODELS[key]
    ov_dir, ort_dir = (_build(arch, shape, workdir, t) for t in ("cpu-openvino-fp32", "cpu-ort-fp32"))
    arts: dict[str, Artifact] = {"openvino": resolve_artifact(ov_dir), "onnxruntime": resolve_artifact(ort_dir)}
    if key == "28":  # the case of issue 13: an IR from elsewhere, batch dynamic, measured via --input-shape
        arts["openvino (foreign IR)"] = resolve_artifact(
            _foreign_ir(ort_dir / "model.onnx", shape, workdir), input_shape=shape
        )
    # Each outer round: edgekd's interleaved rounds (`compare`), then each vendor tool once, so whatever
    # drifts on the shared machine hits both sides alike; edgekd's CI is over all its rounds.
    per = max(1, args.edgekd_rounds)
    rule = replace(DEFAULT_RULE, min_rounds=per, max_rounds=per, time_cap_s=args.cap)
    timing = TimingConfig(warmup_iters=5, warmup_s=0.2, min_iters=10, min_time_s=args.seconds / 3)
    for batch in (int(b) for b in args.batches.split(",")):
        full = [batch, *shape]
        p50s: dict[str, list[float]] = {name: [] for name in [*arts, "null"]}
        theirs: dict[str, list[float]] = {name: [] for name in arts}
        kernels: list[float] = []
        for _ in range(args.rounds):
            result = compare(arts, batch=batch, threads=args.threads, timing=timing, rule=rule).to_json()
            for m in [*result["models"], *result["floors"]]:
                p50s[m["name"] if m["name"] in arts else "null"] += m["rounds"]["p50s_ms"]
            for name, art in arts.items():
                if art.runtime == "openvino":
                    theirs[name].append(_benchmark_app(art.path, full, args.threads, args.seconds, workdir))
                else:
                    guess = statistics.median(p50s[name])
                    call, kernel = _ort_own(art.path, full, args.threads, args.seconds, guess, workdir)
                    theirs[name].append(call)
                    kernels.append(kernel)
        ours = {name: asdict(RoundStats.from_p50s(v, DEFAULT_RULE, "rounds")) for name, v in p50s.items() if v}
        floor = ours["null"]["median_ms"] if "null" in ours else float("nan")
        print(f"{arch.split(':')[-1]} {'x'.join(map(str, shape))} batch {batch} (null-model floor {floor:.4f} ms):")
        for name in arts:
            if arts[name].runtime == "openvino":
                print(_row(name, ours[name], "benchmark_app", theirs[name]), flush=True)
            else:
                extra = f"   (ort profiler kernels {statistics.median(kernels):.4f})"
                print(_row(name, ours[name], "ort run()    ", theirs[name], extra), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--models", default="28,224", help=f"any of {', '.join(MODELS)}")
    parser.add_argument("--batches", default="1,32")
    parser.add_argument("--rounds", type=int, default=3, help="outer rounds: edgekd's rounds, then each vendor tool")
    parser.add_argument("--edgekd-rounds", type=int, default=3, help="edgekd's interleaved rounds per outer round")
    parser.add_argument("--seconds", type=float, default=3.0, help="per vendor run")
    parser.add_argument("--cap", type=float, default=60.0, help="edgekd's rounds of one outer round stop after S s")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    sys.path.insert(0, str(Path.cwd()))  # the module:factory model lives in this file
    workdir = Path(tempfile.mkdtemp(prefix="edgekd-vendor-"))
    print(f"{args.threads} threads; medians in ms, edgekd [95% CI over rounds], vendor (min-max over runs)")
    for key in args.models.split(","):
        run_model(key, args, workdir)


if __name__ == "__main__":
    main()
