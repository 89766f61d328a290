"""One measurement in its own process: `python -m edgekd.bench.worker` reads a JSON request on stdin.

Each measurement runs in a fresh process so runtimes' thread pools never fight, and this module never
imports torch: PyTorch's OpenMP pool in the same process slows ONNX Runtime down. The parent side
(`call`) lives here too, so both ends of the request format are in one file.

Request: {"artifact": Artifact.to_json(), "batch": int, "threads": int | null, "timing": {...},
"data": spec | null, "limit": int | null, "seed": int, "adapter": module | null (`adapter_module`),
"shift": {"corruptions": [[name, severity], ...], "domains": {name: spec}, "seed": int} | null}.
Reply: one JSON object on stdout; on bad input {"error": ..., "kind": "user"} and exit 2, on a failure
inside {"error": ..., "kind": "internal"} and exit 1.
With `--serve` the process stays: one load, then one round per request line (`serve`, `WarmWorker`).
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import tempfile
import traceback
from dataclasses import asdict, replace
from pathlib import Path
from typing import IO, Any

import numpy as np

from edgekd.bench.protocol import (
    THREAD_VARS,
    LatencyStats,
    ProtocolError,
    TimingConfig,
    fingerprint,
    fixed_input,
    measure,
)
from edgekd.data import Dataset, evaluation_split, to_float
from edgekd.data.domains import check_same_classes
from edgekd.data.shift import shifted
from edgekd.errors import UserError
from edgekd.runtimes import RUNTIMES, Artifact, RuntimeAdapter, Session, get_runtime

EVAL_BATCH = 64  # accuracy batches: large enough to be quick, small enough for any device
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]


# ---- parent side ------------------------------------------------------------------------------


def call(request: dict[str, Any], threads: int) -> dict[str, Any]:
    """Run one request in a fresh worker process; bad input comes back as UserError."""
    proc = subprocess.run(
        [sys.executable, "-m", "edgekd.bench.worker"],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        env=worker_env(threads),
        check=False,
    )
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    try:
        reply: dict[str, Any] = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        tail = "\n".join(proc.stderr.strip().splitlines()[-20:])
        code = proc.returncode
        raise RuntimeError(f"benchmark worker died (exit {code}) without a result:\n{tail}") from None
    if proc.returncode == 2 and reply.get("kind") == "user":
        raise UserError(reply["error"])
    if proc.returncode != 0 or "error" in reply:
        raise RuntimeError(f"benchmark worker failed: {reply.get('error')}\n{reply.get('traceback', '')}")
    return reply


def adapter_module(runtime: str) -> str:
    """The module that registered `runtime`, for the request's "adapter": a fresh worker imports it, so a
    runtime registered outside `edgekd.runtimes` (which the registry scans) is found there too."""
    return str(RUNTIMES.get(runtime).__module__)


def worker_env(threads: int) -> dict[str, str]:
    """The child's environment: OpenMP/BLAS pools pinned to `threads`, and this edgekd importable."""
    env = dict(os.environ)
    for var in THREAD_VARS:
        env[var] = str(threads)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = f"{_PACKAGE_ROOT}{os.pathsep}{path}" if path else str(_PACKAGE_ROOT)
    return env


class WarmWorker:
    """One worker process kept warm (`--serve`): it loads the artifact once; each `round()` runs one
    warm-up + timed block in it. `ready()` is the load reply (accuracy, fingerprint, output_shape).
    Closing its input ends it; use it as a context manager."""

    def __init__(self, request: dict[str, Any], threads: int) -> None:
        self._stderr = tempfile.TemporaryFile(mode="w+")  # a file, not a pipe: a chatty runtime never blocks
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "edgekd.bench.worker", "--serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env=worker_env(threads),
        )
        self._send(request)
        self._ready: dict[str, Any] | None = None

    def ready(self) -> dict[str, Any]:
        """Wait for the load reply (once); bad input comes back as UserError."""
        if self._ready is None:
            self._ready = self._receive()
        return self._ready

    def round(self) -> LatencyStats:
        self.ready()
        self._send({"op": "round"})
        stats = self._receive()["stats"]
        return LatencyStats(**{**stats, "quantiles_ms": tuple(stats["quantiles_ms"])})

    def close(self) -> None:
        if self._proc.stdin is not None and not self._proc.stdin.closed:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        self._stderr.close()

    def __enter__(self) -> WarmWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, obj: dict[str, Any]) -> None:
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write(json.dumps(obj) + "\n")
            self._proc.stdin.flush()
        except BrokenPipeError:
            pass  # it died; the next _receive says why

    def _receive(self) -> dict[str, Any]:
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            code = self._proc.wait()
            self._stderr.seek(0)
            tail = "\n".join(self._stderr.read().strip().splitlines()[-20:])
            raise RuntimeError(f"benchmark worker died (exit {code}) without a result:\n{tail}")
        reply: dict[str, Any] = json.loads(line)
        if reply.get("kind") == "user":
            raise UserError(reply["error"])
        if "error" in reply:
            raise RuntimeError(f"benchmark worker failed: {reply.get('error')}\n{reply.get('traceback', '')}")
        return reply


