"""The how-to pages in docs/ as tests: each adds a toy one of its kind exactly as its page shows.

The code and YAML are read from the pages' fenced blocks, so the docs cannot drift from what runs. A
Python block is written to a module of its own (as a file in edgekd/ would be), imported so that it
registers, and removed again with the registry's entries afterwards.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch

from edgekd import api
from edgekd.bench import TimingConfig, benchmark
from edgekd.config import RUNTIMES, TrainConfig, load_target
from edgekd.data import load_data
from edgekd.data.formats import FORMATS
from edgekd.distill.losses import LOSSES
from edgekd.distill.task import DistillConfig
from edgekd.errors import UserError
from edgekd.export import export_onnx
from edgekd.models import load_model
from edgekd.registry import Registry
from edgekd.runtimes import get_runtime
from edgekd.select.screen import screen
from edgekd.select.space import load_space
from edgekd.store import Store

DOCS = Path(__file__).resolve().parents[1] / "docs"
FAST = TimingConfig(warmup_iters=2, warmup_s=0.01, min_iters=5, min_time_s=0.01)

Install = Callable[[str, Registry[Any], str], ModuleType]


def code_block(page: str, lang: str, index: int = 0) -> str:
    """The `index`-th fenced block of `lang` in docs/`page` (fences at the start of a line only)."""
    blocks = re.findall(rf"^```{lang}\n(.*?)^```$", (DOCS / page).read_text(), flags=re.S | re.M)
    assert len(blocks) > index, f"docs/{page} has no ```{lang} block number {index}"
    return str(blocks[index])


@pytest.fixture
def install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Install]:
    """Import a page's Python block as module `name`; its registry's entries come back afterwards."""
    folder = tmp_path / "plugins"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    # The bench worker is a fresh process: it imports the adapter's module from here too.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(folder), os.environ.get("PYTHONPATH")) if p))
    names: list[str] = []

    def load(page: str, registry: Registry[Any], name: str) -> ModuleType:
        registry.names()  # discovery first, so the copy below holds the built-in entries
        monkeypatch.setattr(registry, "_entries", dict(registry._entries))
        (folder / f"{name}.py").write_text(code_block(page, "python"))
        names.append(name)
        return importlib.import_module(name)

    yield load
    for name in names:
        sys.modules.pop(name, None)


def test_the_pages_exist_and_link() -> None:
    house = (DOCS / "house.md").read_text()
    for page in ("add-a-method.md", "add-a-runtime.md", "add-a-search-space.md", "add-a-data-format.md"):
        assert (DOCS / page).is_file() and f"({page})" in house


def test_add_a_method(install: Install, tmp_path: Path, fmnist: str) -> None:
    module = install("add-a-method.md", LOSSES, "docs_logit_mse")
    assert "logit-mse" in LOSSES.names()
    shifted = module.logit_mse(torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0, 4.0]]), center=True)
    assert float(shifted) == 0.0  # centred logits ignore a shift

    cfg = TrainConfig(epochs=1, batch_size=64, limit=240, seed=0, device="cpu")
    teacher = api.train_teacher("cnn-xs", fmnist, tmp_path / "t.pt", cfg, progress=False)
    task = DistillConfig(method="logit-mse", loss_params={"center": False})
    assert (task.ce_weight, task.kd_weight) == (0.5, 0.5)  # a new method's default weights
    result = api.distill(teacher.checkpoint, "cnn-xs", fmnist, tmp_path / "s.pt", cfg, task, progress=False)
    assert load_model(result.checkpoint)[2]["method"] == "logit-mse"
    assert np.isfinite(result.history[-1]["train_loss"])
    with pytest.raises(UserError, match="no loss parameter 'scale'.*center"):
        DistillConfig(method="logit-mse", loss_params={"scale": 2.0})


def test_add_a_runtime(install: Install, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime", reason="the page's adapter runs ONNX Runtime")
    install("add-a-runtime.md", RUNTIMES, "docs_ort_plain")
    profile_path = tmp_path / "cpu-ort-plain.yaml"
    profile_path.write_text(code_block("add-a-runtime.md", "yaml"))
    profile = load_target(str(profile_path))
    assert (profile.name, profile.runtime) == ("cpu-ort-plain", "ort-plain")

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 14 * 14, 5)).eval()
    onnx_path = export_onnx(model, (1, 16, 16), tmp_path / "model.onnx")
    adapter = get_runtime(profile.runtime)
    artifact = adapter.build(onnx_path, profile, tmp_path / "build")
    x = np.random.default_rng(0).random((3, 1, 16, 16), dtype=np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(adapter.load(artifact).run(x), expected, atol=1e-4)

    result = benchmark(artifact, timing=FAST)  # in the bench worker's own process
    assert result["fingerprint"]["runtime"] == "ort-plain" and result["latency_ms"]["p50"] > 0

    profile_path.write_text(profile_path.read_text().replace("ort-plain", "ort-nothing"))
    with pytest.raises(UserError, match=r"unknown runtime 'ort-nothing'; known: .*ort-plain"):
        load_target(str(profile_path))


def test_add_a_search_space(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime", reason="screening measures on ONNX Runtime")
    path = tmp_path / "tiny-cnn.yaml"
    path.write_text(code_block("add-a-search-space.md", "yaml"))
    space = load_space(path)
    candidates = space.candidates()
    assert space.name == "tiny-cnn" and len(candidates) == 6
    assert all(c.params <= 20000 and c.input_shape == (1, 28, 28) for c in candidates)

    screening = screen(
        candidates[:2], load_target("cpu-ort-fp32"), 1e3, tmp_path / "work", Store(tmp_path / "s.sqlite"), FAST
    )
    assert screening.met and all(row.measured_ms is not None for row in screening.rows)

    path.write_text(path.read_text().replace("family: cnn", "family: cnnn"))
    with pytest.raises(UserError, match="unknown family 'cnnn'; known: .*cnn"):
        load_space(path)


def test_add_a_data_format(install: Install, tmp_path: Path, fmnist_npz: Path) -> None:
    module = install("add-a-data-format.md", FORMATS, "docs_csv_pixels")
    assert "csv-pixels" in FORMATS.names()
    with np.load(fmnist_npz) as f:
        x, y = f["x"][::5], f["y"][::5]  # 200 images, every class
    csv = tmp_path / "fashion.csv"
    header = ",".join(["label", *(f"pixel{i}" for i in range(28 * 28))])
    rows = [",".join(map(str, [label, *image.ravel()])) for label, image in zip(y, x, strict=True)]
    csv.write_text("\n".join([header, *rows]) + "\n")

    read = module.load(csv)
    assert np.array_equal(read.x, x[:, None]) and np.array_equal(read.y, y) and read.num_classes == 10
    split = load_data(str(csv), val_fraction=0.2, seed=0)
    assert split.train.input_shape == (1, 28, 28) and (len(split.train), len(split.val)) == (160, 40)
    assert split.info["test"] == "val"

    csv.write_text("3,1,2,3\n")
    with pytest.raises(UserError, match="square image"):
        load_data(str(csv))
