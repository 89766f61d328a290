"""One row of a recipe run's table: a model built for a target (or its existing build) and benchmarked.

The build goes through `edgekd.export.run.export` and the measurement through `edgekd.bench`; a
finished row (same weights, target profile, data and timing, its artifact.json still there) is reused.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from edgekd._io import file_sha256, write_text
from edgekd.bench import bench_artifact, bench_artifacts
from edgekd.config import TargetProfile, load_target
from edgekd.export.run import export
from edgekd.recipes.schema import Recipe
from edgekd.recipes.stages import StageLog, data_key, stage_key
from edgekd.store import STORE_NAME
from edgekd.ui import console


def target_profile(recipe: Recipe, target: str) -> TargetProfile:
    """The target's profile, with the recipe's calibration when it names one."""
    profile = load_target(target)
    return profile if recipe.calibration is None else profile.model_copy(update={"calibration": recipe.calibration})


def profile_for(recipe: Recipe, target: str) -> str:
    """The target as stages take it: its name, or (when the recipe names a calibration) a copy of its
    profile with that calibration, written to WORKDIR/targets/, so students' builds calibrate alike."""
    if recipe.calibration is None:
        return target
    profile = target_profile(recipe, target)
    path = recipe.outputs.workdir / "targets" / f"{profile.name}.yaml"
    write_text(path, yaml.safe_dump(profile.model_dump(mode="json"), sort_keys=True))
    return str(path)


def measure_key(recipe: Recipe, checkpoint: Path, target: str, folder: Path) -> str:
    """What decides a row: the weights, the target profile, the data, the timing and the build folder."""
    profile = target_profile(recipe, target).model_dump(mode="json")
    shift = recipe.shift.request() if recipe.shift is not None else None
    parts = [file_sha256(checkpoint), profile, data_key(recipe.data), recipe.timing.value, str(folder)]
    return stage_key(*parts, *([shift] if shift else []))  # a recipe without shift keeps its old keys


def build_folder(recipe: Recipe, name: str, target: str) -> Path:
    return recipe.outputs.workdir / "build" / f"{name}-{target}"


def measured(
    log: StageLog, recipe: Recipe, entry: dict[str, Any], target: str, built: Path | None = None
) -> dict[str, Any]:
    """A model built for `target` (or its existing build `built`) and benchmarked, with its accuracy."""
    plain = {k: str(v) if isinstance(v, Path) else v for k, v in entry.items()}
    checkpoint = Path(entry["checkpoint"])
    folder = built or build_folder(recipe, entry["name"], target)
    key = measure_key(recipe, checkpoint, target, folder)
    stage = f"measure {entry['name']} on {target}"
    done = log.reuse(stage, key, folder / "artifact.json")
    if done is not None:
        console.print(f"[bold]{entry['name']}[/]: reusing the build and benchmark in {folder}")
        return {**done, **plain}
    row = _build_and_bench(recipe, plain, checkpoint, target, folder, built is None)
    log.record(stage, key, row)
    return row


def _build_and_bench(
    recipe: Recipe, plain: dict[str, Any], checkpoint: Path, target: str, folder: Path, build: bool
) -> dict[str, Any]:
    from edgekd.models import load_model
    from edgekd.models.zoo import count_params

    store = recipe.outputs.workdir / STORE_NAME
    module, _, meta = load_model(checkpoint)
    if build:
        console.print(f"[bold]{plain['name']}[/]: export + build for {target}, then bench")
        info = export(str(checkpoint), profile_for(recipe, target), folder, data=recipe.data, store=store)
    else:
        info = json.loads((folder / "artifact.json").read_text())
    if recipe.shift is None:
        bench = bench_artifact(folder, data=recipe.data, quick=recipe.quick, store=store)
    else:  # the same protocol, plus accuracy per shifted domain and the mean corruption error
        shift = recipe.shift.request()
        bench = bench_artifacts([folder], data=recipe.data, quick=recipe.quick, store=store, shift=shift)
    return {
        **plain,
        "target": target,
        "params": count_params(module),
        "test_acc_torch": meta["test_acc"],
        "artifact": info,
        "bench": bench,
    }
