"""Deployment bundles: package an export, run the bundle's run.py (here and in a fresh venv), ingest."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgekd.bench import protocol
from edgekd.bench.protocol import BUNDLED_NAME, TimingConfig, fingerprint, sha256_file
from edgekd.bundle import PROTOCOL_SOURCE, RUNNER_SOURCE, ingest, load_runner, package
from edgekd.errors import UserError
from edgekd.store import Store

CLASSES = [f"class-{i}" for i in range(10)]
QUICK = TimingConfig(warmup_iters=2, warmup_s=0.0, min_iters=5, min_time_s=0.05)
runner = load_runner()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny cnn-xs exported for cpu-ort-fp32 and packaged; the store both were recorded in."""
    from edgekd import api
    from edgekd.models import build_model, parse_arch
    from edgekd.models.checkpoint import save_checkpoint

    root = tmp_path_factory.mktemp("bundle")
    rng = np.random.default_rng(0)
    np.savez(root / "data.npz", x=rng.integers(0, 256, (40, 28, 28), dtype=np.uint8), y=np.arange(40) % 10)
    spec = parse_arch("cnn-xs")
    save_checkpoint(root / "m.pt", build_model(spec), spec, {"classes": CLASSES, "input_shape": [1, 28, 28]})
    store = root / "edgekd.sqlite"
    api.export(str(root / "m.pt"), "cpu-ort-fp32", root / "export", data=str(root / "data.npz"), store=store)
    package(root / "export", root / "bundle", store=store, timing=QUICK)
    return {"root": root, "export": root / "export", "bundle": root / "bundle", "store": store}


def run_py(
    bundle: Path, *args: str, python: str = sys.executable, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [python, str(bundle / "run.py"), *args],
        capture_output=True,
        text=True,
        cwd=cwd or bundle,
        env=env,
        check=False,
        timeout=300,
    )


