"""Whether a model takes images of a given size: one forward pass on zeros, before any training.

Too small an image fails deep inside PyTorch ("Calculated padded input size ... Kernel size can't be
greater than actual input size"); here it becomes one line naming the data's shape and the smallest
size the model accepts.
"""

from __future__ import annotations

import torch
from torch import nn

from edgekd.errors import UserError

LARGEST = 4096  # sizes probed for the smallest accepted one stop here


def _accepts(model: nn.Module, channels: int, size: int) -> bool:
    try:
        with torch.no_grad():
            model(torch.zeros(1, channels, size, size))
    except RuntimeError:
        return False
    return True


def smallest_size(model: nn.Module, channels: int) -> int | None:
    """The smallest square image side the model runs on (None: none up to LARGEST)."""
    high = 1
    while not _accepts(model, channels, high):
        if high >= LARGEST:
            return None
        high *= 2
    low = high // 2  # fails (or 0); high runs
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if _accepts(model, channels, mid) else (mid, high)
    return high


def check_accepts(model: nn.Module, shape: tuple[int, int, int], role: str) -> None:
    """Raise a UserError when `model` cannot run on C x H x W inputs of `shape` (the data's)."""
    was_training = model.training
    model.eval()  # batch statistics of one sample would fail for reasons other than the size
    try:
        c, h, w = shape
        try:
            with torch.no_grad():
                model(torch.zeros(1, c, h, w))
            return
        except RuntimeError as err:
            smallest = smallest_size(model, c)
            if smallest is None or smallest <= min(h, w):
                reason = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
                raise UserError(
                    f"the {role} cannot run on the data's images of shape {shape} (C, H, W): {reason};"
                    f" use data of the {role}'s shape or another {role}"
                ) from None
            raise UserError(
                f"the data's images of shape {shape} (C, H, W) are smaller than the {role} accepts"
                f" (at least {c} x {smallest} x {smallest}); use larger images or a {role} with less downsampling"
            ) from None
    finally:
        model.train(was_training)
