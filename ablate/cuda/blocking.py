"""The row-blocked sums both CUDA cell families share: each weight loaded once for several
batch rows (or each row value once for several weights), accumulators in registers.

``make_blocked(dtype, rows_per_thread)`` gives these device functions, for RB =
rows_per_thread, GT = min(RB, 4) and OT = min(RB, 8), and GT and OT themselves:

  transposed_sum  Σ_k left[r, k] M[k, j] for RB rows × GT units a thread: dL/dh_t through
                  R h_t at step t+1 (left = the gradients at step t+1), and the other
                  matrices the backward reads by column (R_gates, P). RB + GT loads per
                  RB·GT multiply-adds (2 per 1 unblocked). ``transposed_rows`` runs it over
                  all of a block's rows and units.
  column_sum      a bias's gradient Σ_t Σ_r left[t, r, col] over the block's rows, one
                  column of a [T, B, width] block of the work vector (1 load a term).
  outer_sum       a weight matrix's gradient Σ_t Σ_r left[t, r, k] right[t − lag, r, q],
                  an OT × OT tile a thread: 2·OT loads per OT² multiply-adds (2 per 1).
                  ``outer_sum_x`` is the same with x_t ([T, B, I]) on the right.

The sides are what the registers allow (ptxas, every cell at RB 8): 8 × 8 gradient tiles
fit beside everything else (backward ≤ 229 of 255 registers, no spills) and cut the lstm's
loads a model-step by 19% against 4 × 4 (bench/load_count.py: 2.49 M → 2.02 M
warp-loads); 8 units a thread in transposed_sum as well spill (fgr, single_net: 255
registers and 16–28 B of spills), so it keeps 4.

The loops over the block's rows and units have constant trip counts, so NVVM unrolls them
and the local arrays become registers (ptxas reports no stack: bench/cuda_resources.txt).
A row or unit past the end repeats the last one (no branch in the sums) and is not stored.
Each gradient entry adds its terms in the same order (t, then r) whatever the blocking, so
W, R and W_out's gradients are the unblocked kernels' to the bit (tests/test_cuda.py).
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np
from numba import cuda

from ablate.cuda.index import at
from ablate.cuda.tiles import element


class Blocked(NamedTuple):
    transposed_sum: object
    transposed_rows: object
    outer_sum: object
    outer_sum_x: object
    column_sum: object
    units: int  # GT: units a thread takes in transposed_sum
    tile: int  # OT: the side of outer_sum's tile


_BUILT: dict = {}


@cuda.jit(device=True)
def work_entry(work_vector, base, width, t, B, r, q):
    """A [T, B, width] block of the work vector at ``base``: entry [t, r, q]."""
    return work_vector[at(base + (t * B + r) * width + q)]


@cuda.jit(device=True)
def input_entry(xs, base, width, t, B, r, q):
    """x_t of row r, input q (xs [T, B, I]; base and width are unused)."""
    return xs[at(t), at(r), at(q)]


def make_blocked(dtype, rows_per_thread: int, spread: bool = False) -> Blocked:
    """The blocked sums for one precision and rows_per_thread (built once); ``spread``: for
    kernels whose tiles spread over blocks (``ablate.cuda.tiles``)."""
    dtype = np.dtype(dtype)
    key = (dtype.name, rows_per_thread, spread)
    if key not in _BUILT:
        _BUILT[key] = _build(dtype, rows_per_thread, spread)
    return _BUILT[key]


def _build(dtype: np.dtype, RB: int, SPREAD: bool) -> Blocked:
    GT = min(RB, 4)
    OT = min(RB, 8)  # the module docstring says why the two differ
    ACC = numba.from_dtype(dtype)
    zero = dtype.type(0)

    @cuda.jit(device=True)
    def transposed_sum(dest, d_base, d_width, left, l_base, l_width, n_k, p, m_base, stride,
                       n_units, first, stop, b, nu, accumulate):
        """dest[d_base + r·d_width + j] (+= if accumulate) Σ_{k < n_k} left[l_base + r·l_width
        + k] · p[m_base + k·stride + j] for rows first … stop − 1 (at most RB) and units
        j = b, b + nu, … < n_units (GT of them, nu = ⌈n_units/GT⌉): a warp's threads
        (consecutive b) read adjacent words of the matrix's row k."""
        last = stop - 1
        acc = cuda.local.array((RB, GT), ACC)
        m_k = cuda.local.array(GT, ACC)
        for u in range(RB):
            for v in range(GT):
                acc[u, v] = zero
        for k in range(n_k):
            for v in range(GT):
                m_k[v] = p[at(m_base + k * stride + min(b + v * nu, n_units - 1))]
            for u in range(RB):
                value = left[at(l_base + min(first + u, last) * l_width + k)]
                for v in range(GT):
                    acc[u, v] += value * m_k[v]
        for u in range(RB):
            for v in range(GT):
                j = b + v * nu
                if first + u < stop and j < n_units:
                    spot = d_base + (first + u) * d_width + j
                    dest[spot] = dest[spot] + acc[u, v] if accumulate else acc[u, v]

    @cuda.jit(device=True)
    def transposed_rows(dest, d_base, d_width, left, l_base, l_width, n_k, p, m_base, stride,
                        n_units, row0, rows, tid, n_threads, accumulate, parts):
        """``transposed_sum`` for every row of the block (row0 … row0 + rows − 1) and every
        unit j < n_units, RB rows × GT units a thread. A thread gets the same (rows, units)
        at every call with the same rows and n_units, so calls that accumulate into one
        destination need no barrier between them. Spread over ``parts`` blocks, each block
        takes a run of units (``ablate.cuda.tiles.element``)."""
        n_blocks = (n_units + GT - 1) // GT
        groups = (rows + RB - 1) // RB
        for e in range(tid, groups * n_blocks, n_threads):
            if SPREAD:
                group, b = element(e, n_blocks, groups, parts)
            else:
                group, b = e // n_blocks, e % n_blocks
            first = row0 + group * RB
            transposed_sum(dest, d_base, d_width, left, l_base, l_width, n_k, p, m_base,
                           stride, n_units, first, min(first + RB, row0 + rows), b, n_blocks,
                           accumulate)

    def make_outer_sum(right_entry):
        """``outer_sum`` reading its right factor with ``right_entry`` (work_entry or
        input_entry: the work vector is flat, the inputs are [T, B, I]; Numba's reshape to
        flat needs a host helper the device lacks)."""

        @cuda.jit(device=True)
        def outer_sum(g, g_base, g_stride, left, l_base, l_width, n_rows, right, r_base,
                      r_width, n_cols, lag, T, B, row0, rows, tid, n_threads):
            """g[g_base + k·g_stride + q] = Σ_{t ≥ lag} Σ_r left[t, r, k] · right[t − lag, r, q]
            over the block's rows, for k < n_rows and q < n_cols, with left[t, r, k] =
            left[l_base + (t·B + r)·l_width + k] and right[t, r, q] likewise (r_width):
            R is the gradients at t against h_{t−1} (lag 1), W against x_t, W_out dy_t
            against h_t; a block of a matrix (R_gates' gate pairs) has g_stride > n_cols.
            A thread sums the tile of rows a, a + na, … and columns b, b + nb, …
            (na = ⌈n_rows/OT⌉, nb = ⌈n_cols/OT⌉), so a warp's threads (consecutive b) read
            adjacent words of right."""
            na = (n_rows + OT - 1) // OT
            nb = (n_cols + OT - 1) // OT
            acc = cuda.local.array((OT, OT), ACC)
            left_t = cuda.local.array(OT, ACC)
            right_t = cuda.local.array(OT, ACC)
            for e in range(tid, na * nb, n_threads):
                a = e // nb
                b = e % nb
                for u in range(OT):
                    for v in range(OT):
                        acc[u, v] = zero
                for t in range(lag, T):
                    for r in range(row0, row0 + rows):
                        for u in range(OT):
                            left_t[u] = work_entry(left, l_base, l_width, t, B, r,
                                                   min(a + u * na, n_rows - 1))
                        for v in range(OT):
                            right_t[v] = right_entry(right, r_base, r_width, t - lag, B, r,
                                                     min(b + v * nb, n_cols - 1))
                        for u in range(OT):
                            for v in range(OT):
                                acc[u, v] += left_t[u] * right_t[v]
                for u in range(OT):
                    for v in range(OT):
                        k = a + u * na
                        q = b + v * nb
                        if k < n_rows and q < n_cols:
                            g[g_base + k * g_stride + q] = acc[u, v]

        return outer_sum

    @cuda.jit(device=True)
    def column_sum(work_vector, base, width, col, T, B, row0, rows):
        """Σ_t Σ_r work_vector[base + (t·B + r)·width + col] over the block's rows
        row0 … row0 + rows − 1, t before r: a bias's gradient (b against da, b_out against
        dy, …)."""
        acc = zero
        for t in range(T):
            for r in range(row0, row0 + rows):
                acc += work_vector[at(base + (t * B + r) * width + col)]
        return acc

    return Blocked(transposed_sum, transposed_rows, make_outer_sum(work_entry),
                   make_outer_sum(input_entry), column_sum, GT, OT)
