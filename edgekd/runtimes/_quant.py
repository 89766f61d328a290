"""What every INT8 build shares, whichever runtime quantizes: options, inputs, the verdict, the report.

The per-runtime modules (`_ort_quant`, `_ov_quant`) do the quantizing; this module knows no runtime.
An INT8 build calibrates on the recipe's training images, judges accuracy on the recipe's validation
split (never on the calibration images, never on the test split), and always leaves an artifact: when
the accuracy goal is out of reach it keeps the best attempt and says why in the report.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import Field

from edgekd.config import Frozen, Runtime, TargetProfile, parse
from edgekd.data.calibration import CalibrationRecipe, calibration_samples, load_recipe, validation_set
from edgekd.errors import UserError


class QuantOptions(Frozen):
    """INT8 settings from a target profile's `options`; each runtime reads the ones it has."""

    max_accuracy_drop: float | None = Field(default=None, ge=0.0, le=1.0, description="absolute, 0.01 = 1 point")
    max_float_layers: int | None = Field(default=None, ge=1, description="at most this many layers back to float")
    # ONNX Runtime
    per_channel: bool = True
    calibrate_method: Literal["minmax", "entropy", "percentile"] = "minmax"
    activation_type: Literal["uint8", "int8"] = "uint8"
    weight_type: Literal["int8", "uint8"] = "int8"
    reduce_range: bool = False
    # NNCF (OpenVINO)
    preset: Literal["performance", "mixed"] = "performance"


_SHARED = {"max_accuracy_drop", "max_float_layers"}
_OWN: dict[str, set[str]] = {
    Runtime.ONNXRUNTIME: {"per_channel", "calibrate_method", "activation_type", "weight_type", "reduce_range"},
    Runtime.OPENVINO: {"preset"},
}


def quant_options(profile: TargetProfile) -> QuantOptions:
    """The profile's INT8 options, refusing unknown names and options of another runtime."""
    options = parse(QuantOptions, dict(profile.options), f"options of target {profile.name}")
    foreign = sorted(options.model_fields_set - _SHARED - _OWN.get(profile.runtime, set()))
    if foreign:
        raise UserError(
            f"target {profile.name}: option {foreign[0]!r} does not apply to {profile.runtime}"
            " INT8 builds; remove it from the profile"
        )
    return options


@dataclass(frozen=True)
class QuantInputs:
    """Everything an INT8 build reads: the recipe, its calibration images and a labelled validation slice."""

    recipe: CalibrationRecipe
    options: QuantOptions
    calibration: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray
    val_desc: str


def quant_inputs(profile: TargetProfile, input_shape: tuple[int, int, int]) -> QuantInputs:
    """Read options and recipe (profile.calibration, else the default recipe) and draw the images."""
    options = quant_options(profile)
    recipe = load_recipe(profile.calibration)
    samples = calibration_samples(recipe, input_shape)
    val_x, val_y, desc = validation_set(recipe, input_shape)
    return QuantInputs(recipe, options, samples, val_x, val_y, desc)


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((np.asarray(logits).argmax(1) == labels).mean())


def verdict(
    float_acc: float, int8_acc: float, max_drop: float | None, float_layers: list[str], limit_note: str
) -> tuple[bool | None, str | None]:
    """(goal met, why not): None, None when no goal was set."""
    if max_drop is None:
        return None, None
    drop = float_acc - int8_acc
    if drop <= max_drop + 1e-9:
        return True, None
    kept = f"with {len(float_layers)} layer(s) kept in float" if float_layers else "with every layer in INT8"
    return False, (
        f"INT8 accuracy {int8_acc:.4f} is {drop * 100:.2f} points below float {float_acc:.4f} on"
        f" validation (allowed {max_drop * 100:.2f}) {kept}{limit_note}; wrote the best attempt."
        " Raise max_accuracy_drop, calibrate on more or better-balanced samples, or use fp32"
    )


def report(
    inputs: QuantInputs,
    *,
    method: str,
    settings: dict[str, Any],
    float_acc: float,
    int8_acc: float,
    float_layers: list[str],
    int8_layers: int,
    limit_note: str = "",
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The `quantization` block of artifact.json (numbers stay floats; the report formats them)."""
    goal_met, reason = verdict(float_acc, int8_acc, inputs.options.max_accuracy_drop, float_layers, limit_note)
    return {
        "method": method,
        "recipe": inputs.recipe.model_dump(mode="json"),
        "calibration_samples": len(inputs.calibration),
        "settings": settings,
        "max_accuracy_drop": inputs.options.max_accuracy_drop,
        "validation": {
            "data": inputs.val_desc,
            "samples": len(inputs.val_y),
            "float": float_acc,
            "int8": int8_acc,
            "drop": float_acc - int8_acc,
        },
        "float_layers": float_layers,
        "int8_layers": int8_layers,
        "goal_met": goal_met,
        "reason": reason,
        **(extra or {}),
    }


@contextlib.contextmanager
def quiet() -> Iterator[list[str]]:
    """Keep the quantizers' prints, progress bars and log lines off stdout (`--json` owns stdout).

    ONNX Runtime's calibrators print; NNCF logs to its own stdout handler and draws rich progress bars
    on stdout. Warnings and errors NNCF logs are collected in the yielded list instead of lost.
    """
    collected: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.WARNING:
                collected.append(record.getMessage().strip())

    nncf_logger = logging.getLogger("nncf")
    saved = nncf_logger.handlers[:]
    nncf_logger.handlers = [_Collect()]
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield collected
    finally:
        nncf_logger.handlers = saved
