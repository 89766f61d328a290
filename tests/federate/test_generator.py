"""FedGen's generator and losses: shapes, the paper's constants, label shares, and that training the
generator lowers its loss against fixed heads."""

from __future__ import annotations

import pytest
import torch

from edgekd.federate.generator import (
    HIDDEN,
    Generator,
    client_weight,
    diversity,
    ensemble_ce,
    generator_loss,
    label_shares,
    train_generator,
)


def test_generator_maps_noise_and_label_to_a_latent() -> None:
    gen = Generator(num_classes=10, latent_dim=48)
    latent, noise = gen.sample(torch.tensor([0, 3, 9, 3]))
    assert latent.shape == (4, 48) and noise.shape == (4, 32)
    first = gen.body[0]
    assert isinstance(first, torch.nn.Linear) and first.in_features == 32 + 10 and first.out_features == HIDDEN
    assert isinstance(gen.body[1], torch.nn.BatchNorm1d) and isinstance(gen.body[2], torch.nn.ReLU)


def test_client_weights_decay_as_in_the_paper() -> None:
    assert client_weight(0) == pytest.approx(10.0)
    assert client_weight(10) == pytest.approx(10 * 0.98**10)


def test_label_shares_weight_each_client_by_its_share_of_a_label() -> None:
    shares = label_shares([[3, 0, 1], [1, 0, 1]])  # two clients, three labels
    assert shares.tolist() == [[0.75, 0.25], [0.0, 0.0], [0.5, 0.5]]


def test_ensemble_ce_uses_the_shares() -> None:
    latent, y = torch.randn(6, 4), torch.tensor([0, 0, 1, 1, 0, 1])
    good, bad = (torch.eye(2, 4) * 5, torch.zeros(2)), (-torch.eye(2, 4) * 5, torch.zeros(2))
    only_good = ensemble_ce(latent, y, [good, bad], torch.tensor([[1.0, 0.0], [1.0, 0.0]]))
    only_bad = ensemble_ce(latent, y, [good, bad], torch.tensor([[0.0, 1.0], [0.0, 1.0]]))
    assert float(only_good) < float(only_bad)


def test_diversity_is_smaller_for_spread_outputs() -> None:
    noise = torch.rand(8, 32, generator=torch.Generator().manual_seed(0))
    same = torch.zeros(8, 16)
    spread = noise[:, :16] * 10
    assert float(diversity(noise, spread)) < float(diversity(noise, same)) == pytest.approx(1.0)


def test_training_the_generator_lowers_its_loss() -> None:
    torch.manual_seed(0)
    heads = [(torch.randn(10, 16), torch.zeros(10)) for _ in range(3)]
    counts = [[5] * 5 + [0] * 5, [0] * 5 + [5] * 5, [1] * 10]
    gen = Generator(10, 16)
    opt = torch.optim.Adam(gen.parameters(), lr=3e-3)
    y, shares, rng = torch.arange(10).repeat(4), label_shares(counts), torch.Generator().manual_seed(1)
    with torch.no_grad():
        before = float(generator_loss(gen.eval(), y, heads, shares, rng))
    for seed in range(4):
        train_generator(gen, opt, heads, counts, seed)
    with torch.no_grad():
        after = float(generator_loss(gen.eval(), y, heads, shares, torch.Generator().manual_seed(1)))
    assert after < before
