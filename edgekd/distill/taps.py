"""Taps: forward hooks that collect named intermediate outputs without editing the model.

A tap is a module path (its output) or `<module path>:in` (its input, by a forward pre-hook). The
reserved name `penultimate` is resolved to one of these per model (`edgekd.distill.blocks`) before
anything is tapped.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from torch import Tensor, nn

from edgekd.distill.blocks import INPUT_SUFFIX, PENULTIMATE
from edgekd.errors import UserError

Taps = dict[str, Tensor]


def layer_names(model: nn.Module) -> list[str]:
    """Names of the model's sub-modules that a tap may name."""
    return [name for name, _ in model.named_modules() if name]


def check_layers(model: nn.Module, names: Sequence[str], role: str) -> None:
    """Fail with the valid names when a tap names a layer the model does not have."""
    valid = set(layer_names(model))
    missing = [n for n in names if n.removesuffix(INPUT_SUFFIX) not in valid]
    if missing:
        shown = ", ".join(layer_names(model)[:40])
        raise UserError(
            f"{role} has no layer {missing[0]!r}; valid layer names: {shown} (a name with {INPUT_SUFFIX!r}"
            f" appended taps that layer's input; {PENULTIMATE!r}, in pairs, the input of the logits' Linear)"
        )


@contextmanager
def tapped(model: nn.Module, names: Sequence[str]) -> Iterator[Taps]:
    """Within the block, every forward pass fills the yielded dict with the named layers' outputs."""
    check_layers(model, names, type(model).__name__)
    modules = dict(model.named_modules())
    out: Taps = {}
    handles = []
    for name in names:

        def hook(_m: nn.Module, _i: object, output: Tensor, name: str = name) -> None:
            out[name] = output

        def pre_hook(_m: nn.Module, args: tuple[Tensor, ...], name: str = name) -> None:
            out[name] = args[0]

        if name.endswith(INPUT_SUFFIX):
            handles.append(modules[name.removesuffix(INPUT_SUFFIX)].register_forward_pre_hook(pre_hook))
        else:
            handles.append(modules[name].register_forward_hook(hook))
    try:
        yield out
    finally:
        for h in handles:
            h.remove()
