"""The built-in edge spaces load by name and hold ~20+ candidates of the four edge families."""

from __future__ import annotations

import pytest

from edgekd.select.space import load_space


@pytest.mark.parametrize("name, size, classes", [("edge96", 96, 10), ("edge224", 224, 1000)])
def test_edge_spaces_load_with_rgb_input_at_their_size(name: str, size: int, classes: int) -> None:
    space = load_space(name)
    candidates = space.candidates()
    assert len(candidates) >= 20
    assert {c.spec.family for c in candidates} == {"mobilenet", "mobilenetv3", "efficientnet", "resnet"}
    assert {c.input_shape for c in candidates} == {(3, size, size)}
    assert {c.spec.num_classes for c in candidates} == {classes}
    assert len({c.key for c in candidates}) == len(candidates)
    flops = sorted(c.flops for c in candidates)
    assert flops[-1] / flops[0] > 20  # a spread worth profiling: from tiny to ResNet-18-like
