"""Deployment bundles: `package` an export folder for its device, and `ingest` what was measured there.

A bundle is a folder holding the runtime artifact (with model.onnx), `manifest.json` (input, labels,
precision, timing settings, the sha256 of every file), `run.py` (a copy of scripts/edgekd_runner.py,
which needs only numpy and the runtime), `edgekd_protocol.py` (a copy of edgekd/bench/protocol.py, THE
timing loop the runner imports: host and device time with the very same file, whose sha256 the manifest
records as `protocol_sha256`) and `README.txt`. The file formats and the bundle id are defined
once, in the runner; this module loads that file to use them, so host and device cannot disagree.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType
from typing import Any

import edgekd
from edgekd._io import atomic_dir, write_json, write_text
from edgekd.bench import protocol, resolve_artifact
from edgekd.bench.null_model import NULL_RUNTIMES, write_null_onnx
from edgekd.bench.protocol import BUNDLED_NAME, DEFAULT_TIMING, TimingConfig, sha256_file
from edgekd.config import TargetProfile, load_target
from edgekd.errors import EdgekdError, UserError
from edgekd.runtimes import Artifact
from edgekd.store import Store, default_store

RUNNER_SOURCE = Path(__file__).resolve().parent / "_shipped" / "edgekd_runner.py"  # scripts/edgekd_runner.py
RUNNER_NAME = "run.py"
NULL_NAME = "null.onnx"  # the null model: the artifact's shapes, no compute (the device's per-call floor)
PROTOCOL_SOURCE = Path(protocol.__file__).resolve()
README_NAME = "README.txt"
_INSTALL = {
    "onnxruntime": "pip install numpy onnxruntime",
    "openvino": "pip install numpy openvino",
    "tensorrt": "TensorRT and numpy (JetPack ships them) plus: pip install cuda-python",
}


@functools.cache
def load_runner() -> ModuleType:
    """scripts/edgekd_runner.py as a module: the manifest and result formats, the bundle id."""
    if not RUNNER_SOURCE.is_file():
        raise EdgekdError(f"the device runner {RUNNER_SOURCE} is missing; reinstall edgekd")
    spec = importlib.util.spec_from_file_location("edgekd_runner", RUNNER_SOURCE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---- package --------------------------------------------------------------------------------------


def package(
    export_dir: Path,
    out: Path,
    target: str | None = None,
    *,
    store: Path | None = None,
    timing: TimingConfig = DEFAULT_TIMING,
) -> dict[str, Any]:
    """Write a bundle of the export folder `export_dir` at `out` (replacing an older bundle there).

    With `target`, the export must have been built for that profile. The bundle is built in a temporary
    folder beside `out` and renamed into place; the package is recorded in the store beside the export
    (or `store`), which `ingest` reads. Returns the manifest.
    """
    export_dir, out = Path(export_dir), Path(out)
    if export_dir.name == "artifact.json" and export_dir.is_file():
        export_dir = export_dir.parent
    if not (export_dir / "artifact.json").is_file():
        raise UserError(
            f"{export_dir} is not an export folder (no artifact.json); run"
            " `edgekd export MODEL --target PROFILE --out DIR` and package DIR"
        )
    art = resolve_artifact(export_dir)
    profile = _profile(art, target, export_dir)
    files = _artifact_files(art, export_dir.resolve())
    _check_out(out)
    store_path = Path(store) if store else default_store(export_dir)
    runner = load_runner()
    with atomic_dir(out) as tmp:
        for name in files:
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(export_dir / name, tmp / name)
        shutil.copyfile(RUNNER_SOURCE, tmp / RUNNER_NAME)
        shutil.copyfile(PROTOCOL_SOURCE, tmp / BUNDLED_NAME)
        write_text(tmp / README_NAME, _readme(art))
        null = _write_null(art, export_dir / files[-1], tmp)
        manifest = _manifest(art, profile, files, tmp, timing, store_path, runner.BUNDLE_SCHEMA, null)
        manifest["bundle_id"] = runner.manifest_id(manifest)
        write_json(tmp / runner.MANIFEST, manifest)
    Store(store_path).start_run("package", manifest["bundle_id"], {"bundle": str(out.resolve()), "manifest": manifest})
    return manifest


def _profile(art: Artifact, target: str | None, export_dir: Path) -> TargetProfile | None:
    """The target the export was built for; with `target`, it must be that profile, unchanged."""
    if target is None:
        try:
            return load_target(art.target) if art.target else None
        except UserError:  # built from a profile file that is not here: the artifact's settings stand
            return None
    profile = load_target(target)
    if profile.name != art.target:
        raise UserError(
            f"{export_dir} was built for target {art.target} ({art.runtime} {art.precision} on"
            f" {art.device}), not {profile.name} ({profile.runtime} {profile.precision.value} on"
            f" {profile.device}); run `edgekd export MODEL --target {target} --out DIR` and package DIR"
        )
    built = {
        "runtime": art.runtime,
        "precision": art.precision,
        "device": art.device,
        "threads": art.threads,
        "hint": art.hint,
        "input_shape": tuple(art.input_shape),
    }
    wanted = {
        "runtime": profile.runtime,
        "precision": profile.precision.value,
        "device": profile.device,
        "threads": profile.threads,
        "hint": profile.hint,
        "input_shape": tuple(profile.input_shape or art.input_shape),
    }
    changed = [f"{key} {built[key]} -> {wanted[key]}" for key in built if built[key] != wanted[key]]
    if changed:
        raise UserError(
            f"target {profile.name} changed since {export_dir} was built ({', '.join(changed)});"
            f" re-run `edgekd export MODEL --target {target} --out DIR` and package DIR"
        )
    return profile


def _artifact_files(art: Artifact, export_dir: Path) -> list[str]:
    """The files the device needs, relative to the export folder: the artifact (an IR with its .bin) and
    the float ONNX (kept so that a device can rebuild a TensorRT engine for its own GPU)."""
    paths = [art.path.resolve()]
    if art.path.suffix == ".xml":
        paths.append(art.path.with_suffix(".bin").resolve())
    onnx = export_dir / str(art.info.get("onnx") or "model.onnx")
    if onnx.is_file() and onnx.resolve() not in paths:
        paths.append(onnx.resolve())
    names = []
    for path in paths:
        if not path.is_file():
            raise UserError(f"{path} is missing from the export folder; re-run `edgekd export`")
        if not path.is_relative_to(export_dir):
            raise UserError(f"{export_dir}/artifact.json names {path}, outside the folder; re-run `edgekd export`")
        names.append(path.relative_to(export_dir).as_posix())
    return names


def _write_null(art: Artifact, onnx_path: Path, folder: Path) -> str | None:
    """Write the bundle's null model (`NULL_NAME`) for a runtime that reads ONNX as it is; its name, or None.

    The runner times it in rounds interleaved with the model, as `edgekd bench` does on the host, so the
    device's result carries its own per-call floor. The output width comes from the float ONNX."""
    if art.runtime not in NULL_RUNTIMES or onnx_path.suffix != ".onnx":
        return None
    import onnx

    dims = onnx.load(str(onnx_path), load_external_data=False).graph.output[0].type.tensor_type.shape.dim
    if len(dims) != 2 or not dims[1].HasField("dim_value"):
        return None  # not N x classes: no floor rather than a wrong one
    write_null_onnx(folder / NULL_NAME, tuple(art.input_shape), int(dims[1].dim_value))
    return NULL_NAME


