"""The distillation comparison (tracker item 7): methods x teacher-student pairs x data regimes x seeds.

    python -m benchmarks.kd_comparison [--pairs T:S,...] [--methods M,...] [--regimes full,10pct]
        [--seeds 0,1,2] [--epochs E | --epochs 10pct=E,full=E] [--teacher-epochs E] [--out DIR] [--resume]
        [--table-only] [--map-samples N] [--teacher ARCH=PATH ...] [--augment none|standard] [--views K]
        [--warmup-epochs E] [--lr LR] [--kd-temperature T] [--auxiliary-epochs N | 10pct=N,full=N]

Pairs (default): the built-in ResNet teacher -> two CNN students under 30k parameters (`cnn-xs`, `cnn-s`),
and the heterogeneous pair, a small vision transformer (`vit-s`) -> the smallest CNN (`cnn-xs`). A pair
`teacher:student` is split at its LAST colon, so the teacher may be a user model `module:factory`
(`benchmarks.user_models:wide_convnet:cnn-xs`, the user-style pair; the student is then a built-in name).
Methods: `alone` (the student trained on labels, `api.train_teacher` on the student arch), `kd`, `pkt`,
`sp`, `infoflow`, `infoflow-aux` (information flow through the auxiliary teacher) and `infoflow-pkth` (the
authors' recipe, `DistillConfig(recipe="pkth")`, with CE added back at weight 1 and an auxiliary teacher
trained `--auxiliary-epochs` on labels, default the student's epochs of the regime, then half as many
of transfer). The auxiliary row
runs only when this edgekd's `DistillConfig` has an `auxiliary` field; otherwise it is reported as not
available. `hssakd` (`--methods ...,hssakd`, not in the default list: every batch is rotated four ways, so
a student epoch costs about 7x the student alone from the teacher cache, 28x with the teacher live, in
`distill_epoch --method hssakd`) distils from a second teacher per teacher arch, trained with HSSAKD
branches (`api.train_teacher(hssakd=True)`) like the plain one; its row's gap is taken against that
teacher, shown as its own `teacher-hssakd` row. `M+kd` for any feature method M (`pkt+kd`, `sp+kd`,
`infoflow+kd`, ...) adds a Hinton KD term on the logits at weight 1 and `--kd-temperature` (default 1)
to M's loss (`DistillConfig.logit_weight`); goal 2 then compares `infoflow+kd` with `pkt+kd`.
Regimes: `full` (the whole training set) and `10pct` (its first 10%, `TrainConfig.limit`); the validation
split (10%) is drawn from what is kept, and the test set is always the whole test split.

Every student of a regime, for every method and seed, trains for the same `--epochs` with the same
`TrainConfig` otherwise (only the seed and the limit change). The training recipe, `--augment` (default
`none`, the earlier records'), `--views` (K augmented views per sample: what the teacher-output cache
holds, FKD style; the student alone draws from the same K), `--warmup-epochs`, `--lr` and, for `kd`,
`--kd-temperature` (default: `edgekd distill`'s, 4), applies alike to every student and teacher trained
here; each record holds it (`recipe`) and a resumed record from another recipe is refused (a record
without one has the default recipe). Teachers trained on another recipe than the default carry it in
their name (`resnet-e10-standard-v4.pt`). Whether a run caches the teacher's outputs is chosen per
method (`cache_plan`: rows x views x tapped features against half of `EDGEKD_CACHE_MAX_GB`; too large,
the teacher runs live) and recorded (`cache`, `cache_gb`, `views`). `--epochs` is one number for every regime,
or one per regime (`10pct=30,full=8`: the whole training set needs fewer passes, and 30 of them cost
hours per run here). Each teacher is trained once, on the full
training set with seed 0 for `--teacher-epochs`, and kept in `<out>/teachers/` (reused by `--resume`):
`<arch>-e<E>.pt`, and `<arch>-hssakd-e<E>.pt` for `hssakd`.

`--teacher ARCH=PATH` (repeatable, or a comma list) uses a trained checkpoint as the teacher ARCH of
the pairs instead of training one: its path, sha256, test accuracy and both mAPs are measured once and
kept in `<out>/teachers/<arch>-given-<sha256[:12]>.json`.

Metrics per run: test accuracy; retrieval mAP of the penultimate representation (the input of the
`head`, or of the logits Linear of a user model) by two protocols: `map`, edgekd's, over the first
`--map-samples` test images (`edgekd.distill.retrieval`: each queries all the others by cosine
similarity, relevant = same class), and `map_db`, the authors' (`database_map`: the run's own training
split as the database, so 10% of it in `10pct`, every test image a query, 11-point interpolated; a
teacher's is measured against each regime's training split of seed 0, `map_db_by_regime`); epoch time
(the trainer's `epoch_s`, mean over the
run's epochs: with the default teacher cache, the first epoch of a distillation also runs the teacher
and builds the cache; under each table, each method's epochs after the first and its whole run's wall
time, auxiliary teacher included, as ratios to the student alone's). Each run writes
`<out>/runs/<pair>/<regime>/<method>/seed<k>.json` atomically, so `--resume` skips what is done and an
interrupted comparison resumes (a record from other `--epochs` or `--map-samples` is refused, not mixed
in). `alone` does not involve the teacher: a pair whose student, regime, seed and epochs match an
`alone` run already made for another pair reuses that record (it names the pair in `shared_from`)
instead of training the same run again. Several workers may run over one `--out` at once (one per core,
say, with the pairs or seeds in different orders): each run and teacher is claimed by a lock file
(`<record>.lock`), so a worker skips a run another is making and waits for a teacher another is
training. `--table-only` trains nothing: it writes the table from the records there are (what is missing
shows as `n` = 0), e.g. while other processes still run other regimes or pairs. The table (mean +-
sample std over seeds, and the share of the teacher-student gap a method recovers, `(method - alone) /
(teacher - alone)` on the means) goes to `<out>/results.md` and `<out>/results.json`, with the issue's
three goals checked under it: the best method beats the student alone by >= 1 point for students under
30k parameters; each information-flow variant vs `pkt` in the heterogeneous pair (accuracy, both mAPs,
against the larger std); at 10% of the data the best method recovers >= 40% of the gap. A record made
before `map_db` existed gets it when resumed (its checkpoint measured again).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import socket
import statistics
import time
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from edgekd._io import pid_alive

DEFAULT_PAIRS = ("resnet:cnn-xs", "resnet:cnn-s", "vit-s:cnn-xs")
METHODS = ("alone", "kd", "pkt", "sp", "infoflow", "infoflow-aux", "infoflow-pkth", "hssakd")
DEFAULT_METHODS = METHODS[:-1]  # hssakd only on request (its cost: see the module docstring)
REGIMES = {"full": 1.0, "10pct": 0.1}
AUX = "infoflow-aux"
PKTH = "infoflow-pkth"
HSSAKD = "hssakd"
#: `METHOD+kd`: a feature method with a Hinton KD term on the logits added (`DistillConfig.logit_weight` 1,
#: at --kd-temperature, default 1): CE and the logit term in kd's even proportions, plus the feature loss
LOGIT_SUFFIX = "+kd"
FEATURE_METHODS = ("pkt", "sp", "infoflow", AUX, PKTH)
WITH_LOGITS = tuple(f"{m}{LOGIT_SUFFIX}" for m in FEATURE_METHODS)


def base_method(method: str) -> str:
    """The method without its logit term: `infoflow-aux+kd` -> `infoflow-aux`."""
    return method.removesuffix(LOGIT_SUFFIX)


#: what the student's size goal (best method - alone >= 1 point) applies to
SMALL_STUDENT = 30_000
NOT_AVAILABLE = "not available in this edgekd (DistillConfig has no `auxiliary` field)"


def safe(name: str) -> str:
    """A folder-safe form of an arch or pair name."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically: a temporary file in the same folder, then renamed into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(_finite(data), indent=2, sort_keys=True, allow_nan=False))
    os.replace(tmp, path)


