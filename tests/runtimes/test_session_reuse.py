"""Sessions reuse their bindings when the same input array comes back (the timing loop), and still give
correct results: a kept result survives the next run, and an array changed in place is read afresh."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgekd.bench.null_model import write_null_onnx
from edgekd.config import Precision, Runtime
from edgekd.runtimes import Artifact, get_runtime

SHAPE = (1, 8, 8)
RUNTIMES = [Runtime.ONNXRUNTIME.value, Runtime.OPENVINO.value]


@pytest.fixture
def session(request: pytest.FixtureRequest, tmp_path: Path) -> object:
    runtime = request.param
    adapter = get_runtime(runtime, require=False)
    if not adapter.is_available():
        pytest.skip(f"{runtime} is not installed on this machine")
    path = write_null_onnx(tmp_path / "null.onnx", SHAPE, classes=5)  # y = the first 5 values of each image
    return adapter.load(Artifact(runtime, Precision.FP32.value, path, SHAPE, threads=1))


def expected(x: np.ndarray) -> np.ndarray:
    return x.reshape(len(x), -1)[:, :5]


@pytest.mark.parametrize("session", RUNTIMES, indirect=True)
def test_same_array_again_gives_the_same_correct_result(session: object) -> None:
    x = np.random.default_rng(0).random((3, *SHAPE), dtype=np.float32)
    first = session.run(x)  # type: ignore[attr-defined]
    again = session.run(x)  # type: ignore[attr-defined]
    np.testing.assert_array_equal(first, expected(x))
    np.testing.assert_array_equal(again, expected(x))
    x *= 2  # changed in place: the bound input shares its memory, so the next run reads the new values
    np.testing.assert_array_equal(session.run(x), expected(x))  # type: ignore[attr-defined]


@pytest.mark.parametrize("session", RUNTIMES, indirect=True)
def test_results_of_other_arrays_survive_later_runs(session: object) -> None:
    rng = np.random.default_rng(1)
    inputs = [rng.random((n, *SHAPE), dtype=np.float32) for n in (2, 2, 4, 2)]
    kept = [session.run(x) for x in inputs]  # type: ignore[attr-defined]
    for x, got in zip(inputs, kept, strict=True):
        np.testing.assert_array_equal(got, expected(x))


@pytest.mark.parametrize("session", RUNTIMES, indirect=True)
def test_inputs_that_need_converting_are_read_each_time(session: object) -> None:
    base = np.random.default_rng(2).random((4, *SHAPE), dtype=np.float32)
    x = base[::2]  # not contiguous: the runtime gets a copy, never the array itself
    for _ in range(2):
        np.testing.assert_array_equal(session.run(x), expected(x))  # type: ignore[attr-defined]
        base += 1
