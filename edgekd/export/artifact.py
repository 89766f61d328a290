"""A model -> float ONNX -> runtime artifact for a target profile, verified at each step.

What it leaves in the output folder (the contract scripts rely on): `model.onnx` (the float ONNX),
the runtime's artifact, and `artifact.json` with `runtime`, `precision`, `artifact` (a file name in the
folder), `input_shape`, `parity` (torch -> ONNX and torch -> artifact) and `accuracy` along the chain
when labelled data is at hand.

An FP32 artifact must match the model (parity gate). A reduced-precision one (INT8, FP16) cannot, so it
is judged by accuracy instead: artifact.json's `quantization` block says how it was built, what stayed
in float, and whether the accuracy goal (`max_accuracy_drop` in the target's options) was met on the
validation split and on the test split. A missed goal still leaves the best artifact, with the reason.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from edgekd._io import write_json
from edgekd.config import Precision, TargetProfile
from edgekd.errors import ParityError, UserError
from edgekd.export.onnx import check_parity, export_onnx, load_onnx, onnx_input_shape
from edgekd.runtimes import Artifact, get_runtime

PARITY_SAMPLES = 1000


def _load_source(model: str, profile: TargetProfile) -> tuple[Any, tuple[int, int, int], dict[str, Any]]:
    """(torch module or None for an ONNX file, input shape C x H x W, metadata)."""
    path = Path(model)
    if path.suffix == ".onnx":
        load_onnx(path)
        # Dynamic C, H or W take the target's input_shape (or --input-shape); fixed ones must match it.
        return None, onnx_input_shape(path, profile.input_shape, f"target {profile.name}"), {"source": str(path)}
    if ":" in model and not path.exists():
        from edgekd.models import build_model, parse_arch

        parse_arch(model)  # no such module or factory: say so before asking for a shape
        if profile.input_shape is None:
            raise UserError(
                f"model {model!r} has no recorded input shape; pass --input-shape C,H,W"
                " or set input_shape: [C, H, W] in the target"
            )
        c, h, _ = profile.input_shape
        return (
            build_model(parse_arch(model, in_channels=c, image_size=h)).eval(),
            profile.input_shape,
            {"source": model},
        )
    if not path.exists():
        raise UserError(f"model not found: {model}; give an edgekd checkpoint, an .onnx file or module:factory")
    from edgekd.models import load_model

    module, spec, meta = load_model(path)
    shape = tuple(meta.get("input_shape") or (spec.in_channels, spec.image_size, spec.image_size))
    split = {k: v for k, v in (meta.get("split") or {}).items() if k in ("data", "split_seed", "val_fraction", "test")}
    return (
        module,
        shape,
        {
            "source": str(path),
            "arch": spec.label(),
            "data": meta.get("data"),
            "classes": meta.get("classes"),
            "test_acc_torch": meta.get("test_acc"),
            "split": split,
        },
    )


def _inputs(
    data: str | None, shape: tuple[int, int, int], trained: dict[str, Any] | None = None
) -> tuple[np.ndarray, np.ndarray | None, str]:
    """Real inputs (and labels) for the checks: images of `data` the model did not train on
    (`edgekd.data.evaluation_split`, from the split its checkpoint records), else seeded uniform noise."""
    if data is None:
        x = np.random.default_rng(0).random((64, *shape), dtype=np.float32)
        return x, None, "random"
    from edgekd.data import evaluation_split, to_float

    held_out, described = evaluation_split(data, trained)
    test = held_out.head(PARITY_SAMPLES)
    if test.input_shape != shape:
        raise UserError(
            f"data {data!r} has images of shape {test.input_shape} but the model takes {shape};"
            " use data of the model's shape"
        )
    return to_float(test.x), test.y, f"{described}, first {len(test)}"


def _agreement(reference: np.ndarray, got: np.ndarray) -> dict[str, float]:
    return {
        "max_abs_diff": float(np.abs(reference - got).max()),
        "top1_agreement": float((reference.argmax(1) == got.argmax(1)).mean()),
    }


def _accuracy(logits: np.ndarray, labels: np.ndarray | None) -> float | None:
    return None if labels is None else float((logits.argmax(1) == labels).mean())


def _float_onnx(
    model: str, profile: TargetProfile, out_dir: Path, data: str | None
) -> tuple[
    Any, tuple[int, int, int], dict[str, Any], Path, dict[str, Any] | None, tuple[np.ndarray, np.ndarray | None, str]
]:
    """`out_dir/model.onnx` from any MODEL, parity-checked against torch on real inputs when torch is the
    source: (module or None, C x H x W, metadata, ONNX path, parity, (inputs, labels, their description))."""
    module, shape, meta = _load_source(model, profile)
    if profile.input_shape is not None and tuple(profile.input_shape) != shape:
        raise UserError(
            f"target {profile.name} expects input {profile.input_shape} but the model takes {shape};"
            " fix input_shape in the target or use a matching model"
        )
    inputs = _inputs(data or meta.get("data"), shape, meta.get("split"))
    onnx_path = out_dir / "model.onnx"
    parity = None
    if module is None:
        if Path(model).resolve() != onnx_path.resolve():
            shutil.copyfile(model, onnx_path)
    else:
        export_onnx(module, shape, onnx_path)
        parity = check_parity(module, onnx_path, inputs[0]).to_json()
    return module, shape, meta, onnx_path, parity, inputs


def build_artifact(
    model: str,
    profile: TargetProfile,
    out_dir: Path,
    *,
    data: str | None = None,
    calibration: str | None = None,
    shift: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Export, build, verify; write `artifact.json` last (atomically), so its presence means success.
    `shift` (bench's shift request) adds accuracy per shifted domain for torch, ONNX and the artifact."""
    adapter = get_runtime(profile.runtime)  # a missing runtime fails before any work
    module, shape, meta, onnx_path, parity, (x, y, inputs_desc) = _float_onnx(model, profile, out_dir, data)
    reference = _run_onnx(onnx_path, x) if module is None else _run_torch(module, x)
    calibration = _calibration_for(profile, calibration, data or meta.get("data"), out_dir)
    update: dict[str, Any] = {"input_shape": shape, "calibration": calibration}
    artifact = adapter.build(onnx_path, profile.model_copy(update=update), out_dir)
    artifact_out = _run_batched(adapter.load(artifact), x)
    artifact_parity = _agreement(reference, artifact_out)
    if profile.precision is Precision.FP32 and (
        artifact_parity["max_abs_diff"] > 1e-3 or artifact_parity["top1_agreement"] < 0.999
    ):
        raise ParityError(
            f"{profile.runtime} FP32 artifact disagrees with the model: max abs diff"
            f" {artifact_parity['max_abs_diff']:.3g}, top-1 agreement"
            f" {artifact_parity['top1_agreement']:.4f}; report this with the model attached"
        )
    accuracy = {
        "torch": _accuracy(reference, y) if module is not None else None,
        "onnx": _accuracy(_run_onnx(onnx_path, x), y),
        "artifact": _accuracy(artifact_out, y),
    }
    info = _describe(
        artifact, profile, out_dir, meta, parity, artifact_parity, inputs_desc, accuracy, adapter.version(), calibration
    )
    if profile.precision is not Precision.FP32:
        info["quantization"] = _accuracy_gate(artifact.info.get("quantization") or {}, profile, accuracy)
    if shift:
        info.update(_shift_chain(module, onnx_path, adapter.load(artifact), data or meta.get("data"), meta, shift))
    write_json(out_dir / "artifact.json", info)
    return info


