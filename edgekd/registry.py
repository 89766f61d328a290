"""One generic registry: `@REG.register(name)` and `REG.create(name, **kwargs)` are the extension surface.

A registry may name the package whose modules fill it (`package=`): the first lookup imports every
public module there, so adding a method, a runtime or a data format is adding one file, and the
package never imports its own members (no import circle between a registry and what it holds).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from edgekd.errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to factories. Unknown names fail with an error that lists the known ones."""

    def __init__(self, kind: str, package: str | None = None) -> None:
        self.kind = kind
        self._entries: dict[str, Callable[..., T]] = {}
        self._package = package

    def _discover(self) -> None:
        """Import the public modules of `package` once; each registers what it defines."""
        if self._package is None:
            return
        package, self._package = self._package, None  # before importing: modules register as they load
        for info in pkgutil.iter_modules(importlib.import_module(package).__path__):
            if not info.name.startswith("_"):
                importlib.import_module(f"{package}.{info.name}")

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def decorate(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = factory
            return factory

        return decorate

    def get(self, name: str) -> Callable[..., T]:
        self._discover()
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries)) or "(none)"
            raise UserError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def create(self, name: str, /, **kwargs: object) -> T:
        return self.get(name)(**kwargs)

    def names(self) -> list[str]:
        self._discover()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        self._discover()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
