"""The teacher-output cache: round trip and fp16 error, keyed by teacher hash, atomic builds, augmentation
fallback, and distillation with the cache against the live teacher (same student within fp16 error)."""

from __future__ import annotations

import json
import os
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from edgekd import api
from edgekd.config import TrainConfig
from edgekd.distill.cache import (
    CacheBuilder,
    CachedTeacher,
    CacheKey,
    open_cache,
    read_rows,
    sweep_stale,
    weights_hash,
)
from edgekd.distill.task import DistillConfig
from edgekd.models import build_model, load_model, parse_arch
from edgekd.store import Store

N = 40
FP16_REL = 2.0**-11  # float16's largest relative rounding error (round to nearest)


def key(teacher: str = "a" * 64) -> CacheKey:
    return CacheKey(teacher, "data", ("logits", "stage1"))


def fake_taps(index: np.ndarray) -> dict[str, torch.Tensor]:
    """Outputs that are a function of the sample index, like a teacher's on fixed inputs."""
    gen = torch.Generator().manual_seed(0)
    table = torch.randn(N, 3, 4, 4, generator=gen) * 7
    return {"logits": table[index].flatten(1)[:, :10] * 3, "stage1": table[index]}


def build(folder: Path, k: CacheKey, batch: int = 16) -> dict[str, np.ndarray]:
    builder = CacheBuilder(folder, k, N)
    order = np.random.default_rng(0).permutation(N)
    for start in range(0, N, batch):
        builder.write(order[start : start + batch], fake_taps(order[start : start + batch]))
    assert builder.complete
    return builder.commit()


def test_round_trip_fp16_features_fp32_logits(tmp_path: Path) -> None:
    arrays = build(tmp_path / "c", key())
    assert arrays["stage1"].dtype == np.float16 and arrays["logits"].dtype == np.float32
    want = fake_taps(np.arange(N))
    assert np.array_equal(arrays["logits"], want["logits"].numpy())
    err = np.abs(arrays["stage1"].astype(np.float32) - want["stage1"].numpy())
    assert err.max() <= FP16_REL * np.abs(want["stage1"].numpy()).max()
    meta = json.loads((tmp_path / "c" / "meta.json").read_text())
    assert meta["taps"]["stage1"]["max_abs_err"] == pytest.approx(float(err.max()))
    assert meta["taps"]["logits"]["max_abs_err"] == 0.0


def test_rows_are_read_in_the_order_asked_and_widened_exactly(tmp_path: Path) -> None:
    arrays = build(tmp_path / "c", key())
    # every float16 bit pattern but NaNs, widened by torch, equals numpy's float32 of it
    every = np.arange(2**16, dtype=np.uint16).view(np.float16)
    every = every[~np.isnan(every)]
    wide = read_rows({"all": every[:, None]}, np.arange(len(every)), torch.device("cpu"))["all"]
    assert np.array_equal(wide.numpy()[:, 0], every.astype(np.float32))
    index = np.array([7, 3, 3, 39, 0])
    rows = read_rows(arrays, index, torch.device("cpu"))
    for tap, arr in arrays.items():
        assert rows[tap].dtype == torch.float32 and rows[tap].is_contiguous()
        assert np.array_equal(rows[tap].numpy(), np.asarray(arr[index], dtype=np.float32))


def test_values_beyond_fp16_range_stay_fp32(tmp_path: Path) -> None:
    builder = CacheBuilder(tmp_path / "c", key(), N)
    small, large = fake_taps(np.arange(20)), fake_taps(np.arange(20, N))
    large["stage1"] = large["stage1"] * 1e5
    builder.write(np.arange(20), small)
    builder.write(np.arange(20, N), large)  # overflows float16: the tap is promoted, earlier rows kept
    arrays = builder.commit()
    assert arrays["stage1"].dtype == np.float32 and np.isfinite(arrays["stage1"]).all()
    assert np.allclose(arrays["stage1"][:20], small["stage1"].numpy(), rtol=FP16_REL)
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["meta.json", "tap0.npy", "tap1.f32.npy"]


def test_a_cache_of_another_teacher_is_detected_and_rebuilt(tmp_path: Path) -> None:
    folder = tmp_path / "c"
    build(folder, key("a" * 64))
    assert open_cache(folder, key("b" * 64), N) == (None, "was made for another teacher")
    assert open_cache(folder, key("a" * 64), N)[1] == "ok"
    teacher = CachedTeacher(fake_taps_by_input, folder, key("b" * 64), N)
    with ExitStack() as stack:
        teacher.open(stack)
        assert teacher.arrays is None
        run_epoch(teacher)
        assert teacher.arrays is not None  # rebuilt for teacher b and in use
    assert json.loads((folder / "meta.json").read_text())["key"]["teacher"] == "b" * 64


