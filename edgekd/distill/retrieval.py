"""Retrieval mAP of the penultimate representation: the information-flow paper's own metric.

Passalis et al. (CVPR 2020) judge a student by how well its representation retrieves images of the
same class: every test image queries all the others by cosine similarity, an image is relevant when it
has the query's class, and the score is the mean over queries of the average precision of the ranking.

edgekd's reading, where the paper leaves a choice:

- The representation is the input of the model's `head` (the linear classifier) of a built-in model:
  the pooled features, the layer the authors call the penultimate one.
- The query itself is left out of its own ranking (it is not one of "all others").
- Average precision is the mean of precision@k over the ranks k of the relevant items (all of them:
  no cut-off); a query with no other image of its class has no AP and is left out of the mean.
- Ties in similarity are broken by sample index (a stable sort), so the score is deterministic.

The ranking is computed in chunks of queries, so 10,000 x 10,000 needs chunk x N memory, not N x N.

The authors' protocol (pkth `nn/retrieval_evaluation.py`), `database_map`: the training split is the
database and the test split the queries (no query is in the database), cosine similarity, and the AP of
a query is its 11-point interpolated precision (recall 0, 0.1, ..., 1) over the whole database ranking,
recall counted against the database's images of the query's class. Their code has a bug: it
interpolates (`precision[:, i] = max(precision[:, i], precision[:, i + 1])`) over `len(precision) - 1`
columns, the number of queries in a batch of 128 less one, not the number of ranks, so only ranks 1-127
are interpolated (and each from rank 128 at most); past them the raw precision at the rank whose recall
is nearest the level is read. `interpolation="standard"` is the textbook definition (the highest
precision at any recall >= the level); `interpolation="pkth"` reproduces their numbers, bug included.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from edgekd.data.datasets import Dataset, to_float
from edgekd.errors import UserError


@torch.no_grad()
def penultimate_features(
    model: nn.Module, data: Dataset, *, batch_size: int = 512, device: str | torch.device = "cpu"
) -> np.ndarray:
    """The input of `model.head` for every sample of `data`, as float32 N x D (flattened).

    Taps the head with a forward pre-hook, so any model with a `head` child works (every built-in one).
    The model is run in eval mode and put back in the mode it was in.
    """
    head = getattr(model, "head", None)
    if not isinstance(head, nn.Module):
        raise UserError(
            f"{type(model).__name__} has no `head` child: retrieval mAP taps the input of the"
            " head (the penultimate representation); use a built-in model"
        )
    captured: list[Tensor] = []
    handle = head.register_forward_pre_hook(lambda _m, args: captured.append(args[0].detach().float()))
    was_training = model.training
    model.eval()
    parts: list[np.ndarray] = []
    try:
        for start in range(0, len(data), batch_size):
            x = torch.from_numpy(to_float(data.x[start : start + batch_size])).to(device)
            captured.clear()
            model(x)
            if len(captured) != 1:
                raise UserError(
                    f"the head of {type(model).__name__} ran {len(captured)} times in one forward pass; expected once"
                )
            parts.append(captured[0].flatten(1).cpu().numpy())
    finally:
        handle.remove()
        model.train(was_training)
    if not parts:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(parts).astype(np.float32, copy=False)


def retrieval_map(features: np.ndarray | Tensor, labels: np.ndarray | Tensor, *, chunk: int = 512) -> float:
    """Mean average precision of cosine-similarity retrieval: each sample queries all the others,
    relevant = same label. Computed `chunk` queries at a time (memory: chunk x N)."""
    x = torch.as_tensor(np.asarray(features) if not isinstance(features, Tensor) else features).double()
    y = torch.as_tensor(np.asarray(labels) if not isinstance(labels, Tensor) else labels).long().reshape(-1)
    if x.ndim != 2 or x.shape[0] != y.shape[0]:
        raise UserError(f"retrieval_map needs N x D features and N labels, got {tuple(x.shape)} and {tuple(y.shape)}")
    n = x.shape[0]
    if n < 2:
        raise UserError("retrieval_map needs at least 2 samples")
    x = torch.nn.functional.normalize(x, dim=1)  # a zero vector stays zero: similarity 0 to all
    ranks = torch.arange(1, n, dtype=torch.float64)  # positions 1..n-1 (the query is left out)
    ap_sum, counted = 0.0, 0
    for start in range(0, n, chunk):
        q = torch.arange(start, min(start + chunk, n))
        sim = x[q] @ x.T
        sim[torch.arange(len(q)), q] = -torch.inf  # the query sorts last ...
        order = torch.sort(sim, dim=1, descending=True, stable=True).indices[:, :-1]  # ... and is dropped
        rel = (y[order] == y[q].unsqueeze(1)).double()
        hits = rel.cumsum(1)
        n_rel = hits[:, -1]
        ap = (rel * hits / ranks).sum(1)
        keep = n_rel > 0
        ap_sum += float((ap[keep] / n_rel[keep]).sum())
        counted += int(keep.sum())
    if counted == 0:
        raise UserError("retrieval_map: no sample shares its label with another; nothing to retrieve")
    return ap_sum / counted


#: `database_map` interpolations: the textbook 11-point one, or the authors' code as it runs
INTERPOLATIONS = ("standard", "pkth")
#: pkth's query batch: its interpolation bug depends on it
PKTH_QUERY_BATCH = 128


def database_map(
    database: np.ndarray | Tensor,
    database_labels: np.ndarray | Tensor,
    queries: np.ndarray | Tensor,
    query_labels: np.ndarray | Tensor,
    *,
    interpolation: str = "standard",
    chunk: int = PKTH_QUERY_BATCH,
) -> float:
    """11-point interpolated mAP of cosine retrieval of `queries` from `database` (module docstring).

    Queries whose class is absent from the database have no AP and are left out of the mean. With
    `interpolation="pkth"` the queries go in the authors' batches of 128 (`chunk` is ignored)."""
    if interpolation not in INTERPOLATIONS:
        raise UserError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}; got {interpolation!r}")
    db, db_y = _as_xy(database, database_labels, "database")
    q, q_y = _as_xy(queries, query_labels, "queries")
    if db.shape[1] != q.shape[1]:
        raise UserError(f"database_map: database features are {db.shape[1]}-d, queries {q.shape[1]}-d")
    db, q = torch.nn.functional.normalize(db, dim=1), torch.nn.functional.normalize(q, dim=1)
    per_class = torch.bincount(db_y, minlength=int(max(db_y.max(), q_y.max())) + 1)
    step = PKTH_QUERY_BATCH if interpolation == "pkth" else chunk
    ap_sum, counted = 0.0, 0
    for start in range(0, q.shape[0], step):
        rows = slice(start, start + step)
        order = torch.sort(q[rows] @ db.T, dim=1, descending=True, stable=True).indices
        rel = (db_y[order] == q_y[rows].unsqueeze(1)).double()
        n_rel = per_class[q_y[rows]].double()
        keep = n_rel > 0
        ap = (_pkth_ap if interpolation == "pkth" else _eleven_point_ap)(rel, n_rel.clamp(min=1))
        ap_sum += float(ap[keep].sum())
        counted += int(keep.sum())
    if counted == 0:
        raise UserError("database_map: no query's class is in the database; nothing to retrieve")
    return ap_sum / counted


