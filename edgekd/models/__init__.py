"""Built-in model families, user models by `module:factory`, and checkpoints (state dict + arch spec)."""

from edgekd.models.checkpoint import load_checkpoint, load_model, save_checkpoint
from edgekd.models.layout import memory_format_for, to_layout
from edgekd.models.spec import ArchSpec, build_model, parse_arch

__all__ = [
    "ArchSpec",
    "build_model",
    "parse_arch",
    "load_checkpoint",
    "load_model",
    "memory_format_for",
    "save_checkpoint",
    "to_layout",
]
