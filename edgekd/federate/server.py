"""The ServerApp's body: find the clients, run the strategy's rounds, checkpoint after every round.

After each round the server scores the global model on the test split (the clients never send data;
the score is the experimenter's), writes `<out>/model.pt` (an ordinary edgekd checkpoint: export, bench
and select take it) and `<out>/federation.state.pt` (model, generator and its optimiser, history,
round), so `resume` continues an interrupted federation from its last round, to the same result.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, cast

import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid

from edgekd._io import write_with
from edgekd.data import load_data
from edgekd.distill.trainer import evaluate
from edgekd.errors import EdgekdError, UserError
from edgekd.federate.client import arch_for, head_of
from edgekd.federate.config import FederationConfig, Strategy
from edgekd.federate.generator import GEN_LR, WEIGHT_DECAY, Generator
from edgekd.federate.strategy import FedGen, Seeded, partition_of
from edgekd.models import build_model, save_checkpoint

STATE_FORMAT = "edgekd-federation-state-1"
NODE_WAIT_S = 300.0


def state_file(out: Path) -> Path:
    return out / "federation.state.pt"


def model_file(out: Path) -> Path:
    return out / "model.pt"


def read_state(out: Path, cfg: FederationConfig) -> dict[str, Any] | None:
    """The last round's state of a federation in `out`, checked against `cfg`; None when there is none."""
    path = state_file(out)
    if not path.is_file():
        return None
    state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("format") != STATE_FORMAT or not cfg.same_run(FederationConfig.from_json(state["config"])):
        raise UserError(f"{path} was made by another federation; resume with the same options or choose another --out")
    return state


def discover(grid: Grid, cfg: FederationConfig) -> tuple[dict[int, int], dict[int, list[int]]]:
    """partition -> node id, and partition -> label counts, asked of every node once."""
    deadline = time.monotonic() + NODE_WAIT_S
    while len(list(grid.get_node_ids())) < cfg.clients:
        if time.monotonic() > deadline:
            raise EdgekdError(f"only {len(list(grid.get_node_ids()))} of {cfg.clients} clients connected")
        time.sleep(1.0)
    config = ConfigRecord({"federation": cfg.to_json(), "round": -1})
    asks = [
        Message(RecordDict({"config": config}), dst_node_id=n, message_type=MessageType.QUERY)
        for n in grid.get_node_ids()
    ]
    nodes: dict[int, int] = {}
    counts: dict[int, list[int]] = {}
    for reply in grid.send_and_receive(asks):
        if reply.has_error():
            raise EdgekdError(f"client {reply.metadata.src_node_id} failed: {reply.error.reason}")
        partition = partition_of(reply.content)
        held = cast(list[int], reply.content.metric_records["metrics"]["counts"])
        nodes[partition], counts[partition] = reply.metadata.src_node_id, [int(c) for c in held]
    if sorted(nodes) != list(range(cfg.clients)):
        raise EdgekdError(f"clients hold partitions {sorted(nodes)}; each of 0..{cfg.clients - 1} must be held once")
    return nodes, counts


def serve(grid: Grid, cfg: FederationConfig, out: Path, resume: bool) -> None:
    """Run (or resume) the federation `cfg`, checkpointing into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    split = load_data(cfg.data, seed=cfg.seed, limit=cfg.limit)
    spec = arch_for(cfg, split.train)
    state = read_state(out, cfg) if resume else None
    torch.manual_seed(cfg.seed)
    model = build_model(spec)
    gen = Generator(split.train.num_classes, head_of(model).in_features) if cfg.strategy is Strategy.FEDGEN else None
    gen_opt = torch.optim.Adam(gen.parameters() if gen else [torch.zeros(1)], lr=GEN_LR)
    gen_sched = torch.optim.lr_scheduler.ExponentialLR(gen_opt, gamma=WEIGHT_DECAY)
    history: list[dict[str, float]] = []
    offset = 0
    if state is not None:
        model.load_state_dict(state["model"])
        if gen is not None:
            gen.load_state_dict(state["generator"])
            gen_opt.load_state_dict(state["gen_opt"])
            gen_sched.load_state_dict(state["gen_sched"])
        history, offset = list(state["history"]), int(state["round"])
    nodes, counts = discover(grid, cfg)
    about: dict[str, object] = {
        "data": cfg.data,
        "classes": list(split.train.classes),
        "input_shape": list(split.train.input_shape),
        "split": split.info,
    }
    strategy: Seeded
    if gen is not None:
        strategy = FedGen(cfg, nodes, offset, gen, gen_opt, gen_sched, counts)
    else:
        strategy = Seeded(cfg, nodes, offset, cfg.proximal_mu if cfg.strategy is Strategy.FEDPROX else 0.0)

    def after_round(server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        if server_round == 0:
            return None
        model.load_state_dict(arrays.to_torch_state_dict())
        loss, acc = evaluate(model, split.test, torch.device("cpu"))
        history.append({"round": offset + server_round, "test_acc": acc, "test_loss": loss, **strategy.last})
        checkpoint(out, cfg, model, gen, gen_opt, gen_sched, history, about, spec)
        return MetricRecord({"test-acc": acc, "test-loss": loss})

    strategy.start(grid, ArrayRecord(model.state_dict()), num_rounds=cfg.rounds - offset, evaluate_fn=after_round)


def checkpoint(
    out: Path,
    cfg: FederationConfig,
    model: torch.nn.Module,
    gen: Generator | None,
    gen_opt: torch.optim.Optimizer,
    gen_sched: torch.optim.lr_scheduler.LRScheduler,
    history: list[dict[str, float]],
    about: dict[str, object],
    spec: Any,
) -> None:
    """The round's model as an edgekd checkpoint (`about`: its data, classes, input shape and split), then
    the state a resume reads (written last: a crash between the two resumes from the previous round,
    which rewrites the model)."""
    row = history[-1]
    meta = {
        "kind": "federated",
        "federation": cfg.model_dump(mode="json"),
        "round": int(row["round"]),
        "history": history,
        "test_acc": row["test_acc"],
        **about,
    }
    save_checkpoint(model_file(out), model, spec, meta)
    state = {
        "format": STATE_FORMAT,
        "config": cfg.to_json(),
        "round": int(row["round"]),
        "model": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "generator": gen.state_dict() if gen is not None else None,
        "gen_opt": gen_opt.state_dict(),
        "gen_sched": gen_sched.state_dict(),
        "history": history,
    }
    write_with(state_file(out), lambda tmp: torch.save(state, tmp))
