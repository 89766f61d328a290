"""The edge families (MobileNetV3-, EfficientNet-lite-, MobileNetV2- and ResNet-style) at 3 x 96 x 96 and
3 x 224 x 224, and the older families' defaults unchanged."""

from __future__ import annotations

import pytest
import torch

from edgekd.errors import UserError
from edgekd.models import build_model, parse_arch
from edgekd.models.zoo import MBConv, SqueezeExcite, count_params
from edgekd.select.space import make_candidate

EDGE = [
    "mobilenetv3(width=0.5)",
    "efficientnet(width=0.5,depth=0.5)",
    "mobilenet(width=0.5,stem_stride=2,stages=5)",
    "resnet(width=8,depth=1,stem_stride=4,stages=4)",
]


def _flops(arch: str, size: int = 96) -> int:
    return make_candidate(parse_arch(arch, in_channels=3, num_classes=10, image_size=size)).flops


@pytest.mark.parametrize("arch", EDGE)
@pytest.mark.parametrize("size", [96, 224])
def test_edge_families_run_on_rgb_at_edge_sizes(arch: str, size: int) -> None:
    model = build_model(parse_arch(arch, in_channels=3, num_classes=7)).eval()
    with torch.no_grad():
        x = model.stem(model.norm(torch.rand(2, 3, size, size)))
        for i in range(1, model.stages + 1):
            x = getattr(model, f"stage{i}")(x)
        assert model.head(model.pool(x)).shape == (2, 7)
    assert x.shape[-1] == size // 32  # 32x down in all: 3 x 3 at 96 px, 7 x 7 at 224 px


def test_mobilenetv3_has_squeeze_excitation_and_hard_swish() -> None:
    model = build_model(parse_arch("mobilenetv3(width=0.5)", in_channels=3))
    kinds = {type(m) for m in model.modules()}
    assert SqueezeExcite in kinds and torch.nn.Hardswish in kinds
    assert SqueezeExcite not in {type(m) for m in build_model(parse_arch("mobilenetv3(se=false)")).modules()}


def test_efficientnet_lite_has_no_squeeze_excitation_and_uses_relu6() -> None:
    model = build_model(parse_arch("efficientnet(width=0.5,depth=0.5)", in_channels=3))
    kinds = {type(m) for m in model.modules()}
    assert MBConv in kinds and torch.nn.ReLU6 in kinds
    assert SqueezeExcite not in kinds and torch.nn.Hardswish not in kinds


@pytest.mark.parametrize(
    "smaller, larger",
    [
        ("mobilenetv3(width=0.5)", "mobilenetv3(width=1.0)"),
        ("mobilenetv3(width=0.5)", "mobilenetv3(width=0.5,depth=2)"),
        ("efficientnet(width=0.5,depth=0.5)", "efficientnet(width=0.5,depth=1.0)"),
        ("efficientnet(width=0.5,depth=0.5)", "efficientnet(width=1.0,depth=0.5)"),
        ("mobilenetv3(width=1.0)", "efficientnet(width=0.5,depth=0.5)"),
        ("resnet(width=8,stem_stride=4,stages=4)", "resnet(width=16,stem_stride=4,stages=4)"),
        ("mobilenet(width=0.5,stem_stride=2,stages=5)", "mobilenet(width=1.0,stem_stride=2,stages=5)"),
    ],
)
def test_flops_grow_with_width_depth_and_family(smaller: str, larger: str) -> None:
    assert _flops(smaller) < _flops(larger)


def test_flops_grow_with_resolution() -> None:
    ratio = _flops("mobilenetv3(width=0.5)", 224) / _flops("mobilenetv3(width=0.5)", 96)
    assert 4.0 < ratio < 7.0  # about (224 / 96)^2 = 5.4


def test_a_stride_2_stem_quarters_the_flops_of_the_stages() -> None:
    one = _flops("mobilenet(width=0.5)")
    two = _flops("mobilenet(width=0.5,stem_stride=2)")
    assert 3.0 < one / two < 4.5


def test_defaults_of_the_older_families_are_unchanged() -> None:
    # checkpoints and records depend on these: the new parameters default to the old architecture
    pinned = {"resnet": 77754, "resnet-m": 392242, "mobilenet-s": 6546, "mobilenet-m": 70842, "cnn-s": 15046}
    assert {a: count_params(build_model(parse_arch(a))) for a in pinned} == pinned
    for family in ("resnet", "mobilenet"):
        plain = build_model(parse_arch(f"{family}(width=16)"))
        explicit = build_model(parse_arch(f"{family}(width=16,stem_stride=1,stages=3)"))
        assert repr(plain) == repr(explicit)
        assert {k: v.shape for k, v in plain.state_dict().items()} == {
            k: v.shape for k, v in explicit.state_dict().items()
        }
    assert parse_arch("mobilenet(width=0.5)").label() == "mobilenet(width=0.5)"


@pytest.mark.parametrize("arch", ["resnet(stem_stride=3)", "mobilenetv3(stem_stride=8)", "mobilenet(stages=6)"])
def test_bad_edge_parameters_are_user_errors(arch: str) -> None:
    with pytest.raises(UserError):
        build_model(parse_arch(arch, in_channels=3))
