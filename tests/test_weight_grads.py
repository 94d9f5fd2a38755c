"""kernels/weight_grads.py: the one-product weight gradients against plain numpy sums."""

import numpy as np
import pytest

from ablate.kernels.tiled_product import AVAILABLE as TILED
from ablate.kernels.weight_grads import (
    STORE_BYTES,
    gradient_store,
    stacked_inputs,
    store_step,
    stored_weight_grads,
    weight_grad_blocks,
)


@pytest.mark.parametrize("seed", range(4))
def test_blocks_equal_the_three_sums(seed):
    rng = np.random.default_rng(seed)
    T, B, n_in, H = (int(v) for v in rng.integers(1, 9, size=4))
    K = int(rng.integers(1, 40))
    x = rng.normal(size=(T, B, n_in))
    h = rng.normal(size=(T, B, H))
    d = rng.normal(size=(T, B, K))

    stacked = stacked_inputs(x, h)
    grad_W, grad_R, grad_b = weight_grad_blocks(d.reshape((T * B, K)), stacked, n_in)

    # Σ_t d_tᵀ x_t, Σ_{t≥1} d_tᵀ h_{t-1} (h_{-1} = 0), Σ_t Σ_b d_t
    expected_W = np.einsum("tbk,tbi->ki", d, x)
    expected_R = np.einsum("tbk,tbj->kj", d[1:], h[:-1]) if T > 1 else np.zeros((K, H))
    expected_b = d.sum(axis=(0, 1))
    np.testing.assert_allclose(grad_W, expected_W, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grad_R, expected_R, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grad_b, expected_b, rtol=1e-12, atol=1e-12)
    assert grad_W.shape == (K, n_in) and grad_R.shape == (K, H) and grad_b.shape == (K,)


def test_stacked_rows_hold_input_previous_state_and_one():
    x = np.arange(2 * 3 * 2, dtype=np.float32).reshape((2, 3, 2))
    h = -np.arange(2 * 3 * 4, dtype=np.float32).reshape((2, 3, 4)) - 1
    stacked = stacked_inputs(x, h).reshape((2, 3, 7))
    np.testing.assert_array_equal(stacked[:, :, :2], x)
    np.testing.assert_array_equal(stacked[0, :, 2:6], 0)  # h_{-1} = 0
    np.testing.assert_array_equal(stacked[1, :, 2:6], h[0])
    np.testing.assert_array_equal(stacked[:, :, 6], 1)
    assert stacked.dtype == np.float32


def _stored_sums(d, x, h):
    """The weight gradients through gradient_store/store_step/stored_weight_grads, the steps
    stored last to first as a cell's backward stores them."""
    T, B, K = d.shape
    n_in = x.shape[2]
    stacked = stacked_inputs(x, h)
    store, totals = gradient_store(T, B, K, stacked.shape[1], x)
    for t in range(T - 1, -1, -1):
        store_step(store, totals, np.ascontiguousarray(d[t]), t, stacked)
    return stored_weight_grads(store, totals, stacked, n_in, K)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("T, B, n_in, H, K", [
    (1, 1, 1, 1, 1), (5, 3, 2, 7, 13), (9, 4, 3, 5, 70),
    # a store of STORE_BYTES holds fewer steps than T: the sums run over several chunks,
    # the last one partial
    (37, 32, 10, 64, 256), (23, 33, 4, 50, 200),
])
def test_stored_gradients_equal_the_three_sums(T, B, n_in, H, K, dtype):
    rng = np.random.default_rng(T * 100 + K)
    x = rng.normal(size=(T, B, n_in)).astype(dtype)
    h = rng.normal(size=(T, B, H)).astype(dtype)
    d = rng.normal(size=(T, B, K)).astype(dtype)
    grad_W, grad_R, grad_b = _stored_sums(d, x, h)

    x64, h64, d64 = (v.astype(np.float64) for v in (x, h, d))
    previous = np.concatenate((np.zeros((1, B, H)), h64[:-1]))  # h_{t-1}, h_{-1} = 0
    exact = (np.einsum("tbk,tbi->ki", d64, x64), np.einsum("tbk,tbj->kj", d64, previous),
             d64.sum(axis=(0, 1)))
    magnitude = (np.einsum("tbk,tbi->ki", abs(d64), abs(x64)),
                 np.einsum("tbk,tbj->kj", abs(d64), abs(previous)), abs(d64).sum(axis=(0, 1)))
    # each sum is a chain of T·B (fused) multiply-adds: |error| ≤ T·B·ε·Σ|d||s|; a term
    # left out or counted twice would be ~Σ|d||s|/(T·B), far above it
    for got, want, size, name in zip((grad_W, grad_R, grad_b), exact, magnitude, "WRb",
                                     strict=True):
        assert got.shape == want.shape, name
        assert np.all(np.abs(got - want) <= T * B * np.finfo(dtype).eps * size), name


@pytest.mark.skipif(not TILED, reason="the OpenBLAS route stores every step")
def test_the_store_holds_a_chunk_of_a_long_sequence():
    """At the benchmark's shape the store holds fewer steps than the sequence, so the
    multi-chunk cases above are exercised."""
    store, totals = gradient_store(100, 32, 256, 75, np.zeros(1, np.float32))
    assert store.shape[0] * store.shape[1] * store.shape[2] * 4 <= STORE_BYTES
    assert store.shape[1] % 32 == 0 and store.shape[1] // 32 < 100
    assert totals.shape == (75, 256)