def test_weights_hash_sees_every_weight() -> None:
    model = build_model(parse_arch("cnn-xs"))
    before = weights_hash(model)
    with torch.no_grad():
        model.head.bias[0] += 1e-6
    assert weights_hash(model) != before and len(before) == 64


def fake_taps_by_input(x: torch.Tensor) -> dict[str, torch.Tensor]:
    """A 'teacher' that reads the sample index back from its input (see run_epoch)."""
    return fake_taps(x[:, 0].long().numpy() % N)


def run_epoch(teacher: CachedTeacher, stop_after: int | None = None, shift: int = 0) -> None:
    teacher.on_epoch()
    order = np.random.default_rng(1).permutation(N)
    for i, start in enumerate(range(0, N, 16)):
        if stop_after is not None and i == stop_after:
            raise KeyboardInterrupt
        index = order[start : start + 16]
        x = torch.tensor(index, dtype=torch.float32)[:, None] + shift
        got = teacher(x, index)
        assert torch.allclose(got["stage1"], fake_taps(index)["stage1"], rtol=1e-3, atol=1e-2)


def test_an_interrupted_build_is_never_reused(tmp_path: Path) -> None:
    folder = tmp_path / "c"
    teacher = CachedTeacher(fake_taps_by_input, folder, key(), N)
    with pytest.raises(KeyboardInterrupt), ExitStack() as stack:
        teacher.open(stack)
        run_epoch(teacher, stop_after=2)
    assert list(tmp_path.iterdir()) == []  # neither the cache nor its temporary folder remain


@pytest.mark.parametrize("damage", ["truncate", "no-meta"])
def test_a_half_written_cache_is_rebuilt(tmp_path: Path, damage: str) -> None:
    folder = tmp_path / "c"
    build(folder, key())
    if damage == "truncate":
        path = folder / "tap1.npy"
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        (folder / "meta.json").unlink()
    arrays, reason = open_cache(folder, key(), N)
    assert arrays is None and reason.startswith(("is incomplete", "is unreadable"))
    teacher = CachedTeacher(fake_taps_by_input, folder, key(), N)
    with ExitStack() as stack:
        teacher.open(stack)
        run_epoch(teacher)
    assert open_cache(folder, key(), N)[1] == "ok"


def test_stale_temporary_folders_are_swept(tmp_path: Path) -> None:
    folder = tmp_path / "c"
    dead = tmp_path / f".c.{2**22 + 12345}.abcd.tmp"  # above Linux's default pid_max: never alive
    mine = tmp_path / f".c.{os.getpid()}.abcd.tmp"
    dead.mkdir()
    mine.mkdir()
    sweep_stale(folder)
    assert not dead.exists() and mine.exists()


def test_changed_inputs_fall_back_to_the_live_teacher(tmp_path: Path) -> None:
    teacher = CachedTeacher(fake_taps_by_input, tmp_path / "c", key(), N)
    with ExitStack() as stack:
        teacher.open(stack)
        run_epoch(teacher)
        assert teacher.on_epoch() == {"teacher_cached": 1.0}
        with pytest.raises(AssertionError):
            run_epoch(teacher, shift=1)  # 'augmented' inputs: live outputs, not the cached rows
        assert teacher.arrays is None and not teacher.enabled


def test_a_cache_that_cannot_be_written_falls_back_to_live(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    teacher = CachedTeacher(fake_taps_by_input, tmp_path / "file" / "c", key(), N)
    with ExitStack() as stack:
        teacher.open(stack)
        run_epoch(teacher)  # outputs are still right: they come from the live teacher
        run_epoch(teacher)
    assert not teacher.enabled and teacher.arrays is None


# ---- distillation with the cache ---------------------------------------------------------------

CFG = TrainConfig(epochs=2, batch_size=64, seed=3)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory, fmnist_npz: Path) -> Path:
    out = tmp_path_factory.mktemp("teacher") / "t.pt"
    api.train_teacher("cnn-s", str(fmnist_npz), out, TrainConfig(epochs=1, seed=0), progress=False)
    return out


