"""Built-in families: a ResNet-style teacher, a plain CNN, a MobileNet-style inverted-residual student, and
a small vision transformer (a non-convolutional teacher, for heterogeneous distillation).

Every built-in model takes float32 N x C x H x W in [0, 1] and normalises inside itself (the first
layer), so the exported graph and the device runner need no separate preprocessing. Each exposes its
stages as top-level children named `stem`, `stage1`..`stageN`, `pool`, `head`, which is what the taps
and the automatic layer pairing look at.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from edgekd.registry import Registry

FAMILIES: Registry[nn.Module] = Registry("model family")

#: preset name -> (family, params)
PRESETS: dict[str, tuple[str, dict[str, float | int]]] = {
    "resnet": ("resnet", {"width": 16, "depth": 1}),
    "resnet-m": ("resnet", {"width": 24, "depth": 2}),
    "cnn-xs": ("cnn", {"width": 8, "depth": 1}),
    "cnn-s": ("cnn", {"width": 12, "depth": 1}),
    "cnn-m": ("cnn", {"width": 24, "depth": 2}),
    "mobilenet-s": ("mobilenet", {"width": 0.5, "depth": 1}),
    "mobilenet-m": ("mobilenet", {"width": 1.0, "depth": 2}),
    "vit-s": ("vit", {"dim": 64, "depth": 6, "heads": 4, "patch": 4}),
}


class Normalize(nn.Module):
    """(x - mean) / std with fixed per-channel constants, part of the graph."""

    def __init__(self, channels: int, mean: float = 0.2860, std: float = 0.3530) -> None:
        super().__init__()
        self.register_buffer("mean", torch.full((1, channels, 1, 1), mean))
        self.register_buffer("inv_std", torch.full((1, channels, 1, 1), 1.0 / std))

    mean: Tensor
    inv_std: Tensor

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) * self.inv_std


def conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class Staged(nn.Module):
    """normalise -> stem -> stage1..N -> global pool -> linear head."""

    def __init__(
        self,
        in_channels: int,
        stem: nn.Module,
        stages: Sequence[nn.Module],
        features: int,
        num_classes: int,
        pool: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.norm = Normalize(in_channels)
        self.stem = stem
        self.stages = len(stages)
        for i, stage in enumerate(stages, 1):
            self.add_module(f"stage{i}", stage)
        self.pool = pool if pool is not None else nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(features, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(self.norm(x))
        for i in range(1, self.stages + 1):
            x = getattr(self, f"stage{i}")(x)
        result: Tensor = self.head(self.pool(x))
        return result


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv_bn(cin, cout, 3, stride), conv_bn(cout, cout, 3, act=False))
        self.short = nn.Identity() if stride == 1 and cin == cout else conv_bn(cin, cout, 1, stride, act=False)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        result: Tensor = self.act(self.body(x) + self.short(x))
        return result


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, 3x3 depthwise, 1x1 project; residual when shapes allow."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = cin * expand
        self.body = nn.Sequential(
            conv_bn(cin, mid, 1), conv_bn(mid, mid, 3, stride, groups=mid), conv_bn(mid, cout, 1, act=False)
        )
        self.residual = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        result: Tensor = x + self.body(x) if self.residual else self.body(x)
        return result


def _register(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    return FAMILIES.register(name)


def edge_stem(cin: int, cout: int, stem_stride: int) -> nn.Module:
    """The first conv-BN-ReLU at stride 1 or 2, or (4) stride 2 then a 3x3 max-pool at stride 2, as
    ResNet's stem: edge models at 96 or 224 pixels downsample before the first stage."""
    _check_stem(stem_stride)
    if stem_stride == 4:
        return nn.Sequential(conv_bn(cin, cout, 3, 2), nn.MaxPool2d(3, 2, 1))
    return conv_bn(cin, cout, 3, stem_stride)


def _check_stem(stem_stride: int) -> None:
    if stem_stride not in (1, 2, 4):
        raise TypeError(f"stem_stride must be 1, 2 or 4, got {stem_stride}")


def stage_widths(first: float, stages: int) -> list[float]:
    """Stage widths doubling from `first`: three stages (the default) or up to five (edge inputs)."""
    if not 1 <= stages <= 5:
        raise TypeError(f"stages must be 1 to 5, got {stages}")
    return [first * 2**i for i in range(stages)]


