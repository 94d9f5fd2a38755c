"""The per-step products of the recurrences: R h_{t-1} forward, dL/da · R backward.

Where the CPU has AVX-512 (``tiled_product.AVAILABLE``) both are register-tile products
against R packed once per sequence (``tiled_product.py``: ~165 GFLOP/s against OpenBLAS'
64–91 at these shapes on one core); elsewhere OpenBLAS. A cell kernel calls

    operand = forward_operand(R)          # once per sequence
    out = product_out(B, G, x)            # zeros, 64-byte aligned
    recurrent_product(h_prev, operand, out, scratch)   # out[:, :G] = h_prev Rᵀ, each step

and likewise ``backward_operand`` / ``backprop_product`` for dL/dh_{t-1} = dL/da · R. ``out``
may be wider than the product (the tiles' zero padding); only its first columns are read.
"""

import numpy as np

from ablate.kernels.aligned import aligned_zeros
from ablate.kernels.jit import kernel
from ablate.kernels.tiled_product import AVAILABLE as TILED
from ablate.kernels.tiled_product import pack_panels, padded_width, tiled_product


@kernel
def blas_recurrent_product(h_prev, R, out, scratch):
    """out [B,G] = h_prev [B,H] Rᵀ for R [G,H] by OpenBLAS; scratch [G,B] is work space.

    Computed as (R · h_prevᵀ)ᵀ: single-threaded OpenBLAS runs the [G,H]·[H,B] shape
    1.5-2x faster than [B,H]·[H,G] for B ≤ 32 (24.6 vs 38.1 µs at H=128, B=16, the
    transposing copy included) and about as fast at B=64 (bench/RESULTS.md).
    """
    np.dot(R, h_prev.T, scratch)
    for row in range(out.shape[0]):
        for k in range(out.shape[1]):
            out[row, k] = scratch[k, row]


if TILED:

    @kernel
    def forward_operand(R):
        """Rᵀ [H,G] packed as register-tile panels."""
        return pack_panels(R.T)

    @kernel
    def backward_operand(R):
        """R [G,H] packed as register-tile panels."""
        return pack_panels(R)

    @kernel
    def product_width(n, like):
        """Columns of an ``out`` for an n-column product in ``like``'s dtype."""
        return padded_width(n, like)

    @kernel
    def recurrent_product(h_prev, operand, out, scratch):
        """out[:, :G] = h_prev [B,H] Rᵀ for operand = forward_operand(R); scratch unused."""
        tiled_product(h_prev, operand, out)

    @kernel
    def backprop_product(d, operand, out):
        """out[:, :H] = d [B,G] · R for operand = backward_operand(R)."""
        tiled_product(d, operand, out)

else:

    @kernel
    def forward_operand(R):
        """R itself (OpenBLAS multiplies it as stored)."""
        return R

    @kernel
    def backward_operand(R):
        """R itself (OpenBLAS multiplies it as stored)."""
        return R

    @kernel
    def product_width(n, like):
        """Columns of an ``out`` for an n-column product: n."""
        return n

    @kernel
    def recurrent_product(h_prev, operand, out, scratch):
        """out [B,G] = h_prev [B,H] Rᵀ for operand = R [G,H]; scratch [G,B] is work space."""
        blas_recurrent_product(h_prev, operand, out, scratch)

    @kernel
    def backprop_product(d, operand, out):
        """out [B,H] = d [B,G] · R for operand = R."""
        np.dot(d, operand, out)


@kernel
def product_out(rows, n, like):
    """Zeros [rows, product_width(n)] in like's dtype, 64-byte aligned (aligned.py): the
    ``out`` of an n-column recurrent or backprop product."""
    return aligned_zeros((rows, product_width(n, like)), like)
