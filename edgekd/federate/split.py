"""Dirichlet label splits: each class is dealt to the clients in proportions drawn from Dir(alpha).

Small alpha (0.1) gives each client a few dominant labels; large alpha approaches an i.i.d. split.
The split is a pure function of (labels, clients, alpha, seed), so every client and the server compute
the same one without exchanging it.
"""

from __future__ import annotations

import numpy as np

from edgekd.errors import UserError


def dirichlet_split(labels: np.ndarray, clients: int, alpha: float, seed: int) -> list[np.ndarray]:
    """The sample indices of each client (sorted). Raises UserError when a client receives nothing."""
    rng = np.random.default_rng([seed, 17])
    parts: list[list[np.ndarray]] = [[] for _ in range(clients)]
    for label in np.unique(labels):
        index = rng.permutation(np.flatnonzero(labels == label))
        shares = rng.dirichlet(np.full(clients, alpha))
        cuts = (np.cumsum(shares)[:-1] * len(index)).astype(int)
        for k, chunk in enumerate(np.split(index, cuts)):
            parts[k].append(chunk)
    result = [np.sort(np.concatenate(p)) for p in parts]
    empty = [k for k, p in enumerate(result) if len(p) == 0]
    if empty:
        raise UserError(
            f"the Dirichlet({alpha:g}) split of {len(labels)} samples leaves client {empty[0]} without data"
            f" ({len(empty)} of {clients} empty); use more data (--limit), fewer --clients or a larger --alpha"
        )
    return result


def label_counts(labels: np.ndarray, num_classes: int) -> list[int]:
    return [int(c) for c in np.bincount(labels, minlength=num_classes)]
