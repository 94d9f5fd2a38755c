"""Weight gradients of a recurrent layer as one matrix product per gate block.

A gate block k with pre-activation a_t = W_k x_t + R_k h_{t-1} + b_k collects

    [dW_k, dR_k, db_k] += Σ_t dL/da_tᵀ [x_t, h_{t-1}, 1]       (h_{-1} = 0)

so the three sums are one product of dL/da [T·B, H_k] with the stacked operand
[x_t, h_{t-1}, 1] [T·B, I+H+1]. Three separate products (two BLAS calls and a column sum)
each read and pack the tall dL/da again; one product packs it once: 0.87 → 0.58 ms at
H=32 and 2.27 → 1.44 ms at H=64 for an LSTM's 4H rows (B=32, T=100, float32, one core).
"""

import numpy as np

from ablate.kernels.jit import kernel


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
