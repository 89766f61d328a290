"""Runtime adapters behind one small Protocol. Importing this never imports a runtime package.

A runtime turns a float ONNX model into an artifact for a target profile (`build`), and loads an
artifact into a session whose only method is `run` (`load`). Runtimes know nothing about timing:
only `edgekd.bench` times anything.

Each public module here defines one adapter class registered by name in `RUNTIMES`
(`@RUNTIMES.register("name")`); the registry imports every public module of this package on its first
lookup, so a new runtime is one new file (docs/add-a-runtime.md). Adapter modules import their runtime
package inside methods only; `_private` modules are helpers, never scanned.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edgekd.config import RUNTIMES, Runtime, TargetProfile, runtime_name
from edgekd.errors import UserError

__all__ = ["RUNTIMES", "Artifact", "RuntimeAdapter", "Session", "get_runtime"]


@dataclass(frozen=True)
class Artifact:
    """A built model for one runtime: the file (or folder) it runs, and what it was built for."""

    runtime: str
    precision: str
    path: Path
    input_shape: tuple[int, int, int]
    device: str = "cpu"
    threads: int = 0
    hint: str = "latency"
    target: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["path"] = str(self.path)
        data["input_shape"] = list(self.input_shape)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any], base: Path | None = None) -> Artifact:
        path = Path(data["path"])
        if base is not None and not path.is_absolute():
            path = base / path
        return cls(
            runtime=data["runtime"],
            precision=data["precision"],
            path=path,
            input_shape=tuple(data["input_shape"]),
            device=data.get("device", "cpu"),
            threads=int(data.get("threads", 0)),
            hint=data.get("hint", "latency"),
            target=data.get("target"),
            info=dict(data.get("info", {})),
        )


class Session(Protocol):
    def run(self, inputs: np.ndarray) -> np.ndarray:
        """Logits for a float32 N x C x H x W batch. A run on the very array of the previous run (the
        timing loop's case) may return the session's own output buffer, which the next run overwrites:
        copy it to keep it. A run on any other array returns an array of its own."""
        ...


class RuntimeAdapter(Protocol):
    """What a registered runtime class provides; `get_runtime` instantiates it with no arguments."""

    name: str  # its registry name (a `Runtime` member for the built-in ones)
    install_hint: str  # how to install the runtime, for the "not installed" error

    @staticmethod
    def is_available() -> bool: ...

    def version(self) -> str: ...

    def build(self, onnx_path: Path, profile: TargetProfile, workdir: Path) -> Artifact: ...

    def load(self, artifact: Artifact) -> Session: ...


def get_runtime(name: str | Runtime, *, require: bool = True) -> RuntimeAdapter:
    """The adapter registered as `name`; with `require`, fail clearly when the runtime is not installed here."""
    runtime = runtime_name(name)
    adapter: RuntimeAdapter = RUNTIMES.create(runtime)  # an unknown name fails listing the known ones
    if require and not adapter.is_available():
        raise UserError(f"runtime {runtime} is not installed on this machine; {adapter.install_hint}")
    return adapter
