"""Student search spaces: a YAML grid over the built-in families that expands to candidate architectures.

A space names one or more families (the family is the block type: `cnn` plain conv-BN-ReLU layers,
`mobilenet` inverted residuals, `resnet` basic blocks, `mobilenetv3` inverted residuals with
squeeze-and-excitation and hard-swish, `efficientnet` EfficientNet-lite MBConv) and, for each, the values
of its parameters (`width`: channels for cnn/resnet, a multiplier for the others; `depth`: layers or
blocks per stage, a repeat multiplier for efficientnet; `expand`: the expansion ratio; `stem_stride` and
`stages` for edge inputs), plus the input resolutions and limits. The built-in edge spaces `edge96` and
`edge224` take 3-channel images at 96 and 224 pixels. Short form:

    family: cnn            # or a list: [cnn, resnet], each with the same grid
    width: [8, 12, 16]
    depth: [1, 2]
    image_size: [28]
    max_params: 100000

Long form, one grid per family:

    families:
      - {family: cnn, width: [8, 12, 16], depth: [1, 2]}
      - {family: mobilenet, width: [0.5, 1.0], depth: [1, 2], expand: [2, 4]}

Family and parameter names are checked when the space loads. Every candidate is built once (untrained)
to count its parameters and FLOPs: `torch.utils.flop_counter.FlopCounterMode` on one input at batch 1,
so a multiply-add is 2 FLOPs, and only convolutions and matrix products count.
"""

from __future__ import annotations

import hashlib
import inspect
import itertools
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from edgekd.config import Frozen, load_yaml, parse
from edgekd.errors import UserError
from edgekd.models import ArchSpec, build_model

SPACES_DIR = Path(__file__).resolve().parent / "spaces"
_DIMS = ("in_channels", "num_classes")  # set by the space, not per family
Scalar = int | float | bool | str


@dataclass(frozen=True)
class Candidate:
    """One architecture of a space. `arch` is what `parse_arch` accepts (with `spec.image_size`)."""

    arch: str
    spec: ArchSpec
    params: int
    flops: int
    key: str

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.spec.in_channels, self.spec.image_size, self.spec.image_size

    def __hash__(self) -> int:  # the spec's params dict is not hashable; the key stands for it
        return hash(self.key)


