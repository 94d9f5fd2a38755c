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

A tile spread over P blocks (``parts``, ``ablate.cuda.tiles``): block p owns the run of
U = ⌈H / P⌉ units ``unit_run`` gives it in the cell's loops, and holds just their rows and
columns of R: the forward's gate rows g = slot·H + j and the backward's columns j for j in
its run (SF and SB then count the block's U·G/H rows and U columns). So R is held once
across the P SMs, 1/P a block: H 128's 65,536 weights at P 8 are 32 a thread of 256.
Each step a block stages h_{t-1} of every unit (written by all P blocks before their
barrier) from the work vector into ``h_rows`` (``stage_rows``) and da_{t+1} likewise (in
``backward_sum``, as at one block); the sums it writes are read only by its own units'
elements, so a block barrier orders them.

Each dot product runs in CHAINS = 4 independent partial sums, so a multiply-add does not
wait for the one before. In the PTX for sm_90 (lstm, H 64, 256 threads) the forward's sum
is 64 shared loads and 64 FMAs a row, the backward's 64 and 128, and nothing goes to local
memory; ``python -m ablate.cuda.resources`` checks every cell with R so.

Limits, checked by ``layout`` with one message each: every thread holds at most
``MAX_HELD`` = 64 float32 weights a matrix, 32 float64 (lstm: H ≤ 64 at 256 threads; 128
registers for R and its gradient beside the kernel's own; ``MAX_HELD_SPREAD`` = 32 in a
spread tile: lstm H 128 over 8 or more blocks), and the two shared arrays fit 48 KiB
(float32, H 64: a tile of up to 32 rows; H 128 spread: 16 rows). The simulator has no
warp shuffles; there the lane groups add up through shared memory and two barriers (same
sums, another order).
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np
from numba import cuda

from ablate.cuda import simulator
from ablate.cuda.index import at

MAX_HELD = 64  # float32 weights a thread holds of one matrix (R, and R's gradient); float64 32
# the same in the blocks of a spread tile, whose barriers take registers of their own: at 64
# ptxas spilled 20-32 B (lstm backward, fgr forward; H 128 over 4 blocks), at 32 nothing
MAX_HELD_SPREAD = 32
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
    parts: int  # blocks a tile is spread over; each holds R's rows and columns of
    units: int  # its run of ⌈H / parts⌉ units (ablate.cuda.tiles.unit_run)

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


def layout(G: int, H: int, threads: int, tile_rows: int, dtype, parts: int = 1) -> Layout:
    """The split of R over a block (over each of ``parts`` blocks of a spread tile, the
    rows and columns of its units), or ValueError naming the limit it breaks."""
    dtype = np.dtype(dtype)
    most = (MAX_HELD if parts == 1 else MAX_HELD_SPREAD) * 4 // dtype.itemsize  # float64: 2
    units = -(-H // parts)
    rows = G // H * units  # the block's gate rows: every slot of its units
    if parts == 1:
        whose, rows_named = f"R's {G * H} weights (G {G} × H {H}) are", f"the G = {G} gate rows"
    else:
        whose = (f"a block's share of R, {rows * H} weights ({rows} gate rows × H {H} of "
                 f"R over {parts} blocks), is")
        rows_named = f"its {rows} gate rows (R over {parts} blocks)"
    if rows * H > threads * most:
        raise ValueError(f"resident weights: {whose} more than {threads} threads hold at "
                         f"{most} each in {dtype.name}; use the default kernels "
                         f"(resident=False)" + (" or more parts" if parts > 1 else ""))
    if threads % 32 or threads < max(rows, units):
        raise ValueError(f"resident weights need a block of whole warps with a thread for "
                         f"each of {rows_named}; got {threads} threads")
    SF, SB = _lanes(rows, threads), _lanes(units, threads)
    HS, GS = -(-H // SF), -(-G // SB)
    shape = Layout(G, H, threads, tile_rows, SF, HS, SB, GS, parts, units)
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
    """(load_rows, forward_step, load_columns, backward_sum, store_gradient): the device
    functions for one precision and layout (see the module docstring). Each takes the
    block's ``part`` of its tile (0 at one block a tile) and works with the block's own
    threads: a lane is thread l = threadIdx.x of the block."""
    dtype = np.dtype(dtype)
    ACC = numba.from_dtype(dtype)
    zero = dtype.type(0)
    G, H, TR = shape.G, shape.H, shape.tile_rows
    SF, HS, SB, GS = shape.SF, shape.HS, shape.SB, shape.GS
    U = shape.units  # the units a block holds R of
    ROWS = G // H * U  # and their gate rows
    HP, DP = shape.h_stride, shape.da_stride
    SPREAD = shape.parts > 1  # the kernels are built spread for such a layout
    sum_forward = lane_sum(SF)
    sum_backward = lane_sum(SB)

    @cuda.jit(device=True)
    def gate_row(l, part):
        """(R's row g, whether it is one) of lane l's group l // SF: slot-major over the
        block's gate rows, every slot of the units part·U … part·U + U − 1."""
        index = l // SF
        j = part * U + index % U
        return (index // U) * H + j, index < ROWS and j < H

    @cuda.jit(device=True)
    def load_rows(held, h_rows, p, o_r, part):
        """held[m] = R[g, s·HS + m] (0 past H, or without a row) for the lane (row g, s);
        h_rows = 0 (h_{-1}, and the columns past H for good), then a barrier."""
        l = cuda.threadIdx.x
        g, real = gate_row(l, part)
        q0 = (l % SF) * HS
        for m in range(HS):
            held[m] = p[at(o_r + g * H + q0 + m)] if real and q0 + m < H else zero
        for e in range(l, TR * HP, cuda.blockDim.x):
            h_rows[e] = zero
        cuda.syncthreads()

    @cuda.jit(device=True)
    def forward_sum(held, h_rows, scratch, w, o_gates, t, B, row0, rows, part):
        """w's gate slot g of step t, row r ← Σ_q R[g, q] h_{t-1}[r, q] for the tile's rows
        (h_{t-1} in h_rows) and the block's gate rows; every thread of the block must call
        it. The sum runs in CHAINS independent partial sums (terms m ≡ c mod CHAINS), so one
        multiply-add need not wait for the one before."""
        l = cuda.threadIdx.x
        g, real = gate_row(l, part)
        q0 = (l % SF) * HS
        part_sums = cuda.local.array(CHAINS, ACC)
        for r in range(rows):
            base = r * HP + q0
            for c in range(CHAINS):
                part_sums[c] = zero
            for m in range(HS):
                part_sums[m % CHAINS] += held[m] * h_rows[at(base + m)]
            acc = part_sums[0]
            for c in range(1, CHAINS):
                acc += part_sums[c]
            acc = sum_forward(acc, scratch, l)
            if real and l % SF == 0:
                w[at(o_gates + (t * B + row0 + r) * G + g)] = acc

    @cuda.jit(device=True)
    def stage_rows(h_rows, w, prev, row0, rows):
        """h_rows ← h_{t-1} of the tile's rows, every unit, from w at ``prev`` ([B, H] of
        step t − 1), then a barrier: a spread tile's blocks each compute only their units'
        h, and meet before this."""
        l = cuda.threadIdx.x
        for e in range(l, rows * H, cuda.blockDim.x):
            r = e // H
            q = e % H
            h_rows[at(r * HP + q)] = w[at(prev + (row0 + r) * H + q)]
        cuda.syncthreads()

    @cuda.jit(device=True)
    def forward_step(held, h_rows, scratch, w, prev, o_gates, t, B, row0, rows, part):
        """Step t's R h_{t-1} into the gate slots of the block's units (``forward_sum``),
        h_{t-1} at ``prev`` in w staged first in a spread tile (the units of one block keep
        h_rows themselves), then a barrier: the block's own elements read those slots."""
        if SPREAD:
            stage_rows(h_rows, w, prev, row0, rows)
        forward_sum(held, h_rows, scratch, w, o_gates, t, B, row0, rows, part)
        cuda.syncthreads()

    @cuda.jit(device=True)
    def load_columns(held, grad, da_rows, p, o_r, part):
        """held[m] = R[s·GS + m, j] (0 past G, or without a unit) for the lane (unit j of
        the block's run, s); grad[m] = 0; da_rows = 0 (its pad words and columns past G for
        good), then a barrier."""
        l = cuda.threadIdx.x
        j = part * U + l // SB
        real = l // SB < U and j < H
        k0 = (l % SB) * GS
        for m in range(GS):
            held[m] = p[at(o_r + (k0 + m) * H + j)] if real and k0 + m < G else zero
            grad[m] = zero
        for e in range(l, TR * DP, cuda.blockDim.x):
            da_rows[e] = zero
        cuda.syncthreads()

    @cuda.jit(device=True)
    def backward_sum(held, grad, da_rows, scratch, w, left, l_width, n_left, rest, r_width,
                     o_h, dest, d_width, t, B, row0, rows, part):
        """dest[r·d_width + j] ← Σ_k d[r, k] R[k, j] for the tile's rows and the block's
        units, and grad[m] += d[r, k] h_t[r, j]: R's gradient, term (t+1, t). d [B, G] is
        what R's rows fed at step t+1: columns k < n_left from w[left + r·l_width + k] (the
        gate gradients da_{t+1}), the others from w[rest + r·r_width + k − n_left] (GRU's
        R_n rows: d_hidden_n_{t+1}). Stages all of d in da_rows first (barriers inside:
        every thread of the block must call it)."""
        l = cuda.threadIdx.x
        for e in range(l, rows * G, cuda.blockDim.x):
            r = e // G
            k = e % G
            row = row0 + r
            value = (w[at(left + row * l_width + k)] if k < n_left else
                     w[at(rest + row * r_width + k - n_left)])
            da_rows[at(r * DP + (k // GS) * (GS + 1) + k % GS)] = value
        cuda.syncthreads()
        j = part * U + l // SB
        real = l // SB < U and j < H
        lane = l % SB
        part_sums = cuda.local.array(CHAINS, ACC)
        for r in range(rows):
            h_rj = w[at(o_h + (t * B + row0 + r) * H + j)] if real else zero
            base = r * DP + lane * (GS + 1)
            for c in range(CHAINS):
                part_sums[c] = zero
            for m in range(GS):
                d = da_rows[at(base + m)]
                part_sums[m % CHAINS] += d * held[m]  # chains as in forward_sum
                grad[m] += d * h_rj
            acc = part_sums[0]
            for c in range(1, CHAINS):
                acc += part_sums[c]
            acc = sum_backward(acc, scratch, l)
            if real and lane == 0:
                w[at(dest + (row0 + r) * d_width + j)] = acc

    @cuda.jit(device=True)
    def store_gradient(grad, g, o_r, part):
        """g[o_r + k·H + j] = R's gradient held by the lane (unit j of the block's run, s)."""
        l = cuda.threadIdx.x
        j = part * U + l // SB
        k0 = (l % SB) * GS
        for m in range(GS):
            if l // SB < U and j < H and k0 + m < G:
                g[o_r + (k0 + m) * H + j] = grad[m]

    return load_rows, forward_step, load_columns, backward_sum, store_gradient


class KernelParts(NamedTuple):
    """What a cell family's kernels close over: the device functions (None without a
    layout: the kernels' ``if RESIDENT`` branches are compiled out) and the sizes of the
    local and shared arrays they declare either way (one word without a layout)."""
    load_rows: object  # forward: this lane's share of R's row g; h_rows zeroed
    forward_step: object  # forward: R h_{t-1} into the gate slots of step t (h staged)
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