@_register("resnet")
def resnet(
    in_channels: int = 1,
    num_classes: int = 10,
    width: int = 32,
    depth: int = 2,
    stem_stride: int = 1,
    stages: int = 3,
) -> nn.Module:
    """Teacher: three stages of `depth` basic blocks, widths w, 2w, 4w, strides 1, 2, 2. For edge inputs
    (96 or 224 px): `stem_stride` 2 or 4 (ResNet's conv + max-pool) and up to five `stages` (w .. 16w)."""
    widths = [int(w) for w in stage_widths(width, stages)]
    blocks_of: list[nn.Module] = []
    cin = width
    for i, w in enumerate(widths):
        blocks = [BasicBlock(cin if j == 0 else w, w, 2 if (i > 0 and j == 0) else 1) for j in range(depth)]
        blocks_of.append(nn.Sequential(*blocks))
        cin = w
    stem = conv_bn(in_channels, width) if stem_stride == 1 else edge_stem(in_channels, width, stem_stride)
    return Staged(in_channels, stem, blocks_of, widths[-1], num_classes)


@_register("cnn")
def cnn(
    in_channels: int = 1,
    num_classes: int = 10,
    width: int = 12,
    depth: int = 1,
    stem: int | None = None,
    hidden: int = 0,
) -> nn.Module:
    """Plain student: a conv-BN-ReLU stem of `stem` channels (default: `width`), then three stages of
    `depth` conv-BN-ReLU layers (w, 2w, 4w), 2x2 max-pool between stages. A stem wider than the stages is
    what a student exported from an ensemble family keeps (`edgekd.distill.ensemble`). `hidden` > 0 puts a
    learned Linear(4w, hidden) + ReLU after the global pool, inside `pool` (the authors' fc1 in pkth
    `models/cifar_very_tiny.py`), so the penultimate representation is that layer's output."""
    stem = width if stem is None else stem
    widths = [width, 2 * width, 4 * width]
    stages, cin = [], stem
    for i, w in enumerate(widths):
        layers: list[nn.Module] = [nn.MaxPool2d(2)] if i > 0 else []
        for j in range(depth):
            layers.append(conv_bn(cin if j == 0 else w, w))
        stages.append(nn.Sequential(*layers))
        cin = w
    if hidden > 0:
        pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(widths[-1], hidden), nn.ReLU())
        return Staged(in_channels, conv_bn(in_channels, stem), stages, hidden, num_classes, pool)
    return Staged(in_channels, conv_bn(in_channels, stem), stages, widths[-1], num_classes)


@_register("mobilenet")
def mobilenet(
    in_channels: int = 1,
    num_classes: int = 10,
    width: float = 1.0,
    depth: int = 1,
    expand: int = 4,
    stem_stride: int = 1,
    stages: int = 3,
) -> nn.Module:
    """Inverted-residual student (MobileNetV2-style): widths 16, 32, 64 scaled by `width`; `depth` blocks
    per stage. For edge inputs: `stem_stride` 2 and up to five `stages` (16 .. 256, 32x down in all)."""
    widths = [max(4, int(round(c * width / 4)) * 4) for c in stage_widths(16, stages)]
    blocks_of: list[nn.Module] = []
    cin = widths[0]
    for i, w in enumerate(widths):
        blocks = [
            InvertedResidual(cin if j == 0 else w, w, 2 if (i > 0 and j == 0) else 1, expand) for j in range(depth)
        ]
        blocks_of.append(nn.Sequential(*blocks))
        cin = w
    stem = conv_bn(in_channels, widths[0]) if stem_stride == 1 else edge_stem(in_channels, widths[0], stem_stride)
    return Staged(in_channels, stem, blocks_of, widths[-1], num_classes)


def divisible(channels: float, by: int = 8) -> int:
    """Channels rounded to a multiple of `by` (never below it, never 10% under `channels`), as the
    MobileNet and EfficientNet families scale their widths."""
    rounded = max(by, int(channels + by / 2) // by * by)
    return rounded + by if rounded < 0.9 * channels else rounded


class SqueezeExcite(nn.Module):
    """MobileNetV3's channel gate: global pool, 1x1 reduce + ReLU, 1x1 expand + hard sigmoid, scale."""

    def __init__(self, channels: int, reduce: int = 4) -> None:
        super().__init__()
        mid = divisible(channels / reduce)
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, mid, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, channels, 1),
            nn.Hardsigmoid(inplace=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        result: Tensor = x * self.gate(x)
        return result


def conv_bn_act(
    cin: int, cout: int, k: int, stride: int, act: type[nn.Module] | None, groups: int = 1
) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, act(inplace=True)) if act is not None else nn.Sequential(*layers)


