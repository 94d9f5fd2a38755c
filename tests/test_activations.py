"""The float32 tanh and σ (ablate.kernels.activations) against float64 NumPy, inside a loop
LLVM vectorises, as the cell kernels run them, and in scalar code."""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit

import ablate  # noqa: F401  (512-bit vectors before the first kernel: kernels/vector_width.py)
from ablate.kernels.activations import sigmoid32, tanh32
from ablate.kernels.jit import CELL_LOOPS, FLAGS

TANH_BOUND, SIGMOID_BOUND = 3.2e-7, 2.0e-7  # absolute, as activations.py states


@njit(**FLAGS, **CELL_LOOPS)
def vector_loops(x, t, s):
    for i in range(x.size):
        t[i] = tanh32(x[i])
    for i in range(x.size):
        s[i] = sigmoid32(x[i])


@njit(**FLAGS)
def scalar(value):
    return tanh32(value), sigmoid32(value)


def inputs(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    grid = np.linspace(-12, 12, 1_000_003)
    return np.concatenate([grid, rng.normal(scale=3, size=500_000),
                           rng.uniform(-1e-3, 1e-3, 1000), [0.0, 7.9, -7.9, 30, -30]]
                          ).astype(np.float32)


@pytest.mark.parametrize("seed", [0, 1])
def test_vectorised_within_bounds(seed):
    x = inputs(seed)
    t, s = np.empty_like(x), np.empty_like(x)
    vector_loops(x, t, s)
    exact = x.astype(np.float64)
    assert np.abs(t - np.tanh(exact)).max() < TANH_BOUND
    assert np.abs(s - 1 / (1 + np.exp(-exact))).max() < SIGMOID_BOUND
    assert np.all(np.abs(t) <= 1) and np.all((s >= 0) & (s <= 1))
    np.testing.assert_array_equal(t[x == 0], 0)  # odd: tanh(0) = 0 exactly


def test_scalar_matches_within_bounds_and_nonfinite_inputs():
    for value in [0.3, -2.5, 7.0, -11.0]:
        t, s = scalar(np.float32(value))
        assert abs(t - np.tanh(value)) < TANH_BOUND
        assert abs(s - 1 / (1 + np.exp(-value))) < SIGMOID_BOUND
    x = np.array([np.inf, -np.inf, np.nan] * 11, np.float32)  # vector body and remainder
    t, s = np.empty_like(x), np.empty_like(x)
    vector_loops(x, t, s)
    assert np.allclose(t[0::3], 1, atol=1e-6) and np.allclose(t[1::3], -1, atol=1e-6)
    assert np.allclose(s[0::3], 1, atol=1e-6) and np.allclose(s[1::3], 0, atol=1e-6)
    assert np.all(np.isnan(t[2::3])) and np.all(np.isnan(s[2::3]))  # a diverged model shows
