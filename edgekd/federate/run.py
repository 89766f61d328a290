"""`federate`: one federation on this machine with Flower's simulation engine (Ray), one virtual
SuperNode per client. The ServerApp and ClientApp are the ones a real SuperLink runs (`app.py`)."""

from __future__ import annotations

import importlib.util
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekd.errors import EdgekdError, UserError
from edgekd.federate.config import FederationConfig


@dataclass(frozen=True)
class FederationResult:
    checkpoint: Path
    history: list[dict[str, float]]
    test_accuracy: float
    rounds: int
    seconds: float


def precheck(cfg: FederationConfig) -> None:
    """The user's errors, found before the engine starts: the config, and a split with an empty client."""
    from edgekd.federate.client import client_data

    cfg.check()
    client_data(cfg, 0)  # draws the split; raises when a client would have no data


def federate(cfg: FederationConfig, out: Path, resume: bool = False, threads: int = 1) -> FederationResult:
    """Run `cfg` (or resume it from `out`) and return the final model's checkpoint and per-round history."""
    if importlib.util.find_spec("flwr") is None:
        raise UserError("edgekd federate needs Flower; install it with: pip install 'edgekd[federated]'")
    from flwr.serverapp import Grid, ServerApp
    from flwr.simulation import run_simulation

    from edgekd.federate.client import client_app
    from edgekd.federate.server import model_file, read_state, serve

    precheck(cfg)
    out = Path(out)
    if resume:
        read_state(out, cfg)  # another federation's state: refuse now, not inside the engine
    errors: list[BaseException] = []
    server_app = ServerApp()

    @server_app.main()
    def main(grid: Grid, context: Any) -> None:
        try:
            serve(grid, cfg, out, resume)
        except BaseException as err:  # the engine logs and swallows it; the caller must see it
            errors.append(err)
            raise

    start = time.perf_counter()
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")  # kept: a later federation in this process reads it too
    logging.getLogger("flwr").setLevel(logging.WARNING)
    backend = {
        "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
        "init_args": {
            "num_cpus": threads,
            "num_gpus": 0,
            "include_dashboard": False,
            "logging_level": "ERROR",
            "log_to_driver": False,
        },
    }
    saved = dict(os.environ)
    try:
        run_simulation(server_app, client_app, num_supernodes=cfg.clients, backend_config=backend)  # type: ignore[arg-type]
    finally:  # Ray extends PYTHONPATH, sets PYTHONBREAKPOINT and more in this process: give the caller its own back
        os.environ.clear()
        os.environ.update(saved)
    if errors:
        raise errors[0]
    state = read_state(out, cfg)
    done = int(state["round"]) if state else 0
    if state is None or done < cfg.rounds:
        raise EdgekdError(f"the federation stopped after round {done} of {cfg.rounds}; rerun with --resume")
    history = list(state["history"])
    return FederationResult(model_file(out), history, history[-1]["test_acc"], done, time.perf_counter() - start)
