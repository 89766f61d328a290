"""The export stage's entry point: a model -> ONNX (parity-checked) -> the target's artifact."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekd.config import load_target
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
) -> dict[str, Any]:
    """Export a model to ONNX (parity-checked), build it for `target`, write `out_dir/artifact.json`.

    With `offline` (TensorRT targets on a host without TensorRT): the ONNX, `trtexec.sh` and the
    TensorRT pre-check for the device, described in `out_dir/offline.json`; nothing is built.
    """
    profile = load_target(target)
    out_dir.mkdir(parents=True, exist_ok=True)
    if offline:
        return export_offline(model, profile, out_dir, data=data)
    info = build_artifact(model, profile, out_dir, data=data, calibration=calibration)
    Store(store or default_store(out_dir)).log_artifact(out_dir / info["artifact"], info)
    return info
