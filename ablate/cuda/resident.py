"""Recurrent weights resident in registers: the sums through R of the CUDA kernels (the lstm
family, and the rnn, irnn and gru) without reading R from memory at every time step.

The default kernels (``ablate.cuda.lstm_family``) read Rᵀ from L1/L2 at every step, ≈ 7
instructions and a load's latency per multiply-add (bench/RESULTS.md, "GPU (issue 7)"). Here
each thread of a block loads its share of R [G, H] once per launch into a local array whose
every index is a compile-time constant, so NVVM keeps it in registers (ptxas: no stack), and
the per-step sums read only shared memory:

  forward   a_t[r, g] += Σ_q R[g, q] h_{t-1}[r, q]. Thread (g, s), s < SF, holds R[g, s·HS …
            s·HS + HS − 1]; h_{t-1} of the tile's rows sits in shared memory (``h_rows``),
            read by every thread of a warp at one address (a broadcast): one shared load and
            one multiply-add a term. The SF partial sums of g add up across adjacent lanes.
  backward  dh_t[r, j] = Σ_k da_{t+1}[r, k] R[k, j] and, from the same loads, R's gradient
            Σ_t da_{t+1} ⊗ h_t. Thread (j, s), s < SB, holds column j's rows k = s·GS …
            s·GS + GS − 1 and GS gradient accumulators; da_{t+1} of the tile's rows is staged
            in shared memory (``da_rows``, each lane group's GS entries padded by one word so
            the SB lanes of a unit read different banks): one shared load, two
            multiply-adds a term. R's gradient leaves the registers once, after the time loop.

SF and SB are the largest powers of two (≤ 32) with G·SF and H·SB within the block, so a
lane group never crosses a warp. Entries past G or H are zero weights and are never stored.

Each dot product runs in CHAINS = 4 independent partial sums, so a multiply-add does not
wait for the one before. In the PTX for sm_90 (lstm, H 64, 256 threads) the forward's sum
is 64 shared loads and 64 FMAs a row, the backward's 64 and 128, and nothing goes to local
memory; ``python -m ablate.cuda.resources`` checks every cell with R so.

Limits, checked by ``layout`` with one message each: every thread holds at most
``MAX_HELD`` = 64 float32 weights a matrix, 32 float64 (lstm: H ≤ 64 at 256 threads; 128
registers for R and its gradient beside the kernel's own), and the two shared arrays fit
48 KiB (float32, H 64: a tile of up to 32 rows). The simulator has no warp shuffles; there
the lane groups add up through shared memory and two barriers (same sums, another order).
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np
from numba import cuda

from ablate.cuda import simulator
from ablate.cuda.index import at

MAX_HELD = 64  # float32 weights a thread holds of one matrix (R, and R's gradient); float64 32
CHAINS = 4  # independent partial sums a dot product runs in (a multiply-add's latency is 4)
SHARED_LIMIT = 48 * 1024  # static shared memory a block may use without opting in
FULL_MASK = 0xFFFFFFFF


class Layout(NamedTuple):
    """How a block of ``threads`` shares R [G, H] for tiles of ``tile_rows`` rows."""
    G: int
    H: int
    threads: int
    tile_rows: int
    SF: int  # forward: lanes a gate row g is split over
    HS: int  # forward: weights of row g a lane holds (⌈H / SF⌉)
    SB: int  # backward: lanes a unit j is split over
    GS: int  # backward: rows k of column j a lane holds (⌈G / SB⌉)

    @property
    def h_stride(self) -> int:
        """Words between two rows of ``h_rows`` (≥ H; the tail stays 0)."""
        return self.SF * self.HS

    @property
    def da_stride(self) -> int:
        """Words between two rows of ``da_rows``: SB lane groups of GS + 1 (one pad word)."""
        return self.SB * (self.GS + 1)

    def shared_words(self) -> int:
        """Words of the two shared arrays and the simulator's lane scratch."""
        return self.tile_rows * (self.h_stride + self.da_stride) + self.threads


def _lanes(items: int, threads: int) -> int:
    """The largest power of two ≤ 32 with items · lanes ≤ threads."""
    lanes = 1
    while lanes < 32 and items * lanes * 2 <= threads:
        lanes *= 2
    return lanes