def _finite(data: Any) -> Any:
    """NaN and infinities as null, so the JSON is standard."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: _finite(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_finite(v) for v in data]
    return data


WAIT_S = 10.0  # how often a worker looks again for a teacher another worker is training


def lock_path(record: Path) -> Path:
    return record.with_name(record.name + ".lock")


def holder(record: Path) -> dict[str, Any] | None:
    """Who holds `record`'s lock ({"host", "pid"}), or None when nobody does. A lock left by a process of
    this host that no longer runs is stale: it is removed and counts as free."""
    lock = lock_path(record)
    try:
        owner = json.loads(lock.read_text())
    except FileNotFoundError:
        return None
    except ValueError:  # being written this instant: held
        return {"host": "?", "pid": 0}
    if owner.get("host") == socket.gethostname() and not pid_alive(int(owner.get("pid", 0))):
        lock.unlink(missing_ok=True)
        return None
    return owner


@contextmanager
def claimed(record: Path) -> Iterator[bool]:
    """Hold `<record>.lock` while this process makes `record`; yields False (holding nothing) when another
    live process holds it. Several workers can so share one `--out`: each skips the runs another is making.
    The lock is created exclusively (O_EXCL), holds this host and pid, and is removed on the way out; a
    lock whose process died on this host is taken over. A lock from another host is trusted: if that
    machine died, delete the `.lock` file by hand."""
    lock = lock_path(record)
    lock.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):  # a second try after removing a stale lock
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if holder(record) is not None:
                yield False
                return
            continue
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps({"host": socket.gethostname(), "pid": os.getpid()}))
        try:
            yield True
        finally:
            lock.unlink(missing_ok=True)
        return
    yield False


def has_auxiliary() -> bool:
    from edgekd.distill.task import DistillConfig

    return "auxiliary" in DistillConfig.model_fields


def auxiliary_value(override: str | None) -> Any:
    """What to pass as `DistillConfig.auxiliary` for the auxiliary row: `--auxiliary` when given, else
    True for a flag field, else "auto" (edgekd builds and trains the auxiliary network itself; note that
    "auto" uses one only when teacher and student families differ, true of every default pair)."""
    from edgekd.distill.task import DistillConfig

    if override is not None:
        return {"true": True, "false": False}.get(override.lower(), override)
    args = typing.get_args(DistillConfig.model_fields["auxiliary"].annotation)
    return True if bool in (args or (DistillConfig.model_fields["auxiliary"].annotation,)) else "auto"


def no_auxiliary() -> dict[str, Any]:
    """The explicit "without auxiliary teacher" setting for plain infoflow (empty: field absent)."""
    from edgekd.distill.task import DistillConfig

    if not has_auxiliary():
        return {}
    annotation = DistillConfig.model_fields["auxiliary"].annotation
    return {"auxiliary": False if bool in (typing.get_args(annotation) or (annotation,)) else "none"}


def task_for(method: str, args: argparse.Namespace, cache: bool = True, regime: str | None = None) -> Any:
    """The DistillConfig of a method; `infoflow-pkth` is the authors' recipe (`recipe="pkth"`) with CE
    added back at weight 1 and an auxiliary teacher (auto) of `--auxiliary-epochs` on labels; `M+kd` is
    M's with a logit term at weight 1 and --kd-temperature (default 1)."""
    from edgekd.distill.task import DistillConfig

    temperature = getattr(args, "kd_temperature", None)
    if method.endswith(LOGIT_SUFFIX):
        task = task_for(base_method(method), args, cache, regime)
        logits = {"logit_weight": 1.0, "logit_temperature": temperature or 1.0}
        return DistillConfig(**{**task.model_dump(exclude_unset=True), **logits})
    lazy = {} if cache else {"cache": False}  # left out when on: records as before the cache choice
    if method == AUX:
        return DistillConfig(method="infoflow", auxiliary=auxiliary_value(args.auxiliary), **lazy)
    if method == PKTH:
        return DistillConfig(
            method="infoflow",
            recipe="pkth",
            ce_weight=1.0,
            auxiliary="auto",
            auxiliary_epochs=auxiliary_epochs(args, regime or args.regimes[0]),
            **lazy,
        )
    if method == "kd" and temperature is not None:
        return DistillConfig(method="kd", loss_params={"temperature": temperature}, **lazy)
    return DistillConfig(method=method, **(no_auxiliary() if method == "infoflow" else {}), **lazy)


def auxiliary_epochs(args: argparse.Namespace, regime: str) -> int:
    """`infoflow-pkth`'s auxiliary epochs on labels in a regime: `--auxiliary-epochs`, else the student's."""
    given = getattr(args, "auxiliary_epochs", None)
    if given is None:
        return max(2, epochs_for(args, regime))
    return given if isinstance(given, int) else given[regime]


def measure(model_path: Path, data: str, map_samples: int) -> tuple[float, int]:
    """(retrieval mAP over the first `map_samples` test images, how many were used) of a checkpoint."""
    from edgekd.data import load_data
    from edgekd.distill.retrieval import retrieval_map
    from edgekd.models import load_model

    model, _, _ = load_model(model_path)
    test = load_data(data).test.head(map_samples)
    return retrieval_map(features(model, test), test.y), len(test)


# -- the training recipe, both mAPs, the teacher cache ------------------------------------------------


@functools.cache
def default_recipe() -> dict[str, Any]:
    """The recipe of every record made before the recipe options (none of them names one): edgekd's own
    defaults, no augmentation, one view, no warm-up, its learning rate and KD temperature."""
    import inspect

    from edgekd.config import TrainConfig
    from edgekd.distill.losses import LOSSES

    return {
        "augment": "none",
        "views": 1,
        "warmup_epochs": 0.0,
        "lr": float(TrainConfig.model_fields["lr"].default),
        "kd_temperature": float(inspect.signature(LOSSES.get("kd")).parameters["temperature"].default),
    }


def recipe(args: argparse.Namespace) -> dict[str, Any]:
    """The training recipe every student and teacher of this invocation trains with (views count only
    with augmentation: without it every view is the image itself)."""
    base = default_recipe()
    augment = getattr(args, "augment", "none")
    lr, temperature = getattr(args, "lr", None), getattr(args, "kd_temperature", None)
    return {
        "augment": augment,
        "views": int(getattr(args, "views", 1)) if augment != "none" else 1,
        "warmup_epochs": float(getattr(args, "warmup_epochs", 0.0)),
        "lr": float(lr) if lr is not None else base["lr"],
        "kd_temperature": float(temperature) if temperature is not None else base["kd_temperature"],
    }


def teacher_tag(args: argparse.Namespace) -> str:
    """What a trained teacher's file name adds for a recipe other than the default ('' for it, so the
    teachers of earlier comparisons keep their names): `-standard-v4-w1-lr0.001`."""
    r, base = recipe(args), default_recipe()
    parts = [f"{r['augment']}-v{r['views']}"] if r["augment"] != "none" else []
    parts += [f"w{r['warmup_epochs']:g}"] if r["warmup_epochs"] else []
    parts += [f"lr{r['lr']:g}"] if r["lr"] != base["lr"] else []
    return "".join(f"-{p}" for p in parts)


class _Probed(nn.Module):
    """A model with a `head` child that sees its penultimate representation: what
    `edgekd.distill.retrieval.penultimate_features` taps, for a model without a `head` of its own."""

    def __init__(self, model: nn.Module, probe: nn.Module) -> None:
        super().__init__()
        self.model, self.head = model, probe

    def forward(self, x: Tensor) -> Tensor:
        return typing.cast(Tensor, self.model(x))


