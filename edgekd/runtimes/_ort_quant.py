"""ONNX Runtime INT8: static QDQ quantization from a calibration recipe, with an accuracy-aware fallback.

Calibration runs once; its tensor ranges are cached, so each further attempt (other nodes left in
float) is a graph rewrite plus an evaluation. With a maximum accuracy drop, each weighted layer (Conv,
Gemm, MatMul) gets a fallback unit: the layer plus whatever would still quantize its input (in QDQ a
quantized producer quantizes its own output, so excluding the layer alone can leave its input INT8).
Units are ranked by how close the logits come to the float model's when that unit alone stays float;
the most sensitive go back to float one more at a time until the goal is met or the limit is reached,
and the best attempt is kept either way.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgekd._io import atomic_path
from edgekd.config import TargetProfile
from edgekd.runtimes import Artifact, get_runtime
from edgekd.runtimes._quant import QuantInputs, accuracy, quant_inputs, quiet, report

WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
RANK_SAMPLES = 256  # validation images used to rank layers: enough to order them, quick to run
CALIBRATION_BATCH = 64
_UNIT_STEPS = 4  # nodes a fallback unit may grow by before we accept its input as it is


@dataclass(frozen=True)
class Attempt:
    path: Path
    excluded: tuple[str, ...]
    accuracy: float


def quantize(onnx_path: Path, out: Path, profile: TargetProfile, input_shape: tuple[int, int, int]) -> dict[str, Any]:
    """Write the INT8 QDQ model to `out`; returns the `quantization` report."""
    inputs = quant_inputs(profile, input_shape)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".int8-", dir=out.parent) as tmp, quiet():
        work = _Work(Path(tmp), profile, inputs)
        work.prepare(onnx_path)
        best, attempts, limit_note = work.search()
        with atomic_path(out) as target:
            shutil.copyfile(best.path, target)
    float_layers, int8_layers = weighted_layers(out)
    return report(
        inputs,
        method="onnxruntime.quantization.quantize_static (QDQ)",
        settings=work.settings(),
        float_acc=work.float_acc,
        int8_acc=best.accuracy,
        float_layers=float_layers,
        int8_layers=int8_layers,
        limit_note=limit_note,
        extra={
            "excluded_nodes": list(best.excluded),
            "attempts": [
                {"float_layers": len(work.float_layers(a.excluded)), "accuracy": a.accuracy} for a in attempts
            ],
        },
    )


class _Work:
    """One INT8 build in a scratch folder: the pre-processed float model, cached ranges, attempts."""

    def __init__(self, folder: Path, profile: TargetProfile, inputs: QuantInputs) -> None:
        self.folder, self.profile, self.inputs = folder, profile, inputs
        self.float_model = folder / "float.onnx"
        self.ranges = folder / "ranges.json"
        self.weighted: list[str] = []
        self.input_name = ""
        self.float_logits = np.empty(0)
        self.float_acc = 0.0
        self._count = itertools.count()

    def prepare(self, onnx_path: Path) -> None:
        """Shape inference and graph clean-up first (what ORT advises before quantizing), then float scores."""
        import onnx
        from onnxruntime.quantization.shape_inference import quant_pre_process

        quant_pre_process(str(onnx_path), str(self.float_model))
        graph = onnx.load(str(self.float_model)).graph
        self.input_name = graph.input[0].name
        self.weighted = [n.name for n in graph.node if n.op_type in WEIGHTED_OPS]
        self.float_logits = self.run(self.float_model)
        self.float_acc = accuracy(self.float_logits, self.inputs.val_y)

    def settings(self) -> dict[str, Any]:
        o = self.inputs.options
        return {
            "format": "QDQ",
            "per_channel": o.per_channel,
            "calibrate_method": o.calibrate_method,
            "activation_type": o.activation_type,
            "weight_type": o.weight_type,
            "reduce_range": o.reduce_range,
        }

    def float_layers(self, excluded: tuple[str, ...]) -> list[str]:
        return [name for name in excluded if name in self.weighted]

    def quantize(self, excluded: tuple[str, ...]) -> Path:
        """All but `excluded` in INT8; calibration runs on the first call, later calls reuse its ranges."""
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

        o = self.inputs.options
        types = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
        methods = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}
        path = self.folder / f"int8-{next(self._count)}.onnx"
        quantize_static(
            str(self.float_model),
            str(path),
            _Reader(self.input_name, self.inputs.calibration),
            quant_format=QuantFormat.QDQ,
            per_channel=o.per_channel,
            reduce_range=o.reduce_range,
            activation_type=types[o.activation_type],
            weight_type=types[o.weight_type],
            nodes_to_exclude=list(excluded),
            calibrate_method=CalibrationMethod[methods[o.calibrate_method]],
            calibration_cache_path=str(self.ranges),
        )
        return path

    def attempt(self, excluded: tuple[str, ...]) -> Attempt:
        path = self.quantize(excluded)
        return Attempt(path, excluded, accuracy(self.run(path), self.inputs.val_y))

    def search(self) -> tuple[Attempt, list[Attempt], str]:
        """(best attempt, every attempt, a note when the float-layer limit stopped the search)."""
        max_drop = self.inputs.options.max_accuracy_drop
        best = self.attempt(())
        attempts = [best]

        def met(a: Attempt) -> bool:
            return max_drop is None or self.float_acc - a.accuracy <= max_drop + 1e-9

        if met(best) or not self.weighted:
            return best, attempts, ""
        units = self.rank()
        limit = self.inputs.options.max_float_layers or len(self.weighted)
        excluded: tuple[str, ...] = ()
        for unit in units:
            grown = excluded + tuple(n for n in unit if n not in excluded)
            if len(self.float_layers(grown)) > limit:
                return best, attempts, f" (the limit, max_float_layers={limit})"
            if grown == excluded:
                continue  # already float as part of a more sensitive unit
            excluded = grown
            attempts.append(self.attempt(excluded))
            if attempts[-1].accuracy > best.accuracy:  # ties keep the attempt with fewer float layers
                best = attempts[-1]
            if met(best):
                break
        return best, attempts, "" if met(best) else " (every weighted layer tried)"

    def rank(self) -> list[tuple[str, ...]]:
        """Fallback units, most sensitive first: by the logits' error when that unit alone stays float."""
        n = min(RANK_SAMPLES, len(self.inputs.val_y))
        scored = []
        for name in self.weighted:
            unit, path = self.unit(name)
            scored.append((float(np.mean((self.run(path, limit=n) - self.float_logits[:n]) ** 2)), unit))
        return [unit for _, unit in sorted(scored, key=lambda s: s[0])]

    def unit(self, name: str) -> tuple[tuple[str, ...], Path]:
        """`name` plus the nodes that still quantize its data input when it is excluded (asked of the quantizer)."""
        unit: tuple[str, ...] = (name,)
        for _ in range(_UNIT_STEPS):
            path = self.quantize(unit)
            producer = _quantizing_producer(path, name)
            if producer is None or producer in unit:
                break
            unit += (producer,)
        return unit, path

    def run(self, path: Path, limit: int | None = None) -> np.ndarray:
        """Logits on the validation slice, through the same session settings the artifact loads with."""
        x = self.inputs.val_x[:limit]
        art = Artifact(
            "onnxruntime",
            "int8",
            path,
            tuple(x.shape[1:]),
            device=self.profile.device,
            threads=self.profile.threads,
        )
        session = get_runtime("onnxruntime").load(art)
        return np.concatenate([session.run(x[i : i + 256]) for i in range(0, len(x), 256)])


