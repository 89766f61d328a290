"""Comparing models: all measured in one run, in interleaved rounds, beside a null model.

A single timed block says little on a shared machine (on a noisy 2-core host one model's p50 moves by
up to 2.5x from one block to the next), so models that are compared are measured together:

- One warm worker process per model (`edgekd.bench.worker --serve`). The artifact loads once and no
  process starts between rounds, so a round costs only its short warm-up and timed block; each
  runtime's thread pool still lives in a process of its own, never beside another model's or torch's.
  A worker waits blocked on its pipe between rounds; a pool that spins for a moment after its last run
  does so during the next model's warm-up, not its timed block.
- Rounds interleaved (`protocol.interleaved_rounds`): every round times each model once, in an order
  rotated by one per round (or shuffled), so whatever drifts on the machine (other jobs, clocks,
  caches) hits every model alike instead of the one that happened to run during it.
- Every latency is the median of the per-round p50s with a 95% bootstrap CI over rounds, the rounds'
  spread and count, and why the rounds stopped (`protocol.StopRule`: the CI within a relative width of
  the median, or the time cap, or the round cap).
- A null model (`null_model`: the same input and output shapes, no compute) takes part in the same
  rounds on the same runtime, device and threads: its latency is the per-call floor, reported with
  every comparison. It does not hold the rounds open: only the compared models must narrow.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from edgekd.bench.null_model import null_artifact
from edgekd.bench.protocol import DEFAULT_RULE, ROUND_TIMING, ModelRounds, StopRule, TimingConfig, interleaved_rounds
from edgekd.bench.worker import WarmWorker, adapter_module
from edgekd.errors import UserError
from edgekd.runtimes import Artifact

NULL = "null"


@dataclass(frozen=True)
class Measured:
    """One model of a comparison: its load reply (accuracy, fingerprint), its rounds, and its floor."""

    name: str
    artifact: Artifact
    ready: dict[str, Any]
    rounds: ModelRounds
    floor: Measured | None = None

    def to_json(self) -> dict[str, Any]:
        """The `bench --json` record: today's fields from the typical round (`latency_ms.p50` is the
        median over rounds), plus `rounds` and `floor` (the null model's round statistics)."""
        ready = {k: v for k, v in self.ready.items() if k != "output_shape"}
        floor = None
        if self.floor is not None:
            floor = {"name": self.floor.name, **self.floor.rounds.stats.to_json()}
        return {
            "name": self.name,
            **self.rounds.typical().fields_json(),
            **ready,
            "rounds": self.rounds.stats.to_json(),
            "floor": floor,
        }


@dataclass(frozen=True)
class Comparison:
    models: tuple[Measured, ...]
    floors: tuple[Measured, ...]
    rule: StopRule
    timing: TimingConfig
    order: str

    @property
    def stopped_by(self) -> str:
        return self.models[0].rounds.stats.stopped_by

    def to_json(self) -> dict[str, Any]:
        return {
            "models": [m.to_json() for m in self.models],
            "floors": [{**f.to_json(), "floor": None} for f in self.floors],
            "stopped_by": self.stopped_by,
            "rule": self.rule.to_json(),
            "timing": self.timing.to_json(),
            "order": self.order,
        }


def compare(
    artifacts: Mapping[str, Artifact],
    *,
    batch: int | None = None,
    threads: int | None = None,
    data: str | None = None,
    limit: int | None = None,
    timing: TimingConfig = ROUND_TIMING,
    rule: StopRule = DEFAULT_RULE,
    order: str = "rotate",
    seed: int = 0,
    null: bool = True,
    on_round: Callable[[int, float], None] | None = None,
    shift: dict[str, Any] | None = None,
) -> Comparison:
    """Measure `artifacts` (name -> artifact) side by side in one run: one warm worker each, interleaved
    rounds until `rule` stops them, and a null model per runtime/device/threads/shape as the floor.
    `shift` (the worker's "shift" request) adds accuracy per shifted domain to each model's record."""
    if not artifacts:
        raise UserError("nothing to compare; give at least one artifact")
    _check(batch, threads, limit)
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="edgekd-null-") as tmp:
        workers = {}
        for name, art in artifacts.items():
            request = {**_request(art, batch, threads, data, limit, timing, seed), "shift": shift}
            workers[name] = stack.enter_context(WarmWorker(request, _threads(art, threads)))
        ready = {name: worker.ready() for name, worker in workers.items()}
        floor_of: dict[str, str] = {}
        nulls: dict[str, Artifact] = {}
        if null:
            floor_of, nulls = _null_models(artifacts, ready, threads, Path(tmp))
            for name, art in nulls.items():
                request = _request(art, batch, threads, None, None, timing, seed)
                workers[name] = stack.enter_context(WarmWorker(request, _threads(art, threads)))
                ready[name] = workers[name].ready()
        measured = interleaved_rounds(
            {name: worker.round for name, worker in workers.items()},
            rule,
            order,
            seed,
            watch=list(artifacts),
            on_round=on_round,
        )
    floors = {name: Measured(name, art, ready[name], measured[name]) for name, art in nulls.items()}
    models = tuple(
        Measured(name, art, ready[name], measured[name], floors.get(floor_of.get(name, "")))
        for name, art in artifacts.items()
    )
    return Comparison(models, tuple(floors.values()), rule, timing, order)


