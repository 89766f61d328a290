"""Checkpoints: a state dict plus the arch spec and metadata. Never a pickled module.

They load with `torch.load(weights_only=True)`, so opening a checkpoint cannot run code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgekd._io import write_with
from edgekd.errors import UserError
from edgekd.models.spec import ArchSpec, build_model

FORMAT = "edgekd-checkpoint-1"


def save_checkpoint(path: Path, model: nn.Module, spec: ArchSpec, meta: dict[str, Any]) -> None:
    payload = {
        "format": FORMAT,
        "arch": spec.model_dump(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "meta": meta,
    }
    write_with(path, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}; check the path")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        reason = str(err).splitlines()[0][:160]
        raise UserError(f"{path} is not a readable edgekd checkpoint ({reason})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UserError(f"{path} is not an edgekd checkpoint; make one with 'edgekd train-teacher' or 'edgekd distill'")
    return payload


def load_model(path: Path) -> tuple[nn.Module, ArchSpec, dict[str, Any]]:
    """Rebuild the model of a checkpoint, in eval mode, with its spec and metadata."""
    payload = load_checkpoint(path)
    try:
        spec = ArchSpec.model_validate(payload.get("arch"))
    except ValueError:  # pydantic's ValidationError
        raise UserError(f"{path} records no valid arch spec; re-save it with edgekd") from None
    model = build_model(spec)
    try:
        model.load_state_dict(payload.get("state_dict") or {})
    except (RuntimeError, TypeError, AttributeError) as err:
        reason = str(err).strip().splitlines()[0][:160]
        raise UserError(
            f"{path}: its weights do not fit its arch {spec.label()} ({reason}); the file was altered or"
            " written for another model: train it again"
        ) from None
    return model.eval(), spec, dict(payload.get("meta") or {})
