"""The per-step recurrent product, in the operand order OpenBLAS runs fastest for small batches."""

import numpy as np

from ablate.kernels.jit import kernel


@kernel
def recurrent_product(h_prev, R, out, scratch):
    """out [B,G] = h_prev [B,H] Rᵀ for R [G,H]; scratch [G,B] is work space.

    Computed as (R · h_prevᵀ)ᵀ: single-threaded OpenBLAS runs the [G,H]·[H,B] shape
    1.5-2x faster than [B,H]·[H,G] for B ≤ 32 (24.6 vs 38.1 µs at H=128, B=16, the
    transposing copy included) and about as fast at B=64 (bench/RESULTS.md).
    """
    np.dot(R, h_prev.T, scratch)
    for row in range(out.shape[0]):
        for k in range(out.shape[1]):
            out[row, k] = scratch[k, row]
