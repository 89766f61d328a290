"""Validated, frozen configuration per stage: YAML in, clear errors out."""

from __future__ import annotations

import enum
import os
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edgekd.errors import UserError
from edgekd.registry import Registry

#: targets/ and calibration/ as this edgekd ships them: links to the repository's folders in a source
#: checkout, copies in an installed wheel (`edgekd._shipped`)
SHIPPED = Path(__file__).resolve().parent / "_shipped"


class Runtime(str, enum.Enum):
    """The built-in runtimes' names. A target profile may name any registered runtime (`RUNTIMES`)."""

    ONNXRUNTIME = "onnxruntime"
    OPENVINO = "openvino"
    TENSORRT = "tensorrt"


#: Runtime adapters by name, filled by the modules of `edgekd.runtimes` on the first lookup (one file per
#: runtime). Declared here, below the adapters, so a target profile's runtime is checked when it loads; the
#: registry finds its package by name, as every registry does, so no import circle arises.
RUNTIMES: Registry[Any] = Registry("runtime", package="edgekd.runtimes")


def runtime_name(runtime: str) -> str:
    """A runtime's registry name: a `Runtime` member's value, or the name as given."""
    return runtime.value if isinstance(runtime, Runtime) else str(runtime)


class Precision(str, enum.Enum):
    FP32 = "fp32"
    FP16 = "fp16"
    BF16 = "bf16"
    INT8 = "int8"


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TargetProfile(Frozen):
    """A hardware target: which runtime on which device, at which precision, threads and batch."""

    name: str
    description: str = ""
    runtime: str = Field(description="a registered runtime: a `Runtime` value (built in) or an added one")
    device: str = "cpu"
    precision: Precision = Precision.FP32
    threads: int = Field(default=0, ge=0, description="0 = all cores of the device")
    batch: int = Field(default=1, ge=1)
    input_shape: tuple[int, int, int] | None = Field(default=None, description="C, H, W; None = take it from the model")
    latency_budget_ms: float | None = Field(default=None, gt=0)
    hint: str = Field(default="latency", description="latency or throughput (runtimes that have hints)")
    calibration: str | None = Field(default=None, description="calibration recipe for INT8")
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("runtime", mode="before")
    @classmethod
    def _runtime(cls, value: Any) -> Any:
        """A plain str (so `.runtime == Runtime.OPENVINO` holds either way), checked against `RUNTIMES`."""
        if not isinstance(value, str):
            return value  # pydantic reports the wrong type
        name = runtime_name(value)
        if name not in RUNTIMES:
            raise ValueError(f"unknown runtime {name!r}; known: {', '.join(RUNTIMES.names())}")
        return name

    @field_validator("hint")
    @classmethod
    def _hint(cls, value: str) -> str:
        if value not in ("latency", "throughput"):
            raise ValueError("hint must be 'latency' or 'throughput'")
        return value

    def resolved_threads(self) -> int:
        return self.threads or (os.cpu_count() or 1)


class Flip(str, enum.Enum):
    """Horizontal flip: `auto` flips 3-channel images (natural photos) and never 1-channel ones (digits,
    documents; Fashion-MNIST's shoes all point left, so a flipped shoe is a view its test set never shows)."""

    AUTO = "auto"
    ON = "on"
    OFF = "off"


