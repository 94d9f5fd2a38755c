"""Reductions compiled with reassociation allowed, so LLVM vectorises them.

Kept out of the pointwise BPTT loops on purpose: one float accumulator inside a loop
stops LLVM from vectorising the whole loop (it may not reorder the additions).
"""

from ablate.kernels.jit import kernel


@kernel(fastmath={"reassoc", "nsz", "contract"})
def sum_squares(values):
    """Σ v² over a 2-D array, accumulated in float64."""
    total = 0.0
    for row in range(values.shape[0]):
        for k in range(values.shape[1]):
            total += values[row, k] * values[row, k]
    return total


@kernel(fastmath={"reassoc", "nsz", "contract"})
def add_column_sums(values, out):
    """out [K] += Σ_rows values [N,K]."""
    for row in range(values.shape[0]):
        for k in range(values.shape[1]):
            out[k] += values[row, k]