def _shift_chain(
    module: Any, onnx_path: Path, session: Any, data: str | None, meta: dict[str, Any], shift: dict[str, Any]
) -> dict[str, Any]:
    """Accuracy per shifted domain of torch, ONNX and the artifact (`edgekd.export.shift_chain`)."""
    from edgekd.data import evaluation_split
    from edgekd.export.shift_chain import score_chain, shift_sets

    if data is None:
        raise UserError("--shift and --domain score the model on shifted test data; give --data too")
    test = evaluation_split(data, meta.get("split"))[0].head(PARITY_SAMPLES)
    runners = {
        "torch": None if module is None else (lambda x: _run_torch(module, x)),
        "onnx": lambda x: _run_onnx(onnx_path, x),
        "artifact": lambda x: _run_batched(session, x),
    }
    corrupted = [f"{n}-{s}" for n, s in shift.get("corruptions") or []]
    return score_chain(shift_sets(test, shift, PARITY_SAMPLES), runners, corrupted)


def _calibration_for(profile: TargetProfile, calibration: str | None, data: str | None, out_dir: Path) -> str | None:
    """The recipe an INT8 build calibrates with: --calibration, else the profile's, else the default
    recipe's settings on the model's own data (written to out_dir/calibration.yaml, so it is on record)."""
    if profile.precision is not Precision.INT8:
        return None  # only INT8 builds calibrate
    name = calibration or profile.calibration
    if name is not None or data is None:
        return name  # None: the runtime falls back to the default recipe
    from edgekd.data.calibration import DEFAULT_RECIPE, load_recipe, recipe_for_data, write_recipe

    if data == load_recipe(DEFAULT_RECIPE).dataset:
        return DEFAULT_RECIPE
    spec = str(Path(data).resolve()) if Path(data).exists() else data  # the recipe may be read from elsewhere
    return str(write_recipe(recipe_for_data(spec), out_dir / "calibration.yaml"))


