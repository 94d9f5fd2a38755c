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
def _size(shape):
    """Elements of an array of ``shape``."""
    n = 1
    for extent in shape:
        n *= extent
    return n


@kernel
def _aligned_view(buffer, shape):
    """The first 64-byte aligned ``shape`` inside ``buffer`` (one line longer than it)."""
    start = ((ALIGN_BYTES - buffer.ctypes.data % ALIGN_BYTES) % ALIGN_BYTES) // buffer.itemsize
    return buffer[start : start + _size(shape)].reshape(shape)


@kernel
def aligned_empty(shape, like):
    """np.empty(shape, like.dtype), its data 64-byte aligned; shape a tuple of ints."""
    padded = _size(shape) + ALIGN_BYTES // like.itemsize
    return _aligned_view(np.empty(padded, dtype=like.dtype), shape)


@kernel
def aligned_zeros(shape, like):
    """np.zeros(shape, like.dtype), its data 64-byte aligned; shape a tuple of ints."""
    padded = _size(shape) + ALIGN_BYTES // like.itemsize
    return _aligned_view(np.zeros(padded, dtype=like.dtype), shape)
