"""64-byte aligned arrays (ablate.kernels.aligned) and the tile operands made with them.

Numba allocates 32-byte aligned, so without these about half of all allocations would start
mid cache line; many allocations in a row make that near-certain to show."""

from __future__ import annotations

import numpy as np
import pytest

from ablate.kernels.aligned import ALIGN_BYTES, aligned_empty, aligned_zeros
from ablate.kernels.products import forward_operand, product_out
from ablate.kernels.tiled_product import AVAILABLE, pack_panels
from ablate.kernels.weight_grads import gradient_store


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(0,), (1,), (7,), (3, 5), (2, 3, 17), (4, 0, 2)])
def test_shape_dtype_zeros_and_alignment(shape, dtype):
    like = np.zeros(1, dtype)
    for _ in range(40):  # consecutive allocations land at different offsets
        zeros = aligned_zeros(shape, like)
        empty = aligned_empty(shape, like)
        for array in (zeros, empty):
            assert array.shape == shape and array.dtype == dtype
            assert array.flags.c_contiguous and array.flags.writeable
            assert array.ctypes.data % ALIGN_BYTES == 0
        assert np.all(zeros == 0)
        empty[...] = 1  # every element writable, none shared with zeros
        assert np.all(zeros == 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tile_operands_are_aligned(dtype):
    rng = np.random.default_rng(11)
    like = np.zeros(1, dtype)
    for K, N in [(74, 256), (256, 64), (9, 13), (65, 96)]:
        M = rng.normal(size=(K, N)).astype(dtype)
        panels = pack_panels(M)
        assert panels.ctypes.data % ALIGN_BYTES == 0
        width = panels.shape[2]
        np.testing.assert_array_equal(panels.transpose(1, 0, 2).reshape(K, -1)[:, :N], M)
        out = product_out(32, N, like)
        assert out.ctypes.data % ALIGN_BYTES == 0 and np.all(out == 0)
        assert out.shape[1] % width == 0 or out.shape[1] == N
        if AVAILABLE:  # elsewhere OpenBLAS multiplies R and the store as they are
            assert forward_operand(M.T.copy()).ctypes.data % ALIGN_BYTES == 0
            store, totals = gradient_store(100, 32, N, K, like)
            assert store.ctypes.data % ALIGN_BYTES == 0
            assert totals.ctypes.data % ALIGN_BYTES == 0 and np.all(totals == 0)
