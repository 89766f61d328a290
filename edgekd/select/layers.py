"""The layers a model runs at batch 1, as the latency predictor sees them.

One forward pass under a dispatch mode records every ATen operator that touches the input or anything
computed from it (operators on constants only, such as position tables, are folded at export and cost
nothing at run time). Each becomes a `Layer`: its kind, a readable configuration (the key of the
per-layer latency table), its multiply-accumulates and the activation elements it reads and writes.
What the runtimes fuse is folded here too: batch norm into the convolution before it; a residual add
straight after a convolution (a tensor of the convolution's shape added to it: ONNX Runtime's fused Conv
with a sum, OpenVINO's sum post-op; their profiles of the edge96 ResNets and MobileNets show no Add
node left); and an activation straight after either, into that convolution. Shape-only operators are
free.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from math import prod
from typing import Any

_BATCH_NORM = {"native_batch_norm", "_native_batch_norm_legit_no_training", "batch_norm"}
_FUSED_ACT = {"relu", "relu_", "hardtanh", "hardtanh_", "clamp", "clamp_", "silu", "silu_"}
_FUSED_SUM = {"add", "add_"}
_POOL = {
    "max_pool2d",
    "max_pool2d_with_indices",
    "avg_pool2d",
    "_adaptive_avg_pool2d",
    "adaptive_max_pool2d",
    "mean",
    "amax",
}
_MATMUL = {"addmm", "mm", "bmm", "matmul", "linear", "baddbmm"}
_FREE = {
    "view",
    "_unsafe_view",
    "reshape",
    "t",
    "transpose",
    "permute",
    "expand",
    "unsqueeze",
    "squeeze",
    "flatten",
    "detach",
    "alias",
    "unbind",
    "select",
    "slice",
    "split",
    "clone",
    "contiguous",
    "_to_copy",
    "empty",
    "lift_fresh",
}


class LayerKind(str, enum.Enum):
    CONV = "conv"  # k x k, dense or grouped
    POINTWISE = "pointwise"  # 1 x 1
    DEPTHWISE = "depthwise"  # one filter per channel
    LINEAR = "linear"  # matrix products
    POOL = "pool"  # pooling and reductions
    ELTWISE = "eltwise"  # everything else that computes: add, mul, softmax, norms, activations


_CONVS = (LayerKind.CONV, LayerKind.POINTWISE, LayerKind.DEPTHWISE)


@dataclass(frozen=True)
class Layer:
    """One operator at batch 1. For convolutions and matrix products, `macs` is
    `positions * cin_per_group * cout`, which lets a cost model round channels up to a runtime's
    vector width."""

    kind: LayerKind
    config: str
    macs: int
    elements: int
    cin_per_group: int = 0
    cout: int = 0
    positions: int = 0  # output positions times kernel area: the MACs of one channel pair
    first: bool = False  # the first convolution: it reads the image in plain N x C x H x W
    out_shape: tuple[int, ...] = ()  # the output without the batch dimension: how a runtime's node is matched


def model_layers(model: Any, input_shape: tuple[int, int, int]) -> list[Layer]:
    """The layers `model` (an nn.Module) runs on one input of `input_shape` (C, H, W)."""
    import torch

    recorder = _recorder()
    x = torch.rand(1, *input_shape)
    with torch.no_grad(), recorder:
        recorder.track(x)
        model.eval()(x)
    return list(recorder.layers)


def _recorder() -> Any:
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    class Recorder(TorchDispatchMode):  # type: ignore[no-untyped-call]
        def __init__(self) -> None:
            super().__init__()  # type: ignore[no-untyped-call]
            self.layers: list[Layer] = []
            self._live: dict[int, Any] = {}  # id -> tensor; holding the tensor keeps its id unique
            self._after_conv = False

        def track(self, tensor: Any) -> None:
            self._live[id(tensor)] = tensor

        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            out = func(*args, **(kwargs or {}))
            inputs = [a for a in tree_flatten((args, kwargs))[0] if isinstance(a, torch.Tensor)]
            if not any(id(a) in self._live for a in inputs):
                return out  # a constant: folded away at export
            for tensor in tree_flatten(out)[0]:
                if isinstance(tensor, torch.Tensor):
                    self.track(tensor)
            self._record(func.overloadpacket.__name__, args, out)
            return out

        def _record(self, name: str, args: Any, out: Any) -> None:
            if name in _FREE or name in _BATCH_NORM:
                return
            if name in _FUSED_ACT and self._after_conv:
                self._after_conv = False
                return
            first = out[0] if isinstance(out, tuple | list) else out
            if name in _FUSED_SUM and self._after_conv and _residual(args, first, self.layers[-1]):
                return  # the convolution's sum: an activation after it folds into the convolution too
            layer = _classify(name, args, first)
            self._after_conv = layer.kind in (LayerKind.CONV, LayerKind.POINTWISE, LayerKind.DEPTHWISE)
            if self._after_conv and not any(la.kind in _CONVS for la in self.layers):
                layer = replace(layer, first=True)
            self.layers.append(layer)

    return Recorder()


def _residual(args: Any, out: Any, conv: Layer) -> bool:
    """An add of two tensors of the convolution's output shape: a residual sum a runtime fuses into it."""
    import torch

    tensors = [a for a in args[:2] if isinstance(a, torch.Tensor)]
    shape = _dims(out.shape[1:])
    return len(tensors) == 2 and all(_dims(t.shape[1:]) == shape for t in tensors) and shape == conv.out_shape


def _classify(name: str, args: Any, out: Any) -> Layer:
    if name == "convolution":
        return _conv(args[0], args[1], args[3], args[8], out)
    if name in _MATMUL:
        a = args[1] if name in ("addmm", "baddbmm") else args[0]
        k = int(a.shape[-1])
        n = int(out.shape[-1])
        return Layer(
            LayerKind.LINEAR,
            f"{name} {_shape(a.shape)} -> {_shape(out.shape)}",
            out.numel() * k,
            a.numel() + out.numel(),
            k,
            n,
            out.numel() // n,
            out_shape=_dims(out.shape[1:]),
        )
    x = args[0]
    kind = LayerKind.POOL if name in _POOL else LayerKind.ELTWISE
    config = f"{name} {_shape(x.shape)} -> {_shape(out.shape)}"
    return Layer(kind, config, 0, x.numel() + out.numel(), out_shape=_dims(out.shape[1:]))


def _conv(x: Any, weight: Any, stride: Any, groups: int, out: Any) -> Layer:
    cout, cin_per_group, *kernel = (int(d) for d in weight.shape)
    cin = int(x.shape[1])
    if groups > 1 and groups == cin:
        kind = LayerKind.DEPTHWISE
    elif all(k == 1 for k in kernel):
        kind = LayerKind.POINTWISE
    else:
        kind = LayerKind.CONV
    k = "x".join(map(str, kernel))
    s = "x".join(map(str, stride)) if len(set(stride)) > 1 else str(stride[0])
    config = f"conv{k} s{s} g{groups} {cin}->{cout} @{_shape(x.shape[2:])}"
    positions = out.numel() // cout * prod(kernel)
    macs = positions * cin_per_group * cout
    return Layer(
        kind, config, macs, x.numel() + out.numel(), cin_per_group, cout, positions, out_shape=_dims(out.shape[1:])
    )


def _dims(shape: Any) -> tuple[int, ...]:
    return tuple(int(d) for d in shape)


def _shape(shape: Any) -> str:
    return "x".join(str(int(d)) for d in shape)
