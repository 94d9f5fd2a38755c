"""One-hot inputs: W x_t as a column of W instead of a product over the input rows.

Most memory tasks feed symbols (copy, temporal order, recall, …): every row of x_t is a
single 1 or all zeros. Then W x_t is column c of W, and the input's share of the per-step
product (K = H + I) and of the weight gradients ([x_t, h_{t-1}, 1] stacked) is arithmetic
on zeros: 10 of the 74 product columns and 10 of the 75 gradient rows of the copy task's
lstm at H = 64. A kernel asks ``one_hot_columns(x)`` once per sequence; where it holds, the
product runs on h_{t-1} alone (K = H) and ``add_input_columns`` adds column c of W to each
row's pre-activations, the backward ``add_to_columns`` adds each row's dL/da into dL/dW's
column c. The forward's sums are bit for bit the dense product's: the tile adds x_i·W_i in
one FMA chain after the h terms, x_i·W_i + s = s for x_i = 0 and round(s + W_c) for x_c = 1.
"""

import numpy as np

from ablate.kernels.aligned import aligned_zeros
from ablate.kernels.jit import kernel


@kernel
def one_hot_columns(x):
    """(one_hot, hot [T,B]): whether every row of x [T,B,I] is a single 1 or all zeros, and
    then each row's column of the 1 (I for a row of zeros); hot is [0,B] otherwise."""
    T, B, n_in = x.shape
    hot = np.empty((T, B), dtype=np.int64)
    zero, one = x.dtype.type(0), x.dtype.type(1)
    bad = 0
    for t in range(T):
        for bb in range(B):
            row = x[t, bb]
            n_ones = 0
            column = 0
            for i in range(n_in):  # branch-free: rows are short and many
                is_one = row[i] == one
                n_ones += is_one
                column += i * is_one
                bad += (row[i] != zero) & (not is_one)
            bad += n_ones > 1
            hot[t, bb] = column if n_ones == 1 else n_in
    # both returns a slice, so Numba types them alike
    return (False, hot[:0]) if bad > 0 else (True, hot[:])


@kernel
def input_columns(W, one_hot):
    """Wᵀ [I+1, G] with a zero row I last (the row of an all-zero x_t) where one_hot, else
    [0, G]: row c is what a one-hot x_t with its 1 at c adds to the pre-activations."""
    G, n_in = W.shape
    columns = aligned_zeros((n_in + 1 if one_hot else 0, G), W)
    for i in range(n_in if one_hot else 0):
        for k in range(G):
            columns[i, k] = W[k, i]
    return columns


@kernel
def add_input_columns(out, columns, hot_t):
    """out[b, :G] += columns[hot_t[b]] for every row b: W x_t for a one-hot x_t."""
    G = columns.shape[1]
    for bb in range(out.shape[0]):
        # One-dimensional slices: the loop vectorises (weight_grads.store_step says why).
        source = columns[hot_t[bb]]
        target = out[bb, :G]
        for k in range(G):
            target[k] += source[k]


@kernel
def add_to_columns(columns, d, hot_t):
    """columns[hot_t[b]] += d[b] for every row b of d [B,G]: Σ_b dL/da_b x_bᵀ for a one-hot
    x_t, by column of W (row I, all-zero x_t, collects what belongs to no column)."""
    for bb in range(d.shape[0]):
        source = d[bb]
        target = columns[hot_t[bb]]
        for k in range(d.shape[1]):
            target[k] += source[k]
