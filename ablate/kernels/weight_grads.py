"""Weight gradients of a recurrent layer as one matrix product per gate block.

A gate block k with pre-activation a_t = W_k x_t + R_k h_{t-1} + b_k collects

    [dW_k, dR_k, db_k] += Σ_t dL/da_tᵀ [x_t, h_{t-1}, 1]       (h_{-1} = 0)

so the three sums are one product of dL/da [T·B, H_k] with the stacked operand
[x_t, h_{t-1}, 1] [T·B, I+H+1]. Three separate products (two BLAS calls and a column sum)
each read and pack the tall dL/da again; one product packs it once: 0.87 → 0.58 ms at
H=32 and 2.27 → 1.44 ms at H=64 for an LSTM's 4H rows (B=32, T=100, float32, one core).

Where the register tiles run (``tiled_product.AVAILABLE``), a cell's backward keeps dL/da in a
``gradient_store``: each step's [B, K] block is copied (``store_step``, from L1) into a
512 KiB store in the tiles' panel layout, and once a chunk of steps is in (16 at K=256,
B=32) the tiles add its Σ_t [x_t, h_{t-1}, 1]ᵀ dL/da_t into the totals while the store is
still in the L2 cache, the stacked inputs read transposed in place: ~120 GFLOP/s against
single-threaded OpenBLAS' 46–91 on the whole sequence's tall, thin product (bench/RESULTS.md).
Elsewhere the store is the plain [T·B, K] matrix and OpenBLAS multiplies it at the end.
"""

import numpy as np

from ablate.kernels.aligned import aligned_empty, aligned_zeros
from ablate.kernels.jit import kernel
from ablate.kernels.tiled_product import AVAILABLE as TILED
from ablate.kernels.tiled_product import panel_width, tiled_product_add

STORE_BYTES = 512 * 1024  # a quarter of the 2 MiB L2 cache: a chunk of dL/da steps


@kernel
def stacked_inputs(x, h):
    """[x_t, h_{t-1}, 1] for every (t, b) as one [T·B, I+H+1] matrix (h_{-1} = 0).

    x [T,B,I] inputs; h [T,B,H] hidden states of the same chunk.
    """
    T, B, n_in = x.shape
    H = h.shape[2]
    stacked = np.empty((T, B, n_in + H + 1), dtype=x.dtype)
    zero, one = x.dtype.type(0), x.dtype.type(1)
    for t in range(T):
        for bb in range(B):
            for k in range(n_in):
                stacked[t, bb, k] = x[t, bb, k]
            for k in range(H):
                stacked[t, bb, n_in + k] = h[t - 1, bb, k] if t > 0 else zero
            stacked[t, bb, n_in + H] = one
    return stacked.reshape((T * B, n_in + H + 1))


@kernel
def weight_grad_blocks(d_pre, stacked, n_in):
    """(Σ dᵀx_t, Σ dᵀh_{t-1}, Σ d) as views [K,I], [K,H], [K] of one product.

    d_pre [T·B, K]: dL/da of K rows; stacked: ``stacked_inputs`` of the same chunk.
    """
    H = stacked.shape[1] - n_in - 1
    total = np.dot(d_pre.T, stacked)  # [K, I+H+1]
    return total[:, :n_in], total[:, n_in : n_in + H], total[:, n_in + H]


if TILED:

    @kernel
    def gradient_store(T, B, K, N, like):
        """(store, totals) for the weight gradients of K pre-activations over T steps of B
        rows, with N = I+H+1 stacked inputs.

        store [⌈K/W⌉, S·B, W]: the dL/da of S steps in the tiles' panel layout
        (``tiled_product.pack_panels``'s), S chosen so the store stays in the L2 cache
        (STORE_BYTES); totals [N, ⌈K/W⌉·W]: Σ_t [x_t, h_{t-1}, 1]ᵀ dL/da_t so far.
        """
        width = panel_width(K, like)
        n_panels = (K + width - 1) // width
        steps = max(1, min(T, STORE_BYTES // (B * n_panels * width * like.itemsize)))
        store = aligned_empty((n_panels, steps * B, width), like)  # whole cache lines
        store[n_panels - 1, :, K - (n_panels - 1) * width :] = 0  # the padding columns only
        totals = aligned_zeros((N, n_panels * width), like)
        return store, totals

    @kernel
    def store_step(store, totals, da, t, stacked):
        """Copy step t's dL/da [B, K] into the store; on the first step of a chunk of S steps
        (t a multiple of S: the backward runs t = T−1 … 0), add the chunk's product into the
        totals while its panels are still in the L2 cache."""
        n_panels, rows, width = store.shape
        B, K = da.shape
        steps = rows // B
        first = t - t % steps  # the chunk's first step
        row0 = (t - first) * B
        # One-dimensional slices on both sides: the copy of a [B, K] step runs 2.4× faster
        # than through two-dimensional indexing, whose every access re-derives a strided,
        # wrap-around-checked address (0.20 → 0.084 ms per lstm backward at H=64, B=32).
        for p in range(n_panels):
            columns = min(width, K - p * width)
            rows_of_step = store[p, row0 : row0 + B]
            for bb in range(B):
                source = da[bb, p * width : p * width + columns]
                target = rows_of_step[bb, :columns]
                for w in range(columns):
                    target[w] = source[w]
        if t == first:
            n_rows = min(steps * B, stacked.shape[0] - first * B)
            # totals += Σ over the chunk's rows of [x_t, h_{t-1}, 1]ᵀ dL/da_t
            tiled_product_add(stacked[first * B : first * B + n_rows].T, store, totals)

    @kernel
    def stored_weight_grads(store, totals, stacked, n_in, K):
        """(Σ dᵀx_t, Σ dᵀh_{t-1}, Σ d) as views [K,I], [K,H], [K] once every step is stored."""
        H = totals.shape[0] - n_in - 1
        return totals[:n_in, :K].T, totals[n_in : n_in + H, :K].T, totals[n_in + H, :K]

else:

    @kernel
    def gradient_store(T, B, K, N, like):
        """(store, totals): the dL/da of every step as one [T·B, K] matrix; totals unused."""
        return np.empty((T * B, K), dtype=like.dtype), np.empty((0, 0), dtype=like.dtype)

    @kernel
    def store_step(store, totals, da, t, stacked):
        """Copy step t's dL/da [B, K] into the store (rows t·B … t·B + B − 1)."""
        B, K = da.shape
        for bb in range(B):
            for k in range(K):
                store[t * B + bb, k] = da[bb, k]

    @kernel
    def stored_weight_grads(store, totals, stacked, n_in, K):
        """(Σ dᵀx_t, Σ dᵀh_{t-1}, Σ d) as views [K,I], [K,H], [K] (OpenBLAS)."""
        return weight_grad_blocks(store, stacked, n_in)
