"""The one trainer, for teachers and students alike.

Seeded; CUDA and AMP when present; a checkpoint of the whole training state after every epoch, so
`resume` continues exactly where an interrupted run stopped (each epoch's shuffle is drawn from a
generator seeded by (seed, epoch), and RNG states are saved): a resumed run ends with the same
weights and metrics as an uninterrupted one. The objective receives each batch's rows, so it can key
per-sample data (the teacher-output cache) by them: a row is `sample * views + view`, the sample index
itself without augmentation (one view).

Augmentation (`cfg.augment`, `edgekd.data.augment`) applies to the training split only: each epoch every
sample shows one of its `cfg.views` views, drawn from a generator seeded by (seed, epoch), so the teacher
(live, or its cached outputs for that very view) sees exactly what the student sees, and a resumed run
sees the same views. With more than one view the teacher cache is filled for every view before the first
epoch (`fill_cache`), so later epochs cost about what the student alone costs. Mixup (`cfg.mixup`) mixes
each batch after augmentation with a pair drawn from (seed, epoch, batch); the objective then gets soft
targets (B x classes), which needs the live teacher.

Under `torchrun` (more than one process) only the student is wrapped in DistributedDataParallel, each
rank trains on its stride of the same per-epoch permutation, metrics are summed over the ranks, and
rank 0 alone writes the store and the checkpoints while the others wait (`edgekd.distill._ddp`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgekd._io import write_with
from edgekd.config import Augment, TrainConfig
from edgekd.data import Dataset, Split, to_float
from edgekd.data import augment as aug
from edgekd.distill import _ddp as ddp
from edgekd.distill.objectives import Objective
from edgekd.errors import TrainingDiverged, UserError
from edgekd.models import ArchSpec, memory_format_for, save_checkpoint, to_layout
from edgekd.store import Store
from edgekd.ui import console, progress_bar

STATE_FORMAT = "edgekd-train-state-1"


@dataclass(frozen=True)
class TrainResult:
    checkpoint: Path
    history: list[dict[str, float]]
    test_accuracy: float
    val_accuracy: float
    run_id: int
    seconds: float


def lr_factor(step: int, warm: int, total: int) -> float:
    """Linear warm-up over `warm` steps, then cosine to zero at `total` (no warm-up: today's cosine)."""
    if step < warm:
        return (step + 1) / (warm + 1)
    return 0.5 * (1 + math.cos(math.pi * min(step - warm, total - warm) / (total - warm)))


def state_path(out: Path) -> Path:
    return out.with_name(out.name + ".state")


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {name!r} asked for, but CUDA is not available here; use --device cpu or auto")
    return torch.device(name)


def index_batches(n: int, batch_size: int, order: np.ndarray | None = None) -> Iterator[np.ndarray]:
    """Yield the sample indices of each batch, in `order` (default: as stored)."""
    idx = np.arange(n) if order is None else order
    for start in range(0, len(idx), batch_size):
        yield idx[start : start + batch_size]


def load_batch(data: Dataset, index: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """The float (x, y) tensors of the samples `index`."""
    return torch.from_numpy(to_float(data.x[index])), torch.from_numpy(data.y[index])


def view_batch(data: Dataset, index: np.ndarray, view: np.ndarray, cfg: TrainConfig) -> torch.Tensor:
    """The float views `view` of the samples `index` (the stored images when `cfg` does not augment)."""
    x = data.x[index]
    if cfg.augment.active:
        x = aug.views_of(x, cfg.augment, cfg.seed, index, view)
    return torch.from_numpy(to_float(x))


def mixup(
    x: torch.Tensor, y: torch.Tensor, classes: int, alpha: float, seed: tuple[int, ...]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mix each image with a partner: (lam x + (1 - lam) x[perm], the same mix of one-hot targets)."""
    rng = np.random.default_rng(seed)
    lam = float(rng.beta(alpha, alpha))
    perm = torch.from_numpy(rng.permutation(len(y))).to(x.device)
    soft = F.one_hot(y, classes).float()
    return lam * x + (1 - lam) * x[perm], lam * soft + (1 - lam) * soft[perm]


def batches(
    data: Dataset, batch_size: int, order: np.ndarray | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield float (x, y) tensor batches in `order` (default: as stored)."""
    for part in index_batches(len(data), batch_size, order):
        yield load_batch(data, part)


@torch.no_grad()
def evaluate(model: nn.Module, data: Dataset, device: torch.device, batch_size: int = 512) -> tuple[float, float]:
    """(mean cross-entropy, top-1 accuracy) of `model` on `data`."""
    model.eval()
    total_loss, correct = 0.0, 0
    for x, y in batches(data, batch_size):
        logits = model(x.to(device))
        total_loss += float(F.cross_entropy(logits, y.to(device), reduction="sum"))
        correct += int((logits.argmax(1).cpu() == y).sum())
    n = max(1, len(data))
    return total_loss / n, correct / n


def check_classes(num_outputs: int, data: Dataset, role: str) -> None:
    if num_outputs != data.num_classes:
        raise UserError(
            f"the {role} has {num_outputs} outputs but the data has {data.num_classes} classes;"
            f" use a {role} trained for this data (or data with {num_outputs} classes)"
        )


def output_count(model: nn.Module, input_shape: tuple[int, int, int]) -> int:
    model.eval()
    with torch.no_grad():
        return int(model(torch.zeros(1, *input_shape)).shape[1])


class Trainer:
    """Trains `model` under `objective`, checkpointing to `<out>.state` each epoch and `out` at the end.

    `train_module` (default: `model`) is what trains: a module that holds `model` plus training-only parts
    (e.g. auxiliary branches). It is optimised and checkpointed as a whole, so resume restores those parts
    too; `model` alone is evaluated and saved to `out`.
    """

    def __init__(
        self,
        model: nn.Module,
        spec: ArchSpec,
        objective: Objective,
        split: Split,
        cfg: TrainConfig,
        out: Path,
        store: Store,
        run_kind: str,
        meta: dict[str, Any],
        train_module: nn.Module | None = None,
    ) -> None:
        self.model, self.spec, self.objective, self.split = model, spec, objective, split
        self.train_module = train_module if train_module is not None else model
        self.cfg, self.out, self.store, self.kind, self.meta = cfg, Path(out), store, run_kind, meta
        self.rank = ddp.from_env()
        self.device = pick_device(cfg.device)
        if self.rank.active and self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", self.rank.local)
        ddp.init(self.rank, self.device)
        # AMP on CUDA; on the CPU only when bfloat16 is asked for (CPU float16 autocast is slow and was never on)
        self.amp_dtype = torch.bfloat16 if cfg.amp_dtype == "bfloat16" else torch.float16
        self.amp = cfg.amp and (self.device.type == "cuda" or self.amp_dtype == torch.bfloat16)
        self.memory_format = memory_format_for(self.train_module)
        to_layout(self.train_module, self.device, self.memory_format)
        self.net = ddp.wrap(self.train_module, self.device, self.rank)  # what trains; `model` is what is saved
        if cfg.compile:  # compiled around the plain module, whose state dict (keys unprefixed) is what is saved
            self.net = torch.compile(self.net)  # type: ignore[assignment]
        self.opt = torch.optim.AdamW(self.train_module.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.steps_per_epoch = math.ceil(ddp.shard_len(len(split.train), self.rank) / cfg.batch_size)
        self.cfg = cfg = cfg.with_min_steps(self.steps_per_epoch)  # `min_steps` resolved on the data at hand
        total = self.steps_per_epoch * cfg.epochs
        warm = min(round(cfg.warmup_epochs * self.steps_per_epoch), total - 1)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda step: lr_factor(step, warm, total))
        # bfloat16 has float32's exponent range: only float16 needs its gradients scaled
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp and self.amp_dtype == torch.float16)
        self.history: list[dict[str, float]] = []
        self.epoch = 0
        self.run_id = 0

    # -- checkpointing -------------------------------------------------------------------------
    def _save_state(self) -> None:
        state = {
            "format": STATE_FORMAT,
            "epoch": self.epoch,
            "run_id": self.run_id,
            "model": self.train_module.state_dict(),
            "opt": self.opt.state_dict(),
            "sched": self.sched.state_dict(),
            "scaler": self.scaler.state_dict(),
            "history": self.history,
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
            "config": self.cfg.model_dump(),
            "arch": self.spec.model_dump(),
            "task": self.meta.get("distill"),
        }
        if self.rank.main:
            write_with(state_path(self.out), lambda tmp: torch.save(state, tmp))
        ddp.barrier(self.rank)

    def _load_state(self) -> bool:
        path = state_path(self.out)
        if not path.is_file():
            return False
        state = torch.load(path, map_location=self.device, weights_only=True)
        if state.get("format") != STATE_FORMAT or state["arch"] != self.spec.model_dump():
            raise UserError(f"{path} belongs to another model; delete it or choose another --out")
        # a state written before a TrainConfig field existed holds that field's default (e.g. no augmentation)
        try:
            config = TrainConfig.model_validate(state["config"]).model_dump()
        except ValueError:  # pydantic's ValidationError: a field this edgekd does not know
            config = state["config"]
        if _settings(config) != _settings(self.cfg.model_dump()) or state.get("task") != self.meta.get("distill"):
            raise UserError(f"{path} was made with other training settings; resume with the same ones")
        try:
            self.train_module.load_state_dict(state["model"])
        except RuntimeError:  # same arch, other training-only parts (e.g. other or no auxiliary branches)
            raise UserError(f"{path} was made with other training settings; resume with the same ones") from None
        self.opt.load_state_dict(state["opt"])
        self.sched.load_state_dict(state["sched"])
        self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng_cpu"].cpu())
        if state.get("rng_cuda") is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng_cuda"].cpu(), self.device)
        self.epoch, self.run_id, self.history = state["epoch"], state["run_id"], list(state["history"])
        return True

    # -- the loop -------------------------------------------------------------------------------
    def fit(
        self,
        resume: bool = False,
        show_progress: bool = True,
        on_epoch_end: Callable[[dict[str, float]], None] | None = None,
    ) -> TrainResult:
        """Train to `cfg.epochs`. `on_epoch_end(row)` sees each epoch's metrics after its checkpoint is
        written; raising from it stops training there (e.g. a pruned search trial), checkpoint kept."""
        start = time.perf_counter()
        resumed = resume and self._load_state()
        if resumed:
            console.print(f"resuming {self.out.name} after epoch {self.epoch}/{self.cfg.epochs}")
        else:
            torch.manual_seed(self.cfg.seed)
            run_id = (
                self.store.start_run(
                    self.kind,
                    self.out.name,
                    {
                        **self.meta,
                        "train": self.cfg.model_dump(),
                        "split": self.split.info,
                        "arch": self.spec.model_dump(),
                        "augment": self._augment_meta(),
                    },
                )
                if self.rank.main
                else 0
            )
            self.run_id = ddp.broadcast_from_main(run_id, self.rank)
        with ExitStack() as stack:
            self.objective.attach(self.model, stack)
            fill = getattr(self.objective, "fill_cache", None)
            if fill is not None and aug.view_count(self.cfg) > 1 and self.epoch < self.cfg.epochs:
                fill(self._all_views())
            with progress_bar(show_progress and self.rank.main) as bar:
                task = bar.add_task(
                    self.out.stem,
                    total=self.cfg.epochs * self.steps_per_epoch,
                    completed=self.epoch * self.steps_per_epoch,
                )
                while self.epoch < self.cfg.epochs:
                    self._epoch(lambda: bar.advance(task))
                    if on_epoch_end is not None:
                        on_epoch_end(self.history[-1])
        return self._finish(time.perf_counter() - start)

    def _augment_meta(self) -> dict[str, Any]:
        return aug.describe(self.cfg.augment, aug.view_count(self.cfg), self.split.train.input_shape[0])

    def _all_views(self) -> Iterator[tuple[torch.Tensor, np.ndarray]]:
        """(views, rows) batches over every view of every training sample: what fills the teacher cache."""
        k, n = aug.view_count(self.cfg), len(self.split.train)
        for rows in index_batches(n * k, self.cfg.batch_size):
            x = view_batch(self.split.train, rows // k, rows % k, self.cfg)
            yield x.to(self.device, memory_format=self.memory_format), rows

    def _epoch(self, advance: Callable[[], None]) -> None:
        epoch, cfg, train = self.epoch, self.cfg, self.split.train
        logged = self.objective.on_epoch(epoch / cfg.epochs)
        order = np.random.default_rng([cfg.seed, epoch]).permutation(len(train))
        order = ddp.shard(order, self.rank)
        k = aug.view_count(cfg)
        views = aug.epoch_views(cfg.seed, epoch, len(train), k)
        self.net.train()
        t0 = time.perf_counter()
        loss_sum, correct, seen = 0.0, 0, 0
        for i, index in enumerate(index_batches(len(order), cfg.batch_size, order)):
            x = view_batch(train, index, views[index], cfg)
            y = torch.from_numpy(train.y[index])
            x = x.to(self.device, non_blocking=True, memory_format=self.memory_format)
            y = y.to(self.device, non_blocking=True)
            target = y
            if cfg.mixup > 0:
                x, target = mixup(x, y, train.num_classes, cfg.mixup, (cfg.seed, epoch, i, 0x313))
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp):
                loss, logits = self.objective(self.net, x, target, index * k + views[index])
            if not torch.isfinite(loss):
                raise TrainingDiverged(
                    f"loss is {float(loss.detach())} at epoch {epoch + 1}, batch {i + 1}; the checkpoint of epoch"
                    f" {epoch} is kept in {state_path(self.out)}; lower --lr or check the data"
                )
            self.opt.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()  # type: ignore[no-untyped-call]
            self.scaler.step(self.opt)
            self.scaler.update()
            self.sched.step()
            loss_sum += float(loss.detach()) * len(y)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(y)
            advance()
        seconds = time.perf_counter() - t0
        loss_sum, n_correct, n_seen = ddp.summed([loss_sum, correct, seen], self.device, self.rank)
        ddp.sync_buffers(self.train_module, self.rank)
        val_loss, val_acc = evaluate(self.model, self.split.val, self.device)
        row = {
            "epoch": epoch + 1,
            "train_loss": loss_sum / n_seen,
            "train_acc": n_correct / n_seen,
            "val_loss": val_loss,
            "val_acc": val_acc,
            "epoch_s": seconds,
            **logged,
        }
        self.history.append(row)
        if self.rank.main:
            for name, value in row.items():
                if name != "epoch":
                    self.store.log_metric(self.run_id, name, value, epoch + 1)
        self.epoch = epoch + 1
        self._save_state()
        if self.rank.main:
            console.print(
                f"  epoch {epoch + 1}/{self.cfg.epochs}  loss {row['train_loss']:.4f}"
                f"  val acc {val_acc:.4f}  {seconds:.1f}s"
            )

    def _finish(self, seconds: float) -> TrainResult:
        _, test_acc = evaluate(self.model, self.split.test, self.device)
        val_acc = self.history[-1]["val_acc"] if self.history else float("nan")
        meta = {
            **self.meta,
            "kind": self.kind,
            "history": self.history,
            "test_acc": test_acc,
            "val_acc": val_acc,
            "split": self.split.info,
            "train": self.cfg.model_dump(),
            "augment": self._augment_meta(),
            "run_id": self.run_id,
            "store": str(self.store.path),
        }
        if self.rank.main:
            self.store.log_metric(self.run_id, "test_acc", test_acc, self.epoch)
            save_checkpoint(self.out, self.model.cpu(), self.spec, meta)
            state_path(self.out).unlink(missing_ok=True)
        ddp.barrier(self.rank)
        return TrainResult(self.out, self.history, test_acc, val_acc, self.run_id, seconds)


def _settings(config: dict[str, Any]) -> dict[str, Any]:
    """A TrainConfig dump as resuming compares it: without augmentation the number of views means nothing
    (a state written when `views` defaulted to 1 resumes under today's default 0)."""
    if not Augment.model_validate(config.get("augment") or {}).active:
        return {**config, "views": None}
    return config
