"""The export stage's entry point: a model -> ONNX (parity-checked) -> the target's artifact."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekd._io import atomic_dir, relocate, relocated
from edgekd.config import load_target
from edgekd.errors import UserError
from edgekd.export.artifact import build_artifact, export_offline
from edgekd.store import Store, default_store


def export(
    model: str,
    target: str,
    out_dir: Path,
    *,
    data: str | None = None,
    calibration: str | None = None,
    store: Path | None = None,
    offline: bool = False,
    input_shape: tuple[int, int, int] | None = None,
    batch: int | None = None,
    shift: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Export a model to ONNX (parity-checked), build it for `target`, write `out_dir/artifact.json`.

    With `offline` (TensorRT targets on a host without TensorRT): the ONNX, `trtexec.sh` and the
    TensorRT pre-check for the device, described in `out_dir/offline.json`; nothing is built.
    `input_shape` (C, H, W) and `batch` override the target's: a `module:factory` model or an ONNX file
    with dynamic dimensions needs no input_shape in the target file. `shift` (`bench --shift`'s request)
    adds accuracy per shifted domain along the chain (torch, ONNX, artifact) to artifact.json.
    """
    profile = load_target(target)
    # --input-shape and --batch stand in for the target file's input_shape and batch.
    if input_shape is not None:
        profile = profile.model_copy(update={"input_shape": tuple(input_shape)})
    if batch is not None:
        profile = profile.model_copy(update={"batch": batch})
    if Path.cwd().resolve().is_relative_to(out_dir.resolve()):
        raise UserError(f"--out {out_dir} holds the current folder; give the export a folder of its own")
    db = Store(store) if store else None  # a bad --store fails before any work
    # Built in a staging folder beside out_dir and renamed onto it at the end: a failed or interrupted
    # export leaves out_dir as it was (files of an older export there that this one lacks are kept).
    with atomic_dir(out_dir, merge=True) as tmp:
        if offline:
            info = export_offline(model, profile, tmp, data=data)
        else:
            info = build_artifact(model, profile, tmp, data=data, calibration=calibration, shift=shift)
        relocate(tmp, out_dir)
    if offline:
        return relocated(info, tmp, out_dir)
    info = relocated(info, tmp, out_dir)
    (db or Store(default_store(out_dir))).log_artifact(out_dir / info["artifact"], info)
    return info
