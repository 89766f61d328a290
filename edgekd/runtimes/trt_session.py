"""A loaded TensorRT engine: one execution context, device buffers for the largest batch, one stream.

Built by `edgekd.runtimes.tensorrt.TensorRT.load`; TensorRT 10's name-based I/O API
(`set_input_shape`, `set_tensor_address`, `execute_async_v3`). Importing this imports no tensorrt.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from edgekd.errors import EdgekdError, UserError
from edgekd.runtimes import cudart


class TensorRTSession:
    """One engine, one execution context, one stream; `run` maps float32 N x C x H x W to logits.

    Device buffers are allocated once for the engine's largest batch, so `run` allocates nothing on the
    GPU. `stage` + `enqueue` split `run` for `edgekd.bench.cuda_events`: inputs copied once, then only
    the engine's work (optionally as a captured CUDA graph, like `trtexec --useCudaGraph`) is enqueued.
    """

    def __init__(self, trt: ModuleType, runtime: Any, engine: Any) -> None:
        self._runtime, self._engine = runtime, engine  # the context needs both alive
        self._context = engine.create_execution_context()
        if self._context is None:
            raise EdgekdError("TensorRT could not create an execution context (out of GPU memory?)")
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        if len(inputs) != 1 or not outputs:
            raise UserError(f"the engine has inputs {inputs} and outputs {outputs}; edgekd runs one image input")
        self._input, self._output = inputs[0], outputs[0]
        for tensor in (self._input, self._output):
            if engine.get_tensor_dtype(tensor) != trt.DataType.FLOAT:
                raise UserError(
                    f"engine tensor {tensor!r} is {engine.get_tensor_dtype(tensor)}, not float32;"
                    " export the model with float32 input and logits"
                )
        low, _, high = (tuple(s) for s in engine.get_tensor_profile_shape(self._input, 0))
        self.min_batch, self.max_batch, self.chw = low[0], high[0], tuple(high[1:])
        self._stream = cudart.Stream()
        self._context.set_input_shape(self._input, high)
        self._buffers = {n: cudart.DeviceBuffer(_nbytes(trt, engine, self._context, n)) for n in names}
        for tensor, buffer in self._buffers.items():
            self._context.set_tensor_address(tensor, buffer.ptr)
        self._batch, self._out_shape = high[0], tuple(self._context.get_tensor_shape(self._output))
        self._graph: cudart.Graph | None = None

    @property
    def stream_handle(self) -> int:
        return self._stream.handle

    def run(self, inputs: np.ndarray) -> np.ndarray:
        """Logits for a float32 N x C x H x W batch (copy in, execute, copy out, wait).

        A batch above the engine's max_batch runs as consecutive engine-sized chunks (export's parity
        check sends 256 images at a time); `stage`, which timing uses, refuses it instead.
        """
        if len(inputs) > self.max_batch:
            step = self.max_batch
            return np.concatenate([self.run(inputs[i : i + step]) for i in range(0, len(inputs), step)])
        x = self._prepare(inputs)
        cudart.to_device(self._buffers[self._input].ptr, x, self._stream)
        self._execute()
        out = np.empty(self._out_shape, dtype=np.float32)
        cudart.to_host(out, self._buffers[self._output].ptr, self._stream)
        self._stream.synchronize()
        return out

    def stage(self, inputs: np.ndarray, *, cuda_graph: bool = False) -> None:
        """Put `inputs` on the device for `enqueue`; with `cuda_graph`, capture the enqueue as a graph."""
        x = self._prepare(inputs)
        cudart.to_device(self._buffers[self._input].ptr, x, self._stream)
        # One plain enqueue after a shape change lets TensorRT settle its state before a capture.
        self._execute()
        self._stream.synchronize()
        if cuda_graph:
            self._graph = cudart.Graph(self._stream, self._execute)

    def enqueue(self) -> None:
        """Enqueue one execution on the staged inputs; returns before the GPU finishes."""
        if self._graph is not None:
            self._graph.launch()
        else:
            self._execute()

    def close(self) -> None:
        self._drop_graph()
        for buffer in self._buffers.values():
            buffer.free()
        self._stream.destroy()

    def _execute(self) -> None:
        if not self._context.execute_async_v3(self._stream.handle):
            raise EdgekdError("TensorRT failed to enqueue the engine; its log above says why")

    def _prepare(self, inputs: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(inputs, dtype=np.float32)
        if x.ndim != 4 or tuple(x.shape[1:]) != self.chw:
            raise UserError(f"the engine takes N x {' x '.join(map(str, self.chw))} float32, got {x.shape}")
        if not self.min_batch <= len(x) <= self.max_batch:
            raise UserError(
                f"batch {len(x)} is outside the engine's range {self.min_batch}..{self.max_batch};"
                " rebuild with options min_batch/max_batch in the target profile"
            )
        if len(x) != self._batch:
            self._drop_graph()
            self._context.set_input_shape(self._input, x.shape)
            self._batch, self._out_shape = len(x), tuple(self._context.get_tensor_shape(self._output))
        return x

    def _drop_graph(self) -> None:
        if self._graph is not None:
            self._graph.destroy()
            self._graph = None


def _nbytes(trt: ModuleType, engine: Any, context: Any, name: str) -> int:
    """Bytes of tensor `name` at the context's current (largest) input shape."""
    itemsize = np.dtype(trt.nptype(engine.get_tensor_dtype(name))).itemsize
    result: int = int(np.prod([max(d, 0) for d in context.get_tensor_shape(name)])) * itemsize
    return result
