"""The ClientApp: each client trains the global model on its own Dirichlet share of the data.

Every client runs the same code under every strategy; what differs is in the message: FedProx sends
`proximal-mu` (the client adds mu/2 * ||w - w_global||^2, as Flower's FedProx expects), FedGen also
sends the generator (the client adds alpha_t * CE on generated latents of uniformly drawn labels, fed
to its head, and beta_t * KL(softmax(h(G(z, y))) || model(x)) on its real batches).

The client learns which partition it is from its node config (`partition-id`, set by the simulation, or
`flower-supernode --node-config "partition-id=K num-partitions=N"`), and reads the federation config
from the message, so one ClientApp serves the simulation and a real SuperNode alike. Open choices (not
fixed by the paper): SGD with momentum 0.9 at `lr`, `local_epochs` full passes over the client's data
(the authors' code counts single batches), labels for the generated batch uniform over all classes.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from torch import Tensor, nn

from edgekd.data import Dataset, load_data, to_float
from edgekd.errors import UserError
from edgekd.federate.config import FederationConfig, Strategy
from edgekd.federate.generator import Generator, client_weight
from edgekd.federate.split import dirichlet_split, label_counts
from edgekd.models import ArchSpec, build_model, parse_arch

client_app = ClientApp()


@functools.lru_cache(maxsize=2)
def _parts(data: str, limit: int | None, seed: int, clients: int, alpha: float) -> tuple[Dataset, list[np.ndarray]]:
    train = load_data(data, seed=seed, limit=limit).train
    return train, dirichlet_split(train.y, clients, alpha, seed)


def client_data(cfg: FederationConfig, partition: int) -> Dataset:
    """Client `partition`'s share of the training split (the same on every machine: a pure function)."""
    train, parts = _parts(cfg.data, cfg.limit, cfg.seed, cfg.clients, cfg.alpha)
    return train.subset(parts[partition], f"{train.name}/client{partition}")


def arch_for(cfg: FederationConfig, data: Dataset) -> ArchSpec:
    c, h, _ = data.input_shape
    return parse_arch(cfg.arch, in_channels=c, num_classes=data.num_classes, image_size=h)


def head_of(model: nn.Module) -> nn.Linear:
    head = getattr(model, "head", None)
    if not isinstance(head, nn.Linear):
        raise UserError("fedgen needs a model whose predictor is a Linear named `head` (every built-in model has one)")
    return head


def partition_of(context: Context, cfg: FederationConfig) -> int:
    node = context.node_config
    if "partition-id" not in node:
        raise UserError(
            'this SuperNode has no partition-id; start it with --node-config "partition-id=K num-partitions=N"'
        )
    partition, count = int(node["partition-id"]), int(node.get("num-partitions", cfg.clients))
    if count != cfg.clients or not 0 <= partition < cfg.clients:
        raise UserError(f"node partition {partition} of {count}, but the federation has {cfg.clients} clients")
    return partition


def _config(msg: Message) -> tuple[FederationConfig, int]:
    config = msg.content.config_records["config"]
    return FederationConfig.from_json(str(config["federation"])), int(str(config["round"]))


@client_app.query()
def query(msg: Message, context: Context) -> Message:
    """Which partition this node holds and its label counts (FedGen's w_k(y) need them)."""
    cfg, _ = _config(msg)
    partition = partition_of(context, cfg)
    data = client_data(cfg, partition)
    counts = label_counts(data.y, data.num_classes)
    reply = MetricRecord({"partition": partition, "num-examples": len(data), "counts": counts})
    return Message(RecordDict({"metrics": reply}), reply_to=msg)


@client_app.train()
def train(msg: Message, context: Context) -> Message:
    torch.set_num_threads(1)
    cfg, round_index = _config(msg)
    partition = partition_of(context, cfg)
    data = client_data(cfg, partition)
    model = build_model(arch_for(cfg, data))
    model.load_state_dict(msg.content.array_records["arrays"].to_torch_state_dict())
    gen = None
    if cfg.strategy is Strategy.FEDGEN and round_index > 0:
        gen = Generator(data.num_classes, head_of(model).in_features)
        gen.load_state_dict(msg.content.array_records["generator"].to_torch_state_dict())
        gen.eval().requires_grad_(False)
    mu = float(str(msg.content.config_records["config"].get("proximal-mu", 0.0)))
    loss = train_local(model, data, cfg, round_index, partition, gen, mu)
    metrics = MetricRecord({"num-examples": len(data), "partition": partition, "train-loss": loss})
    return Message(RecordDict({"arrays": ArrayRecord(model.state_dict()), "metrics": metrics}), reply_to=msg)


def fedgen_terms(model: nn.Module, gen: Generator, logits: Tensor, y: Tensor, round_index: int) -> Tensor:
    """alpha_t * CE(h(G(z, y')), y') on drawn labels y' + beta_t * KL(softmax(h(G(z, y))) || model(x))."""
    weight = client_weight(round_index)
    head = head_of(model)
    with torch.no_grad():
        target = F.softmax(head(gen.sample(y)[0]), dim=1)
    kl = F.kl_div(F.log_softmax(logits, dim=1), target, reduction="batchmean")
    drawn = torch.randint(gen.num_classes, (len(y),))
    ce = F.cross_entropy(head(gen.sample(drawn)[0]), drawn)
    return weight * ce + weight * kl


def train_local(
    model: nn.Module,
    data: Dataset,
    cfg: FederationConfig,
    round_index: int,
    partition: int,
    gen: Generator | None,
    proximal_mu: float,
) -> float:
    """`local_epochs` seeded passes over `data`; returns the mean loss of the last pass."""
    torch.manual_seed(int(np.random.default_rng([cfg.seed, round_index, partition]).integers(2**31)))
    anchor = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9)
    model.train()
    mean = 0.0
    for epoch in range(cfg.local_epochs):
        order = np.random.default_rng([cfg.seed, round_index, partition, epoch]).permutation(len(data))
        total = 0.0
        for start in range(0, len(order), cfg.batch_size):
            index = order[start : start + cfg.batch_size]
            if len(index) < 2:  # BatchNorm cannot train on one sample
                continue
            x, y = torch.from_numpy(to_float(data.x[index])), torch.from_numpy(data.y[index]).long()
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            if gen is not None:
                loss = loss + fedgen_terms(model, gen, logits, y, round_index)
            if proximal_mu > 0:
                loss = loss + proximal_mu / 2 * sum(
                    ((p - a) ** 2).sum() for p, a in zip(model.parameters(), anchor, strict=True)
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            total += float(loss.detach()) * len(index)
        mean = total / max(1, len(order))
    return mean
