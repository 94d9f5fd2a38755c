"""kernels/weight_grads.py: the one-product weight gradients against plain numpy sums."""

import numpy as np
import pytest

from ablate.kernels.weight_grads import stacked_inputs, weight_grad_blocks


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
