"""Shared fixtures: a small real slice of Fashion-MNIST, and an isolated cache and store per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import numpy as np
import pytest

from edgekd.data.formats.fashion_mnist import data_dir


def pytest_configure(config: pytest.Config) -> None:
    # One torch thread: on a 2-core machine shared with the ONNX Runtime / OpenVINO worker processes
    # the tests start, two torch threads mostly wait on each other; one keeps test times steady.
    import torch

    torch.set_num_threads(1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not (data_dir() / "train-images-idx3-ubyte.gz").is_file():
        skip = pytest.mark.skip(reason="Fashion-MNIST missing: apt-get install -y dataset-fashion-mnist")
        for item in items:
            if "fmnist" in item.fixturenames:
                item.add_marker(skip)


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEKD_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("EDGEKD_STORE", raising=False)


@pytest.fixture(scope="session")
def fmnist_npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """800 real Fashion-MNIST training images (80 per class) and 200 test images, as one .npz."""
    from edgekd.data.formats import fashion_mnist

    train = fashion_mnist.load("train")
    picks = np.concatenate([np.flatnonzero(train.y == c)[:100] for c in range(10)])
    path = tmp_path_factory.mktemp("data") / "fmnist-slice.npz"
    np.savez(path, x=train.x[picks, 0], y=train.y[picks])
    return path


@pytest.fixture
def fmnist(fmnist_npz: Path) -> str:
    return str(fmnist_npz)


@pytest.fixture
def interrupted(monkeypatch: pytest.MonkeyPatch) -> Callable[[], AbstractContextManager[None]]:
    """`with interrupted(): train(...)`: the training inside stops with KeyboardInterrupt as its second epoch
    starts (the first epoch's checkpoint written), as Ctrl-C would; training after the block runs normally."""
    from edgekd.distill.trainer import Trainer

    real_epoch = Trainer._epoch

    def interrupt_second_epoch(self: Trainer, advance: Callable[[], None]) -> None:
        if self.epoch == 1:
            raise KeyboardInterrupt
        real_epoch(self, advance)

    @contextmanager
    def interrupting() -> Iterator[None]:
        with monkeypatch.context() as patch:
            patch.setattr(Trainer, "_epoch", interrupt_second_epoch)
            with pytest.raises(KeyboardInterrupt):
                yield

    return interrupting
