from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgekd.data import load_data, to_float
from edgekd.data.formats import fashion_mnist
from edgekd.errors import UserError


def test_fashion_mnist_full_splits(fmnist: str) -> None:
    train, test = fashion_mnist.load("train"), fashion_mnist.load("test")
    assert train.x.shape == (60000, 1, 28, 28) and train.x.dtype == np.uint8
    assert test.x.shape == (10000, 1, 28, 28)
    assert np.bincount(train.y).tolist() == [6000] * 10
    assert train.classes[9] == "ankle boot"


def test_split_is_seeded_and_recorded(fmnist: str) -> None:
    a = load_data("fashion-mnist", seed=3, limit=1000)
    b = load_data("fashion-mnist", seed=3, limit=1000)
    c = load_data("fashion-mnist", seed=4, limit=1000)
    assert a.info["val_index_sha"] == b.info["val_index_sha"] != c.info["val_index_sha"]
    assert len(a.train) == 900 and len(a.val) == 100 and len(a.test) == 10000
    assert a.info["split_seed"] == 3 and a.info["limit"] == 1000
    assert not set(map(bytes, a.train.x[:50])) & set(map(bytes, a.val.x))


def test_npz_uses_val_as_test(fmnist_npz: Path) -> None:
    split = load_data(str(fmnist_npz), val_fraction=0.2)
    assert split.info["test"] == "val" and len(split.test) == 200 and len(split.train) == 800
    assert split.train.input_shape == (1, 28, 28)


def test_image_folder(tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for name in ("cat", "dog"):
            (tmp_path / split / name).mkdir(parents=True)
            for i in range(3):
                pixels = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(tmp_path / split / name / f"{i}.png")
    split = load_data(str(tmp_path), val_fraction=0.0 + 1 / 3)
    assert split.train.classes == ("cat", "dog")
    assert split.train.input_shape == (3, 16, 16) and len(split.test) == 6


def test_to_float_range() -> None:
    x = to_float(np.array([[[[0, 255]]]], np.uint8))
    assert x.dtype == np.float32 and x.tolist() == [[[[0.0, 1.0]]]]


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x": np.zeros((4, 28, 28), np.uint8)}, "lacks array"),
        ({"x": np.zeros((4, 28), np.uint8), "y": np.zeros(4, np.int64)}, "N x H x W"),
        ({"x": np.zeros((4, 28, 28), np.uint8), "y": np.zeros(3, np.int64)}, "make them match"),
        ({"x": np.full((2, 8, 8), np.nan, np.float32), "y": np.zeros(2, np.int64)}, "NaN"),
        ({"x": np.zeros((2, 8, 8), np.uint8), "y": np.array([0.5, 1.0])}, "integer labels"),
    ],
)
def test_bad_npz(tmp_path: Path, arrays: dict[str, np.ndarray], message: str) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(UserError, match=message):
        load_data(str(path))


def test_missing_data_names_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UserError, match="data file not found"):
        load_data(str(tmp_path / "nope.npz"))
    monkeypatch.setenv("EDGEKD_FASHION_MNIST", str(tmp_path))
    fashion_mnist.load.cache_clear()
    try:
        with pytest.raises(UserError, match="apt-get install -y dataset-fashion-mnist"):
            load_data("fashion-mnist")
    finally:
        fashion_mnist.load.cache_clear()


def test_data_without_a_test_split_is_scored_on_what_the_model_did_not_train_on(fmnist: str, tmp_path: Path) -> None:
    """A model trained on an .npz with --seed 3 is checked at export and benched on the seed-3 validation
    split (the images it never trained on), not on the default seed-0 one, which overlaps its training."""
    from edgekd import api
    from edgekd.config import TrainConfig
    from edgekd.data import evaluation_split

    split = load_data(fmnist, seed=3)
    held_out, described = evaluation_split(fmnist, split.info)
    assert np.array_equal(held_out.x, split.val.x) and "seed 3" in described
    assert not np.array_equal(evaluation_split(fmnist)[0].x, split.val.x)  # seed 0: another draw
    assert evaluation_split("fashion-mnist", split.info)[1] == "fashion-mnist (test split)"

    ckpt = tmp_path / "m.pt"
    api.train_teacher("cnn-xs", fmnist, ckpt, TrainConfig(epochs=1, seed=3), progress=False)
    info = api.export(str(ckpt), "cpu-ort-fp32", tmp_path / "build", data=fmnist)
    assert "seed 3" in info["parity"]["inputs"]
    result = api.bench(tmp_path / "build", data=fmnist, quick=True)
    assert "seed 3" in result["accuracy_on"] and result["accuracy_samples"] == len(split.val)