# ---- child side -------------------------------------------------------------------------------


def handle(request: dict[str, Any]) -> dict[str, Any]:
    """Load the artifact, time it on one fixed input, and score it on the data's test split if given."""
    loaded = _Loaded(request)
    stats = measure(loaded.session, loaded.inputs, loaded.timing)
    return {**stats.fields_json(), **loaded.describe()}


class _Loaded:
    """An artifact loaded in this process, its one fixed input checked, and what the reply says about it."""

    def __init__(self, request: dict[str, Any]) -> None:
        self.request = request
        self.artifact = _artifact(request)
        self.batch, seed = int(request.get("batch") or 1), int(request.get("seed") or 0)
        self.timing = TimingConfig.from_json(request.get("timing") or {})
        self.adapter = _adapter(self.artifact.runtime, request.get("adapter"))
        self.test, self.scored_on = _test_split(request.get("data"), request.get("limit"), self.artifact)
        self.domains = _domains(request.get("shift"), request.get("limit"), self.artifact, self.test)
        self.session = self.adapter.load(self.artifact)
        self.inputs = _fixed_input(self.test, self.batch, self.artifact.input_shape, seed)
        _check_outputs(self.session, self.inputs, self.test)

    def describe(self) -> dict[str, Any]:
        """Everything of the reply but latency: accuracy (untimed), fingerprint, settings."""
        art, test = self.artifact, self.test
        threads = art.threads or os.cpu_count() or 1
        return {
            "accuracy": None if test is None else _accuracy(self.session, test, max(self.batch, EVAL_BATCH)),
            "accuracy_samples": None if test is None else len(test),
            "accuracy_on": self.scored_on,
            "data": self.request.get("data"),
            "fingerprint": fingerprint(
                art.runtime, self.adapter.version(), art.precision, threads, self.batch, art.device
            ),
            "artifact": str(art.path),
            "timing": self.timing.to_json(),
            "torch_loaded": "torch" in sys.modules,
            **self._shift(),
        }

    def _shift(self) -> dict[str, Any]:
        """With a "shift" request: accuracy per domain (corruptions as NAME-SEVERITY, then user domains) and
        the unnormalised mean corruption error, mean over corruptions of (1 - accuracy); else nothing."""
        shift = self.request.get("shift")
        if not shift or self.test is None:
            return {}
        chunk, seed = max(self.batch, EVAL_BATCH), int(shift.get("seed") or 0)
        scores = {
            f"{name}-{severity}": _accuracy(self.session, shifted(self.test, name, int(severity), seed), chunk)
            for name, severity in shift.get("corruptions") or []
        }
        errors = [1.0 - acc for acc in scores.values()]
        scores.update({name: _accuracy(self.session, data, chunk) for name, data in self.domains.items()})
        return {"shift": scores, "mean_corruption_error": sum(errors) / len(errors) if errors else None}


def serve(inp: IO[str], out: IO[str]) -> int:
    """Persistent mode (`--serve`): the first line is a request as above; the artifact loads once and the
    reply is the usual object without latency, plus `output_shape`. Then each line (`{"op": "round"}`)
    runs one round, a warm-up + timed block of THE loop, and replies `{"stats": LatencyStats fields}`.
    End of input ends the process (exit 0)."""
    try:
        loaded = _Loaded(json.loads(inp.readline() or "{}"))
        ready = {**loaded.describe(), "output_shape": list(np.shape(loaded.session.run(loaded.inputs)))}
    except (UserError, ProtocolError, KeyError) as err:
        _reply(out, {"error": str(err), "kind": "user"})
        return 2
    except Exception as err:
        _reply(out, _internal(err))
        return 1
    _reply(out, ready)
    for line in inp:
        if not line.strip():
            continue
        try:
            stats = measure(loaded.session, loaded.inputs, loaded.timing)
        except Exception as err:
            _reply(out, _internal(err))
            return 1
        _reply(out, {"stats": asdict(stats)})
    return 0


def _adapter(runtime: str, module: str | None) -> RuntimeAdapter:
    """The artifact's runtime, after importing the module that registered it in the parent (if any)."""
    if module and module != "__main__":
        importlib.import_module(module)
    return get_runtime(runtime)