def mobile_stem(cin: int, cout: int, stem_stride: int, act: type[nn.Module]) -> nn.Sequential:
    """The stem of the mobile families: a 3x3 conv-BN-`act` at stride 1 or 2, or 2 then a max-pool (4)."""
    _check_stem(stem_stride)
    stem = conv_bn_act(cin, cout, 3, min(stem_stride, 2), act)
    return stem.append(nn.MaxPool2d(3, 2, 1)) if stem_stride == 4 else stem


class MBConv(nn.Module):
    """Mobile inverted bottleneck: 1x1 expand (none at ratio 1), k x k depthwise, optional
    squeeze-and-excitation, 1x1 linear project; residual when shapes allow. `act` is ReLU6 in
    EfficientNet-lite, ReLU or hard-swish in MobileNetV3."""

    def __init__(
        self, cin: int, cout: int, stride: int, expand: float, kernel: int, se: bool, act: type[nn.Module]
    ) -> None:
        super().__init__()
        mid = divisible(cin * expand) if expand != 1 else cin
        layers: list[nn.Module] = [conv_bn_act(cin, mid, 1, 1, act)] if mid != cin else []
        layers.append(conv_bn_act(mid, mid, kernel, stride, act, groups=mid))
        if se:
            layers.append(SqueezeExcite(mid))
        layers.append(conv_bn_act(mid, cout, 1, 1, None))
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        result: Tensor = x + self.body(x) if self.residual else self.body(x)
        return result


def _mb_stages(
    cin: int, plan: Sequence[tuple[int, int, int, int, bool, bool]], expand: float, act: type[nn.Module]
) -> tuple[list[nn.Module], int]:
    """Stages of MBConv blocks from (channels, repeats, stride, kernel, se, hard-swish) rows."""
    stages: list[nn.Module] = []
    for cout, repeats, stride, kernel, se, hswish in plan:
        block_act = nn.Hardswish if hswish else act
        blocks = [
            MBConv(cin if j == 0 else cout, cout, stride if j == 0 else 1, expand, kernel, se, block_act)
            for j in range(repeats)
        ]
        stages.append(nn.Sequential(*blocks))
        cin = cout
    return stages, cin


@_register("mobilenetv3")
def mobilenetv3(
    in_channels: int = 3,
    num_classes: int = 10,
    width: float = 1.0,
    depth: int = 1,
    expand: float = 4.0,
    kernel: int = 5,
    se: bool = True,
    stem_stride: int = 2,
) -> nn.Module:
    """MobileNetV3-Small-style: hard-swish stem at `stem_stride`, five stages of inverted residuals
    (16, 24, 40, 48, 96 channels x `width`; strides 2, 2, 2, 1, 2: 32x down in all at stride-2 stem),
    squeeze-and-excitation (`se`) in all but the second, ReLU in the first two and hard-swish after,
    `kernel` x `kernel` depthwise from the third; `depth` blocks a stage; a final 1x1 conv to 6x the last
    width. 96 px ends at 3 x 3, 224 px at 7 x 7."""
    c = [divisible(ch * width) for ch in (16, 24, 40, 48, 96)]
    plan = [
        (c[0], depth, 2, 3, se, False),
        (c[1], depth, 2, 3, False, False),
        (c[2], depth, 2, kernel, se, True),
        (c[3], depth, 1, kernel, se, True),
        (c[4], depth, 2, kernel, se, True),
    ]
    stem_width = divisible(16 * width)
    stem = mobile_stem(in_channels, stem_width, stem_stride, nn.Hardswish)
    stages, last = _mb_stages(stem_width, plan, expand, nn.ReLU)
    features = divisible(6 * last)
    stages[-1].append(conv_bn_act(last, features, 1, 1, nn.Hardswish))  # type: ignore[operator]
    return Staged(in_channels, stem, stages, features, num_classes)


