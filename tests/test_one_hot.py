"""One-hot inputs (ablate.kernels.one_hot): detected exactly, and the LSTM kernels' column
path gives the dense product's states bit for bit. (Gradients on one-hot inputs against
PyTorch autograd: test_cells_torch.py::test_one_hot_inputs_match_autograd_reference.)"""

from __future__ import annotations

import numpy as np
import pytest

import ablate
from ablate.cells.lstm_family import VARIANTS
from ablate.kernels.one_hot import one_hot_columns


def symbols(rng, T, B, I, dtype, zero_rows=True):
    columns = rng.integers(0, I, (T, B))
    keep = rng.random((T, B, 1)) < 0.7 if zero_rows else np.ones((T, B, 1), bool)
    return (np.eye(I)[columns] * keep).astype(dtype), np.where(keep[..., 0], columns, I)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("seed", range(4))
def test_detects_one_hot_rows_and_their_columns(seed, dtype):
    rng = np.random.default_rng(seed)
    T, B, I = int(rng.integers(1, 30)), int(rng.integers(1, 9)), int(rng.integers(1, 12))
    x, columns = symbols(rng, T, B, I, dtype)
    one_hot, hot = one_hot_columns(x)
    assert one_hot and hot.shape == (T, B)
    np.testing.assert_array_equal(hot, columns)
    one_hot, hot = one_hot_columns(x[:, ::2])  # a strided view, as a batch chunk is
    assert one_hot
    np.testing.assert_array_equal(hot, columns[:, ::2])
    t, b, i = rng.integers(T), rng.integers(B), rng.integers(I)
    for value in (0.5, -1.0, 2.0, np.nan, np.inf, 1e-30):
        spoiled = x.copy()
        spoiled[t, b, i] = value
        if value == 1e-30 and dtype == np.float32 and spoiled[t, b, i] in (0, 1):
            continue  # rounds to 0 or stays 1 in float32
        assert not one_hot_columns(spoiled)[0], value
    if I > 1:  # two ones in a row
        spoiled = x.copy()
        spoiled[t, b, :2] = 1
        assert not one_hot_columns(spoiled)[0]


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_column_path_gives_the_dense_states_bit_for_bit(name):
    """The same sequence twice: one-hot everywhere, and with a 2 at its last step, which
    sends the whole sequence through the dense product; every state before it is equal."""
    rng = np.random.default_rng(len(name))
    T, B, I, H, O = 17, 5, 7, 20, 3
    for dtype in (np.float32, np.float64):
        params = ablate.init_params(name, I, H, O, seed=1, dtype=dtype)
        params = (params + rng.normal(0, 0.3, params.size)).astype(dtype)
        x, _ = symbols(rng, T, B, I, dtype)
        dense = x.copy()
        dense[-1, 0, 0] = 2.0
        _, forward, _ = ablate.cells.kernels(name, dtype)
        sparse_state, dense_state = forward(params, x, H, O), forward(params, dense, H, O)
        assert sparse_state[5] and not dense_state[5]
        written = [0, 1, 2, 4]  # h, c, gates, ifo; aux where the variant writes it
        if VARIANTS[name].gated_read or VARIANTS[name].use_gate:
            written.append(3)
        for k in written:
            np.testing.assert_array_equal(sparse_state[k][:-1], dense_state[k][:-1])