TASK = {"method": "pkt", "pairs": "stage1:stage1,stage3:stage3,pool:pool"}  # logits and three feature taps


def distil(teacher: Path, data: str, out: Path, cache: bool, resume: bool = False) -> list[dict[str, float]]:
    return api.distill(
        teacher, "cnn-xs", data, out, CFG, DistillConfig(**TASK, cache=cache), resume=resume, progress=False
    ).history


def test_cached_distillation_matches_the_live_teacher(teacher: Path, fmnist: str, tmp_path: Path) -> None:
    live = distil(teacher, fmnist, tmp_path / "live.pt", cache=False)
    cached = distil(teacher, fmnist, tmp_path / "cached.pt", cache=True)
    assert [r["teacher_cached"] for r in cached] == [0.0, 1.0]
    # epoch 1 runs the teacher live in both runs: bitwise equal
    assert cached[0]["train_loss"] == live[0]["train_loss"]
    # epoch 2 reads the cache: float16 features (rounding <= 2^-11 relative) move the result slightly
    assert cached[1]["train_loss"] == pytest.approx(live[1]["train_loss"], rel=1e-4)
    a, b = load_model(tmp_path / "live.pt")[0].state_dict(), load_model(tmp_path / "cached.pt")[0].state_dict()
    assert max(float((a[k].float() - b[k].float()).abs().max()) for k in a) < 1e-4
    # a second student from the same teacher, data and taps reuses the cache from its first epoch
    again = distil(teacher, fmnist, tmp_path / "again.pt", cache=True)
    assert [r["teacher_cached"] for r in again] == [1.0, 1.0]


def test_resume_with_the_cache_is_exact(
    teacher: Path, fmnist: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, interrupted: Any
) -> None:
    straight = distil(teacher, fmnist, tmp_path / "a.pt", cache=True)
    monkeypatch.setenv("EDGEKD_CACHE", str(tmp_path / "other-cache"))  # build the cache afresh
    with interrupted():
        distil(teacher, fmnist, tmp_path / "b.pt", cache=True)
    resumed = distil(teacher, fmnist, tmp_path / "b.pt", cache=True, resume=True)
    assert resumed == [{**r, "epoch_s": s["epoch_s"]} for r, s in zip(straight, resumed, strict=True)]
    a, b = load_model(tmp_path / "a.pt")[0].state_dict(), load_model(tmp_path / "b.pt")[0].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    run_id = load_model(tmp_path / "b.pt")[2]["run_id"]
    cached = [m["value"] for m in Store(tmp_path / "edgekd.sqlite").metrics(run_id) if m["name"] == "teacher_cached"]
    assert cached == [0.0, 1.0]


def test_least_recently_used_caches_are_evicted_past_the_size_limit(tmp_path: Path) -> None:
    from edgekd.distill.cache import evict

    folders = [tmp_path / name for name in ("old", "mid", "new")]
    for age, (folder, teacher) in enumerate(zip(folders, "abc", strict=True)):
        build(folder, key(teacher * 64))
        os.utime(folder / "meta.json", (1000.0 + age, 1000.0 + age))
    (tmp_path / ".x.123.tmp").mkdir()  # a build in progress is not a cache: left alone
    one = sum(f.stat().st_size for f in folders[0].iterdir())
    assert evict(tmp_path, keep=folders[0], limit=3 * one) == []  # within the limit: nothing goes
    # over it: the oldest goes first, but never the one just written (`keep`)
    assert evict(tmp_path, keep=folders[0], limit=2 * one) == [folders[1]]
    assert evict(tmp_path, keep=folders[0], limit=0) == [folders[2]]
    assert folders[0].is_dir() and (tmp_path / ".x.123.tmp").is_dir()


def test_opening_a_cache_marks_it_used_and_a_bad_limit_fails_before_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgekd.errors import UserError

    folder = tmp_path / "c"
    build(folder, key())
    os.utime(folder / "meta.json", (1000.0, 1000.0))
    cached = CachedTeacher(fake_taps, folder, key(), N)
    with ExitStack() as stack:
        cached.open(stack)
    assert (folder / "meta.json").stat().st_mtime > 1000.0
    monkeypatch.setenv("EDGEKD_CACHE_MAX_GB", "lots")
    with ExitStack() as stack, pytest.raises(UserError, match="EDGEKD_CACHE_MAX_GB='lots' is not a size"):
        CachedTeacher(fake_taps, folder, key(), N).open(stack)