def layout(G: int, H: int, threads: int, tile_rows: int, dtype) -> Layout:
    """The split of R over a block, or ValueError naming the limit it breaks."""
    dtype = np.dtype(dtype)
    most = MAX_HELD * 4 // dtype.itemsize  # a float64 takes two registers
    if G * H > threads * most:
        raise ValueError(f"resident weights: R's {G * H} weights (G {G} × H {H}) are more "
                         f"than {threads} threads hold at {most} each in {dtype.name}; use the "
                         f"default kernels (resident=False)")
    if threads % 32 or threads < max(G, H):
        raise ValueError(f"resident weights need a block of whole warps with a thread for "
                         f"each of the G = {G} gate rows; got {threads} threads")
    SF, SB = _lanes(G, threads), _lanes(H, threads)
    HS, GS = -(-H // SF), -(-G // SB)
    shape = Layout(G, H, threads, tile_rows, SF, HS, SB, GS)
    if max(HS, GS) > most:
        raise ValueError(f"resident weights: a thread would hold {max(HS, GS)} weights of R "
                         f"(G {G} × H {H} over {threads} threads), more than {most} in "
                         f"{dtype.name}; use the default kernels (resident=False)")
    size = shape.shared_words() * dtype.itemsize
    if size > SHARED_LIMIT:
        raise ValueError(f"resident weights: {tile_rows} rows a tile need {size} B of shared "
                         f"memory, more than {SHARED_LIMIT}; use a smaller tile_rows")
    return shape


def without_r(cell: str, cells) -> ValueError:
    """The one error for resident weights asked of a cell that has no R to hold."""
    return ValueError(f"resident weights hold a recurrent matrix R, which {cell!r} has not; "
                      f"cells with one: {', '.join(cells)}")


def make_resident(dtype, shape: Layout) -> tuple:
    """(load_rows, forward_sum, load_columns, backward_sum, store_gradient): the device
    functions for one precision and layout (see the module docstring)."""
    dtype = np.dtype(dtype)
    ACC = numba.from_dtype(dtype)
    zero = dtype.type(0)
    G, H, TR = shape.G, shape.H, shape.tile_rows
    SF, HS, SB, GS = shape.SF, shape.HS, shape.SB, shape.GS
    HP, DP = shape.h_stride, shape.da_stride
    sum_forward = lane_sum(SF)
    sum_backward = lane_sum(SB)

    @cuda.jit(device=True)
    def load_rows(held, h_rows, p, o_r, tid, n_threads):
        """held[m] = R[g, s·HS + m] (0 past H or G) for the lane (g, s) = divmod(tid, SF);
        h_rows = 0 (h_{-1}, and the columns past H for good), then a barrier."""
        g = tid // SF
        q0 = (tid % SF) * HS
        for m in range(HS):
            held[m] = p[at(o_r + g * H + q0 + m)] if g < G and q0 + m < H else zero
        for e in range(tid, TR * HP, n_threads):
            h_rows[e] = zero
        cuda.syncthreads()

    @cuda.jit(device=True)
    def forward_sum(held, h_rows, scratch, w, o_gates, t, B, row0, rows, tid):
        """w's gate slot g of step t, row r ← Σ_q R[g, q] h_{t-1}[r, q] for the tile's rows
        (h_{t-1} in h_rows); every thread of the block must call it. The sum runs in CHAINS
        independent partial sums (terms m ≡ c mod CHAINS), so one multiply-add need not
        wait for the one before."""
        g = tid // SF
        q0 = (tid % SF) * HS
        part = cuda.local.array(CHAINS, ACC)
        for r in range(rows):
            base = r * HP + q0
            for c in range(CHAINS):
                part[c] = zero
            for m in range(HS):
                part[m % CHAINS] += held[m] * h_rows[at(base + m)]
            acc = part[0]
            for c in range(1, CHAINS):
                acc += part[c]
            acc = sum_forward(acc, scratch, tid)
            if g < G and tid % SF == 0:
                w[at(o_gates + (t * B + row0 + r) * G + g)] = acc

    @cuda.jit(device=True)
    def load_columns(held, grad, da_rows, p, o_r, tid, n_threads):
        """held[m] = R[s·GS + m, j] (0 past G or H) for the lane (j, s) = divmod(tid, SB);
        grad[m] = 0; da_rows = 0 (its pad words and columns past G for good), then a
        barrier."""
        j = tid // SB
        k0 = (tid % SB) * GS
        for m in range(GS):
            held[m] = p[at(o_r + (k0 + m) * H + j)] if j < H and k0 + m < G else zero
            grad[m] = zero
        for e in range(tid, TR * DP, n_threads):
            da_rows[e] = zero
        cuda.syncthreads()

    @cuda.jit(device=True)
    def backward_sum(held, grad, da_rows, scratch, w, left, l_width, n_left, rest, r_width,
                     o_h, dest, d_width, t, B, row0, rows, tid, n_threads):
        """dest[r·d_width + j] ← Σ_k d[r, k] R[k, j] for the tile's rows, and grad[m] +=
        d[r, k] h_t[r, j]: R's gradient, term (t+1, t). d [B, G] is what R's rows fed at
        step t+1: columns k < n_left from w[left + r·l_width + k] (the gate gradients da_{t+1}),
        the others from w[rest + r·r_width + k − n_left] (GRU's R_n rows: d_hidden_n_{t+1}).
        Stages d in da_rows first (barriers inside: every thread of the block must call
        it)."""
        for e in range(tid, rows * G, n_threads):
            r = e // G
            k = e % G
            row = row0 + r
            value = (w[at(left + row * l_width + k)] if k < n_left else
                     w[at(rest + row * r_width + k - n_left)])
            da_rows[at(r * DP + (k // GS) * (GS + 1) + k % GS)] = value
        cuda.syncthreads()
        j = tid // SB
        lane = tid % SB
        part = cuda.local.array(CHAINS, ACC)
        for r in range(rows):
            h_rj = w[at(o_h + (t * B + row0 + r) * H + j)] if j < H else zero
            base = r * DP + lane * (GS + 1)
            for c in range(CHAINS):
                part[c] = zero
            for m in range(GS):
                d = da_rows[at(base + m)]
                part[m % CHAINS] += d * held[m]  # chains as in forward_sum
                grad[m] += d * h_rj
            acc = part[0]
            for c in range(1, CHAINS):
                acc += part[c]
            acc = sum_backward(acc, scratch, tid)
            if j < H and lane == 0:
                w[at(dest + (row0 + r) * d_width + j)] = acc

    @cuda.jit(device=True)
    def store_gradient(grad, g, o_r, tid):
        """g[o_r + k·H + j] = R's gradient held by the lane (j, s)."""
        j = tid // SB
        k0 = (tid % SB) * GS
        for m in range(GS):
            if j < H and k0 + m < G:
                g[o_r + (k0 + m) * H + j] = grad[m]

    return load_rows, forward_sum, load_columns, backward_sum, store_gradient


class KernelParts(NamedTuple):
    """What a cell family's kernels close over: the device functions (None without a
    layout: the kernels' ``if RESIDENT`` branches are compiled out) and the sizes of the
    local and shared arrays they declare either way (one word without a layout)."""
    load_rows: object  # forward: this lane's share of R's row g; h_rows zeroed
    forward_sum: object  # forward: R h_{t-1} into the gate slots of step t
    load_columns: object  # backward: this lane's share of R's column j; da_rows zeroed
    backward_sum: object  # backward: dh_t into a block of w, R's gradient accumulated
    store_gradient: object  # backward: R's gradient of the tile
    h_rows: int  # words of h_rows, da_rows and the lane scratch
    da_rows: int
    scratch: int
    h_stride: int
    held_forward: int  # HS: weights of R's row a lane holds in the forward
    held_backward: int  # GS: weights of R's column (and gradients) in the backward


def kernel_parts(dtype, shape: Layout | None) -> KernelParts:
    """The resident-weights parts of a family's kernels for ``shape`` (or stand-ins)."""
    if shape is None:
        return KernelParts(None, None, None, None, None, 1, 1, 1, 1, 1, 1)
    return KernelParts(*make_resident(dtype, shape),
                       shape.tile_rows * shape.h_stride, shape.tile_rows * shape.da_stride,
                       shape.threads, shape.h_stride, shape.HS, shape.GS)


def lane_sum(width: int):
    """value summed over the ``width`` adjacent lanes of its group (width a power of two ≤
    32, the groups aligned in a warp), returned to each of them. Every thread of the block
    calls it: under the simulator the lanes meet in ``scratch`` between two barriers."""
    if width == 1:
        @cuda.jit(device=True)
        def alone(value, scratch, tid):
            return value
        return alone
    if simulator.active():
        @cuda.jit(device=True)
        def through_shared(value, scratch, tid):
            scratch[tid] = value
            cuda.syncthreads()
            first = tid - tid % width
            total = scratch[first]
            for i in range(1, width):
                total += scratch[first + i]
            cuda.syncthreads()
            return total
        return through_shared
    steps = width.bit_length() - 1

    @cuda.jit(device=True)
    def shuffled(value, scratch, tid):
        for i in range(steps):  # butterfly: after step i, each lane has 2^(i+1) lanes' sum
            value += cuda.shfl_xor_sync(FULL_MASK, value, width >> (i + 1))
        return value
    return shuffled