def reply(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, proc.stdout  # one JSON object, nothing else on stdout
    return dict(json.loads(lines[0]))


def edgekd_top1(export: Path, image: np.ndarray) -> int:
    """Top-1 of edgekd's own ONNX Runtime session on a 28 x 28 uint8 image."""
    from edgekd.bench import resolve_artifact
    from edgekd.data import to_float
    from edgekd.runtimes import get_runtime

    art = resolve_artifact(export)
    return int(get_runtime(art.runtime).load(art).run(to_float(image)[None, None]).argmax())


def write_pgm(path: Path, image: np.ndarray) -> None:
    h, w = image.shape
    path.write_bytes(b"P5\n# edgekd test\n%d %d\n255\n" % (w, h) + image.astype(np.uint8).tobytes())


# ---- package ------------------------------------------------------------------------------------


def test_package_writes_artifact_manifest_runner(built: dict[str, Path]) -> None:
    bundle = built["bundle"]
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert sorted(p.name for p in bundle.iterdir()) == sorted(
        ["manifest.json", "model.ort.onnx", "model.onnx", "null.onnx", "run.py", BUNDLED_NAME, "README.txt"]
    )
    assert (bundle / "run.py").read_bytes() == RUNNER_SOURCE.read_bytes()
    # the very file edgekd times with, its hash in the manifest
    assert (bundle / BUNDLED_NAME).read_bytes() == Path(protocol.__file__).read_bytes()
    assert manifest["protocol_sha256"] == sha256_file(PROTOCOL_SOURCE) == manifest["files"][BUNDLED_NAME]
    assert manifest["runtime"] == "onnxruntime" and manifest["precision"] == "fp32"
    assert manifest["artifact"] == "model.ort.onnx" and manifest["target"] == "cpu-ort-fp32"
    assert manifest["input"]["shape"] == [1, 28, 28] and manifest["input"]["normalisation"] == "inside the model"
    assert manifest["classes"] == CLASSES
    assert manifest["timing"] == QUICK.to_json()
    assert set(manifest["files"]) == {"model.ort.onnx", "model.onnx", "null.onnx", "run.py", BUNDLED_NAME, "README.txt"}
    assert manifest["null_model"] == "null.onnx"
    assert manifest["bundle_id"] == runner.manifest_id(manifest)
    [row] = Store(built["store"]).runs("package")
    assert row["name"] == manifest["bundle_id"]


def test_package_again_replaces_the_bundle_with_the_same_id(built: dict[str, Path], tmp_path: Path) -> None:
    first = package(built["export"], tmp_path / "b", store=tmp_path / "s.sqlite", timing=QUICK)
    (tmp_path / "b" / "stray.txt").write_text("left from before")
    second = package(built["export"], tmp_path / "b", store=tmp_path / "s.sqlite", timing=QUICK)
    assert (
        first["bundle_id"]
        == second["bundle_id"]
        == json.loads((built["bundle"] / "manifest.json").read_text())["bundle_id"]
    )
    assert not (tmp_path / "b" / "stray.txt").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging folders left


def test_package_refuses_bad_input(built: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(UserError, match="built for target cpu-ort-fp32.*not cpu-openvino-fp32"):
        package(built["export"], tmp_path / "b", target="cpu-openvino-fp32", store=tmp_path / "s.sqlite")
    with pytest.raises(UserError, match="not an export folder"):
        package(tmp_path, tmp_path / "b")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not an edgekd bundle"):
        package(built["export"], tmp_path / "busy", store=tmp_path / "s.sqlite")
    assert package(built["export"], tmp_path / "ok", target="cpu-ort-fp32", store=tmp_path / "s.sqlite")


# ---- run.py on this machine ----------------------------------------------------------------------


def test_verify_passes_and_catches_a_changed_byte(built: dict[str, Path], tmp_path: Path) -> None:
    assert reply(run_py(built["bundle"], "verify"))["verified"] is True
    copy = tmp_path / "copy"
    shutil.copytree(built["bundle"], copy)
    data = bytearray((copy / "model.ort.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / "model.ort.onnx").write_bytes(bytes(data))
    proc = run_py(copy, "verify")
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "model.ort.onnx does not match manifest.json" in proc.stderr
    (copy / "model.ort.onnx").write_bytes((built["bundle"] / "model.ort.onnx").read_bytes())
    manifest = json.loads((copy / "manifest.json").read_text())
    (copy / "manifest.json").write_text(json.dumps({**manifest, "threads": 3}))
    proc = run_py(copy, "bench")
    assert proc.returncode == 2 and "manifest.json was edited" in proc.stderr


def test_bench_prints_the_protocol_json(built: dict[str, Path]) -> None:
    result = reply(run_py(built["bundle"], "bench", "--threads", "1"))
    manifest = json.loads((built["bundle"] / "manifest.json").read_text())
    assert result["schema"] == runner.RESULT_SCHEMA and result["kind"] == "bench"
    assert result["bundle_id"] == manifest["bundle_id"]
    assert result["artifact_sha256"] == manifest["files"]["model.ort.onnx"]
    assert set(result["latency_ms"]) == {"p50", "p90", "p99", "mean", "std"}
    assert result["samples"] >= QUICK.min_iters and result["batch"] == 1 and result["timing"] == QUICK.to_json()
    expected = fingerprint("onnxruntime", metadata.version("onnxruntime"), "fp32", 1, 1, "cpu")
    assert result["fingerprint"] == expected  # host and device results carry the same fingerprint
    assert result["torch_loaded"] is False
    # the null model ran in the same rounds: its floor is below the model's typical round
    floor = result["floor"]
    assert floor["name"] == "null" and floor["rounds"] == result["rounds"]["rounds"]
    assert 0 < floor["median_ms"] < result["latency_ms"]["p50"] * 1.5


def test_predict_matches_edgekd_on_npy_pgm_and_png(built: dict[str, Path], tmp_path: Path) -> None:
    from PIL import Image

    image = np.random.default_rng(1).integers(0, 256, (28, 28), dtype=np.uint8)
    np.save(tmp_path / "x.npy", image)
    write_pgm(tmp_path / "x.pgm", image)
    Image.fromarray(image).save(tmp_path / "x.png")
    out = reply(run_py(built["bundle"], "predict", *(str(tmp_path / n) for n in ("x.npy", "x.pgm", "x.png"))))
    top1 = edgekd_top1(built["export"], image)
    tops = [p["top"] for p in out["predictions"]]
    assert [t[0]["index"] for t in tops] == [top1] * 3
    assert tops[0][0]["label"] == CLASSES[top1] and len(tops[0]) == 5
    assert tops[0] == tops[1] == tops[2]  # the same pixels give the same numbers whatever the format
    assert sum(t["probability"] for t in tops[0]) <= 1.0 + 1e-6


def test_predict_refuses_a_wrong_size(built: dict[str, Path], tmp_path: Path) -> None:
    np.save(tmp_path / "big.npy", np.zeros((32, 32), dtype=np.uint8))
    proc = run_py(built["bundle"], "predict", str(tmp_path / "big.npy"))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "32 x 32 pixels but the model takes 28 x 28" in proc.stderr


def test_pnm_reader_headers_and_depths(tmp_path: Path) -> None:
    image = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    write_pgm(tmp_path / "a.pgm", image)
    (tmp_path / "b.pgm").write_text("P2 4 3 255\n" + " ".join(map(str, image.ravel())) + "\n")
    (tmp_path / "c.pgm").write_bytes(b"P5 4 3 65535\n" + (image.astype(">u2") * 257).tobytes())
    rgb = np.stack([image, image // 2, image // 4], axis=-1)
    (tmp_path / "d.ppm").write_bytes(b"P6\n4 3\n255\n" + rgb.tobytes())
    grey = [runner.read_image(tmp_path / n, (1, 3, 4))[0][1] for n in ("a.pgm", "b.pgm", "c.pgm")]
    assert np.array_equal(grey[0], grey[1]) and np.allclose(grey[0], grey[2])
    colour = runner.read_image(tmp_path / "d.ppm", (3, 3, 4))[0][1]
    assert np.array_equal(colour[1], (image // 2).astype(np.float32) * np.float32(1 / 255))
    with pytest.raises(runner.BadInput, match="3 channel"):
        runner.read_image(tmp_path / "d.ppm", (1, 3, 4))


def test_openvino_bundle_carries_the_ir_weights(built: dict[str, Path], tmp_path: Path) -> None:
    pytest.importorskip("openvino", reason="openvino is not installed")
    from edgekd import api

    root = built["root"]
    api.export(
        str(root / "m.pt"),
        "cpu-openvino-fp32",
        tmp_path / "ov",
        data=str(root / "data.npz"),
        store=tmp_path / "s.sqlite",
    )
    manifest = package(tmp_path / "ov", tmp_path / "b", store=tmp_path / "s.sqlite", timing=QUICK)
    assert manifest["artifact_files"] == ["model.xml", "model.bin", "model.onnx"]
    image = np.random.default_rng(3).integers(0, 256, (28, 28), dtype=np.uint8)
    np.save(tmp_path / "x.npy", image)
    out = reply(run_py(tmp_path / "b", "predict", str(tmp_path / "x.npy")))
    assert out["predictions"][0]["top"][0]["index"] == edgekd_top1(tmp_path / "ov", image)
    bench = reply(run_py(tmp_path / "b", "bench", "--batch", "2"))
    assert bench["fingerprint"]["runtime_version"] == metadata.version("openvino") and bench["batch"] == 2
    assert bench["floor"]["name"] == "null" and bench["floor"]["median_ms"] > 0


def test_runner_parses_on_python_3_8() -> None:
    """Devices run old Pythons (JetPack 5 ships 3.8): the runner must not use newer syntax."""
    import ast

    for source, entry in ((RUNNER_SOURCE, "main"), (PROTOCOL_SOURCE, "measure")):
        tree = ast.parse(source.read_text(), feature_version=(3, 8))  # SyntaxError on newer syntax
        assert any(isinstance(node, ast.FunctionDef) and node.name == entry for node in tree.body)


# ---- ingest --------------------------------------------------------------------------------------


def bench_result(built: dict[str, Path], tmp_path: Path) -> Path:
    path = tmp_path / "results.json"
    path.write_text(run_py(built["bundle"], "bench", "--threads", "1").stdout)
    return path


def test_ingest_round_trip(built: dict[str, Path], tmp_path: Path) -> None:
    results = bench_result(built, tmp_path)
    store = tmp_path / "copy.sqlite"
    shutil.copyfile(built["store"], store)
    row = ingest(results, store)
    [record] = [b for b in Store(store).benchmarks() if b["id"] == row]
    sent = json.loads(results.read_text())
    assert record["result"]["source"] == "device" and record["result"]["run_id"] == sent["run_id"]
    assert record["artifact"] == str((built["export"] / "model.ort.onnx").resolve())  # beside host benchmarks
    assert record["p50_ms"] == sent["latency_ms"]["p50"] and record["runtime"] == "onnxruntime"
    with pytest.raises(UserError, match="already in the store"):
        ingest(results, store)
    # No --store: the store the bundle was packaged with, as the result says.
    assert ingest(bench_result(built, tmp_path), bundle=built["bundle"]) > 0


def test_ingest_refuses_results_of_another_artifact(built: dict[str, Path], tmp_path: Path) -> None:
    results = bench_result(built, tmp_path)
    sent = json.loads(results.read_text())
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**sent, "artifact_sha256": "0" * 64}))
    with pytest.raises(UserError, match="another artifact"):
        ingest(other, built["store"])
    other.write_text(json.dumps({**sent, "bundle_id": "feedfeedfeedfeed"}))
    with pytest.raises(UserError, match="store not found"):
        ingest(other, tmp_path / "missing.sqlite")
    Store(tmp_path / "empty.sqlite")
    with pytest.raises(UserError, match="does not know"):
        ingest(other, tmp_path / "empty.sqlite")
    assert ingest(other, built["store"]) > 0  # no record of that bundle, but the store knows its artifact
    with pytest.raises(UserError, match="not with bundle"):
        ingest(other, built["store"], bundle=built["bundle"])
    other.write_text(json.dumps({**sent, "kind": "predict"}))
    with pytest.raises(UserError, match="run.py bench"):
        ingest(other, built["store"])
    other.write_text(json.dumps({**sent, "latency_ms": {"p50": 1.0}}))
    with pytest.raises(UserError, match="malformed.*latency_ms"):
        ingest(other, built["store"])
    other.write_text("error: something\n" + results.read_text())
    with pytest.raises(UserError, match="stdout"):
        ingest(other, built["store"])


# ---- the runner's timing loop is edgekd's --------------------------------------------------------


def test_the_runner_times_with_the_bundled_protocol(built: dict[str, Path], tmp_path: Path) -> None:
    """The bundle's run.py imports the edgekd_protocol.py beside it: change that file and the runner's
    numbers change with it (and `verify` says the bundle was changed)."""
    bundle = tmp_path / "bundle"
    shutil.copytree(built["bundle"], bundle)
    marker = "\n\ndef measure(session, inputs, config=DEFAULT_TIMING):\n    raise SystemExit('bundled protocol ran')\n"
    with open(bundle / BUNDLED_NAME, "a") as f:
        f.write(marker)
    proc = run_py(bundle, "verify")
    assert proc.returncode == 2 and BUNDLED_NAME in proc.stderr
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"][BUNDLED_NAME] = sha256_file(bundle / BUNDLED_NAME)
    manifest["bundle_id"] = runner.manifest_id(manifest)
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    proc = run_py(bundle, "bench", "--threads", "1")
    assert "bundled protocol ran" in proc.stderr + proc.stdout


def test_runner_bad_timing_is_one_line_exit_2(built: dict[str, Path], tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(built["bundle"], bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["timing"] = {**manifest["timing"], "min_iters": 0}
    manifest["bundle_id"] = runner.manifest_id(manifest)
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    proc = run_py(bundle, "bench")
    assert proc.returncode == 2 and "min_iters" in proc.stderr and "Traceback" not in proc.stderr


# ---- a fresh venv with only numpy and the runtime ------------------------------------------------


def test_bundle_runs_in_a_fresh_venv_with_only_the_runtime(built: dict[str, Path], tmp_path: Path) -> None:
    # nothing of this process's Python paths may leak in (Ray, loaded by other tests, extends PYTHONPATH)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, env=env)
    python = str(venv / "bin" / "python")
    pins = [f"numpy=={metadata.version('numpy')}", f"onnxruntime=={metadata.version('onnxruntime')}"]
    pip = subprocess.run(
        [python, "-m", "pip", "install", "-q", *pins], capture_output=True, text=True, check=False, env=env
    )
    if pip.returncode != 0:
        pytest.skip(f"cannot install {' '.join(pins)} into a fresh venv here: {pip.stderr.strip()[-300:]}")
    probe = "import importlib.util as u; print([m for m in ('edgekd', 'torch', 'PIL') if u.find_spec(m)])"
    check = subprocess.run([python, "-c", probe], capture_output=True, text=True, cwd=built["bundle"], env=env)
    assert check.stdout.strip() == "[]", check.stdout  # only numpy and the runtime are there
    image = np.random.default_rng(2).integers(0, 256, (28, 28), dtype=np.uint8)
    np.save(tmp_path / "x.npy", image)
    write_pgm(tmp_path / "x.pgm", image)
    assert reply(run_py(built["bundle"], "verify", python=python, env=env))["verified"] is True
    bench = reply(run_py(built["bundle"], "bench", python=python, env=env))
    assert bench["samples"] >= QUICK.min_iters and bench["torch_loaded"] is False
    out = reply(
        run_py(built["bundle"], "predict", str(tmp_path / "x.npy"), str(tmp_path / "x.pgm"), python=python, env=env)
    )
    assert [p["top"][0]["index"] for p in out["predictions"]] == [edgekd_top1(built["export"], image)] * 2
    (tmp_path / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    proc = run_py(built["bundle"], "predict", str(tmp_path / "x.png"), python=python, env=env)
    assert proc.returncode == 2 and "needs Pillow" in proc.stderr
