"""torch -> ONNX.

edgekd uses torch's dynamo exporter with the opset pinned (it would otherwise raise 17 to 18 silently)
and the weights kept inside the .onnx file (it would otherwise write an external `.onnx.data`), so an
exported model is one self-contained file. The batch dimension is dynamic; C, H, W are fixed.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgekd._io import write_with
from edgekd.errors import ParityError, UserError

OPSET = 18
INPUT_NAME = "input"
OUTPUT_NAME = "logits"


@dataclass(frozen=True)
class Parity:
    """How closely an exported model reproduces the PyTorch model on real inputs."""

    max_abs_diff: float
    top1_agreement: float
    samples: int

    def to_json(self) -> dict[str, float | int]:
        return {"max_abs_diff": self.max_abs_diff, "top1_agreement": self.top1_agreement, "samples": self.samples}


def export_onnx(model: object, input_shape: tuple[int, int, int], out: Path, opset: int = OPSET) -> Path:
    """Export `model` (an nn.Module) for float32 N x C x H x W input in [0, 1]; returns `out`."""
    import onnx
    import torch

    module = model if isinstance(model, torch.nn.Module) else None
    if module is None:
        raise UserError(f"cannot export {type(model).__name__}: expected a torch.nn.Module")
    module = module.eval()
    sample = torch.rand(2, *input_shape)
    batch = torch.export.Dim("batch", min=1, max=65536)
    # The exporter reports progress through warnings and logging; an export either works or raises.
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    logging.getLogger("torch.export").setLevel(logging.ERROR)

    def write(tmp: Path) -> None:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                module,
                (sample,),
                dynamo=True,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_shapes=({0: batch},),
                external_data=False,
                verbose=False,
                report=False,
            )
        if program is None:  # only with dynamo=False, which edgekd never uses
            raise RuntimeError("torch.onnx.export returned no program")
        proto = program.model_proto
        onnx.checker.check_model(proto, full_check=True)
        onnx.save_model(proto, str(tmp))

    write_with(out, write)
    return out


def onnx_input_shape(
    path: Path, given: tuple[int, int, int] | None = None, what: str = "--input-shape"
) -> tuple[int, int, int]:
    """C, H, W of an ONNX model's first input (the batch dimension may be symbolic); dynamic C, H or W
    are taken from `given` (`--input-shape`, or the target's `what`), whose sizes must match the fixed ones."""
    model = load_onnx(path)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    sizes = [int(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else None for d in dims]
    return fill_input_shape(sizes, given, str(path), what)


def fill_input_shape(
    dims: list[int | None], given: tuple[int, int, int] | None, source: str, what: str = "--input-shape"
) -> tuple[int, int, int]:
    """C, H, W from a model's N x C x H x W input dims (None: dynamic), the dynamic ones from `given`."""
    shown = "x".join("?" if d is None else str(d) for d in dims)
    if len(dims) != 4:
        raise UserError(f"{source}: input must be N x C x H x W, got {shown}")
    c, h, w = dims[1:]
    if given is None:
        if c is None or h is None or w is None:
            raise UserError(f"{source}: input {shown} has dynamic C, H or W; pass --input-shape C,H,W")
        return c, h, w
    if any(d is not None and d != g for d, g in zip(dims[1:], given, strict=True)):
        wanted = ",".join(str(g) for g in given)
        raise UserError(f"{source}: input is {shown} but {what} expects input {wanted}; give the model's own sizes")
    return tuple(int(g) for g in given)  # type: ignore[return-value]


def load_onnx(path: Path) -> Any:
    """Load and check an ONNX file, turning a corrupt or truncated file into one clear line."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise UserError(f"ONNX file not found: {path}; check the path")
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as err:  # onnx raises DecodeError, ValidationError, ...: all mean a bad file
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UserError(f"{path} is not a valid ONNX model ({reason}); re-export it") from None
    return model


def check_parity(
    model: object,
    onnx_path: Path,
    inputs: np.ndarray,
    *,
    atol: float = 1e-3,
    min_agreement: float = 0.999,
) -> Parity:
    """Run torch and ONNX Runtime on the same real inputs; refuse the export if they disagree."""
    import onnxruntime as ort
    import torch

    ort.disable_telemetry_events()
    module = model if isinstance(model, torch.nn.Module) else None
    assert module is not None
    with torch.no_grad():
        expected = module.eval()(torch.from_numpy(inputs)).numpy()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: inputs})[0]
    parity = Parity(
        max_abs_diff=float(np.abs(expected - got).max()),
        top1_agreement=float((expected.argmax(1) == got.argmax(1)).mean()),
        samples=len(inputs),
    )
    if parity.max_abs_diff > atol or parity.top1_agreement < min_agreement:
        raise ParityError(
            f"ONNX export of {onnx_path.name} fails parity: max abs diff {parity.max_abs_diff:.3g}"
            f" (allowed {atol:g}), top-1 agreement {parity.top1_agreement:.4f} (needed {min_agreement});"
            " check the model for ops that differ between torch and ONNX"
        )
    return parity
