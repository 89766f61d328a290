"""Built-in families: a ResNet-style teacher, a plain CNN, a MobileNet-style inverted-residual student, and
a small vision transformer (a non-convolutional teacher, for heterogeneous distillation).

Every built-in model takes float32 N x C x H x W in [0, 1] and normalises inside itself (the first
layer), so the exported graph and the device runner need no separate preprocessing. Each exposes its
stages as top-level children named `stem`, `stage1`..`stageN`, `pool`, `head`, which is what the taps
and the automatic layer pairing look at.
"""

from __future__ import annotations

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


@_register("resnet")
def resnet(in_channels: int = 1, num_classes: int = 10, width: int = 32, depth: int = 2) -> nn.Module:
    """Teacher: three stages of `depth` basic blocks, widths w, 2w, 4w, strides 1, 2, 2."""
    widths = [width, 2 * width, 4 * width]
    stages, cin = [], width
    for i, w in enumerate(widths):
        blocks = [BasicBlock(cin if j == 0 else w, w, 2 if (i > 0 and j == 0) else 1) for j in range(depth)]
        stages.append(nn.Sequential(*blocks))
        cin = w
    return Staged(in_channels, conv_bn(in_channels, width), stages, widths[-1], num_classes)


@_register("cnn")
def cnn(
    in_channels: int = 1, num_classes: int = 10, width: int = 12, depth: int = 1, stem: int | None = None
) -> nn.Module:
    """Plain student: a conv-BN-ReLU stem of `stem` channels (default: `width`), then three stages of
    `depth` conv-BN-ReLU layers (w, 2w, 4w), 2x2 max-pool between stages. A stem wider than the stages is
    what a student exported from an ensemble family keeps (`edgekd.distill.ensemble`)."""
    stem = width if stem is None else stem
    widths = [width, 2 * width, 4 * width]
    stages, cin = [], stem
    for i, w in enumerate(widths):
        layers: list[nn.Module] = [nn.MaxPool2d(2)] if i > 0 else []
        for j in range(depth):
            layers.append(conv_bn(cin if j == 0 else w, w))
        stages.append(nn.Sequential(*layers))
        cin = w
    return Staged(in_channels, conv_bn(in_channels, stem), stages, widths[-1], num_classes)


@_register("mobilenet")
def mobilenet(
    in_channels: int = 1, num_classes: int = 10, width: float = 1.0, depth: int = 1, expand: int = 4
) -> nn.Module:
    """Inverted-residual student: widths 16, 32, 64 scaled by `width`; `depth` blocks per stage."""
    widths = [max(4, int(round(c * width / 4)) * 4) for c in (16, 32, 64)]
    stages, cin = [], widths[0]
    for i, w in enumerate(widths):
        blocks = [
            InvertedResidual(cin if j == 0 else w, w, 2 if (i > 0 and j == 0) else 1, expand) for j in range(depth)
        ]
        stages.append(nn.Sequential(*blocks))
        cin = w
    return Staged(in_channels, conv_bn(in_channels, widths[0]), stages, widths[-1], num_classes)


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
