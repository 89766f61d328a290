"""OpenVINO INT8: NNCF post-training quantization fed by a calibration recipe.

Without a goal, `nncf.quantize`; with `max_accuracy_drop`, `nncf.quantize_with_accuracy_control`, which
reverts the most sensitive operations to float until the drop on the recipe's validation split is
within bounds. What stayed float is read back from the quantized model itself (a weighted layer whose
weights are still float), so the report does not depend on NNCF's log wording.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from edgekd.config import TargetProfile
from edgekd.runtimes._openvino_import import import_openvino
from edgekd.runtimes._quant import QuantInputs, accuracy, quant_inputs, quiet, report

WEIGHTED_OPS = ("Convolution", "GroupConvolution", "ConvolutionBackpropData", "GroupConvolutionBackpropData", "MatMul")
# Ops between a weight constant and the layer: NNCF stores INT8 weights as i8 -> Convert -> Multiply.
_WEIGHT_PATH = ("Convert", "Subtract", "Multiply", "Reshape", "Transpose", "Unsqueeze", "FakeQuantize")
_DEVICES = {"cpu": "CPU", "gpu": "GPU", "npu": "NPU"}
EVAL_BATCH = 256


def quantize(model: Any, profile: TargetProfile, input_shape: tuple[int, int, int]) -> tuple[Any, dict[str, Any]]:
    """(the INT8 ov.Model, the `quantization` report) for a float ov.Model with a dynamic batch."""
    import_openvino()  # before nncf: it turns telemetry off for both
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

    inputs = quant_inputs(profile, input_shape)
    o = inputs.options
    # One image per item: NNCF's statistics and its ranking subsets count items.
    calibration = nncf.Dataset([inputs.calibration[i : i + 1] for i in range(len(inputs.calibration))])
    common: dict[str, Any] = {
        "preset": nncf.QuantizationPreset(o.preset),
        "target_device": getattr(nncf.TargetDevice, _DEVICES.get(profile.device.split(":")[0].lower(), "ANY")),
        "subset_size": len(inputs.calibration),
    }
    float_acc = _evaluate(model, inputs)
    with quiet() as messages:
        if o.max_accuracy_drop is None:
            quantized = nncf.quantize(model, calibration, **common)
            method = "nncf.quantize"
        else:
            items = [(inputs.val_x[i : i + 1], int(inputs.val_y[i])) for i in range(len(inputs.val_y))]
            restorer = AdvancedAccuracyRestorerParameters(max_num_iterations=o.max_float_layers or sys.maxsize)
            quantized = nncf.quantize_with_accuracy_control(
                model,
                calibration,
                nncf.Dataset(items, lambda item: item[0]),
                _validate,
                max_drop=o.max_accuracy_drop,
                drop_type=nncf.DropType.ABSOLUTE,
                advanced_accuracy_restorer_parameters=restorer,
                **common,
            )
            method = "nncf.quantize_with_accuracy_control"
    float_layers, int8_layers = weighted_layers(quantized)
    at_limit = o.max_float_layers is not None and len(float_layers) >= o.max_float_layers
    limit = f" (the limit, max_float_layers={o.max_float_layers})" if at_limit else ""
    settings = {
        "preset": o.preset,
        "target_device": common["target_device"].value,
        "weights": "i8",
        "nncf": nncf.__version__,
    }
    return quantized, report(
        inputs,
        method=method,
        settings=settings,
        float_acc=float_acc,
        int8_acc=_evaluate(quantized, inputs),
        float_layers=float_layers,
        int8_layers=int8_layers,
        limit_note=limit,
        extra={"nncf_messages": messages} if messages else None,
    )


def weighted_layers(model: Any) -> tuple[list[str], int]:
    """(names of weighted layers whose weights are still float, how many have INT8 weights)."""
    kept, int8 = [], 0
    for op in model.get_ordered_ops():
        if op.get_type_name() not in WEIGHTED_OPS:
            continue
        node, quantized = op.input_value(1).get_node(), False
        while node.get_type_name() in _WEIGHT_PATH:
            quantized |= node.get_type_name() == "FakeQuantize"
            node = node.input_value(0).get_node()
        if node.get_type_name() != "Constant":
            continue  # a product of two activations (attention): no weights to keep in float
        if quantized or node.get_output_element_type(0).is_integral():
            int8 += 1
        else:
            kept.append(op.get_friendly_name())
    return kept, int8


def _evaluate(model: Any, inputs: QuantInputs) -> float:
    """Validation accuracy on the build machine's CPU, float parts in f32 (as the artifact loads)."""
    ov = import_openvino()
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return accuracy(_run(compiled, inputs.val_x), inputs.val_y)


def _validate(compiled: Any, items: Any) -> tuple[float, list[float]]:
    """NNCF's validation function: accuracy, and per-image correctness for its ranking."""
    pairs = list(items)
    x = np.concatenate([p[0] for p in pairs])
    correct = _run(compiled, x).argmax(1) == np.array([p[1] for p in pairs])
    return float(correct.mean()), correct.astype(np.float64).tolist()


def _run(compiled: Any, x: np.ndarray) -> np.ndarray:
    return np.concatenate([compiled(x[i : i + EVAL_BATCH])[0] for i in range(0, len(x), EVAL_BATCH)])
