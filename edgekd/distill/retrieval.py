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


__all__ = ["penultimate_features", "retrieval_map"]