class FamilyGrid(BaseModel):
    """One family and the values each of its parameters takes (a scalar is a one-value list)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    family: str
    grid: dict[str, tuple[Scalar, ...]] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _collect(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "grid" in data:
            return data
        grid = {k: v if isinstance(v, list | tuple) else [v] for k, v in data.items() if k != "family"}
        return {"family": data.get("family"), "grid": grid}

    @model_validator(mode="after")
    def _check(self) -> FamilyGrid:
        from edgekd.models.zoo import FAMILIES

        if ":" in self.family:
            raise ValueError(f"{self.family!r}: search spaces take built-in families only ({FAMILIES.names()})")
        if self.family not in FAMILIES:
            raise ValueError(f"unknown family {self.family!r}; known: {', '.join(FAMILIES.names())}")
        builder = FAMILIES.get(self.family)
        known = [p for p in inspect.signature(builder).parameters if p not in _DIMS]
        unknown = sorted(set(self.grid) - set(known))
        if unknown:
            raise ValueError(f"family {self.family} has no parameter {', '.join(unknown)}; known: {', '.join(known)}")
        empty = [k for k, values in self.grid.items() if not values]
        if empty:
            raise ValueError(f"family {self.family}: {', '.join(empty)} lists no values")
        return self

    def points(self) -> list[dict[str, Scalar]]:
        names = sorted(self.grid)
        return [dict(zip(names, values, strict=True)) for values in itertools.product(*(self.grid[n] for n in names))]


class SearchSpace(Frozen):
    """A grid of student architectures and the limits a candidate must meet."""

    name: str = "space"
    families: tuple[FamilyGrid, ...]
    image_size: tuple[int, ...] = Field(default=(28,), description="input resolutions (square), pixels")
    in_channels: int = Field(default=1, ge=1)
    num_classes: int = Field(default=10, ge=2)
    max_params: int | None = Field(default=None, ge=1)
    min_params: int | None = Field(default=None, ge=0)
    max_flops: float | None = Field(default=None, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, data: Any) -> Any:
        """`family: cnn` (or a list) with the grid at the top level -> one `families` entry per family."""
        if not isinstance(data, dict) or "family" not in data:
            return data
        if "families" in data:
            raise ValueError("give either `family` with a grid, or `families`, not both")
        names = data["family"] if isinstance(data["family"], list) else [data["family"]]
        grid = {k: v for k, v in data.items() if k != "family" and k not in cls.model_fields}
        rest = {k: v for k, v in data.items() if k in cls.model_fields}
        return {**rest, "families": [{"family": name, **grid} for name in names]}

    @model_validator(mode="after")
    def _check(self) -> SearchSpace:
        if not self.families:
            raise ValueError("the space names no family; add `family: cnn` or a `families` list")
        if not self.image_size or min(self.image_size) < 1:
            raise ValueError("image_size must list at least one positive resolution, e.g. [28]")
        return self

    def specs(self) -> list[ArchSpec]:
        """Every grid point, in order, without duplicates (nothing built yet)."""
        dims = {"in_channels": self.in_channels, "num_classes": self.num_classes}
        specs = [
            ArchSpec(family=grid.family, params=point, image_size=size, **dims)
            for grid in self.families
            for point in grid.points()
            for size in self.image_size
        ]
        return list({spec_key(s): s for s in specs}.values())

    def candidates(self) -> list[Candidate]:
        """The candidates within the limits, each with its parameter count and FLOPs."""
        specs = self.specs()
        with one_thread():
            kept = [c for c in map(make_candidate, specs) if self._within(c)]
        if not kept:
            raise UserError(
                f"search space {self.name!r} has no candidate within its limits ({len(specs)} grid"
                f" points, {self._limits()}); widen the grid or relax the limits"
            )
        return kept

    def _within(self, c: Candidate) -> bool:
        return (
            (self.max_params is None or c.params <= self.max_params)
            and (self.min_params is None or c.params >= self.min_params)
            and (self.max_flops is None or c.flops <= self.max_flops)
        )

    def _limits(self) -> str:
        limits = {k: getattr(self, k) for k in ("min_params", "max_params", "max_flops")}
        return ", ".join(f"{k}={v:g}" for k, v in limits.items() if v is not None) or "no limits"


def spec_key(spec: ArchSpec) -> str:
    """A stable hash of everything that defines the architecture and its input."""
    text = json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@contextmanager
def one_thread() -> Iterator[None]:
    """Torch on one thread: batch-1 forwards of tiny models are slower with a pool on a busy machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def make_candidate(spec: ArchSpec) -> Candidate:
    """Build `spec` untrained and count its parameters and FLOPs at batch 1."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from edgekd.models.zoo import count_params

    try:
        model = build_model(spec).eval()
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.rand(1, spec.in_channels, spec.image_size, spec.image_size))
    except (RuntimeError, ValueError, TypeError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(
            f"search space candidate {spec.label()} at {spec.image_size}px cannot be built"
            f" ({reason}); fix its parameter values"
        ) from None
    return Candidate(
        arch=spec.label(),
        spec=spec,
        params=count_params(model),
        flops=int(counter.get_total_flops()),
        key=spec_key(spec),
    )


def load_space(path: str | Path) -> SearchSpace:
    """A space from a YAML file, or by name from the spaces shipped with edgekd (`small`)."""
    file = Path(path)
    if not file.is_file() and file.suffix not in (".yaml", ".yml") and (SPACES_DIR / f"{path}.yaml").is_file():
        file = SPACES_DIR / f"{path}.yaml"
    if not file.is_file():
        known = ", ".join(sorted(p.stem for p in SPACES_DIR.glob("*.yaml")))
        raise UserError(f"search space not found: {path}; give a YAML file or a built-in space ({known})")
    data = load_yaml(file)
    data.setdefault("name", file.stem)
    return parse(SearchSpace, data, f"search space {file}")
