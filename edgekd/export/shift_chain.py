"""Accuracy under domain shift along the export chain: torch -> ONNX -> artifact on the same shifted sets.

`edgekd export --shift ...` scores each stage on seeded corruptions of the held-out images the export
checks on (`edgekd.data.shift`) and on user domains (`--domain NAME=PATH`), so an INT8 artifact that
loses more under shift than on clean data shows it beside the float model. The runners are the export's
own (passed in), so this module runs nothing of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

import numpy as np

from edgekd.data import Dataset, evaluation_split, to_float
from edgekd.data.domains import check_same_classes
from edgekd.data.shift import shifted
from edgekd.errors import UserError

Runner = Callable[[np.ndarray], np.ndarray]


def shift_sets(test: Dataset, request: Mapping[str, Any], limit: int) -> dict[str, Dataset]:
    """The request's domains ({"corruptions": [[name, severity], ...], "domains": {name: spec}, "seed"}):
    corruptions of `test` as NAME-SEVERITY, then user domains' held-out images, checked against `test`."""
    seed = int(request.get("seed") or 0)
    sets = {f"{n}-{s}": shifted(test, n, int(s), seed) for n, s in request.get("corruptions") or []}
    for name, spec in (request.get("domains") or {}).items():
        data = evaluation_split(spec)[0].head(limit)
        check_same_classes(test.classes, data, name)
        if data.input_shape != test.input_shape:
            raise UserError(
                f"domain {name!r} has images of shape {data.input_shape} but the model takes {test.input_shape};"
                " give images of the model's shape"
            )
        sets[name] = data
    return sets


def score_chain(
    sets: Mapping[str, Dataset], runners: Mapping[str, Runner | None], corrupted: Collection[str]
) -> dict[str, Any]:
    """{"shift": {domain: {stage: accuracy}}, "mean_corruption_error": {stage: mean of 1 - accuracy over
    the `corrupted` domains (not the user's), unnormalised}}; a stage whose runner is None scores None."""
    table: dict[str, dict[str, float | None]] = {}
    for name, data in sets.items():
        x = to_float(data.x)
        table[name] = {
            stage: None if run is None else float((run(x).argmax(1) == data.y).mean()) for stage, run in runners.items()
        }
    mce: dict[str, float | None] = {}
    for stage in runners:
        errors = [1.0 - v for n in corrupted if n in table and (v := table[n][stage]) is not None]
        mce[stage] = sum(errors) / len(errors) if errors else None
    return {"shift": table, "mean_corruption_error": mce}