class Augment(Frozen):
    """Training-time augmentation (`edgekd.data.augment`): zero padding then a random crop back to size, a
    horizontal flip, random erasing with probability `erase`. The default is none (today's behaviour);
    `standard` is pad 4, flip auto, erase 0.25. Never applied to validation, test or calibration data."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_enum_values=True)  # plain str in dumps
    pad: int = Field(default=0, ge=0, le=64)
    flip: Flip = Field(default=Flip.OFF, validate_default=True)  # validated: a plain str, as given ones
    erase: float = Field(default=0.0, ge=0.0, le=1.0)

    @model_validator(mode="before")
    @classmethod
    def _named(cls, value: Any) -> Any:
        if isinstance(value, str):
            if value not in AUGMENT_PRESETS:
                raise ValueError(f"unknown augmentation {value!r}; use {', '.join(AUGMENT_PRESETS)} or a mapping")
            return AUGMENT_PRESETS[value]
        return value

    @property
    def active(self) -> bool:
        return self.pad > 0 or self.flip != Flip.OFF or self.erase > 0


AUGMENT_PRESETS: dict[str, dict[str, Any]] = {
    "none": {},
    "standard": {"pad": 4, "flip": "auto", "erase": 0.25},
}


class TrainConfig(Frozen):
    """How one model is trained: shared by teachers and students."""

    epochs: int = Field(default=5, ge=1)
    batch_size: int = Field(default=128, ge=1)
    lr: float = Field(default=2e-3, gt=0)
    weight_decay: float = Field(default=1e-4, ge=0)
    seed: int = 0
    limit: int | None = Field(default=None, ge=1, description="use the first N training samples")
    val_fraction: float = Field(default=0.1, ge=0.0, lt=1.0)
    amp: bool = True
    #: float16 (with a grad scaler) or bfloat16 (none needed); AMP runs on CUDA, and on the CPU for bfloat16 only
    amp_dtype: Literal["float16", "bfloat16"] = "float16"
    compile: bool = Field(default=False, description="torch.compile what trains (checkpoints keep the plain keys)")
    device: str = "auto"
    threads: int | None = Field(default=None, ge=1)
    augment: Augment = Field(default_factory=Augment, description="none, standard or {pad, flip, erase}")
    #: with augmentation: 0 draws a fresh view of every sample each epoch (what training a teacher wants; a
    #: teacher then runs live), K >= 1 draws from K fixed views per sample, whose teacher outputs can be cached
    views: int = Field(default=0, ge=0, le=64, description="0: a fresh view every epoch; K: K cached views")
    mixup: float = Field(default=0.0, ge=0.0, description="mixup Beta(a, a); 0 = off; needs the live teacher")
    warmup_epochs: float = Field(default=0.0, ge=0.0, description="linear learning-rate warm-up before the cosine")
    #: patience counted in optimizer steps, not epochs: on a small training set an epoch is a few dozen steps,
    #: and 30 of them left a 7k-parameter student 5 points short of where 100 took it (benchmarks.kd_recipe)
    min_steps: int | None = Field(
        default=None, ge=1, description="train at least this many steps: epochs raised to fit the data at hand"
    )

    def with_min_steps(self, steps_per_epoch: int) -> TrainConfig:
        """This config with `epochs` raised to ceil(min_steps / steps_per_epoch) where that is more."""
        if self.min_steps is None or steps_per_epoch < 1:
            return self
        needed = -(-self.min_steps // steps_per_epoch)
        return self.model_copy(update={"epochs": needed}) if needed > self.epochs else self


ModelT = TypeVar("ModelT", bound=BaseModel)


def load_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping, failing with one clear line on a missing file or malformed YAML."""
    if not path.is_file():
        raise UserError(f"file not found: {path}; check the path")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise UserError(f"malformed YAML in {path}{where}; fix the syntax") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} must hold a YAML mapping (key: value), not {type(data).__name__}")
    return data


def parse(model: type[ModelT], data: dict[str, Any], source: str) -> ModelT:
    """Validate `data` into a frozen config, turning pydantic's report into one line."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "(top level)"
        count = len(err.errors())
        more = f" (and {count - 1} more problem{'s' if count > 2 else ''})" if count > 1 else ""
        raise UserError(f"invalid {source}: {field}: {first['msg']}{more}") from None


def cache_dir() -> Path:
    """Where edgekd keeps what it can rebuild (trained demo teachers, teacher outputs): EDGEKD_CACHE."""
    return Path(os.environ.get("EDGEKD_CACHE", Path.home() / ".cache" / "edgekd"))


def search_dirs(kind: str) -> list[Path]:
    """Where named `targets` or `calibration` recipes are looked up, in order."""
    env = os.environ.get(f"EDGEKD_{kind.upper()}")
    dirs = [Path(env)] if env else []
    return dirs + [Path.cwd() / kind, SHIPPED / kind]


def resolve_named_yaml(name_or_path: str, kind: str) -> Path:
    """A YAML path as given, or a name looked up in the `kind` folders (targets/, calibration/)."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or os.sep in name_or_path:
        if not candidate.is_file():
            raise UserError(f"{kind} file not found: {candidate}; check the path")
        return candidate
    for folder in search_dirs(kind):
        path = folder / f"{name_or_path}.yaml"
        if path.is_file():
            return path
    known = sorted({p.stem for d in search_dirs(kind) if d.is_dir() for p in d.glob("*.yaml")})
    raise UserError(f"unknown {kind} {name_or_path!r}; known: {', '.join(known) or '(none)'}")


def load_target(name_or_path: str) -> TargetProfile:
    path = resolve_named_yaml(name_or_path, "targets")
    data = load_yaml(path)
    data.setdefault("name", path.stem)
    return parse(TargetProfile, data, f"target profile {path}")


def known_targets() -> list[str]:
    return sorted({p.stem for d in search_dirs("targets") if d.is_dir() for p in d.glob("*.yaml")})