#: EfficientNet-B0's stages: (channels, repeats, stride, kernel); the first stage expands by 1
_EFFICIENT_B0 = (
    (16, 1, 1, 3),
    (24, 2, 2, 3),
    (40, 2, 2, 5),
    (80, 3, 2, 3),
    (112, 3, 1, 5),
    (192, 4, 2, 5),
    (320, 1, 1, 3),
)


@_register("efficientnet")
def efficientnet(
    in_channels: int = 3,
    num_classes: int = 10,
    width: float = 1.0,
    depth: float = 1.0,
    expand: float = 6.0,
    stem_stride: int = 2,
) -> nn.Module:
    """EfficientNet-lite-style (B0's layout, as the lite variants run on edge accelerators): MBConv
    without squeeze-and-excitation, ReLU6; compound scaling by a `width` multiplier on every stage's
    channels and a `depth` multiplier on its repeats (rounded up); stem (32) and head (1280) fixed as in
    lite. Seven stages, 32x down in all at a stride-2 stem."""
    stem = mobile_stem(in_channels, 32, stem_stride, nn.ReLU6)
    first = _EFFICIENT_B0[0]
    head_stage, cin = _mb_stages(32, [(divisible(first[0] * width), 1, first[2], first[3], False, False)], 1, nn.ReLU6)
    rows = [
        (divisible(ch * width), max(1, math.ceil(r * depth)), s, k, False, False) for ch, r, s, k in _EFFICIENT_B0[1:]
    ]
    stages, last = _mb_stages(cin, rows, expand, nn.ReLU6)
    stages[-1].append(conv_bn_act(last, 1280, 1, 1, nn.ReLU6))  # type: ignore[operator]
    return Staged(in_channels, stem, head_stage + stages, 1280, num_classes)


def sincos_2d(h: int, w: int, dim: int) -> Tensor:
    """Fixed 2-D sine-cosine position embedding, (h * w) x dim, dim a multiple of 4 (as in "Better plain
    ViT baselines", Beyer et al. 2022): no parameter, so one model takes any image size."""
    y, x = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    quarter = dim // 4
    omega = 1.0 / 10000.0 ** (torch.arange(quarter, dtype=torch.float32) / max(1, quarter - 1))
    y, x = y.reshape(-1, 1) * omega, x.reshape(-1, 1) * omega
    return torch.cat([x.sin(), x.cos(), y.sin(), y.cos()], dim=1)


class PatchEmbed(nn.Module):
    """Non-overlapping p x p patches -> B x T x dim tokens, plus the fixed position embedding."""

    def __init__(self, in_channels: int, dim: int, patch: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, patch, patch)

    def forward(self, x: Tensor) -> Tensor:
        x = self.proj(x)
        _, dim, h, w = x.shape
        return x.flatten(2).transpose(1, 2) + sincos_2d(h, w, dim).to(x.dtype)


class Attention(nn.Module):
    """Multi-head self-attention written out (matmul + softmax), so it exports to any opset alike."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).reshape(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        attn = (q @ k.transpose(-2, -1) * self.scale).softmax(dim=-1)
        result: Tensor = self.proj((attn @ v).transpose(1, 2).reshape(b, t, d))
        return result


class EncoderBlock(nn.Module):
    """Pre-norm transformer encoder block: x + attn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        result: Tensor = x + self.mlp(self.norm2(x))
        return result


class TokenPool(nn.Module):
    """Final LayerNorm, then the mean over tokens: B x T x dim -> B x dim."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        result: Tensor = self.norm(x).mean(dim=1)
        return result


@_register("vit")
def vit(
    in_channels: int = 1,
    num_classes: int = 10,
    dim: int = 64,
    depth: int = 6,
    heads: int = 4,
    patch: int = 4,
    mlp_ratio: int = 4,
) -> nn.Module:
    """Teacher without convolutions past the patch embedding: `depth` encoder blocks (stage1..N, each
    B x T x dim), mean-pooled tokens. Images must divide into `patch` x `patch` tiles (28: 4 or 7)."""
    if dim % 4 or dim % heads:
        raise TypeError(f"vit needs dim divisible by 4 and by heads, got dim={dim}, heads={heads}")
    blocks: list[nn.Module] = [EncoderBlock(dim, heads, mlp_ratio) for _ in range(depth)]
    return Staged(in_channels, PatchEmbed(in_channels, dim, patch), blocks, dim, num_classes, TokenPool(dim))


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
