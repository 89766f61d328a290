"""The bad-input corpus: every command, every kind of input. Each case must exit 2 with exactly one line
on stderr that names the problem (and the fix), no traceback, and leave nothing behind: no output folder,
no temporary file, no store row of a run that did not happen."""

from __future__ import annotations

import json
import pickle
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from edgekd import api
from edgekd.cli import cli
from edgekd.config import TrainConfig

USER_MODELS = """
import torch
from torch import nn

def good(num_classes=10, in_channels=1):
    return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes))

def boom(num_classes=10):
    raise ValueError("the factory's own bug")

def not_a_module():
    return 42
"""


@dataclass(frozen=True)
class Kit:
    """What the cases share, made once: a teacher, its export, a bundle of it, a small .npz."""

    teacher: Path
    export: Path
    bundle: Path
    npz: Path


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory, fmnist_npz: Path) -> Kit:
    root = tmp_path_factory.mktemp("kit")
    teacher = root / "t.pt"
    api.train_teacher("cnn-xs", str(fmnist_npz), teacher, TrainConfig(epochs=1, limit=200), progress=False)
    result = CliRunner().invoke(cli, ["export", str(teacher), "--target", "cpu-ort-fp32", "--out", str(root / "b")])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(cli, ["package", str(root / "b"), "--out", str(root / "bundle")])
    assert result.exit_code == 0, result.output
    return Kit(teacher, root / "b", root / "bundle", fmnist_npz)


def _tree(root: Path) -> set[str]:
    # a store's -wal and -shm files come and go with its connections (this test's own included)
    return {
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.relative_to(root).parts[0] not in ("cache", "__pycache__") and not p.name.endswith(("-wal", "-shm"))
    }


def _rows(root: Path) -> dict[str, int]:
    counts = {}
    for db in root.rglob("*.sqlite"):
        with sqlite3.connect(db) as conn:
            for table in ("runs", "metrics", "artifacts", "benchmarks"):
                counts[f"{db}:{table}"] = conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
    return counts


def check_fails_cleanly(ws: Path, args: list[str], *needles: str) -> str:
    """Run the CLI in `ws`; assert the contract; return the one line."""
    before, rows = _tree(ws), _rows(ws)
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    assert lines[0].startswith(("edgekd: error:", "Error:")), lines
    for needle in needles:
        assert needle.lower() in lines[0].lower(), lines[0]
    assert _tree(ws) == before, f"left behind: {sorted(_tree(ws) - before)}"
    assert _rows(ws) == rows
    return lines[0]


# ---- inputs the cases make -----------------------------------------------------------------------


def npz(ws: Path, name: str = "d.npz", n: int = 40, size: int = 28, **arrays: object) -> Path:
    path = ws / name
    data: dict[str, object] = {"x": np.zeros((n, size, size), np.uint8), "y": np.arange(n) % 10}
    data.update(arrays)
    np.savez(path, **data)  # type: ignore[arg-type]
    return path


def yaml_file(ws: Path, text: str, name: str = "f.yaml") -> Path:
    (ws / name).write_text(text)
    return ws / name


def dynamic_onnx(ws: Path, op: str = "Relu", domain: str = "") -> Path:
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 1, "h", "w"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 1, "h", "w"])
    node = helper.make_node(op, ["x"], ["y"], domain=domain)
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    model = helper.make_model(helper.make_graph([node], "g", [x], [y]), opset_imports=opsets)
    path = ws / f"{op}.onnx"
    onnx.save(model, path)
    return path


def fixed_onnx(ws: Path, op: str, domain: str) -> Path:
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 28, 28])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])
    node = helper.make_node(op, ["x"], ["y"], domain=domain)
    model = helper.make_model(
        helper.make_graph([node], "g", [x], [y]),
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(domain, 1)],
    )
    path = ws / "custom.onnx"
    onnx.save(model, path)
    return path


def image_folder(ws: Path, sizes: list[int], garbage: bool = False) -> Path:
    from PIL import Image

    root = ws / "imgs"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i, s in enumerate(sizes):
            Image.fromarray(np.zeros((s, s), np.uint8)).save(root / c / f"{i}.png")
    if garbage:
        (root / "a" / "broken.png").write_bytes(b"not a png at all")
    return root