def _check_out(out: Path) -> None:
    """`out` may be new, empty, or an older bundle (which is replaced); nothing else is overwritten."""
    if out.is_dir() and not any(out.iterdir()):
        return
    if out.exists():
        try:
            is_bundle = json.loads((out / "manifest.json").read_text()).get("schema") == load_runner().BUNDLE_SCHEMA
        except (OSError, ValueError, AttributeError):
            is_bundle = False
        if not is_bundle:
            raise UserError(f"{out} exists and is not an edgekd bundle; give --out a new or empty folder")


def _manifest(
    art: Artifact,
    profile: TargetProfile | None,
    files: list[str],
    folder: Path,
    timing: TimingConfig,
    store: Path,
    schema: str,
    null: str | None = None,
) -> dict[str, Any]:
    model = art.info.get("model") or {}
    described = art.info.get("input") or {}
    return {
        "schema": schema,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "edgekd_version": edgekd.__version__,
        "runtime": art.runtime,
        "runtime_version_built": art.info.get("runtime_version"),
        "precision": art.precision,
        "device": art.device,
        "threads": art.threads,
        "hint": art.hint,
        "batch": profile.batch if profile else 1,
        "target": art.target,
        "latency_budget_ms": profile.latency_budget_ms if profile else None,
        "input": {
            "shape": list(art.input_shape),
            "batch": "first dimension, N",
            "dtype": "float32",
            "layout": "NCHW",
            "range": [0.0, 1.0],
            "normalisation": "inside the model",
            **described,
        },
        "classes": model.get("classes"),
        "artifact": files[0],
        "artifact_files": files,
        "files": {
            name: sha256_file(folder / name)
            for name in sorted([*files, RUNNER_NAME, BUNDLED_NAME, README_NAME, *([null] if null else [])])
        },
        "null_model": null,
        "protocol_sha256": sha256_file(folder / BUNDLED_NAME),
        "timing": timing.to_json(),
        "export": {
            key: art.info.get(key)
            for key in ("parity", "accuracy", "quantization", "calibration")
            if art.info.get(key) is not None
        }
        | {"model": {k: model.get(k) for k in ("arch", "data")}},
        "exported_from": {
            "export_dir": str(art.path.parent),
            "artifact_path": str(art.path),
            "store": str(Path(store).resolve()),
        },
    }