def _artifact(request: dict[str, Any]) -> Artifact:
    """The request's artifact, with its threads overridden when the request names them."""
    artifact = Artifact.from_json(request["artifact"])
    if request.get("threads") is not None:
        artifact = replace(artifact, threads=int(request["threads"]))
    if not artifact.path.exists():
        raise UserError(f"artifact file not found: {artifact.path}; check the path or re-run `edgekd export`")
    return artifact


def _test_split(spec: str | None, limit: int | None, artifact: Artifact) -> tuple[Dataset | None, str | None]:
    """What to score on (its first `limit` samples) and its description: the data's test split, or for
    data without one the validation split the model trained without (`evaluation_split`, from the split
    export recorded)."""
    if spec is None:
        return None, None
    held_out, described = evaluation_split(spec, (artifact.info.get("model") or {}).get("split"))
    test = held_out.head(limit)
    if len(test) == 0:
        raise UserError(f"data {spec!r} has no test samples; give data with at least one image")
    if test.input_shape != tuple(artifact.input_shape):
        raise UserError(
            f"data {spec!r} has images of shape {_shape(test.input_shape)} but {artifact.path.name} takes"
            f" {_shape(artifact.input_shape)}; give data of the shape the model was exported for"
        )
    return test, described


def _domains(
    shift: dict[str, Any] | None, limit: int | None, artifact: Artifact, test: Dataset | None
) -> dict[str, Dataset]:
    """User target domains (`--domain NAME=SPEC`), each held-out split checked against the model's shape
    and the clean data's classes."""
    out: dict[str, Dataset] = {}
    for name, spec in ((shift or {}).get("domains") or {}).items():
        data, _ = _test_split(spec, limit, artifact)
        assert data is not None
        if test is not None:
            check_same_classes(test.classes, data, name)
        out[name] = data
    return out


def _fixed_input(test: Dataset | None, batch: int, shape: tuple[int, ...], seed: int) -> np.ndarray:
    """The one input every timed run reuses: real images when there is data, else seeded noise."""
    if test is not None:
        index = np.arange(batch) % len(test)  # fewer images than the batch: repeat them
        return np.ascontiguousarray(to_float(test.x[index]))
    return fixed_input(shape, batch, seed)


def _check_outputs(session: Session, inputs: np.ndarray, test: Dataset | None) -> None:
    """One untimed run: the artifact must take this batch and give N x classes logits."""
    try:
        logits = np.asarray(session.run(inputs))
    except Exception as err:  # runtimes raise their own types for a batch they cannot take
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"the artifact cannot run a batch of shape {list(inputs.shape)} ({reason})") from None
    if logits.ndim != 2 or logits.shape[0] != len(inputs):
        raise UserError(
            f"the artifact gives outputs of shape {list(logits.shape)} for a batch of {len(inputs)};"
            " edgekd benchmarks classifiers that give N x classes logits"
        )
    if test is not None and test.num_classes > logits.shape[1]:
        raise UserError(
            f"data {test.name} has {test.num_classes} classes but the model gives {logits.shape[1]} outputs;"
            " give data with the classes the model was trained on"
        )


def _accuracy(session: Session, test: Dataset, chunk: int) -> float:
    """Top-1 accuracy over `test`, in batches of one fixed size."""
    chunk = min(chunk, len(test))
    correct = 0
    for start in range(0, len(test), chunk):
        x = to_float(test.x[start : start + chunk])
        n = len(x)
        if n < chunk:  # pad the tail: runtimes that specialise per shape do not rebuild for it
            x = np.concatenate([x, np.repeat(x[-1:], chunk - n, axis=0)])
        predicted = np.asarray(session.run(np.ascontiguousarray(x)))[:n].argmax(axis=1)
        correct += int((predicted == test.y[start : start + n]).sum())
    return correct / len(test)


def _shape(shape: tuple[int, ...]) -> str:
    return " x ".join(str(d) for d in shape)


def _internal(err: Exception) -> dict[str, Any]:
    return {"error": f"{type(err).__name__}: {err}", "kind": "internal", "traceback": traceback.format_exc()}


def _reply(out: IO[str], obj: dict[str, Any]) -> None:
    out.write(json.dumps(obj) + "\n")
    out.flush()


def main() -> int:
    # Runtimes may print from C code; point fd 1 at stderr so stdout carries only the one reply.
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    if "--serve" in sys.argv[1:]:
        return serve(sys.stdin, out)
    try:
        result = handle(json.loads(sys.stdin.read()))
    except (UserError, ProtocolError) as err:
        _reply(out, {"error": str(err), "kind": "user"})
        return 2
    except Exception as err:
        _reply(out, _internal(err))
        return 1
    _reply(out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
