"""Kernels and divergences against loop-by-loop numpy references (float64)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgekd.distill import kernels as K

RNG_SEED = 0


def features(shape: tuple[int, ...] = (5, 3, 2, 2), seed: int = RNG_SEED) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


def ref_cosine(x: np.ndarray) -> np.ndarray:
    x = x.reshape(len(x), -1)
    b = len(x)
    out = np.zeros((b, b))
    for i in range(b):
        for j in range(b):
            cos = np.dot(x[i], x[j]) / (np.linalg.norm(x[i]) * np.linalg.norm(x[j]))
            out[i, j] = (cos + 1.0) / 2.0
    return out


def ref_tstudent(x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """1 / (1 + d_ij), d_ij = sqrt(sum_k (x_ik - x_jk)^2 + eps): the pkth distance convention."""
    x = x.reshape(len(x), -1)
    b = len(x)
    out = np.zeros((b, b))
    for i in range(b):
        for j in range(b):
            out[i, j] = 1.0 / (1.0 + np.sqrt(np.sum((x[i] - x[j]) ** 2) + eps))
    return out


def ref_rows(s: np.ndarray) -> np.ndarray:
    out = np.empty_like(s)
    for i in range(len(s)):
        out[i] = s[i] / sum(s[i])
    return out


def ref_kl(p: np.ndarray, q: np.ndarray, eps: float = 1e-7) -> float:
    total = 0.0
    for i in range(p.shape[0]):
        for j in range(p.shape[1]):
            total += p[i, j] * np.log((p[i, j] + eps) / (q[i, j] + eps))
    return total / p.size


def ref_jeffreys(p: np.ndarray, q: np.ndarray, eps: float = 1e-7) -> float:
    total = 0.0
    for i in range(p.shape[0]):
        for j in range(p.shape[1]):
            total += (p[i, j] - q[i, j]) * (np.log(p[i, j] + eps) - np.log(q[i, j] + eps))
    return total / p.size


def t(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x)


def test_flatten_per_sample_and_lifts_half() -> None:
    x = torch.zeros(4, 8, 3, 3, dtype=torch.bfloat16)
    flat = K.flatten(x)
    assert flat.shape == (4, 72) and flat.dtype == torch.float32
    assert K.flatten(torch.zeros(4, 5, dtype=torch.float64)).dtype == torch.float64


def test_cosine_kernel_matches_reference() -> None:
    x = features()
    got = K.cosine_kernel(t(x)).numpy()
    np.testing.assert_allclose(got, ref_cosine(x), atol=1e-6)
    assert np.all((got >= 0) & (got <= 1)) and np.allclose(got, got.T)


def test_tstudent_kernel_matches_reference() -> None:
    x = features()
    got = K.tstudent_kernel(t(x)).numpy()
    np.testing.assert_allclose(got, ref_tstudent(x), rtol=1e-10)
    # zero distance reads sqrt(eps) = 1e-3, so the diagonal is 1 / 1.001, not 1; the squared distance
    # |x|^2 + |y|^2 - 2xy cancels to ~1e-12 off zero in float64 (AVX-512 sums in another order than AVX2)
    np.testing.assert_allclose(np.diag(got), 1.0 / (1.0 + 1e-3), rtol=1e-9)


def test_pinned_kernel_values() -> None:
    x = t(features())
    assert K.cosine_kernel(x)[0, 1].item() == pytest.approx(0.46118912494669, rel=1e-9)
    assert K.tstudent_kernel(x)[0, 1].item() == pytest.approx(0.18703229956963, rel=1e-9)


def test_row_normalise() -> None:
    s = ref_cosine(features())
    got = K.row_normalise(t(s)).numpy()
    np.testing.assert_allclose(got, ref_rows(s), rtol=1e-12)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-12)


def test_divergences_match_reference() -> None:
    p = ref_rows(ref_cosine(features(seed=1)))
    q = ref_rows(ref_tstudent(features(seed=2)))
    assert K.kl_divergence(t(p), t(q)).item() == pytest.approx(ref_kl(p, q), rel=1e-10)
    assert K.jeffreys(t(p), t(q)).item() == pytest.approx(ref_jeffreys(p, q), rel=1e-10)
    assert K.jeffreys(t(p), t(q)).item() == pytest.approx(K.jeffreys(t(q), t(p)).item(), rel=1e-12)
    assert K.kl_divergence(t(p), t(p)).item() == 0.0
    assert K.jeffreys(t(p), t(p)).item() == 0.0


def test_jeffreys_is_finite_with_zero_entries() -> None:
    # two opposite samples give a cosine kernel entry of exactly 0; without eps, 0 * log 0 is NaN
    # (at norm 1000 the eps in the norm vanishes in float32 and the entry is exactly 0)
    x = torch.tensor([[1000.0, 0.0], [-1000.0, 0.0], [0.0, 1000.0]])
    p = K.row_normalise(K.cosine_kernel(x))
    assert p[0, 1].item() == 0.0
    q = K.row_normalise(K.cosine_kernel(torch.randn(3, 2, generator=torch.Generator().manual_seed(0))))
    assert torch.isfinite(K.jeffreys(p, q))


@pytest.mark.parametrize("kernel", [K.cosine_kernel, K.tstudent_kernel])
def test_kernels_have_finite_gradients_at_zero_distance_and_zero_rows(kernel) -> None:
    x = torch.randn(4, 6, generator=torch.Generator().manual_seed(3))
    x[1] = x[0]  # duplicate samples: zero distance off the diagonal
    x[2] = 0.0  # a dead (all-zero) feature vector
    x.requires_grad_(True)
    kernel(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_gram_ignores_autocast() -> None:
    x = torch.randn(8, 32, generator=torch.Generator().manual_seed(4))
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        inside = K.pairwise_distances(x)
    assert inside.dtype == torch.float32
    torch.testing.assert_close(inside, K.pairwise_distances(x))


# ---- both kernels from one Gram product (the infoflow path) ----


def test_cosine_and_tstudent_match_references() -> None:
    x = features((6, 4, 3, 3), seed=5)
    cosine, tstudent = K.cosine_and_tstudent(t(x))
    np.testing.assert_allclose(cosine.numpy(), ref_cosine(x), atol=1e-12)
    np.testing.assert_allclose(tstudent.numpy(), ref_tstudent(x), rtol=1e-10)
    # pinned: the same entries as the separate kernels give in test_pinned_kernel_values
    c, s = K.cosine_and_tstudent(t(features()))
    assert c[0, 1].item() == pytest.approx(0.46118912494669, rel=1e-9)
    assert s[0, 1].item() == pytest.approx(0.18703229956963, rel=1e-9)


def test_cosine_and_tstudent_equal_the_separate_kernels_in_float32() -> None:
    x = torch.randn(32, 8, 7, 7, generator=torch.Generator().manual_seed(6)).relu()
    cosine, tstudent = K.cosine_and_tstudent(x)
    torch.testing.assert_close(cosine, K.cosine_kernel(x), rtol=1e-6, atol=1e-6)
    assert torch.equal(tstudent, K.tstudent_kernel(x))  # the very same operations


def test_cosine_and_tstudent_gradients_equal_the_separate_kernels() -> None:
    x = features((5, 3, 2, 2), seed=7)
    x[1] = x[0]  # duplicate samples
    w1, w2 = features((5, 5), seed=8), features((5, 5), seed=9)
    a, b = t(x).requires_grad_(True), t(x).requires_grad_(True)
    cosine, tstudent = K.cosine_and_tstudent(a)
    ((cosine * t(w1)).sum() + (tstudent * t(w2)).sum()).backward()
    ((K.cosine_kernel(b) * t(w1)).sum() + (K.tstudent_kernel(b) * t(w2)).sum()).backward()
    assert a.grad is not None and b.grad is not None
    np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-9, atol=1e-12)


def test_cosine_and_tstudent_gradients_finite_at_zero_rows() -> None:
    x = torch.randn(4, 6, generator=torch.Generator().manual_seed(3))
    x[1] = x[0]
    x[2] = 0.0
    x.requires_grad_(True)
    cosine, tstudent = K.cosine_and_tstudent(x)
    (cosine.sum() + tstudent.sum()).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_gram_backward_takes_one_product() -> None:
    x = t(features((4, 5), seed=11)).requires_grad_(True)
    assert torch.autograd.gradcheck(K.gram, (x,))
    upstream = t(features((4, 4), seed=12))  # not symmetric: both halves of the gradient count
    (K.gram(x) * upstream).sum().backward()
    assert x.grad is not None
    xn, g = features((4, 5), seed=11), features((4, 4), seed=12)
    # d/dx_k sum_ij g_ij x_i.x_j = sum_j g_kj x_j + sum_i g_ik x_i
    ref = np.array([sum(g[k, j] * xn[j] + g[j, k] * xn[j] for j in range(4)) for k in range(4)])
    np.testing.assert_allclose(x.grad.numpy(), ref, rtol=1e-12)
    assert K.gram(t(features((3, 2)))).grad_fn is None  # no grad: the plain product