def weighted_layers(path: Path) -> tuple[list[str], int]:
    """(names of weighted layers whose weights are still float, how many take INT8 weights) in a QDQ model."""
    import onnx

    graph = onnx.load(str(path)).graph
    initializers = {t.name for t in graph.initializer}
    producer = {out: node.op_type for node in graph.node for out in node.output}
    kept, int8 = [], 0
    for node in graph.node:
        if node.op_type not in WEIGHTED_OPS or len(node.input) < 2:
            continue
        weight = node.input[1]
        if producer.get(weight) == "DequantizeLinear":
            int8 += 1
        elif weight in initializers or producer.get(weight) == "Constant":
            kept.append(node.name)  # a product of two activations (attention) has no weights and is skipped
    return kept, int8


def _quantizing_producer(path: Path, name: str) -> str | None:
    """The node whose output reaches `name`'s data input through QuantizeLinear -> DequantizeLinear, if any."""
    import onnx

    graph = onnx.load(str(path)).graph
    producer = {out: node for node in graph.node for out in node.output}
    node = next(n for n in graph.node if n.name == name)
    dq = producer.get(node.input[0])
    q = producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
    if q is None or q.op_type != "QuantizeLinear":
        return None
    source = producer.get(q.input[0])
    return None if source is None else source.name  # None: the graph input itself is quantized


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over the recipe's images, in batches."""

    def __init__(self, input_name: str, samples: np.ndarray) -> None:
        self._batches = iter(
            [{input_name: samples[i : i + CALIBRATION_BATCH]} for i in range(0, len(samples), CALIBRATION_BATCH)]
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)
