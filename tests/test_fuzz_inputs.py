"""Property-based fuzzing of what users hand edgekd: target profiles, calibration recipes, search spaces,
`--pairs` strings and `.npz` data. Whatever the input, it loads or fails with a UserError (exit 2, one
line): never another exception."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from edgekd.errors import UserError

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


def documents(fields: list[str]) -> st.SearchStrategy[str]:
    """YAML texts: mappings of known and unknown fields to any values, or arbitrary text."""
    mapping = st.dictionaries(st.sampled_from(fields) | st.text(max_size=8), values, max_size=len(fields) + 1)
    return st.one_of(mapping.map(lambda d: yaml.safe_dump(d)), st.text(max_size=80))


def check_only_user_errors(load: Callable[[Path], Any], text: str, name: str = "f.yaml") -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_text(text)
        try:
            load(path)
        except UserError as err:
            assert str(err) and "\n" not in str(err).strip()


TARGET_FIELDS = [
    "name", "runtime", "device", "precision", "threads", "batch", "input_shape",
    "latency_budget_ms", "hint", "calibration", "options", "description",
]  # fmt: skip


@FUZZ
@given(
    documents(TARGET_FIELDS)
    | st.fixed_dictionaries(
        {"runtime": st.sampled_from(["onnxruntime", "openvino"])},
        optional={f: values for f in TARGET_FIELDS if f != "runtime"},
    ).map(lambda d: yaml.safe_dump(d))
)
def test_target_profiles(text: str) -> None:
    from edgekd.config import load_target

    check_only_user_errors(lambda p: load_target(str(p)), text)


RECIPE_FIELDS = ["dataset", "samples", "sampling", "seed", "split", "split_seed", "val_fraction", "validation_samples"]


@FUZZ
@given(documents(RECIPE_FIELDS))
def test_calibration_recipes(text: str) -> None:
    from edgekd.data.calibration import load_recipe

    check_only_user_errors(lambda p: load_recipe(str(p)), text)


family = st.fixed_dictionaries(
    {"family": st.sampled_from(["cnn", "mobilenet", "nope"]) | st.text(max_size=6)},
    optional={"width": st.lists(values, max_size=3) | values, "depth": st.lists(values, max_size=3) | values},
)


@FUZZ
@given(
    documents(["families", "image_size", "in_channels", "num_classes", "max_params", "name"])
    | st.fixed_dictionaries(
        {"families": st.lists(family | values, max_size=3)},
        optional={"image_size": values, "in_channels": values, "num_classes": values, "max_params": values},
    ).map(lambda d: yaml.safe_dump(d))
)
def test_search_spaces(text: str) -> None:
    from edgekd.select.space import load_space

    check_only_user_errors(lambda p: load_space(p).specs(), text)


@FUZZ
@given(st.text(alphabet=st.sampled_from("ab:,._ -=()0123456789stageoolp"), max_size=30) | st.text(max_size=20))
def test_pairs_strings(pairs: str) -> None:
    from edgekd.config import parse
    from edgekd.distill.task import DistillConfig

    try:
        parse(DistillConfig, {"method": "pkt", "pairs": pairs}, "distillation options")
    except UserError as err:
        assert "\n" not in str(err).strip()


dtypes = st.sampled_from([np.uint8, np.int16, np.int64, np.float32, np.float64, np.bool_])
shapes = st.lists(st.integers(min_value=0, max_value=6), min_size=0, max_size=5).map(tuple)


@FUZZ
@given(
    x=st.one_of(st.none(), dtypes.flatmap(lambda d: arrays(d, shapes))),
    y=st.one_of(st.none(), dtypes.flatmap(lambda d: arrays(d, shapes))),
    classes=st.one_of(st.none(), st.lists(st.text(min_size=1, max_size=4), max_size=4)),
)
def test_npz_inputs(x: np.ndarray | None, y: np.ndarray | None, classes: list[str] | None) -> None:
    from edgekd.data.load import load_data

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "d.npz"
        arrays_in = {k: v for k, v in {"x": x, "y": y}.items() if v is not None}
        if classes is not None:
            arrays_in["classes"] = np.array(classes)
        np.savez(path, **arrays_in)  # type: ignore[arg-type]
        try:
            split = load_data(str(path))
        except UserError as err:
            assert "\n" not in str(err).strip()
            return
        assert len(split.train) >= 1 and split.train.x.dtype == np.uint8


def test_npz_that_is_not_a_zip() -> None:
    from edgekd.data.load import load_data

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "d.npz"
        path.write_bytes(b"PK\x03\x04 not really")
        with pytest.raises(UserError):
            load_data(str(path))
