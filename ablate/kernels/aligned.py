"""Arrays whose data start on a 64-byte boundary, for the register tiles' operands.

Numba allocates arrays 32-byte aligned, so a 512-bit vector load from one of them straddles
two cache lines half the time: a tile product whose panels or output sit 32 bytes off a
line runs at ~131 GFLOP/s against ~155 aligned (32×74 · 74×256 and 32×256 · 256×64, one
core, bench/RESULTS.md). Allocating one line more and starting at the first boundary makes
every panel row, every output row of the tiles' width and every vector load line-aligned.
"""

import numpy as np

from ablate.kernels.jit import kernel

ALIGN_BYTES = 64  # one cache line, one 512-bit vector


@kernel
def _start(buffer):
    """Elements to skip from buffer's first to its first 64-byte aligned element."""
    return ((ALIGN_BYTES - buffer.ctypes.data % ALIGN_BYTES) % ALIGN_BYTES) // buffer.itemsize


@kernel
def aligned_empty(shape, like):
    """np.empty(shape, like.dtype), its data 64-byte aligned; shape a tuple of ints."""
    n = 1
    for extent in shape:
        n *= extent
    buffer = np.empty(n + ALIGN_BYTES // like.itemsize, dtype=like.dtype)
    start = _start(buffer)
    return buffer[start : start + n].reshape(shape)


@kernel
def aligned_zeros(shape, like):
    """np.zeros(shape, like.dtype), its data 64-byte aligned; shape a tuple of ints."""
    n = 1
    for extent in shape:
        n *= extent
    buffer = np.zeros(n + ALIGN_BYTES // like.itemsize, dtype=like.dtype)
    start = _start(buffer)
    return buffer[start : start + n].reshape(shape)