def device_result(**changes: object) -> dict[str, object]:
    from edgekd.bundle import load_runner

    result: dict[str, object] = {
        "schema": load_runner().RESULT_SCHEMA,
        "kind": "bench",
        "run_id": "r1",
        "bundle_id": "not-this-bundle",
        "artifact": "model.ort.onnx",
        "artifact_sha256": "0" * 64,
        "latency_ms": {"p50": 1.0, "p90": 1.0, "p99": 1.0, "mean": 1.0, "std": 0.0},
        "batch": 1,
        "samples": 10,
        "throughput_per_s": 1000.0,
        "fingerprint": {"cpu_model": "x", "runtime": "onnxruntime", "precision": "fp32", "threads": 1},
    }
    result.update(changes)
    return result


def copy_tree(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


# ---- the cases: (name, build(ws, kit) -> args, needles) ---------------------------------------------

Case = tuple[str, Callable[[Path, Kit], list[str]], tuple[str, ...]]


def export(model: str | Path, ws: Path, *extra: str, target: str = "cpu-ort-fp32") -> list[str]:
    return ["export", str(model), "--target", target, "--out", str(ws / "out"), *extra]


def train(ws: Path, data: Path | str, arch: str = "cnn-xs", *extra: str) -> list[str]:
    return ["train-teacher", "--arch", arch, "--data", str(data), "--epochs", "1", "--out", str(ws / "t.pt"), *extra]


def distill(ws: Path, kit: Kit, *extra: str) -> list[str]:
    return [
        "distill",
        "--teacher",
        str(kit.teacher),
        "--student",
        "cnn-xs",
        "--data",
        str(kit.npz),
        "--epochs",
        "1",
        "--limit",
        "100",
        "--out",
        str(ws / "s.pt"),
        *extra,
    ]


def _truncated(ws: Path, kit: Kit) -> Path:
    (ws / "cut.pt").write_bytes(kit.teacher.read_bytes()[: kit.teacher.stat().st_size // 2])
    return ws / "cut.pt"


def _foreign_pickle(ws: Path) -> Path:
    (ws / "other.pt").write_bytes(pickle.dumps({"weights": [1, 2, 3], "owner": object()}))
    return ws / "other.pt"


def _other_arch(ws: Path, kit: Kit) -> Path:
    from edgekd.models import parse_arch
    from edgekd.models.checkpoint import FORMAT

    payload = torch.load(kit.teacher, weights_only=True)
    payload = {**payload, "format": FORMAT, "arch": parse_arch("mobilenet-s").model_dump()}
    torch.save(payload, ws / "mixed.pt")
    return ws / "mixed.pt"


def _plain_state_dict(ws: Path, kit: Kit) -> Path:
    torch.save(torch.load(kit.teacher, weights_only=True)["state_dict"], ws / "sd.pt")
    return ws / "sd.pt"


def _user(ws: Path, body: str = USER_MODELS) -> None:
    (ws / "usermods_bad.py").write_text(body)


def _tampered(ws: Path, kit: Kit) -> Path:
    bundle = copy_tree(kit.bundle, ws / "bundle")
    victim = bundle / "model.ort.onnx"
    victim.write_bytes(victim.read_bytes() + b"\0")
    (ws / "r.json").write_text(json.dumps(device_result()))
    return bundle


def _bundle_missing(ws: Path, kit: Kit) -> Path:
    bundle = copy_tree(kit.bundle, ws / "bundle")
    (bundle / "model.ort.onnx").unlink()
    (ws / "r.json").write_text(json.dumps(device_result()))
    return bundle


def _export_missing(ws: Path, kit: Kit) -> Path:
    folder = copy_tree(kit.export, ws / "b")
    (folder / "model.ort.onnx").unlink()
    return folder


CALIB_INT8 = ("--target", "cpu-ort-int8", "--calibration")

CASES: list[Case] = [
    # checkpoints
    ("ckpt-missing", lambda ws, k: distill(ws, k)[:2] + [str(ws / "no.pt")] + distill(ws, k)[3:], ("not found",)),
    ("ckpt-truncated", lambda ws, k: export(_truncated(ws, k), ws), ("not a readable edgekd checkpoint",)),
    ("ckpt-foreign-pickle", lambda ws, k: export(_foreign_pickle(ws), ws), ("not a readable edgekd checkpoint",)),
    ("ckpt-other-arch", lambda ws, k: export(_other_arch(ws, k), ws), ("do not fit",)),
    ("ckpt-plain-state-dict", lambda ws, k: export(_plain_state_dict(ws, k), ws), ("not an edgekd checkpoint",)),
    (
        "ckpt-random-bytes",
        lambda ws, k: (ws / "r.pt").write_bytes(b"\x80\x02junk" * 9) and export(ws / "r.pt", ws),
        ("not a readable",),
    ),
    (
        "ckpt-teacher-foreign",
        lambda ws, k: distill(ws, k)[:2] + [str(_foreign_pickle(ws))] + distill(ws, k)[3:],
        ("not a readable",),
    ),
    # ONNX and IR files
    (
        "onnx-corrupt-export",
        lambda ws, k: (ws / "m.onnx").write_bytes(b"\x08\x07garbage") and export(ws / "m.onnx", ws),
        ("onnx",),
    ),
    (
        "onnx-random-bench",
        lambda ws, k: (ws / "m.onnx").write_bytes(bytes(range(256)) * 4) and ["bench", str(ws / "m.onnx")],
        ("onnx",),
    ),
    ("onnx-dynamic-export", lambda ws, k: export(dynamic_onnx(ws), ws), ("--input-shape",)),
    ("onnx-dynamic-bench", lambda ws, k: ["bench", str(dynamic_onnx(ws))], ("--input-shape",)),
    ("onnx-unknown-op", lambda ws, k: export(fixed_onnx(ws, "Frobnicate", "com.example"), ws), ("Frobnicate",)),
    (
        "ir-corrupt-bench",
        lambda ws, k: (ws / "m.xml").write_text("<net><broken") and ["bench", str(ws / "m.xml")],
        ("m.xml",),
    ),
    ("ir-as-export-model", lambda ws, k: (ws / "m.xml").write_text("<net/>") and export(ws / "m.xml", ws), ("m.xml",)),
    # target profiles
    (
        "target-malformed",
        lambda ws, k: export(k.teacher, ws, target=str(yaml_file(ws, "runtime: [onnx\n"))),
        ("malformed YAML",),
    ),
    (
        "target-unknown-field",
        lambda ws, k: export(k.teacher, ws, target=str(yaml_file(ws, "runtime: onnxruntime\nspeed: 3\n"))),
        ("speed",),
    ),
    (
        "target-wrong-type",
        lambda ws, k: export(k.teacher, ws, target=str(yaml_file(ws, "runtime: onnxruntime\nthreads: many\n"))),
        ("threads",),
    ),
    (
        "target-impossible",
        lambda ws, k: export(k.teacher, ws, target=str(yaml_file(ws, "runtime: onnxruntime\nbatch: 0\n"))),
        ("batch",),
    ),
    (
        "target-unknown-runtime",
        lambda ws, k: export(k.teacher, ws, target=str(yaml_file(ws, "runtime: tflite\n"))),
        ("tflite",),
    ),
    ("target-a-list", lambda ws, k: export(k.teacher, ws, target=str(yaml_file(ws, "- a\n- b\n"))), ("mapping",)),
    ("target-unknown-name", lambda ws, k: export(k.teacher, ws, target="cpu-nothing"), ("unknown targets",)),
    # calibration recipes
    (
        "calib-malformed",
        lambda ws, k: export(
            k.teacher, ws, *CALIB_INT8[2:], str(yaml_file(ws, "dataset: [x\n")), target="cpu-ort-int8"
        ),
        ("malformed YAML",),
    ),
    (
        "calib-unknown-field",
        lambda ws, k: export(
            k.teacher,
            ws,
            "--calibration",
            str(yaml_file(ws, f"dataset: {k.npz}\nsamples: 64\ncolour: red\n")),
            target="cpu-ort-int8",
        ),
        ("colour",),
    ),
    (
        "calib-wrong-type",
        lambda ws, k: export(
            k.teacher,
            ws,
            "--calibration",
            str(yaml_file(ws, f"dataset: {k.npz}\nsamples: lots\n")),
            target="cpu-ort-int8",
        ),
        ("samples",),
    ),
    (
        "calib-impossible",
        lambda ws, k: export(
            k.teacher,
            ws,
            "--calibration",
            str(yaml_file(ws, f"dataset: {k.npz}\nsamples: 64\nval_fraction: 1.5\n")),
            target="cpu-ort-int8",
        ),
        ("val_fraction",),
    ),
    (
        "calib-missing-file",
        lambda ws, k: export(k.teacher, ws, "--calibration", str(ws / "none.yaml"), target="cpu-ort-int8"),
        ("not found",),
    ),
    # data
    ("data-empty-folder", lambda ws, k: (ws / "empty").mkdir() or train(ws, ws / "empty"), ("no class sub-folders",)),
    ("data-no-images", lambda ws, k: (ws / "e" / "a").mkdir(parents=True) or train(ws, ws / "e"), ("no images",)),
    ("data-unreadable-image", lambda ws, k: train(ws, image_folder(ws, [28], garbage=True)), ("broken.png",)),
    (
        "data-mixed-sizes-npz",
        lambda ws, k: train(
            ws, npz(ws, x=np.array([np.zeros((28, 28)), np.zeros((14, 14))], dtype=object), y=np.array([0, 1]))
        ),
        ("d.npz",),
    ),
    ("data-nan", lambda ws, k: train(ws, npz(ws, x=np.full((40, 28, 28), np.nan, np.float32))), ("NaN",)),
    ("data-labels-negative", lambda ws, k: train(ws, npz(ws, y=np.arange(40) % 10 - 1)), ("label",)),
    ("data-labels-beyond-classes", lambda ws, k: train(ws, npz(ws, classes=np.array(["a", "b"]))), ("label",)),
    ("data-too-few-for-split", lambda ws, k: train(ws, npz(ws, n=2)), ("2 samples",)),
    ("data-images-too-small", lambda ws, k: train(ws, npz(ws, size=2)), ("(1, 2, 2)", "at least 1 x 4 x 4")),
    (
        "data-student-too-small",
        lambda ws, k: [
            "train-teacher",
            "--arch",
            "cnn(width=4,depth=3)",
            "--data",
            str(npz(ws, size=1)),
            "--epochs",
            "1",
            "--out",
            str(ws / "t.pt"),
        ],
        ("(1, 1, 1)",),
    ),
    ("data-float-labels", lambda ws, k: train(ws, npz(ws, y=np.zeros(40, np.float32))), ("integer labels",)),
    ("data-not-a-zip", lambda ws, k: (ws / "d.npz").write_bytes(b"nope") and train(ws, ws / "d.npz"), ("cannot read",)),
    (
        "data-no-y",
        lambda ws, k: (np.savez(ws / "d.npz", x=np.zeros((4, 28, 28))), train(ws, ws / "d.npz"))[1],
        ("'y'",),
    ),
    ("data-missing", lambda ws, k: train(ws, ws / "nothing"), ("data not found",)),
    (
        "data-wrong-shape-distill",
        lambda ws, k: distill(ws, k)[:6] + [str(npz(ws, size=32))] + distill(ws, k)[7:],
        ("(1, 32, 32)",),
    ),
    # user models
    (
        "user-no-module",
        lambda ws, k: export("no_such_mod_xyz:net", ws, "--input-shape", "1,28,28"),
        ("cannot import", "no_such_mod_xyz"),
    ),
    ("user-no-module-no-shape", lambda ws, k: export("no_such_mod_xyz:net", ws), ("cannot import",)),
    (
        "user-no-factory",
        lambda ws, k: _user(ws) or export("usermods_bad:absent", ws, "--input-shape", "1,28,28"),
        ("no callable factory 'absent'",),
    ),
    (
        "user-factory-raises",
        lambda ws, k: _user(ws) or export("usermods_bad:boom", ws, "--input-shape", "1,28,28"),
        ("raised ValueError", "the factory's own bug"),
    ),
    (
        "user-not-a-module",
        lambda ws, k: _user(ws) or export("usermods_bad:not_a_module", ws, "--input-shape", "1,28,28"),
        ("not a torch.nn.Module",),
    ),
    (
        "user-import-fails",
        lambda ws, k: (
            (ws / "usermods_broken.py").write_text("raise RuntimeError('broken at import')")
            and train(ws, k.npz, "usermods_broken:good")
        ),
        ("broken at import",),
    ),
    # bundles and export folders
    ("bundle-tampered", lambda ws, k: ["ingest", str(ws / "r.json"), "--bundle", str(_tampered(ws, k))], ("sha256",)),
    (
        "bundle-missing-file",
        lambda ws, k: ["ingest", str(ws / "r.json"), "--bundle", str(_bundle_missing(ws, k))],
        ("model.ort.onnx",),
    ),
    (
        "package-missing-artifact",
        lambda ws, k: ["package", str(_export_missing(ws, k)), "--out", str(ws / "pkg")],
        ("missing",),
    ),
    ("package-not-an-export", lambda ws, k: ["package", str(ws), "--out", str(ws / "pkg")], ("not an export folder",)),
    # ingest files
    (
        "ingest-malformed-json",
        lambda ws, k: (
            (ws / "r.json").write_text("{not json") and ["ingest", str(ws / "r.json"), "--bundle", str(k.bundle)]
        ),
        ("not the JSON",),
    ),
    (
        "ingest-other-artifact",
        lambda ws, k: (
            (ws / "r.json").write_text(json.dumps(device_result()))
            and ["ingest", str(ws / "r.json"), "--bundle", str(k.bundle)]
        ),
        ("another artifact",),
    ),
    (
        "ingest-predict-output",
        lambda ws, k: (
            (ws / "r.json").write_text(json.dumps(device_result(kind="predict")))
            and ["ingest", str(ws / "r.json"), "--bundle", str(k.bundle)]
        ),
        ("run.py predict",),
    ),
    ("ingest-missing", lambda ws, k: ["ingest", str(ws / "none.json"), "--bundle", str(k.bundle)], ("not found",)),
    # distillation options, search spaces, ensembles, recipes, reports
    ("pairs-malformed", lambda ws, k: distill(ws, k, "--method", "pkt", "--pairs", "abc"), ("layer pair 'abc'",)),
    ("pairs-unknown-layer", lambda ws, k: distill(ws, k, "--method", "pkt", "--pairs", "nolayer:pool"), ("nolayer",)),
    (
        "space-malformed",
        lambda ws, k: [
            "select",
            "--teacher",
            str(k.teacher),
            "--space",
            str(yaml_file(ws, "families: [\n")),
            "--target",
            "cpu-ort-fp32",
            "--out",
            str(ws / "sel"),
        ],
        ("malformed YAML",),
    ),
    (
        "space-unknown",
        lambda ws, k: [
            "select",
            "--teacher",
            str(k.teacher),
            "--space",
            "nosuchspace",
            "--target",
            "cpu-ort-fp32",
            "--out",
            str(ws / "sel"),
        ],
        ("nosuchspace",),
    ),
    ("select-no-space", lambda ws, k: ["select", "--target", "cpu-ort-fp32", "--out", str(ws / "sel")], ("--space",)),
    (
        "ensemble-widths",
        lambda ws, k: [
            "ensemble",
            "--student",
            "cnn-xs",
            "--widths",
            "1.0,1.5",
            "--data",
            str(k.npz),
            "--out",
            str(ws / "ens"),
        ],
        ("widths",),
    ),
    (
        "ensemble-guide-alone",
        lambda ws, k: [
            "ensemble",
            "--student",
            "cnn-xs",
            "--guide",
            "kd",
            "--data",
            str(k.npz),
            "--out",
            str(ws / "ens"),
        ],
        ("--teacher",),
    ),
    ("recipe-malformed", lambda ws, k: ["run", str(yaml_file(ws, "name: [x\n", "r.yaml"))], ("line",)),
    (
        "recipe-incomplete",
        lambda ws, k: ["run", str(yaml_file(ws, "name: x\nwibble: 1\n", "r.yaml"))],
        ("required field missing",),
    ),
    ("report-no-store", lambda ws, k: (ws / "run").mkdir() or ["report", str(ws / "run")], ("run",)),
]


@pytest.mark.parametrize("name,build,needles", CASES, ids=[c[0] for c in CASES])
def test_bad_input(
    name: str,
    build: Callable[[Path, Kit], list[str]],
    needles: tuple[str, ...],
    kit: Kit,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    monkeypatch.chdir(ws)
    monkeypatch.syspath_prepend(str(ws))
    args = build(ws, kit)
    check_fails_cleanly(ws, args, *needles)


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= 40