def _readme(art: Artifact) -> str:
    shape = " x ".join(str(d) for d in art.input_shape)
    return (
        f"edgekd deployment bundle: {art.runtime} {art.precision} on {art.device}, input N x {shape} float32"
        " in [0, 1] (NCHW; normalisation is inside the model).\n\n"
        f"On the device, install only: {_INSTALL.get(art.runtime, art.runtime)}\n"
        "(Pillow is optional: predict reads .npy and PGM/PPM without it, PNG/JPEG with it.)\n\n"
        "  python run.py verify                  every file matches manifest.json (exit 2 if not)\n"
        "  python run.py bench > results.json    latency with edgekd's timing protocol (JSON)\n"
        "  python run.py predict IMAGE...        top-5 labels and probabilities (JSON)\n"
        "  python run.py --help                  all options\n\n"
        "Back on the host, add the device's latency to the results store:\n"
        "  edgekd ingest results.json\n"
    )


# ---- ingest ---------------------------------------------------------------------------------------


def ingest(results_json: Path, store: Path | None = None, *, bundle: Path | None = None) -> int:
    """Record the output of `run.py bench` in the store, marked `source: device`; returns its row id.

    The results must come from a bundle the store knows (recorded by `package`), from the bundle given,
    or from an artifact the store knows; their artifact sha256 must be that bundle's. Store: `store`,
    else EDGEKD_STORE, else the store the bundle was packaged with.
    """
    path = Path(results_json)
    result = _read_result(path)
    manifest = _bundle_manifest(Path(bundle)) if bundle is not None else None
    store_path = _ingest_store(store, result, manifest, path)
    if manifest is None and not store_path.is_file():
        raise UserError(
            f"store not found: {store_path}; name the store the bundle was packaged with (--store),"
            " or the bundle itself (--bundle DIR)"
        )
    db = Store(store_path)
    reference = manifest or _known_reference(db, result, path)
    _check_match(result, reference, path)
    run_id = result["run_id"]
    done = db.query("SELECT id FROM benchmarks WHERE json_extract(result, '$.run_id') = ?", (run_id,))
    if done:
        raise UserError(f"{path} is already in the store {db.path} (benchmark {done[0]['id']}); nothing to add")
    key = str((reference.get("exported_from") or {}).get("artifact_path") or result["artifact"])
    record = {
        **result,
        "source": "device",
        "bundle_artifact": result["artifact"],
        "artifact": key,
        "ingested": {"file": str(path.resolve()), "at": datetime.now(timezone.utc).isoformat()},
    }
    return db.log_benchmark(key, record)


def _read_result(path: Path) -> dict[str, Any]:
    runner = load_runner()
    how = "save only the stdout of `python run.py bench > results.json` on the device"
    try:
        result = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"results file not found: {path}; {how}") from None
    except (OSError, ValueError) as err:
        raise UserError(f"{path} is not the JSON that run.py prints ({err}); {how}") from None
    if not isinstance(result, dict) or result.get("schema") != runner.RESULT_SCHEMA:
        raise UserError(f"{path} is not an edgekd device result (schema {runner.RESULT_SCHEMA}); {how}")
    if result.get("kind") != "bench":
        raise UserError(f"{path} holds `run.py {result.get('kind')}` output; ingest reads what `run.py bench` prints")
    problems = _result_problems(result)
    if problems:
        raise UserError(f"{path} is malformed ({'; '.join(problems)}); measure again and {how}")
    return result


