"""Unsigned indices for the CUDA kernels' inner loops.

Numba indexes with int64 and, for a signed index, adds the array's length where the index
is negative (Python's wraparound): per access a 64-bit shift, an and and an add, which
also keep LLVM from turning a loop's addresses into running pointers. With an unsigned
index Numba skips that. In the forward's recurrent sum (lstm, 4 gates, PTX for sm_90) the
body of NVVM's 4-times-unrolled loop shrinks from 215 to 111 instructions for its 16 FMAs;
on an H200 a training step got 1.25–1.5× faster (bench/RESULTS.md, 2026-12-04).

Every kernel index is ≥ 0 by construction; a negative one would become a huge unsigned one
and fail loudly under the simulator (IndexError) instead of wrapping.
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from ablate.cuda import simulator


def unsigned(i):
    """``i`` (≥ 0) as an unsigned index: no wraparound code for the access it indexes."""
    return np.uint64(i)


# Under the simulator a device function's every call goes through its stand-in for the
# module's globals; for the innermost index that made the CUDA tests 4× slower (one test:
# 10.6 s → 41.4 s), so there the kernels call the plain function, same result.
at = unsigned if simulator.active() else cuda.jit(device=True)(unsigned)
