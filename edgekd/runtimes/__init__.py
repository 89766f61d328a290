"""Runtime adapters behind one small Protocol. Importing this never imports a runtime package.

A runtime turns a float ONNX model into an artifact for a target profile (`build`), and loads an
artifact into a session whose only method is `run` (`load`). Runtimes know nothing about timing:
only `edgekd.bench` times anything.
"""

from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edgekd.config import Runtime, TargetProfile
from edgekd.errors import UserError


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
        """Logits for a float32 N x C x H x W batch."""
        ...


class RuntimeAdapter(Protocol):
    name: Runtime

    @staticmethod
    def is_available() -> bool: ...

    def version(self) -> str: ...

    def build(self, onnx_path: Path, profile: TargetProfile, workdir: Path) -> Artifact: ...

    def load(self, artifact: Artifact) -> Session: ...


_ADAPTERS = {
    Runtime.ONNXRUNTIME: "edgekd.runtimes.onnxruntime:OnnxRuntime",
    Runtime.OPENVINO: "edgekd.runtimes.openvino:OpenVino",
    Runtime.TENSORRT: "edgekd.runtimes.tensorrt:TensorRT",
}

_INSTALL_HINT = {
    Runtime.ONNXRUNTIME: "pip install onnxruntime",
    Runtime.OPENVINO: "pip install openvino",
    Runtime.TENSORRT: "install TensorRT on the device (pip install 'edgekd[tensorrt]' on an NVIDIA machine),"
    " or add --offline to export the ONNX and trtexec.sh to build there",
}


def get_runtime(name: str | Runtime, *, require: bool = True) -> RuntimeAdapter:
    """The adapter for `name`; with `require`, fail clearly when the runtime is not installed here."""
    try:
        runtime = Runtime(name)
    except ValueError:
        known = ", ".join(r.value for r in Runtime)
        raise UserError(f"unknown runtime {name!r}; known: {known}") from None
    module_name, _, cls_name = _ADAPTERS[runtime].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name and err.name.startswith("edgekd"):
            raise UserError(f"runtime {runtime.value} has no adapter in this edgekd version yet") from None
        raise
    adapter: RuntimeAdapter = getattr(module, cls_name)()
    if require and not adapter.is_available():
        raise UserError(f"runtime {runtime.value} is not installed on this machine; {_INSTALL_HINT[runtime]}")
    return adapter
