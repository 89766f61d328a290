"""Where to tap a model edgekd did not build: its blocks in call order, and its penultimate representation.

Both come from one traced forward pass (eval mode, two zero inputs) with hooks on every sub-module, so
nothing here assumes a layer name.

The penultimate representation is the input of the `nn.Linear` whose output is the logits. Its tap is
the shallowest called module whose output is that very tensor (`pool` for every built-in model), or
else the Linear's input itself, `<path>:in`.

Blocks (`called_blocks`), the candidate layers of a user model, shallow to deep:
- the units: called modules whose ancestors (below the model) are all plain containers (`nn.Sequential`,
  `nn.ModuleList`, `nn.ModuleDict`); a container is looked into, any other module is one block. So a
  plain `nn.Sequential` offers its layers, a `features` + `classifier` model the layers of both, and a
  custom block (a residual or mixer block) is never split;
- kept when the output is a B x D, B x N x D or B x C x H x W tensor, the module ran once (a shared
  activation has no single output), it is not a pass-through (`Flatten`, `Identity`, `Dropout`), and
  it is not the logits;
- a torch layer followed by a torch activation or normalisation of the same output shape is dropped
  (conv -> BN -> ReLU is one point, after the ReLU), as is any block whose output is a view of the
  penultimate tensor (the pooling that feeds the head); the penultimate tap then ends the list.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from edgekd.errors import UserError

#: the reserved tap name for the input of the layer that produces the logits
PENULTIMATE = "penultimate"
#: a tap `<module path>:in` is that module's input (a forward pre-hook), not its output
INPUT_SUFFIX = ":in"
#: torch's modules of activations and normalisations: a layer they follow is one point with them
_ELEMENTWISE = {f"torch.nn.modules.{m}" for m in ("activation", "batchnorm", "normalization", "instancenorm")}
_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
_PASS_THROUGH = (nn.Flatten, nn.Unflatten, nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)


@dataclass
class Trace:
    """One forward pass: each called module's output in completion order, Linear inputs, the logits."""

    outputs: list[tuple[str, Tensor]] = field(default_factory=list)
    calls: dict[str, int] = field(default_factory=dict)
    linear_inputs: dict[str, Tensor] = field(default_factory=dict)
    logits: Tensor | None = None


def trace(model: nn.Module, input_shape: tuple[int, int, int]) -> Trace:
    """Run the model once on two zero inputs, recording what `called_blocks` and `penultimate` need."""
    out = Trace()

    def record(name: str, output: object) -> None:
        out.calls[name] = out.calls.get(name, 0) + 1
        if isinstance(output, Tensor):
            out.outputs.append((name, output))

    handles = []
    for name, module in model.named_modules():
        if not name:
            continue
        handles.append(module.register_forward_hook(lambda _m, _i, o, name=name: record(name, o)))
        if isinstance(module, nn.Linear):
            handles.append(
                module.register_forward_pre_hook(lambda _m, i, name=name: out.linear_inputs.__setitem__(name, i[0]))
            )
    was_training = model.training
    try:
        with torch.no_grad():
            logits = model.eval()(torch.zeros(2, *input_shape))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    out.logits = logits if isinstance(logits, Tensor) else None
    return out


def _penultimate(tr: Trace) -> tuple[str, Tensor]:
    """(tap name, tensor) of the logits Linear's input; a UserError when no Linear outputs the logits."""
    heads = [n for n, o in tr.outputs if o is tr.logits and n in tr.linear_inputs]
    if not heads:
        raise UserError(
            "cannot find the penultimate representation: the model's output is not the output of an nn.Linear;"
            " name the layers to compare with --pairs student_layer:teacher_layer"
        )
    x = tr.linear_inputs[heads[-1]]
    producers = [n for n, o in tr.outputs if o is x]
    if producers:
        return min(producers, key=lambda n: n.count(".")), x
    return heads[-1] + INPUT_SUFFIX, x


def penultimate(model: nn.Module, input_shape: tuple[int, int, int]) -> str:
    """The tap of the model's penultimate representation (the input of the Linear giving the logits)."""
    return _penultimate(trace(model, input_shape))[0]


def _is_unit(name: str, modules: dict[str, nn.Module]) -> bool:
    parts = name.split(".")
    ancestors = [".".join(parts[:i]) for i in range(1, len(parts))]
    return not isinstance(modules[name], _CONTAINERS) and all(isinstance(modules[a], _CONTAINERS) for a in ancestors)


def _same_data(a: Tensor, b: Tensor) -> bool:
    return a.numel() == b.numel() and a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()


def called_blocks(model: nn.Module, input_shape: tuple[int, int, int], pooled: bool = True) -> list[str]:
    """A model's blocks in call order, ending (when `pooled`) at its penultimate tap (module docstring)."""
    tr = trace(model, input_shape)
    pen_name, pen = _penultimate(tr)
    modules = dict(model.named_modules())
    kept = [
        (name, o)
        for name, o in tr.outputs
        if _is_unit(name, modules)
        and tr.calls[name] == 1
        and 2 <= o.dim() <= 4
        and o.shape[0] == 2
        and not isinstance(modules[name], _PASS_THROUGH)
        and o is not tr.logits
        and not _same_data(o, pen)
    ]
    blocks = [
        name
        for i, (name, o) in enumerate(kept)
        if not (
            type(modules[name]).__module__.startswith("torch.nn.")
            and i + 1 < len(kept)
            and type(modules[kept[i + 1][0]]).__module__ in _ELEMENTWISE
            and kept[i + 1][1].shape == o.shape
        )
    ]
    return blocks + [pen_name] if pooled else blocks
