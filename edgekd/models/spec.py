"""Architecture specs: a family name plus its parameters, enough to rebuild the model anywhere.

ARCH strings the CLI accepts:
- a preset (`resnet`, `cnn-s`, `mobilenet-m`, ... see `edgekd.models.zoo.PRESETS`);
- a family with parameters: `cnn(width=12,depth=3)`, `mobilenet(width=0.5,depth=2)`;
- a user model `package.module:factory`, a callable returning an `nn.Module` (it is called with
  `num_classes` and `in_channels` keyword arguments when it accepts them).
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from edgekd.errors import UserError

_CALL = re.compile(r"^(?P<family>[a-z][\w-]*)\((?P<args>.*)\)$")


class ArchSpec(BaseModel):
    """What to build: `family` is a registered family name or `module:factory`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    family: str
    params: dict[str, Any] = Field(default_factory=dict)
    in_channels: int = 1
    num_classes: int = 10
    image_size: int = 28

    @property
    def is_user(self) -> bool:
        return ":" in self.family

    def label(self) -> str:
        args = ",".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        return f"{self.family}({args})" if args else self.family


def _literal(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def parse_arch(arch: str, *, in_channels: int = 1, num_classes: int = 10, image_size: int = 28) -> ArchSpec:
    """Turn an ARCH string into a spec, checking the name against the registries now, not at build time."""
    from edgekd.models.zoo import FAMILIES, PRESETS

    dims: dict[str, Any] = {"in_channels": in_channels, "num_classes": num_classes, "image_size": image_size}
    arch = arch.strip()
    if ":" in arch:
        _import_factory(arch)
        return ArchSpec(family=arch, **dims)
    if arch in PRESETS:
        family, params = PRESETS[arch]
        return ArchSpec(family=family, params=dict(params), **dims)
    match = _CALL.match(arch)
    if match:
        family = match["family"]
        FAMILIES.get(family)  # unknown family -> error listing the known ones
        params = {}
        for item in filter(None, (p.strip() for p in match["args"].split(","))):
            key, sep, value = item.partition("=")
            if not sep:
                raise UserError(f"arch {arch!r}: write parameters as key=value, e.g. cnn(width=8,depth=2)")
            params[key.strip()] = _literal(value.strip())
        return ArchSpec(family=family, params=params, **dims)
    known = ", ".join(sorted(PRESETS) + [f"{f}(...)" for f in FAMILIES.names()])
    raise UserError(f"unknown model {arch!r}; known: {known}, or module:factory")


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0][:200] if lines else ""


def _import_factory(ref: str) -> Any:
    module_name, _, attr = ref.partition(":")
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise UserError(
            f"cannot import {module_name!r} for model {ref!r} ({err}); run from its folder or add it to PYTHONPATH"
        ) from None
    except Exception as err:  # the module itself fails as it is imported (a syntax error, a raise at import)
        raise UserError(
            f"importing {module_name!r} for model {ref!r} failed ({type(err).__name__}: {_first_line(err)});"
            " fix that module"
        ) from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise UserError(
            f"no callable factory {attr!r} in module {module_name!r} (model {ref!r});"
            " name a function returning an nn.Module"
        )
    return factory


def build_model(spec: ArchSpec) -> nn.Module:
    """Build an untrained model from its spec."""
    from edgekd.models.zoo import FAMILIES

    if spec.is_user:
        factory = _import_factory(spec.family)
        accepted = inspect.signature(factory).parameters
        kwargs: dict[str, Any] = dict(spec.params)
        for key in ("num_classes", "in_channels"):
            if key in accepted:
                kwargs[key] = getattr(spec, key)
        try:
            model = factory(**kwargs)
        except Exception as err:  # the user's code failed: say where, in one line
            raise UserError(
                f"model factory {spec.family} raised {type(err).__name__}: {_first_line(err)}; fix the factory"
            ) from None
        if not isinstance(model, nn.Module):
            raise UserError(f"{spec.family} returned {type(model).__name__}, not a torch.nn.Module")
        return model
    builder = FAMILIES.get(spec.family)
    try:
        return builder(in_channels=spec.in_channels, num_classes=spec.num_classes, **spec.params)
    except TypeError as err:
        raise UserError(f"model {spec.label()}: {err}; check the parameter names") from None
