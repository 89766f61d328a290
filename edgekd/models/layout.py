"""The memory layout a network trains in."""

from __future__ import annotations

import os

import torch
from torch import nn

from edgekd.errors import UserError

LAYOUT_ENV = "EDGEKD_MEMORY_FORMAT"
LAYOUTS = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}


def memory_format_for(module: nn.Module) -> torch.memory_format:
    """`channels_last` for a convolutional network (more 2-d convolutions than linear layers), else the
    default layout.

    oneDNN's convolutions and pooling run NHWC natively: a training epoch of the built-in CNNs, ResNet and
    MobileNet takes 0.63-0.81x its NCHW time on this project's CPU, while the ViT, whose one convolution
    (the patch embedding) feeds linear layers, takes 1.08x (`python -m benchmarks.train_layout`):
    it stays NCHW. The layout changes strides only: shapes, checkpoints and exports are the same, and
    values agree up to float rounding. `EDGEKD_MEMORY_FORMAT` (`auto`, `channels_last` or `contiguous`)
    overrides the choice, e.g. to compare the two.
    """
    choice = os.environ.get(LAYOUT_ENV, "auto").strip() or "auto"
    if choice != "auto":
        if choice not in LAYOUTS:
            raise UserError(f"{LAYOUT_ENV}={choice!r} is not a layout; use auto, {', '.join(LAYOUTS)}")
        return LAYOUTS[choice]
    convs = sum(isinstance(m, nn.Conv2d) for m in module.modules())
    linears = sum(isinstance(m, nn.Linear) for m in module.modules())
    return torch.channels_last if convs > linears else torch.contiguous_format


def to_layout(module: nn.Module, device: torch.device, memory_format: torch.memory_format) -> nn.Module:
    """`module` moved to `device` with its 4-d parameters and buffers in `memory_format` (in place)."""
    # Module.to takes memory_format at run time; its type stubs do not list it
    return module.to(device).to(memory_format=memory_format)  # type: ignore[call-overload,no-any-return]
