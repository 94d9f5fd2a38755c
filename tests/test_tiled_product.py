"""The register-tile product (ablate.kernels.tiled_product) against NumPy in float64.

It runs on any x86-64 or other CPU LLVM targets (vectors wider than the hardware's are
split); the cell kernels use it where ``AVAILABLE`` (AVX-512). The gradient checks against
PyTorch (test_cells_torch.py) go through it there too.
"""

from __future__ import annotations

import numpy as np
import pytest

from ablate.kernels import products
from ablate.kernels.tiled_product import (
    AVAILABLE,
    pack_panels,
    padded_width,
    panel_width,
    tiled_product,
    tiled_product_add,
)

SHAPES = [(1, 1, 1), (1, 5, 13), (3, 7, 16), (9, 52, 13), (37, 13, 52), (32, 32, 128),
          (32, 128, 32), (16, 128, 512), (5, 64, 256), (64, 96, 96), (33, 200, 70)]


def product(a, M):
    out = np.full((a.shape[0], padded_width(M.shape[1], a)), np.nan, a.dtype)
    tiled_product(a, pack_panels(M), out)
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("B, K, N", SHAPES)
def test_equals_numpy_and_pads_with_zeros(B, K, N, dtype):
    rng = np.random.default_rng(B * 1000 + K * 10 + N)
    a = rng.normal(size=(B, K)).astype(dtype)
    M = rng.normal(size=(K, N)).astype(dtype)
    out = product(a, M)
    exact = a.astype(np.float64) @ M.astype(np.float64)
    # each element is a chain of K fused multiply-adds: |error| ≤ K·ε·Σ|a||M| (a term left
    # out or counted twice would be ~Σ|a||M|/K, far above it)
    bound = K * np.finfo(dtype).eps * (np.abs(a).astype(np.float64) @ np.abs(M).astype(np.float64))
    assert np.all(np.abs(out[:, :N] - exact) <= bound)
    assert np.all(out[:, N:] == 0)
    assert out.shape[1] % panel_width(N, a) == 0 and out.shape[1] - N < panel_width(N, a)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_row_does_not_depend_on_its_tile(dtype):
    """Rows computed in a full tile, in a remainder row, or alone give the same bytes: one FMA
    chain over k per element whatever the tiling (so the batch split cannot change results)."""
    rng = np.random.default_rng(3)
    a = rng.normal(size=(13, 40)).astype(dtype)
    M = rng.normal(size=(40, 64)).astype(dtype)
    together = product(a, M)
    for row in range(13):
        alone = product(np.ascontiguousarray(a[row : row + 1]), M)
        assert together[row].tobytes() == alone[0].tobytes()


def test_column_layout_of_the_packed_operand_does_not_matter():
    """pack_panels reads any layout: Rᵀ as a transposed view packs like its copy."""
    rng = np.random.default_rng(4)
    R = rng.normal(size=(52, 13)).astype(np.float32)
    assert np.array_equal(pack_panels(R.T), pack_panels(np.ascontiguousarray(R.T)))


def test_mismatched_arguments_are_one_clear_error():
    a = np.ones((4, 6), np.float32)
    panels = pack_panels(np.ones((5, 8), np.float32))
    with pytest.raises(ValueError, match=r"a \[B,K\], panels \[P,K,W\] and out"):
        tiled_product(a, panels, np.zeros((4, 64), np.float32))
    panels = pack_panels(np.ones((6, 8), np.float32))
    with pytest.raises(ValueError, match="disagree"):
        tiled_product(a, panels, np.zeros((4, 8), np.float32))  # out narrower than the panels


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_cells_products_equal_numpy(dtype):
    """products.py's forward and backward products, whichever route this CPU takes."""
    rng = np.random.default_rng(5)
    B, H, G = 11, 24, 96
    R = rng.normal(size=(G, H)).astype(dtype)
    h = rng.normal(size=(B, H)).astype(dtype)
    d = rng.normal(size=(B, G)).astype(dtype)
    forward = np.zeros((B, products.product_width(G, h)), dtype)
    products.recurrent_product(h, products.forward_operand(R), forward, np.empty((G, B), dtype))
    backward = np.zeros((B, products.product_width(H, h)), dtype)
    products.backprop_product(d, products.backward_operand(R), backward)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(forward[:, :G], h @ R.T, rtol=rtol, atol=rtol * 10)
    np.testing.assert_allclose(backward[:, :H], d @ R, rtol=rtol, atol=rtol * 10)
    assert (products.recurrent_product.py_func.__doc__.startswith("out[:, :G]")) == AVAILABLE


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_transposed_view_is_read_in_place(dtype):
    """a may be any layout: Sᵀ as a view gives the bytes of its contiguous copy."""
    rng = np.random.default_rng(5)
    S = rng.normal(size=(70, 19)).astype(dtype)  # a = Sᵀ [19, 70]
    M = rng.normal(size=(70, 40)).astype(dtype)
    assert product(S.T, M).tobytes() == product(np.ascontiguousarray(S.T), M).tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_add_accumulates_over_the_first_rows_of_the_panels(dtype):
    """tiled_product_add(a, panels(M), out) adds a · M[:K] for a [B,K], M with more rows:
    from zero it gives tiled_product's bytes; split over row chunks, the sum of the chunks."""
    rng = np.random.default_rng(6)
    M = rng.normal(size=(90, 45)).astype(dtype)
    a = rng.normal(size=(11, 60)).astype(dtype)
    width = padded_width(45, a)
    out = np.zeros((11, width), dtype)
    tiled_product_add(a, pack_panels(M), out)
    assert out.tobytes() == product(a, np.ascontiguousarray(M[:60])).tobytes()

    start = rng.normal(size=(11, width)).astype(dtype)
    chunked = start.copy()
    for k0 in (0, 25, 50):  # rows 0-24, 25-49, 50-59 of M, each chunk packed on its own
        k1 = min(60, k0 + 25)
        tiled_product_add(np.ascontiguousarray(a[:, k0:k1]), pack_panels(M[k0:k1]), chunked)
    exact = start[:, :45].astype(np.float64) + a.astype(np.float64) @ M[:60].astype(np.float64)
    bound = 61 * np.finfo(dtype).eps * (
        np.abs(start[:, :45]) + np.abs(a).astype(np.float64) @ np.abs(M[:60]).astype(np.float64))
    assert np.all(np.abs(chunked[:, :45] - exact) <= bound)