def _null_models(
    artifacts: Mapping[str, Artifact], ready: Mapping[str, dict[str, Any]], threads: int | None, folder: Path
) -> tuple[dict[str, str], dict[str, Artifact]]:
    """One null model per group of models that share runtime, device, threads, hint, batch and shapes:
    (model name -> null name, null name -> artifact)."""
    groups: dict[tuple[Any, ...], list[str]] = {}
    for name, art in artifacts.items():
        shape = tuple(ready[name]["output_shape"])
        key = (art.runtime, art.device, _threads(art, threads), art.hint, shape[0], tuple(art.input_shape), shape[1:])
        groups.setdefault(key, []).append(name)
    floor_of: dict[str, str] = {}
    nulls: dict[str, Artifact] = {}
    for i, names in enumerate(groups.values()):
        like = artifacts[names[0]]
        classes = int(ready[names[0]]["output_shape"][1])
        null_name = NULL if len(groups) == 1 else f"{NULL}-{i + 1}"
        null_art = null_artifact(like, classes, folder / null_name)
        if null_art is None:
            continue
        nulls[null_name] = replace(null_art, info={**null_art.info, "batch": int(ready[names[0]]["output_shape"][0])})
        floor_of.update({name: null_name for name in names})
    return floor_of, nulls


def _request(
    art: Artifact,
    batch: int | None,
    threads: int | None,
    data: str | None,
    limit: int | None,
    timing: TimingConfig,
    seed: int,
) -> dict[str, Any]:
    return {
        "artifact": art.to_json(),
        "batch": _batch(art, batch),
        "threads": threads,
        "timing": timing.to_json(),
        "data": data,
        "limit": limit,
        "seed": seed,
        "adapter": adapter_module(art.runtime),
    }


def _batch(art: Artifact, batch: int | None) -> int:
    return batch if batch is not None else int(art.info.get("batch", 1))


def _threads(art: Artifact, threads: int | None) -> int:
    return (threads if threads is not None else art.threads) or os.cpu_count() or 1


def _check(batch: int | None, threads: int | None, limit: int | None) -> None:
    if batch is not None and batch < 1:
        raise UserError(f"batch must be >= 1, got {batch}")
    if threads is not None and threads < 0:
        raise UserError(f"threads must be >= 0 (0 = all cores), got {threads}")
    if limit is not None and limit < 1:
        raise UserError(f"limit must be >= 1, got {limit}")