def _accuracy_gate(block: dict[str, Any], profile: TargetProfile, accuracy: dict[str, float | None]) -> dict[str, Any]:
    """Add the test-split check to a reduced-precision build's report: the drop from the float model, and
    the verdict against `max_accuracy_drop` (the validation verdict stands if it already failed)."""
    block = {"precision": profile.precision.value, **block}
    reference = accuracy["torch"] if accuracy["torch"] is not None else accuracy["onnx"]
    got = accuracy["artifact"]
    max_drop = profile.options.get("max_accuracy_drop")
    if max_drop is not None and not isinstance(max_drop, (int, float)):
        raise UserError(f"target {profile.name}: max_accuracy_drop must be a number like 0.01 (1 point)")
    if reference is None or got is None:
        return block
    drop = reference - got
    block["test"] = {"reference": reference, "artifact": got, "drop": drop}
    if max_drop is None:
        block.setdefault("goal_met", None)
    elif drop > float(max_drop) + 1e-9 and block.get("goal_met") is not False:
        block["goal_met"] = False
        block["reason"] = (
            f"{profile.precision.value} accuracy on the test split is {drop * 100:.2f} points below"
            f" the float model's (allowed {float(max_drop) * 100:.2f}); the artifact is written"
            " anyway. Raise max_accuracy_drop, calibrate on more samples, or use fp32"
        )
    else:
        block.setdefault("goal_met", True)
    return block


def _describe(
    artifact: Artifact,
    profile: TargetProfile,
    out_dir: Path,
    meta: dict[str, Any],
    parity: dict[str, Any] | None,
    artifact_parity: dict[str, float],
    inputs_desc: str,
    accuracy: dict[str, float | None],
    version: str,
    calibration: str | None,
) -> dict[str, Any]:
    # The quantization report gets its own top-level block (with the test check added), not a copy in info.
    info = {key: value for key, value in artifact.info.items() if key != "quantization"}
    return {
        **dataclasses.replace(artifact, info=info).to_json(),
        "artifact": artifact.path.relative_to(out_dir.resolve()).as_posix()
        if artifact.path.is_absolute()
        else artifact.path.as_posix(),
        "path": artifact.path.name,
        "onnx": "model.onnx",
        "target": profile.name,
        "batch": profile.batch,  # the batch `edgekd bench` measures by default
        "runtime_version": version,
        "parity": {
            "onnx": parity,
            "artifact": artifact_parity,
            "inputs": inputs_desc,
            "max_abs_diff": (parity or artifact_parity)["max_abs_diff"],
            "top1_agreement": (parity or artifact_parity)["top1_agreement"],
        },
        "accuracy": accuracy,
        "calibration": calibration,
        "model": meta,
        "input": {"dtype": "float32", "layout": "NCHW", "range": [0.0, 1.0], "normalisation": "inside the model"},
    }


def _run_batched(session: Any, x: np.ndarray, batch: int = 256) -> np.ndarray:
    return np.concatenate([session.run(np.ascontiguousarray(x[i : i + batch])) for i in range(0, len(x), batch)])


def _run_torch(module: Any, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        result: np.ndarray = module.eval()(torch.from_numpy(x)).numpy()
        return result


def _run_onnx(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime's own errors (Fail, InvalidGraph, NotImplemented) share no base
        reason = str(err).strip().splitlines()[0].split(" failed:")[-1][:200]
        raise UserError(
            f"ONNX Runtime cannot load the model ({reason}); export it with standard ONNX operators"
        ) from None
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: x[i : i + 256]})[0] for i in range(0, len(x), 256)])


def export_offline(model: str, profile: TargetProfile, out_dir: Path, *, data: str | None = None) -> dict[str, Any]:
    """For a TensorRT target on a host without TensorRT: the parity-checked ONNX plus what the device
    needs to build and measure it (`trtexec.sh`, the pre-check `trt_check.json`), described in
    `offline.json`. Nothing is built here, and nothing says it was."""
    from edgekd.config import Runtime
    from edgekd.runtimes.tensorrt import prepare_offline

    if profile.runtime != Runtime.TENSORRT:
        raise UserError(
            f"--offline prepares TensorRT targets only; {profile.name} uses {profile.runtime},"
            " which builds here: drop --offline"
        )
    _, shape, meta, onnx_path, parity, (_, _, inputs_desc) = _float_onnx(model, profile, out_dir, data)
    info = prepare_offline(onnx_path, profile.model_copy(update={"input_shape": shape}), out_dir)
    info.update(
        {
            "target": profile.name,
            "runtime": profile.runtime,
            "precision": profile.precision.value,
            "input_shape": list(shape),
            "built": False,
            "model": meta,
            "parity": {"onnx": parity, "inputs": inputs_desc},
        }
    )
    write_json(out_dir / "offline.json", info)
    return info
