"""The few CUDA runtime calls edgekd's TensorRT code makes, through NVIDIA's `cuda-python` bindings.

Why cuda-python (`cuda.bindings.runtime`, `cuda.cudart` before 12.6) and not torch.cuda or PyCUDA:
it is the binding TensorRT's own Python samples use; one wheel installs it on x86 and on Jetson
(aarch64); it talks to the runtime API's primary context, so there is no context to manage; and it
keeps torch, its allocator and its threads out of the process being measured. Every cuda-python call
returns `(error, *values)`; `call` turns an error into an EdgekdError. Importing this module imports
nothing from CUDA.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np

from edgekd.errors import EdgekdError, UserError


def import_cudart() -> ModuleType:
    """cuda-python's runtime module, whichever path this version has."""
    try:
        from cuda.bindings import runtime

        result: ModuleType = runtime
        return result
    except ImportError:
        pass
    try:
        from cuda import cudart

        return cudart  # type: ignore[no-any-return]
    except ImportError:
        raise UserError("TensorRT needs NVIDIA's CUDA Python bindings; pip install cuda-python") from None


def _error_name(rt: ModuleType, err: Any) -> str:
    name = rt.cudaGetErrorName(err)[1]
    return name.decode() if isinstance(name, bytes) else str(name)


def call(result: Any) -> Any:
    """The value(s) of a cuda-python call; raise EdgekdError when it returned an error."""
    rt = import_cudart()
    err, *values = result if isinstance(result, tuple) else (result,)
    if err != rt.cudaError_t.cudaSuccess:
        raise EdgekdError(f"CUDA call failed: {_error_name(rt, err)}")
    return values[0] if len(values) == 1 else tuple(values) or None


def select_device(index: int) -> str:
    """Make GPU `index` current for this thread; its name. UserError when there is no such GPU."""
    rt = import_cudart()
    err, count = rt.cudaGetDeviceCount()
    if err != rt.cudaError_t.cudaSuccess or count == 0:
        reason = _error_name(rt, err) if err != rt.cudaError_t.cudaSuccess else "no device"
        raise UserError(
            f"no NVIDIA GPU is visible on this machine ({reason}); build and run TensorRT targets on the device itself"
        )
    if index >= count:
        raise UserError(f"device cuda:{index} does not exist; this machine has cuda:0..cuda:{count - 1}")
    call(rt.cudaSetDevice(index))
    name = call(rt.cudaGetDeviceProperties(index)).name
    return str(name.decode() if isinstance(name, bytes) else name).rstrip("\x00")


class DeviceBuffer:
    """`nbytes` of device memory, freed by `free()` (or when collected)."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = nbytes
        self.ptr: int = int(call(import_cudart().cudaMalloc(max(nbytes, 1))))

    def free(self) -> None:
        if self.ptr:
            ptr, self.ptr = self.ptr, 0
            import_cudart().cudaFree(ptr)  # best effort: it may run during interpreter shutdown

    def __del__(self) -> None:
        try:
            self.free()
        except Exception:  # nothing useful to do when freeing fails at interpreter shutdown
            pass


class Stream:
    """A CUDA stream; `handle` is the integer TensorRT's enqueue calls take."""

    def __init__(self) -> None:
        self._stream = call(import_cudart().cudaStreamCreate())
        self.handle = int(self._stream)

    def synchronize(self) -> None:
        call(import_cudart().cudaStreamSynchronize(self._stream))

    def destroy(self) -> None:
        if self.handle:
            self.handle = 0
            import_cudart().cudaStreamDestroy(self._stream)

    def __del__(self) -> None:
        try:
            self.destroy()
        except Exception:  # nothing useful to do when it fails at interpreter shutdown
            pass


def to_device(ptr: int, array: np.ndarray, stream: Stream) -> None:
    """Enqueue a copy of a C-contiguous host array into device memory at `ptr`."""
    rt = import_cudart()
    kind = rt.cudaMemcpyKind.cudaMemcpyHostToDevice
    call(rt.cudaMemcpyAsync(ptr, array.ctypes.data, array.nbytes, kind, stream.handle))


def to_host(array: np.ndarray, ptr: int, stream: Stream) -> None:
    """Enqueue a copy from device memory at `ptr` into a C-contiguous host array (sync before reading)."""
    rt = import_cudart()
    kind = rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
    call(rt.cudaMemcpyAsync(array.ctypes.data, ptr, array.nbytes, kind, stream.handle))


class Graph:
    """A CUDA graph captured from the work `enqueue` puts on a stream, relaunched by `launch()`."""

    def __init__(self, stream: Stream, enqueue: Callable[[], None]) -> None:
        rt = import_cudart()
        self._stream = stream
        mode = rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        call(rt.cudaStreamBeginCapture(stream.handle, mode))
        try:
            enqueue()
        finally:  # end the capture even when enqueue failed, or the stream stays unusable
            self._graph = call(rt.cudaStreamEndCapture(stream.handle))
        self._exec = call(rt.cudaGraphInstantiate(self._graph, 0))

    def launch(self) -> None:
        call(import_cudart().cudaGraphLaunch(self._exec, self._stream.handle))

    def destroy(self) -> None:
        rt = import_cudart()
        rt.cudaGraphExecDestroy(self._exec)
        rt.cudaGraphDestroy(self._graph)


class Event:
    """A CUDA event; `elapsed_ms(start, end)` is the GPU time between two recorded events."""

    def __init__(self) -> None:
        self._event = call(import_cudart().cudaEventCreate())

    def record(self, stream_handle: int) -> None:
        call(import_cudart().cudaEventRecord(self._event, stream_handle))

    def synchronize(self) -> None:
        call(import_cudart().cudaEventSynchronize(self._event))

    @staticmethod
    def elapsed_ms(start: Event, end: Event) -> float:
        return float(call(import_cudart().cudaEventElapsedTime(start._event, end._event)))

    def destroy(self) -> None:
        import_cudart().cudaEventDestroy(self._event)
