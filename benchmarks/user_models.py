"""User-style models for the distillation comparison: what a user brings as `module:factory`.

    python -m benchmarks.kd_comparison --pairs benchmarks.user_models:wide_convnet:cnn-xs ...

`wide_convnet` is written the way a user would write a model, not the way edgekd's zoo does: no
`stage*`, `pool` or `head` children (so edgekd finds its layers by tracing, `edgekd.distill.blocks`),
grouped convolutions, a token-mixing block (an MLP across the 7 x 7 spatial positions, MLP-Mixer
style) and the classifier registered first, not as the last child. edgekd builds it with the
`in_channels` and `num_classes` keyword arguments (`edgekd.models.spec.build_model`).
"""

from __future__ import annotations

from torch import Tensor, nn


def _conv(c_in: int, c_out: int, groups: int = 1) -> nn.Sequential:
    """3x3 conv -> batch norm -> ReLU."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, groups=groups, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)
    )


class TokenMixer(nn.Module):
    """A residual MLP across the spatial positions of a C x H x W map (each channel mixed alike)."""

    def __init__(self, tokens: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(1, affine=False)
        self.mix = nn.Sequential(nn.Linear(tokens, hidden), nn.GELU(), nn.Linear(hidden, tokens))

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        y = self.mix(x.reshape(b, c, h * w))
        return x + y.reshape(b, c, h, w)


class WideConvNet(nn.Module):
    """A conv at 28 x 28, grouped convs at 14 x 14 and 7 x 7, a token mixer, global average, a linear classifier."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 32, image_size: int = 28) -> None:
        super().__init__()
        w = width
        self.classifier = nn.Linear(4 * w, num_classes)  # registered first: not the last child
        self.features = nn.Sequential(
            _conv(in_channels, w),
            nn.MaxPool2d(2),
            _conv(w, 2 * w, groups=2),
            _conv(2 * w, 2 * w, groups=8),
            nn.MaxPool2d(2),
            _conv(2 * w, 4 * w, groups=4),
            TokenMixer((image_size // 4) ** 2, 2 * (image_size // 4) ** 2),
        )
        self.average = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.average(self.features(x)).flatten(1))


def wide_convnet(in_channels: int = 1, num_classes: int = 10, width: int = 32) -> nn.Module:
    """The user-style teacher of the comparison (module docstring); about 0.1M parameters at width 32."""
    return WideConvNet(in_channels, num_classes, width)
