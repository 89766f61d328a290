"""The comparison's user-style teacher: built by `module:factory`, layers found by tracing, no zoo names."""

from __future__ import annotations

import numpy as np
import torch

from benchmarks import kd_comparison as kdc
from edgekd.data.datasets import Dataset
from edgekd.distill.methods import candidate_layers
from edgekd.models import build_model, parse_arch

ARCH = "benchmarks.user_models:wide_convnet"


def test_it_is_built_as_a_user_model_with_none_of_the_zoo_names() -> None:
    spec = parse_arch(ARCH, in_channels=1, num_classes=10)
    model = build_model(spec)
    assert spec.is_user and model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    names = [name for name, _ in model.named_modules()]
    assert not [n for n in names if n.split(".")[-1].startswith(("stage", "pool", "head"))]
    assert [name for name, _ in model.named_children()][-1] != "classifier"  # the classifier is not last
    assert sum(p.numel() for p in model.parameters()) < 60_000


def test_its_layers_and_penultimate_representation_are_found_by_tracing() -> None:
    model = build_model(parse_arch(ARCH))
    layers = candidate_layers(model, (1, 28, 28))
    assert layers[-1] == "classifier:in" and all(layer.startswith("features.") for layer in layers[:-1])
    x, y = np.zeros((5, 1, 28, 28), dtype=np.uint8), np.arange(5) % 2
    data = Dataset(x, y, classes=("a", "b"), name="z")
    assert kdc.features(model, data).shape == (5, 128)