def features(model: nn.Module, data: Any) -> Any:
    """The penultimate representation of every sample (N x D float32): the input of `head` for a
    built-in model, else the tap `edgekd.distill.blocks.penultimate` finds (a `module:factory` model)."""
    from edgekd.distill.blocks import INPUT_SUFFIX, penultimate
    from edgekd.distill.retrieval import penultimate_features

    if isinstance(getattr(model, "head", None), nn.Module):
        return penultimate_features(model, data)
    tap = penultimate(model, data.input_shape)
    probe = nn.Identity()
    module = model.get_submodule(tap.removesuffix(INPUT_SUFFIX))

    def before(_m: nn.Module, inputs: tuple[Any, ...]) -> None:
        probe(inputs[0])

    def after(_m: nn.Module, _inputs: tuple[Any, ...], output: Any) -> None:
        probe(output)

    handle = (
        module.register_forward_pre_hook(before) if tap.endswith(INPUT_SUFFIX) else module.register_forward_hook(after)
    )
    try:
        return penultimate_features(_Probed(model, probe), data)
    finally:
        handle.remove()


def scores(path: Path, data: str, map_samples: int, seed: int, limit: int | None) -> dict[str, Any]:
    """Both retrieval mAPs of a checkpoint: `map`, edgekd's (leave-one-out over the first `map_samples`
    test images), and `map_db`, the authors' (`edgekd.distill.retrieval.database_map`, 11-point
    interpolated: the training split of seed `seed` and limit `limit` as the database, every test image a
    query)."""
    from edgekd.config import TrainConfig
    from edgekd.data import load_data
    from edgekd.distill.retrieval import database_map, retrieval_map
    from edgekd.models import load_model

    model, _, _ = load_model(path)
    val_fraction = float(TrainConfig.model_fields["val_fraction"].default)
    split = load_data(data, val_fraction=val_fraction, seed=seed, limit=limit)
    head = load_data(data).test.head(map_samples)  # as `measure`, whatever the run's limit
    db, queries = features(model, split.train), features(model, split.test)
    return {
        "map": retrieval_map(features(model, head), head.y),
        "map_samples": len(head),
        "map_db": database_map(db, split.train.y, queries, split.test.y),
        "map_db_database": len(split.train),
        "map_db_queries": len(split.test),
    }


def with_map_db(record: dict[str, Any], path: Path, args: argparse.Namespace, record_path: Path) -> dict[str, Any]:
    """A done run record made before `map_db` was measured, with it added (and written back) when its
    checkpoint is there; as it was otherwise."""
    if record.get("status") != "done" or "map_db" in record or not path.is_file():
        return record
    got = scores(path, args.data, args.map_samples, record["seed"], record.get("limit"))
    record = {**record, **{k: v for k, v in got.items() if k.startswith("map_db")}}
    write_json(record_path, record)
    return record


def teacher_map_db(ckpt: Path, info: dict[str, Any], args: argparse.Namespace, record: Path | None) -> dict[str, Any]:
    """A teacher's record with `map_db_by_regime`: its `map_db` with each regime's training split (seed
    0) as the database, what a student of that regime is compared with (a larger database alone moves
    the score). Measured once per regime and written back to the teacher's record, when its checkpoint
    is there."""
    have = dict(info.get("map_db_by_regime") or {})
    missing = [r for r in args.regimes if r not in have]
    if not missing or not ckpt.is_file():  # nothing to measure (a checkpoint gone: its record as it is)
        return info
    from edgekd.models import load_model

    load_model(ckpt)  # fails here, with its reason, before any feature is computed
    for regime in missing:
        have[regime] = scores(ckpt, args.data, args.map_samples, 0, regime_limit(args, regime))["map_db"]
    info = {**info, "map_db_by_regime": have}
    if record is not None:
        write_json(record, info)
    return info


def regime_limit(args: argparse.Namespace, regime: str) -> int | None:
    """The training samples a regime keeps (`TrainConfig.limit`): None for all of them."""
    if REGIMES[regime] == 1.0:
        return None
    if getattr(args, "n_train", None) is None:
        from edgekd.data import load_data

        args.n_train = len(load_data(args.data, val_fraction=0.0).train)
    return max(1, round(REGIMES[regime] * args.n_train))


def cache_plan(method: str, t_ckpt: Path, s_arch: str, args: argparse.Namespace, limit: int | None) -> dict[str, Any]:
    """Whether a method's run caches the teacher's outputs: its rows (training samples x views) times
    what the teacher taps per row (float16 features, float32 logits, `edgekd.distill.cache`), against
    half of `EDGEKD_CACHE_MAX_GB` (room for two workers' caches at once). A cache that would not fit
    is not built (the trainer would build it anyway when the disk has room, then evict every other
    cache to make room for it): the teacher runs live on every batch instead, which costs a teacher
    forward pass per batch and epoch but no disk. Through an auxiliary teacher (`infoflow-aux`,
    `infoflow-pkth`) the taps are the auxiliary's; hssakd keeps the cache, as before."""
    from edgekd.config import TrainConfig
    from edgekd.data import load_data
    from edgekd.distill.cache import size_limit

    views = recipe(args)["views"]
    if method == HSSAKD:
        return {"cache": True, "views": views}
    val_fraction = float(TrainConfig.model_fields["val_fraction"].default)
    train = load_data(args.data, val_fraction=val_fraction, seed=0, limit=limit).train
    per_row = _row_bytes(method, str(t_ckpt), s_arch, args, train.input_shape, train.num_classes)
    need = len(train) * views * per_row
    return {"cache": need <= size_limit() / 2, "views": views, "cache_gb": need / 2**30}


@functools.cache
def _row_bytes_cached(t_ckpt: str, s_arch: str, task_json: str, shape: tuple[int, int, int], n: int) -> int:
    from edgekd.distill.auxiliary import auxiliary_spec, uses_auxiliary
    from edgekd.distill.blocks import INPUT_SUFFIX, trace
    from edgekd.distill.task import DistillConfig, method_pairs
    from edgekd.models import build_model, load_model, parse_arch

    task = DistillConfig.model_validate_json(task_json)
    teacher, t_spec, _ = load_model(Path(t_ckpt))
    spec = parse_arch(s_arch, in_channels=shape[0], num_classes=n, image_size=shape[1])
    if task.auxiliary != "none" and uses_auxiliary(task.auxiliary, t_spec, spec):
        teacher = build_model(auxiliary_spec(spec, task.auxiliary_width))
    pairs = method_pairs(task, build_model(spec), teacher, shape) or []
    tr = trace(teacher, shape)
    outputs = dict(tr.outputs)
    size = 0
    for _, tap in pairs:
        name = tap.removesuffix(INPUT_SUFFIX)
        x = tr.linear_inputs[name] if tap.endswith(INPUT_SUFFIX) else outputs[name]
        size += x[0].numel() * 2
    return size + n * 4


def _row_bytes(
    method: str, t_ckpt: str, s_arch: str, args: argparse.Namespace, shape: tuple[int, int, int], n: int
) -> int:
    """Bytes the teacher cache holds per row for a method: its teacher taps (float16) and logits."""
    task = task_for(method, args, regime=args.regimes[0])
    return _row_bytes_cached(t_ckpt, s_arch, task.model_dump_json(), shape, n)


def epochs_for(args: argparse.Namespace, regime: str) -> int:
    """The student epochs of a regime: `--epochs` is one number, or one per regime."""
    return args.epochs if isinstance(args.epochs, int) else args.epochs[regime]