def _result_problems(result: dict[str, Any]) -> list[str]:
    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and v >= 0

    problems = [
        f"{key} must be text"
        for key in ("run_id", "bundle_id", "artifact", "artifact_sha256")
        if not isinstance(result.get(key), str) or not result.get(key)
    ]
    latency = result.get("latency_ms")
    if not isinstance(latency, dict) or not all(number(latency.get(k)) for k in ("p50", "p90", "p99", "mean", "std")):
        problems.append("latency_ms needs p50, p90, p99, mean and std in ms")
    for key in ("batch", "samples"):
        if not isinstance(result.get(key), int) or result[key] < 1:
            problems.append(f"{key} must be a whole number >= 1")
    if not number(result.get("throughput_per_s")):
        problems.append("throughput_per_s must be a number")
    fp = result.get("fingerprint")
    if not isinstance(fp, dict) or not all(k in fp for k in ("cpu_model", "runtime", "precision", "threads")):
        problems.append("fingerprint needs cpu_model, runtime, precision and threads")
    return problems


def _bundle_manifest(bundle: Path) -> dict[str, Any]:
    runner = load_runner()
    try:
        manifest: dict[str, Any] = runner.read_manifest(bundle)
        runner.verify(bundle, manifest)
    except runner.BadInput as err:
        raise UserError(str(err)) from None
    return manifest


def _ingest_store(store: Path | None, result: dict[str, Any], manifest: dict[str, Any] | None, path: Path) -> Path:
    if store is not None:
        return Path(store)
    if os.environ.get("EDGEKD_STORE"):
        return Path(os.environ["EDGEKD_STORE"])
    recorded = ((manifest or result).get("exported_from") or {}).get("store")
    if recorded and Path(recorded).is_file():
        return Path(recorded)
    where = (
        f"was packaged with the store {recorded}, which is not on this machine"
        if recorded
        else "does not say which store its bundle was packaged with"
    )
    raise UserError(f"{path} {where}; name the store with --store PATH")


def _known_reference(db: Store, result: dict[str, Any], path: Path) -> dict[str, Any]:
    """The manifest of the result's bundle as `package` recorded it, else an artifact with its sha256."""
    rows = db.query(
        "SELECT config FROM runs WHERE kind = 'package' AND name = ? ORDER BY id DESC", (result["bundle_id"],)
    )
    if rows:
        return dict(json.loads(rows[0]["config"])["manifest"])
    name = Path(result["artifact"]).name
    for row in db.query("SELECT path, runtime, precision FROM artifacts ORDER BY id DESC"):
        file = Path(row["path"])
        if file.name == name and file.is_file() and sha256_file(file) == result["artifact_sha256"]:
            return {
                "bundle_id": result["bundle_id"],
                "artifact": name,
                "files": {name: result["artifact_sha256"]},
                "runtime": row["runtime"],
                "precision": row["precision"],
                "exported_from": {"artifact_path": str(file)},
            }
    raise UserError(
        f"{path} comes from bundle {result['bundle_id']} (artifact sha256"
        f" {result['artifact_sha256'][:12]}...), which the store {db.path} does not know; ingest into"
        " the store it was packaged with (--store) or name the bundle (--bundle DIR)"
    )


def _check_match(result: dict[str, Any], reference: dict[str, Any], path: Path) -> None:
    """The result must come from the reference bundle, measuring that bundle's artifact as it was built."""
    if result["bundle_id"] != reference["bundle_id"]:
        raise UserError(
            f"{path} was measured with bundle {result['bundle_id']}, not with bundle"
            f" {reference['bundle_id']}: it comes from another artifact; ingest it with its own bundle"
        )
    expected = reference["files"].get(reference["artifact"])
    if result["artifact_sha256"] != expected:
        raise UserError(
            f"{path} measured an artifact with sha256 {result['artifact_sha256'][:12]}..., but bundle"
            f" {reference['bundle_id']}'s {reference['artifact']} has {str(expected)[:12]}...: the results"
            " come from another artifact (or were edited); measure again with this bundle's run.py"
        )
    fp = result["fingerprint"]
    for key in ("runtime", "precision"):
        if fp.get(key) != reference.get(key):
            raise UserError(
                f"{path} says {key} {fp.get(key)!r} but bundle {reference['bundle_id']} is"
                f" {reference.get(key)!r}; the file was edited: measure again with run.py bench"
            )
