"""The Flower strategies: FedAvg and FedProx made reproducible, and FedGen on top of them.

Flower's own FedAvg samples nodes with Python's global RNG and aggregates replies in arrival order, and
node ids differ from run to run; a federation that must resume to the same result cannot have either.
`Seeded` therefore samples *partitions* from an RNG seeded by (seed, round), sends each to the node that
holds it (learned once by a query message), and aggregates replies in partition order. FedProx is Seeded
with `proximal-mu` in the config, which is all Flower's FedProx adds (the term lives in the client).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg
from flwr.serverapp.strategy.strategy_utils import aggregate_arrayrecords

from edgekd.errors import EdgekdError
from edgekd.federate.config import FederationConfig
from edgekd.federate.generator import Generator, train_generator


def partition_of(content: RecordDict) -> int:
    """The partition a client's reply reports."""
    return int(str(content.metric_records["metrics"]["partition"]))


def record_bytes(record: ArrayRecord) -> int:
    return sum(len(array.data) for array in record.values())


def sample_partitions(cfg: FederationConfig, round_index: int) -> list[int]:
    """The clients of round `round_index` (from 0): a pure function of the seed and the round."""
    rng = np.random.default_rng([cfg.seed, round_index, 1])
    return sorted(int(p) for p in rng.choice(cfg.clients, cfg.sample, replace=False))


class Seeded(FedAvg):
    """FedAvg (or FedProx with `proximal_mu` > 0) with seeded sampling and ordered aggregation.

    `offset` is the number of rounds a resumed federation already has: Flower counts its rounds from 1
    again, the clients see the absolute round."""

    def __init__(self, cfg: FederationConfig, nodes: dict[int, int], offset: int, proximal_mu: float = 0.0) -> None:
        super().__init__(fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=1, min_available_nodes=1)
        self.cfg, self.nodes, self.offset, self.proximal_mu = cfg, nodes, offset, proximal_mu
        self.last: dict[str, float] = {}

    def round_index(self, server_round: int) -> int:
        return self.offset + server_round - 1

    def payload(self, round_index: int, arrays: ArrayRecord, config: ConfigRecord) -> RecordDict:
        return RecordDict({"arrays": arrays, "config": config})

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        t = self.round_index(server_round)
        config = ConfigRecord({"federation": self.cfg.to_json(), "round": t})
        if self.proximal_mu > 0:
            config["proximal-mu"] = self.proximal_mu
        record = self.payload(t, arrays, config)
        partitions = sample_partitions(self.cfg, t)
        self.last = {"bytes_down": float(len(partitions) * sum(map(record_bytes, record.array_records.values())))}
        return [Message(record, dst_node_id=self.nodes[p], message_type=MessageType.TRAIN) for p in partitions]

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        valid, failed = self._check_and_log_replies(replies, is_train=True)
        if failed:
            raise EdgekdError(f"{len(failed)} client(s) failed in round {server_round}: {failed[0].error.reason}")
        valid.sort(key=lambda m: partition_of(m.content))
        contents = [m.content for m in valid]
        self.after_train(self.round_index(server_round), contents)
        arrays = aggregate_arrayrecords(contents, self.weighted_by_key)
        metrics = self.train_metrics_aggr_fn(contents, self.weighted_by_key)
        self.last["bytes_up"] = float(sum(record_bytes(c.array_records["arrays"]) for c in contents))
        self.last["train_loss"] = float(str(metrics.get("train-loss", float("nan"))))
        return arrays, metrics

    def after_train(self, round_index: int, contents: list[RecordDict]) -> None:
        """What a strategy does with the clients' models before they are averaged (FedGen: the generator)."""


class FedGen(Seeded):
    """FedGen: after each round, the server trains the generator against the sampled clients' heads,
    weighted by their label shares (`edgekd.federate.generator`), and sends it with the next model."""

    def __init__(
        self,
        cfg: FederationConfig,
        nodes: dict[int, int],
        offset: int,
        gen: Generator,
        gen_opt: torch.optim.Optimizer,
        gen_sched: torch.optim.lr_scheduler.LRScheduler,
        counts: dict[int, list[int]],
    ) -> None:
        super().__init__(cfg, nodes, offset)
        self.gen, self.gen_opt, self.gen_sched, self.counts = gen, gen_opt, gen_sched, counts

    def payload(self, round_index: int, arrays: ArrayRecord, config: ConfigRecord) -> RecordDict:
        record = super().payload(round_index, arrays, config)
        if round_index > 0:  # round 0 trains without the generator: it is untrained then
            record["generator"] = ArrayRecord(self.gen.state_dict())
        return record

    def after_train(self, round_index: int, contents: list[RecordDict]) -> None:
        heads, counts = [], []
        for content in contents:
            arrays = content.array_records["arrays"]
            heads.append((arrays["head.weight"].numpy(), arrays["head.bias"].numpy()))
            counts.append(self.counts[partition_of(content)])
        torch_heads = [(torch.from_numpy(np.array(w)), torch.from_numpy(np.array(b))) for w, b in heads]
        self.last["gen_loss"] = train_generator(
            self.gen, self.gen_opt, torch_heads, counts, seed=int(self.cfg.seed * 100_003 + round_index)
        )
        self.gen_sched.step()
