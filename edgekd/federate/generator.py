"""FedGen's generator and losses (Zhu, Hong, Zhou 2021, arXiv 2105.10056).

The server learns G(z, y) -> a latent feature: the input of the clients' shared predictor head (the
`head` Linear of every built-in model). Clients then regularise their training with latents the
generator draws for labels they may never have seen.

Constants from the paper and the authors' code: hidden width 256 (FC-BN-ReLU-Linear), diversity weight
eta = 1, client weights alpha_t = beta_t = 10 * 0.98^t. Choices the paper leaves open, as taken here
(each as in the authors' code unless said otherwise):

- noise: 32-dim, uniform on [0, 1) (the code's `torch.rand`; the paper writes Gaussian);
- diversity: exp(-mean(l2(noise_i, noise_j) * l1(g_i, g_j))) over the pairs of a batch;
- generator training: Adam lr 3e-4, 50 steps of batch 32 per round, the learning rate x0.98 per round,
  labels drawn uniformly from those the sampled clients hold;
- w_k(y): client k's count of label y over the sampled clients' total (no +1 smoothing);
- t counts rounds from 0, and round 0 trains without the generator (it is untrained then).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

NOISE_DIM = 32
HIDDEN = 256
ETA = 1.0
WEIGHT_START = 10.0
WEIGHT_DECAY = 0.98
GEN_LR = 3e-4
GEN_STEPS = 50
GEN_BATCH = 32


def client_weight(round_index: int) -> float:
    """alpha_t = beta_t = 10 * 0.98^t, t counted from 0."""
    return WEIGHT_START * WEIGHT_DECAY**round_index


class Generator(nn.Module):
    """G(z, y): [noise, one-hot(y)] -> FC 256 -> BN -> ReLU -> Linear(latent_dim)."""

    def __init__(self, num_classes: int, latent_dim: int, noise_dim: int = NOISE_DIM, hidden: int = HIDDEN) -> None:
        super().__init__()
        self.num_classes, self.noise_dim = num_classes, noise_dim
        self.body = nn.Sequential(
            nn.Linear(noise_dim + num_classes, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, latent_dim)
        )

    def forward(self, y: Tensor, noise: Tensor) -> Tensor:
        return self.body(torch.cat([noise, F.one_hot(y, self.num_classes).float()], dim=1))  # type: ignore[no-any-return]

    def sample(self, y: Tensor, rng: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """(latents, noise) for labels `y`."""
        noise = torch.rand(len(y), self.noise_dim, generator=rng)
        return self(y, noise), noise


def diversity(noise: Tensor, latent: Tensor) -> Tensor:
    """exp(-mean(d_noise * d_latent)): small when different noise gives different latents."""
    d_latent = (latent.unsqueeze(0) - latent.unsqueeze(1)).abs().mean(dim=2)
    d_noise = (noise.unsqueeze(0) - noise.unsqueeze(1)).pow(2).mean(dim=2)
    return torch.exp(-(d_noise * d_latent).mean())


def ensemble_ce(latent: Tensor, y: Tensor, heads: list[tuple[Tensor, Tensor]], shares: Tensor) -> Tensor:
    """sum_k mean_i w_k(y_i) * CE(h_k(latent_i), y_i); `shares` is classes x clients, rows summing to 1."""
    total = latent.new_zeros(())
    for k, (weight, bias) in enumerate(heads):
        ce = F.cross_entropy(F.linear(latent, weight, bias), y, reduction="none")
        total = total + (ce * shares[y, k]).mean()
    return total


def generator_loss(
    gen: Generator, y: Tensor, heads: list[tuple[Tensor, Tensor]], shares: Tensor, rng: torch.Generator
) -> Tensor:
    latent, noise = gen.sample(y, rng)
    return ensemble_ce(latent, y, heads, shares) + ETA * diversity(noise, latent)


def label_shares(counts: list[list[int]]) -> Tensor:
    """classes x clients: client k's share of label y among the given clients (0 where nobody has y)."""
    table = torch.tensor(counts, dtype=torch.float32).T
    return table / table.sum(dim=1, keepdim=True).clamp(min=1.0)


def train_generator(
    gen: Generator, opt: torch.optim.Optimizer, heads: list[tuple[Tensor, Tensor]], counts: list[list[int]], seed: int
) -> float:
    """GEN_STEPS Adam steps on the sampled clients' heads (frozen); returns the mean loss."""
    shares = label_shares(counts)
    held = torch.tensor([c for c in range(shares.shape[0]) if shares[c].sum() > 0])
    rng = torch.Generator().manual_seed(seed)
    frozen = [(w.detach(), b.detach()) for w, b in heads]
    gen.train()
    total = 0.0
    for _ in range(GEN_STEPS):
        y = held[torch.randint(len(held), (GEN_BATCH,), generator=rng)]
        loss = generator_loss(gen, y, frozen, shares, rng)
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        total += float(loss.detach())
    return total / GEN_STEPS