def parse_epochs(text: str, regimes: list[str]) -> int | dict[str, int]:
    """`--epochs`: `N` (every regime), or `REGIME=N,...` naming each of `regimes`; ValueError says what is wrong."""
    if "=" not in text:
        epochs: int | dict[str, int] = int(text)
        given = {r: int(text) for r in regimes}
    else:
        parts = [p.split("=", 1) for p in csv(text)]
        given = epochs = {r.strip(): int(n) for r, n in parts}
        if missing := [r for r in regimes if r not in given]:
            raise ValueError(f"no epochs for {', '.join(missing)} (give REGIME=N for each of {', '.join(regimes)})")
    if bad := [r for r, n in given.items() if n < 1]:
        raise ValueError(f"epochs must be at least 1 ({', '.join(bad)})")
    return epochs


def check_record(
    record: dict[str, Any],
    what: str,
    epochs: int,
    map_samples: int,
    out: Path,
    recipe: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A reused run record must come from the same student epochs, mAP sample count, training recipe (a
    record without one has the default recipe, `default_recipe`) and `extra` fields."""
    wants: list[tuple[str, Any, Any]] = [
        ("epochs", epochs, record.get("epochs")),
        ("map_samples", map_samples, record.get("map_samples")),
    ]
    if recipe is not None:
        wants.append(("recipe", recipe, record.get("recipe") or default_recipe()))
    wants += [(key, want, record.get(key)) for key, want in (extra or {}).items()]
    for key, want, got in wants:
        if record.get("status") == "done" and got != want:
            raise SystemExit(
                f"{what}: the record in {out} has {key}={got}, this run {want};"
                f" use another --out, or the settings it was run with"
            )
    return record


def map_count(args: argparse.Namespace) -> int:
    """How many test images a run's mAP uses: `--map-samples`, or the whole test split if it is smaller."""
    if getattr(args, "n_map", None) is None:
        from edgekd.data import load_data

        args.n_map = len(load_data(args.data).test.head(args.map_samples))
    return int(args.n_map)


def train_config(args: argparse.Namespace, epochs: int, seed: int, limit: int | None) -> Any:
    from edgekd.config import TrainConfig

    r = recipe(args)
    return TrainConfig(
        epochs=epochs,
        seed=seed,
        limit=limit,
        batch_size=args.batch_size,
        device=args.device,
        lr=r["lr"],
        augment=r["augment"],
        views=r["views"],
        warmup_epochs=r["warmup_epochs"],
    )


def summarise(
    result: Any,
    path: Path,
    data: str,
    map_samples: int,
    extra: dict[str, Any],
    *,
    seed: int = 0,
    limit: int | None = None,
) -> dict[str, Any]:
    """A finished run's record: `extra`, accuracy, both mAPs (`scores`, on the run's own training split
    for `map_db`) and its epoch times."""
    epoch_s = [float(row["epoch_s"]) for row in result.history if "epoch_s" in row]
    return {
        **extra,
        "test_accuracy": float(result.test_accuracy),
        "val_accuracy": float(result.val_accuracy),
        **scores(path, data, map_samples, seed, limit),
        "epoch_s": epoch_s,
        "epoch_s_mean": statistics.fmean(epoch_s) if epoch_s else math.nan,
        "seconds": float(result.seconds),
        "checkpoint": str(result.checkpoint),
    }


def hssakd_key(arch: str) -> str:
    """The key of the HSSAKD teacher of `arch` among the teachers (and its name, `<arch>-hssakd`)."""
    return f"{arch}-{HSSAKD}"


def teacher(arch: str, args: argparse.Namespace, hssakd: bool = False) -> tuple[Path, dict[str, Any]]:
    """Train (or reuse) the teacher `arch`: full training set, seed 0, `--teacher-epochs`; with `hssakd`,
    the same teacher trained with HSSAKD branches. A teacher another worker is training (its lock) is
    waited for, then reused."""
    folder = args.out / "teachers"
    name = f"{safe(hssakd_key(arch) if hssakd else arch)}-e{args.teacher_epochs}{teacher_tag(args)}"
    ckpt, record = folder / f"{name}.pt", folder / f"{name}.json"
    if (args.resume or getattr(args, "table_only", False)) and record.is_file() and ckpt.is_file():
        return ckpt, json.loads(record.read_text())
    if getattr(args, "table_only", False):
        raise SystemExit(f"--table-only: teacher {name} is not in {folder}; run without --table-only to train it")
    waited = False
    while True:
        with claimed(record) as mine:
            if mine:
                if waited and record.is_file() and ckpt.is_file():  # another worker has just trained it
                    return ckpt, json.loads(record.read_text())
                return _train_teacher(arch, args, hssakd, ckpt, record)
        if not waited:
            print(f"teacher {name}: another worker is training it ({holder(record)}); waiting", flush=True)
            waited = True
        time.sleep(WAIT_S)


def given_teacher(arch: str, path: Path, args: argparse.Namespace) -> tuple[Path, dict[str, Any]]:
    """A trained checkpoint given for `arch` (`--teacher ARCH=PATH`): its record, measured once (test
    accuracy, both mAPs) and kept as `<out>/teachers/<arch>-given-<sha256[:12]>.json` with its path,
    sha256 and the training settings its checkpoint names. Its epoch time is not known (NaN)."""
    from edgekd._io import file_sha256

    sha = file_sha256(path)
    record = args.out / "teachers" / f"{safe(arch)}-given-{sha[:12]}.json"
    waited = False
    while True:
        if record.is_file():
            return path, json.loads(record.read_text())
        with claimed(record) as mine:
            if mine:
                return path, _measure_given(arch, path, sha, record, args)
        if not waited:
            print(f"teacher {arch}: another worker is measuring {path} ({holder(record)}); waiting", flush=True)
            waited = True
        time.sleep(WAIT_S)


def _measure_given(arch: str, path: Path, sha: str, record: Path, args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from edgekd.data import load_data
    from edgekd.distill.trainer import evaluate
    from edgekd.models import load_model, parse_arch
    from edgekd.models.zoo import count_params

    model, spec, meta = load_model(path)
    if spec.family != parse_arch(arch).family:
        raise SystemExit(f"--teacher {arch}={path}: that checkpoint holds a {spec.label()}, not a {arch}")
    print(f"measuring the given teacher {arch}: {path}", flush=True)
    with torch.no_grad():
        acc = evaluate(model, load_data(args.data).test, torch.device("cpu"))[1]
    train = meta.get("train") or {}
    info = {
        "arch": arch,
        "params": count_params(model),
        "given": True,
        "path": str(path.resolve()),
        "sha256": sha,
        "seed": train.get("seed", 0),
        "hssakd": False,
        "epochs": train.get("epochs"),
        "train": train,
        "test_accuracy": acc,
        "recorded_test_accuracy": meta.get("test_acc"),
        "epoch_s": [],
        "epoch_s_mean": math.nan,
        **scores(path, args.data, args.map_samples, int(train.get("seed", 0)), train.get("limit")),
    }
    write_json(record, info)
    return info


def obtain_teacher(arch: str, args: argparse.Namespace, hssakd: bool = False) -> tuple[Path, dict[str, Any]]:
    """The teacher `arch`: the checkpoint given for it (`--teacher`), else trained here (`teacher`);
    with its `map_db` per regime measured unless --table-only."""
    given = (getattr(args, "teacher", None) or {}).get(arch)
    if given is not None and not hssakd:
        ckpt, info = given_teacher(arch, Path(given), args)
        record = args.out / "teachers" / f"{safe(arch)}-given-{info['sha256'][:12]}.json"
    else:
        ckpt, info = teacher(arch, args, hssakd)
        record = ckpt.with_suffix(".json")
    if getattr(args, "table_only", False):
        return ckpt, info
    return ckpt, teacher_map_db(ckpt, info, args, record)


def _train_teacher(
    arch: str, args: argparse.Namespace, hssakd: bool, ckpt: Path, record: Path
) -> tuple[Path, dict[str, Any]]:
    from edgekd import api
    from edgekd.models import build_model, parse_arch
    from edgekd.models.zoo import count_params

    print(
        f"training {'HSSAKD ' if hssakd else ''}teacher {arch} ({args.teacher_epochs} epochs, full training set)",
        flush=True,
    )
    cfg = train_config(args, args.teacher_epochs, 0, None)
    result = api.train_teacher(arch, args.data, ckpt, cfg, progress=False, hssakd=hssakd, resume=args.resume)
    params = count_params(build_model(parse_arch(arch)))
    extra = {"arch": arch, "params": params, "seed": 0, "hssakd": hssakd, "recipe": {**recipe(args)}}
    extra["recipe"].pop("kd_temperature")  # a teacher trains on labels
    info = summarise(result, ckpt, args.data, args.map_samples, extra)
    write_json(record, info)
    return ckpt, info


def run_one(
    pair: tuple[str, str],
    t_ckpt: Path,
    regime: str,
    limit: int | None,
    method: str,
    seed: int,
    args: argparse.Namespace,
    h_ckpt: Path | None = None,
) -> dict[str, Any]:
    """One student run (skipped with --resume when its JSON exists); returns its record. `hssakd` distils
    from `h_ckpt`, the HSSAKD teacher. A run another worker holds (its lock) is skipped, returned with the
    status "running elsewhere"."""
    t_arch, s_arch = pair
    folder = args.out / "runs" / safe(f"{t_arch}--{s_arch}") / regime / method
    record = folder / f"seed{seed}.json"
    epochs = epochs_for(args, regime)
    table_only = getattr(args, "table_only", False)
    extra = {"auxiliary_epochs": auxiliary_epochs(args, regime)} if base_method(method) == PKTH else {}

    def recorded() -> dict[str, Any]:
        got = check_record(
            json.loads(record.read_text()),
            f"{t_arch} -> {s_arch} {regime} {method} seed {seed}",
            epochs,
            map_count(args),
            args.out,
            recipe(args),
            extra,
        )
        ckpt = Path(got.get("checkpoint") or folder / f"seed{seed}.pt")
        if not ckpt.is_file():  # recorded in another clone (an absolute --out): the run's own folder
            ckpt = folder / f"seed{seed}.pt"
        return got if table_only else with_map_db(got, ckpt, args, record)

    if (args.resume or table_only) and record.is_file():
        return recorded()
    base = {
        "teacher": t_arch,
        "student": s_arch,
        "regime": regime,
        "limit": limit,
        "method": method,
        "seed": seed,
        "epochs": epochs,
        "recipe": recipe(args),
        **extra,
    }
    if method == "alone" and (shared := shared_alone(base, record, args)) is not None:
        if not table_only:
            write_json(record, shared)
        return shared
    if table_only:
        return {**base, "status": "missing", "note": "not run yet"}
    if base_method(method) == AUX and not has_auxiliary():
        return {**base, "status": "not available", "note": NOT_AVAILABLE}
    if method == "alone" and (busy := alone_elsewhere(base, record, args)):
        return {**base, "status": "running elsewhere", "note": f"another worker is making it for {busy}"}
    with claimed(record) as mine:
        if not mine:
            return {**base, "status": "running elsewhere", "note": f"another worker is making it ({holder(record)})"}
        if args.resume and record.is_file():  # that worker finished it between the check above and the claim
            return recorded()
        return _train_student(
            pair,
            t_ckpt,
            method,
            cfg=train_config(args, epochs, seed, limit),
            args=args,
            base=base,
            folder=folder,
            record=record,
            h_ckpt=h_ckpt,
        )


def _train_student(
    pair: tuple[str, str],
    t_ckpt: Path,
    method: str,
    *,
    cfg: Any,
    args: argparse.Namespace,
    base: dict[str, Any],
    folder: Path,
    record: Path,
    h_ckpt: Path | None,
) -> dict[str, Any]:
    from edgekd import api

    t_arch, s_arch = pair
    seed = base["seed"]
    ckpt = folder / f"seed{seed}.pt"
    t0 = time.perf_counter()
    plan: dict[str, Any] = {}
    if method == "alone":
        result = api.train_teacher(s_arch, args.data, ckpt, cfg, progress=False, resume=args.resume)
        task = None
    else:
        source = h_ckpt if method == HSSAKD else t_ckpt
        if source is None:
            raise ValueError("the hssakd run needs the HSSAKD teacher's checkpoint (h_ckpt)")
        plan = cache_plan(method, source, s_arch, args, base["limit"])
        task = task_for(method, args, plan["cache"], base["regime"])
        result = api.distill(source, s_arch, args.data, ckpt, cfg, task, progress=False, resume=args.resume)
    info = summarise(
        result,
        ckpt,
        args.data,
        args.map_samples,
        {**base, "status": "done", "task": task.model_dump(mode="json") if task else None, **plan},
        seed=seed,
        limit=base["limit"],
    )
    info["wall_s"] = time.perf_counter() - t0
    info["code"] = code_version()
    write_json(record, info)
    return info


@functools.cache
def code_version() -> str | None:
    """The git commit of the edgekd source this process runs (`+dirty` with uncommitted changes), or None
    outside a git checkout: run records made across several sessions say which code made them. Read once
    per process, when it starts (`main`): the checkout may move on while a long comparison runs."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "") if head else None


def shared_alone(base: dict[str, Any], record: Path, args: argparse.Namespace) -> dict[str, Any] | None:
    """The `alone` record of the same student, regime, limit, seed and epochs made for another pair, if
    there is one: training the student on labels does not involve the teacher, so pairs that share a
    student share these runs (the copy names the pair it came from in `shared_from`)."""
    want = {k: base[k] for k in ("student", "regime", "limit", "seed", "epochs")}
    pattern = f"*/{base['regime']}/alone/seed{base['seed']}.json"
    for path in sorted((args.out / "runs").glob(pattern)):
        other = json.loads(path.read_text()) if path != record else {}
        if (
            other.get("status") == "done"
            and other.get("map_samples") == map_count(args)
            and {k: other.get(k) for k in want} == want
            and (other.get("recipe") or default_recipe()) == base.get("recipe", default_recipe())
        ):
            origin = other.get("shared_from") or f"{other['teacher']} -> {other['student']}"
            return {**other, "teacher": base["teacher"], "shared_from": origin}
    return None


def alone_elsewhere(base: dict[str, Any], record: Path, args: argparse.Namespace) -> str | None:
    """The pair folder of another pair whose `alone` run of the same student, regime and seed a worker is
    making now (to be shared once it is done), or None."""
    pattern = f"*--{safe(base['student'])}/{base['regime']}/alone/seed{base['seed']}.json.lock"
    for lock in sorted((args.out / "runs").glob(pattern)):
        other = lock.with_name(lock.name[: -len(".lock")])
        if other != record and holder(other) is not None:
            return other.parents[2].name
    return None


# -- the table --------------------------------------------------------------------------------------


def stats(values: list[float]) -> tuple[float, float]:
    """(mean, sample std); std is NaN for a single value."""
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else math.nan


def fmt(mean: float, std: float, scale: float = 1.0, digits: int = 1) -> str:
    if math.isnan(mean):
        return "n/a"
    s = f"{mean * scale:.{digits}f}"
    return s + (f" ± {std * scale:.{digits}f}" if not math.isnan(std) else " (n=1)")


def aggregate(
    runs: list[dict[str, Any]], teachers: dict[str, dict[str, Any]], args: argparse.Namespace
) -> list[dict[str, Any]]:
    """One row per pair x regime x method (plus the teacher's), with means, stds and gap recovered."""
    from edgekd.models import build_model, parse_arch
    from edgekd.models.zoo import count_params

    rows = []
    for t_arch, s_arch in args.pairs:
        s_params = count_params(build_model(parse_arch(s_arch)))
        t_info = teachers[t_arch]
        # the teacher each method distils from (and its gap is taken against): hssakd has its own
        own = {m: teachers.get(hssakd_key(t_arch), {}) if m == HSSAKD else t_info for m in args.methods}
        shown = [("teacher", t_info)] + ([(f"teacher-{HSSAKD}", own[HSSAKD])] if own.get(HSSAKD) else [])
        for regime in args.regimes:
            group = [r for r in runs if (r["teacher"], r["student"], r["regime"]) == (t_arch, s_arch, regime)]
            done = {m: [r for r in group if r["method"] == m and r.get("status") == "done"] for m in args.methods}
            acc_alone = stats([r["test_accuracy"] for r in done.get("alone", [])])[0]
            map_alone = stats([r["map"] for r in done.get("alone", [])])[0]
            db_alone = stats(map_dbs(done.get("alone", [])))[0]
            key = {
                "pair": f"{t_arch} -> {s_arch}",
                "teacher": t_arch,
                "student": s_arch,
                "regime": regime,
                "student_params": s_params,
                "teacher_params": t_info["params"],
            }
            for name, info in shown:
                rows.append(
                    {
                        **key,
                        "method": name,
                        "n": 1,
                        "acc": (info["test_accuracy"], math.nan),
                        "map": (info["map"], math.nan),
                        "map_db": (teacher_db(info, regime), math.nan),
                        "epoch_s": (number(info.get("epoch_s_mean")), math.nan),
                        "gap_acc": math.nan,
                        "gap_map": math.nan,
                        "gap_map_db": math.nan,
                        "note": teacher_note(info, args),
                    }
                )
            for m in args.methods:
                rs = done[m]
                if not rs:
                    unavailable = [r for r in group if r["method"] == m and r.get("status") == "not available"]
                    rows.append(
                        {
                            **key,
                            "method": m,
                            "n": 0,
                            "acc": (math.nan, math.nan),
                            "map": (math.nan, math.nan),
                            "map_db": (math.nan, math.nan),
                            "epoch_s": (math.nan, math.nan),
                            "gap_acc": math.nan,
                            "gap_map": math.nan,
                            "gap_map_db": math.nan,
                            "note": unavailable[0]["note"] if unavailable else "no runs",
                        }
                    )
                    continue
                acc, mean_ap = stats([r["test_accuracy"] for r in rs]), stats([r["map"] for r in rs])
                mean_db = stats(map_dbs(rs))
                t_acc, t_map = own[m].get("test_accuracy", acc_alone), own[m].get("map", map_alone)
                t_db = teacher_db(own[m], regime) if own[m] else math.nan
                gap_acc = gap_share(m, acc[0], acc_alone, t_acc)
                gap_map = gap_share(m, mean_ap[0], map_alone, t_map)
                aux = rs[0].get("task", {}) or {}
                shared = sorted({r["shared_from"] for r in rs if r.get("shared_from")})
                note = (
                    f"gap vs teacher-{HSSAKD}"
                    if m == HSSAKD
                    else f"runs of {', '.join(shared)}"
                    if shared
                    else f"recipe pkth, auxiliary={aux.get('auxiliary')!r}, {aux.get('auxiliary_epochs')} epochs"
                    if base_method(m) == PKTH
                    else f"auxiliary={aux.get('auxiliary')!r}"
                    if "auxiliary" in aux and base_method(m) in ("infoflow", AUX)
                    else ""
                )
                rows.append(
                    {
                        **key,
                        "method": m,
                        "n": len(rs),
                        "acc": acc,
                        "map": mean_ap,
                        "map_db": mean_db,
                        "epoch_s": stats([r["epoch_s_mean"] for r in rs]),
                        "gap_acc": gap_acc,
                        "gap_map": gap_map,
                        "gap_map_db": gap_share(m, mean_db[0], db_alone, t_db),
                        "note": "; ".join(part for part in (note, cache_note(rs)) if part),
                        "later_epoch_s": stats(
                            [statistics.fmean(r["epoch_s"][1:]) for r in rs if len(r.get("epoch_s") or ()) > 1]
                        )[0],
                        "wall_s": stats([r["wall_s"] for r in rs if whole_run(r)])[0],
                    }
                )
    return rows


def number(value: Any) -> float:
    """A number of a record: NaN for null (JSON keeps NaN as null, `write_json`)."""
    return math.nan if value is None else float(value)


def gap_share(method: str, value: float, alone: float, teacher: float) -> float:
    """The share of the teacher-student gap a method recovers, `(method - alone) / (teacher - alone)`."""
    if method == "alone" or teacher == alone or math.isnan(teacher) or math.isnan(alone):
        return math.nan
    return (value - alone) / (teacher - alone)


def map_dbs(records: list[dict[str, Any]]) -> list[float]:
    """The `map_db` of each record that has one (records made before it was measured have none)."""
    return [float(r["map_db"]) for r in records if r.get("map_db") is not None]


def teacher_db(info: dict[str, Any], regime: str) -> float:
    """A teacher's `map_db` against the regime's training split (its own split when not measured)."""
    by_regime = info.get("map_db_by_regime") or {}
    value = by_regime.get(regime, info.get("map_db"))
    return math.nan if value is None else float(value)


def teacher_note(info: dict[str, Any], args: argparse.Namespace) -> str:
    if info.get("given"):
        return f"given: {Path(info['path']).name} ({info.get('epochs')} epochs), sha256 {info['sha256'][:12]}"
    return f"{args.teacher_epochs} epochs, full data"


def cache_note(records: list[dict[str, Any]]) -> str:
    """`; teacher live` when the runs did not cache the teacher's outputs (`cache_plan`)."""
    live = [r for r in records if r.get("cache") is False]
    if not live:
        return ""
    gb = max(float(r.get("cache_gb") or 0.0) for r in live)
    return f"teacher live (cache would be {gb:.1f} GB)"


def whole_run(record: dict[str, Any]) -> bool:
    """Whether a record's `wall_s` covers its whole run: a run resumed after an interruption times only
    its last process, which is shorter than the sum of its epochs."""
    return bool(record.get("wall_s")) and record["wall_s"] >= sum(record.get("epoch_s") or ())


def cost_line(group: list[dict[str, Any]]) -> str | None:
    """What each method costs against the student alone, in one pair and regime: its epochs after the
    first (the first runs the teacher and builds its cache) and its whole run's wall time (which, for
    `infoflow-aux`, includes training the auxiliary teacher; resumed runs left out), each as a ratio of
    the means."""
    alone = next((r for r in group if r["method"] == "alone" and r["n"] > 0), None)
    if alone is None:
        return None
    parts = []
    for r in group:
        if r["method"] in ("alone", "teacher", f"teacher-{HSSAKD}") or r["n"] == 0:
            continue
        epoch = r["later_epoch_s"] / alone["later_epoch_s"]
        wall = r["wall_s"] / alone["wall_s"]
        parts.append(
            f"{r['method']} {'n/a' if math.isnan(epoch) else f'{epoch:.2f}x'}"
            f" / {'n/a' if math.isnan(wall) else f'{wall:.2f}x'}"
        )
    return (
        (
            "Cost against the student alone (epochs after the first / the whole run's wall time, ratios of the"
            " means): " + "; ".join(parts) + "."
        )
        if parts
        else None
    )


def heterogeneous(teacher: str) -> bool:
    """A teacher of another kind than the CNN students: a vision transformer."""
    from edgekd.models import parse_arch

    return parse_arch(teacher).family == "vit"


def _best(same: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The distillation method with the highest mean accuracy in one pair and regime."""
    methods = [r for r in same if r["method"] not in ("alone", "teacher", f"teacher-{HSSAKD}") and r["n"] > 0]
    return max(methods, key=lambda r: r["acc"][0]) if methods else None


def _groups(rows: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["pair"], row["regime"]), []).append(row)
    return groups


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def teacher_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The teacher against the student alone, per pair and regime: worth distilling from when at least
    3 points more accurate (the issue's item 5)."""
    lines = []
    for (pair, regime), same in _groups(rows).items():
        t = next((r for r in same if r["method"] == "teacher"), None)
        alone = next((r for r in same if r["method"] == "alone" and r["n"] > 0), None)
        if t is None or alone is None:
            continue
        d = t["acc"][0] - alone["acc"][0]
        lines.append(
            f"- {pair}, {regime}: teacher {t['acc'][0] * 100:.2f}% vs alone {alone['acc'][0] * 100:.2f}%:"
            f" {d * 100:+.2f} pts -> {_met(d >= 0.03 - 1e-9)}"
        )
    return lines


def small_student_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Goal 1: for students under 30k parameters, the best method beats the student alone (same recipe
    and epochs) by at least 1.0 point of accuracy, per pair and regime."""
    lines = []
    for (pair, regime), same in _groups(rows).items():
        alone = next((r for r in same if r["method"] == "alone" and r["n"] > 0), None)
        best = _best(same)
        if alone is None or best is None or same[0]["student_params"] >= SMALL_STUDENT:
            continue
        d = best["acc"][0] - alone["acc"][0]
        lines.append(
            f"- {pair}, {regime}: best {best['method']} (n={best['n']}) {d * 100:+.2f} pts over alone"
            f" (std {_nan0(best['acc'][1]) * 100:.2f} / {_nan0(alone['acc'][1]) * 100:.2f}) -> {_met(d >= 0.01 - 1e-9)}"
        )
    return lines


def goal_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Goal 2: in each heterogeneous (vision transformer teacher) pair and regime, each information-flow
    variant against pkt on the same footing (`infoflow+kd` against `pkt+kd`): accuracy not below pkt's by
    more than the larger std, and both mAPs above pkt's by more than it."""
    lines = []
    for row in rows:
        if base_method(row["method"]) != "pkt" or row["n"] == 0 or not heterogeneous(row["teacher"]):
            continue
        suffix = row["method"].removeprefix("pkt")
        same = [r for r in rows if (r["pair"], r["regime"]) == (row["pair"], row["regime"])]
        infos = [m + suffix for m in ("infoflow", AUX, PKTH)]
        for info in [r for r in same if r["method"] in infos and r["n"] > 0]:
            parts = []
            for key, label in (("acc", "accuracy"), ("map", "mAP"), ("map_db", "mAP db")):
                std = max(_nan0(info[key][1]), _nan0(row[key][1]))
                d = info[key][0] - row[key][0]
                if math.isnan(d):
                    parts.append(f"{label} n/a")
                    continue
                ok = d >= -std if key == "acc" else d > std
                parts.append(f"{label} {d * 100:+.1f} pts vs std {std * 100:.1f} -> {_met(ok)}")
            lines.append(
                f"- {row['pair']}, {row['regime']} ({info['method']} vs {row['method']}, n={info['n']}): "
                + "; ".join(parts)
            )
    return lines


def gap_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Goal 3: at 10% of the data, the best method recovers at least 40% of the teacher-student accuracy gap."""
    lines = []
    for (pair, regime), same in _groups(rows).items():
        best = _best(same)
        if regime != "10pct" or best is None or math.isnan(best["gap_acc"]):
            continue
        lines.append(
            f"- {pair}, {regime}: best {best['method']} (n={best['n']}) recovers {best['gap_acc'] * 100:.0f}%"
            f" of the accuracy gap -> {_met(best['gap_acc'] >= 0.4 - 1e-9)}"
        )
    return lines


def _nan0(x: float) -> float:
    return 0.0 if math.isnan(x) else x


def markdown(rows: list[dict[str, Any]], args: argparse.Namespace, wall_s: float) -> str:
    import torch

    seeds = ",".join(map(str, args.seeds))
    per_regime = [(r, epochs_for(args, r)) for r in args.regimes]
    (r0, n0), rest = per_regime[0], per_regime[1:]
    epochs = (
        f"{n0} epochs in {r0}" + "".join(f", {n} in {r}" for r, n in rest)
        if any(n != n0 for _, n in rest)
        else f"{n0} epochs"
    )
    out = [
        "# Distillation comparison",
        "",
        f"Data {args.data}; students {epochs}, seeds {seeds}; teachers {args.teacher_epochs} epochs"
        f" (full data, seed 0) unless given; batch {args.batch_size}; {recipe_text(args)};"
        f" mAP: edgekd's, leave-one-out over the first {args.map_samples} test images; mAP db: the authors',"
        f" the run's training split as the database, every test image a query, 11-point interpolated;"
        f" {torch.get_num_threads()} torch threads; device {args.device}. Mean ± sample std over"
        f" seeds (accuracy and mAP in %); gap = (method - alone) / (teacher - alone), on the means."
        + (
            " Table written from the run records (--table-only)."
            if getattr(args, "table_only", False)
            else f" Wall time of this invocation: {wall_s / 60:.1f} min."
        ),
        "",
    ]
    header = (
        "| method | test acc % | mAP % | mAP db % | epoch s | gap acc | gap mAP | gap mAP db | n | note |\n"
        "|---|---|---|---|---|---|---|---|---|---|"
    )
    groups = _groups(rows)
    gap = lambda g: "" if math.isnan(g) else f"{g * 100:.0f}%"  # noqa: E731
    for group in groups.values():
        first = group[0]
        out += [
            "",
            f"## {first['pair']} ({first['teacher_params']:,} -> {first['student_params']:,} parameters),"
            f" {first['regime']} ({epochs_for(args, first['regime'])} epochs)",
            "",
            header,
        ]
        for row in group:
            acc, mean_ap, epoch_s = row["acc"], row["map"], row["epoch_s"]
            db = row.get("map_db", (math.nan, math.nan))
            out.append(
                f"| {row['method']} | {fmt(acc[0], acc[1], 100)} | {fmt(mean_ap[0], mean_ap[1], 100)} |"
                f" {fmt(db[0], db[1], 100)} | {fmt(epoch_s[0], epoch_s[1], 1, 2)} | {gap(row['gap_acc'])} |"
                f" {gap(row['gap_map'])} | {gap(row.get('gap_map_db', math.nan))} | {row['n']} | {row['note']} |"
            )
        if (cost := cost_line(group)) is not None:
            out += ["", cost]
    for title, text, lines in (
        (
            "Teachers worth distilling from",
            "Each teacher's accuracy minus the student alone's: at least +3 points.",
            teacher_lines(rows),
        ),
        (
            "Goal 1: distillation pays for small students",
            f"The best method's mean accuracy minus the student alone's (same recipe and epochs), students"
            f" under {SMALL_STUDENT:,} parameters: at least +1.0 point.",
            small_student_lines(rows),
        ),
        (
            "Goal 2: information flow vs pkt (heterogeneous pair)",
            "Each information-flow variant vs pkt: accuracy not below pkt's by more than the larger std;"
            " mAP (both protocols) above pkt's by more than it.",
            goal_lines(rows),
        ),
        (
            "Goal 3: the gap recovered at 10% of the data",
            "The best method's share of the teacher-student accuracy gap in 10pct: at least 40%.",
            gap_lines(rows),
        ),
    ):
        if lines:
            out += ["", f"## {title}", "", text, "", *lines]
    return "\n".join(out) + "\n"


def recipe_text(args: argparse.Namespace) -> str:
    """The training recipe, for the table's header."""
    r = recipe(args)
    augment = f"augmentation {r['augment']}" + (f" over {r['views']} views" if r["augment"] != "none" else "")
    return f"{augment}, warm-up {r['warmup_epochs']:g} epochs, lr {r['lr']:g}, kd temperature {r['kd_temperature']:g}"


# -- the command --------------------------------------------------------------------------------------


def csv(text: str) -> list[str]:
    """Comma-separated items; a comma inside parentheses belongs to its item (`cnn(width=16,depth=2)`)."""
    items, depth, start = [], 0, 0
    for i, ch in enumerate(text + ","):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "," and depth <= 0:
            items.append(text[start:i].strip())
            start, depth = i + 1, 0
    return [t for t in items if t]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.kd_comparison",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--pairs",
        default=",".join(DEFAULT_PAIRS),
        help="teacher:student,... split at the LAST colon, so a teacher may be module:factory"
        " (benchmarks.user_models:wide_convnet:cnn-xs); the student is a built-in name",
    )
    parser.add_argument(
        "--methods", default=",".join(DEFAULT_METHODS), help=f"of {', '.join(METHODS)}; or {', '.join(WITH_LOGITS)}"
    )
    parser.add_argument("--regimes", default="full,10pct", help=f"of {', '.join(REGIMES)}")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument(
        "--epochs", default="10", help="student epochs, every method alike: N, or per regime, e.g. 10pct=30,full=8"
    )
    parser.add_argument("--teacher-epochs", type=int, default=10)
    parser.add_argument(
        "--teacher",
        action="append",
        default=[],
        metavar="ARCH=PATH",
        help="a trained checkpoint to use as the teacher ARCH (a teacher of --pairs) instead of training one;"
        " repeatable, or a comma list",
    )
    parser.add_argument(
        "--augment",
        choices=["none", "standard"],
        default="none",
        help="training augmentation of every student and teacher trained here (none: the earlier records')",
    )
    parser.add_argument(
        "--views", type=int, default=1, help="with --augment: views per sample (the teacher cache holds K rows each)"
    )
    parser.add_argument("--warmup-epochs", type=float, default=0.0, help="linear lr warm-up before the cosine")
    parser.add_argument("--lr", type=float, default=None, help="learning rate (default: edgekd's)")
    parser.add_argument(
        "--kd-temperature", type=float, default=None, help="the kd method's temperature (default: edgekd distill's)"
    )
    parser.add_argument(
        "--auxiliary-epochs",
        default=None,
        help="infoflow-pkth's auxiliary epochs on labels (then half as many of transfer): N, or per regime"
        " (10pct=30,full=10); default: the student's epochs of the regime",
    )
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--map-samples", type=int, default=2000, help="test images for retrieval mAP")
    parser.add_argument(
        "--auxiliary",
        default=None,
        help="value of DistillConfig.auxiliary for infoflow-aux (default: auto, or true for a flag field)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--out", type=Path, default=Path("kd-comparison"))
    parser.add_argument(
        "--resume",
        action="store_true",
        help="skip runs whose result JSON exists; an interrupted run continues from its last epoch",
    )
    parser.add_argument(
        "--table-only", action="store_true", help="train nothing: write the table from the run records already in --out"
    )
    args = parser.parse_args(argv)
    args.pairs = [tuple(p.rsplit(":", 1)) for p in csv(args.pairs)]
    if any(len(p) != 2 or not all(p) for p in args.pairs):
        parser.error("--pairs: give teacher:student,...")
    args.methods = csv(args.methods)
    if unknown := set(args.methods) - set(METHODS) - set(WITH_LOGITS):
        known = ", ".join((*METHODS, *WITH_LOGITS))
        parser.error(f"--methods: unknown {', '.join(sorted(unknown))}; known: {known}")
    args.regimes = csv(args.regimes)
    if unknown := set(args.regimes) - set(REGIMES):
        parser.error(f"--regimes: unknown {', '.join(sorted(unknown))}; known: {', '.join(REGIMES)}")
    args.seeds = [int(s) for s in csv(args.seeds)]
    try:
        args.epochs = parse_epochs(args.epochs, args.regimes)
    except ValueError as err:
        parser.error(f"--epochs: {err}")
    if args.auxiliary_epochs is not None:
        try:
            args.auxiliary_epochs = parse_epochs(args.auxiliary_epochs, args.regimes)
        except ValueError as err:
            parser.error(f"--auxiliary-epochs: {err}")
    if args.views < 1 or (args.views > 1 and args.augment == "none"):
        parser.error("--views: at least 1, and more than 1 only with --augment standard")
    try:
        args.teacher = given_teachers(args.teacher, [p[0] for p in args.pairs])
    except ValueError as err:
        parser.error(f"--teacher: {err}")
    return args


def given_teachers(values: list[str], teachers: list[str]) -> dict[str, str]:
    """`--teacher ARCH=PATH` (repeated, or comma lists) -> {arch: path}; ARCH must be a teacher of the
    pairs (matched whole, so an arch with `=` in it, `cnn(width=8)`, works) and PATH a file."""
    given: dict[str, str] = {}
    for item in (i for v in values for i in csv(v)):
        arch = next((t for t in sorted(set(teachers), key=len, reverse=True) if item.startswith(t + "=")), None)
        if arch is None:
            raise ValueError(f"{item!r}: give ARCH=PATH with ARCH one of the pairs' teachers ({', '.join(teachers)})")
        path = item[len(arch) + 1 :]
        if not Path(path).is_file():
            raise ValueError(f"{item!r}: no such file {path}")
        given[arch] = path
    return given


def main(argv: list[str] | None = None) -> int:
    import torch

    from edgekd.data import load_data

    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    code_version()  # the code this process loaded, before the checkout can move on
    start = time.perf_counter()
    args.n_train = len(load_data(args.data, val_fraction=0.0).train)
    limits = {r: regime_limit(args, r) for r in args.regimes}
    teachers: dict[str, dict[str, Any]] = {}
    ckpts: dict[str, Path] = {}
    runs = []
    for pair in args.pairs:
        for key, hssakd in ((pair[0], False), (hssakd_key(pair[0]), True)):
            if key not in teachers and (not hssakd or HSSAKD in args.methods):
                ckpts[key], teachers[key] = obtain_teacher(pair[0], args, hssakd)
                t = teachers[key]
                print(
                    f"teacher {key}: test acc {t['test_accuracy'] * 100:.2f}%, mAP {t['map'] * 100:.2f}%,"
                    f" mAP db {', '.join(f'{r} {teacher_db(t, r) * 100:.2f}%' for r in args.regimes)},"
                    f" {number(t.get('epoch_s_mean')):.1f} s/epoch",
                    flush=True,
                )
        for regime in args.regimes:
            for seed in args.seeds:
                for method in args.methods:
                    r = run_one(
                        pair, ckpts[pair[0]], regime, limits[regime], method, seed, args, ckpts.get(hssakd_key(pair[0]))
                    )
                    runs.append(r)
                    if r.get("status") == "missing":
                        continue
                    if r.get("status") == "done":
                        db = r.get("map_db")
                        print(
                            f"{pair[0]} -> {pair[1]} {regime} {method} seed {seed}:"
                            f" acc {r['test_accuracy'] * 100:.2f}%, mAP {r['map'] * 100:.2f}%,"
                            f" mAP db {'n/a' if db is None else f'{db * 100:.2f}%'}, {r['epoch_s_mean']:.1f} s/epoch",
                            flush=True,
                        )
                    else:
                        print(f"{pair[0]} -> {pair[1]} {regime} {method} seed {seed}: {r['note']}", flush=True)
    rows = aggregate(runs, teachers, args)
    wall = time.perf_counter() - start
    text = markdown(rows, args, wall)
    write_json(
        args.out / "results.json",
        {
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "limits": limits,
            "teachers": teachers,
            "rows": rows,
            "runs": runs,
            "wall_s": wall,
        },
    )
    (args.out / "results.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