def _as_xy(x: np.ndarray | Tensor, y: np.ndarray | Tensor, role: str) -> tuple[Tensor, Tensor]:
    xt = torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x).double()
    yt = torch.as_tensor(np.asarray(y) if not isinstance(y, Tensor) else y).long().reshape(-1)
    if xt.ndim != 2 or xt.shape[0] != yt.shape[0] or xt.shape[0] == 0:
        raise UserError(f"database_map: {role} needs N x D features and N labels, got {tuple(xt.shape)}, {len(yt)}")
    return xt, yt


def _eleven_point_ap(rel: Tensor, n_rel: Tensor) -> Tensor:
    """Per query: the mean over r = 0, 0.1, ..., 1 of the highest precision at any rank with recall >= r."""
    hits = rel.cumsum(1)
    precision = hits / torch.arange(1, rel.shape[1] + 1, dtype=torch.float64)
    best_after = precision.flip(1).cummax(1).values.flip(1)  # max over ranks k' >= k
    levels = []
    for i in range(11):  # the first rank whose recall reaches i/10, in integers: 10 * hits >= i * n_rel
        first = (10 * hits >= i * n_rel.unsqueeze(1)).double().argmax(1)
        levels.append(best_after.gather(1, first.unsqueeze(1)))
    return torch.cat(levels, 1).mean(1)


def _pkth_ap(rel: Tensor, n_rel: Tensor) -> Tensor:
    """Per query, as pkth's `Database.get_metrics` computes it for one batch of queries (module docstring)."""
    precision = rel.cumsum(1) / torch.arange(1, rel.shape[1] + 1, dtype=torch.float64)
    for i in reversed(range(min(rel.shape[0], rel.shape[1]) - 1)):  # the bug: queries in the batch, not ranks
        precision[:, i] = torch.maximum(precision[:, i], precision[:, i + 1])
    recall = rel.cumsum(1) / n_rel.unsqueeze(1)
    at_levels = [  # the first rank whose recall is nearest each of their float levels (0.30000000000000004, ...)
        precision.gather(1, (recall - float(level)).abs().argmin(1, keepdim=True)) for level in np.arange(0, 1.01, 0.1)
    ]
    return torch.cat(at_levels, 1).mean(1)


__all__ = ["INTERPOLATIONS", "database_map", "penultimate_features", "retrieval_map"]
