"""The gate-light cells on the GPU: one persistent forward and backward kernel per cell.

The same ``Variant`` flags as the CPU kernels (``ablate.cells.simple_family``) are closed
over as compile-time constants, so each name compiles exactly its own equations. Each
unit's step and its backward are the CPU kernels' own functions (``ablate.cells.pointwise``)
compiled as device functions; this module only indexes, sums pre-activations and
synchronises:

    ELMAN  rnn, irnn          h_t = act(W x_t + R h_{t-1} + b), act = tanh or relu
    GRU    gru                torch.nn.GRU's equations, b_hn inside the reset gate
    MIN    mingru, minlstm    no R: the recurrence is elementwise only

Launch: grid (batch tiles, models), any block size. A block owns ``tile_rows`` batch rows
of one model for the whole sequence, so the time loop needs only block barriers (kernels
built ``spread`` share a tile among P blocks instead: ``ablate.cuda.tiles``). Its rows are
cut into groups of RB = ``rows_per_thread``; each thread takes its (group, unit j) pairs
(``elements``) and computes every gate of unit j for the group's rows.
Step t's states are written to the model's work vector and read back by the other threads
of the block after a barrier. An element keeps its thread at every step, so the
elementwise carries (dc-like terms: GRU's z ⊙ h_{t-1}, the min cells' h_{t-1}) need no
barrier of their own.

The forward reads W and R transposed, as ``lstm_family`` (one memory transaction a warp
instead of 32). Row blocking, as in ``lstm_family``: the forward's sums b + W x_t
(+ R h_{t-1}) load each weight once for the group's rows (``preactivations``, which leaves
them in the da slots of step t, unused until the backward); the backward's
Σ_k R[k, j] · (gradient at t+1) takes RB rows × GT = min(RB, 4) units a thread
(``transposed_sum``, its own loop and barrier, into the da slot 0 of step t, which the
unit's backward reads before writing it); W, R and W_out's gradients are OT × OT tiles
(``outer_sum``, OT = min(RB, 8)). RB = 1 is one element a thread. With ``resident``
(ELMAN, GRU) the sums through R hold R in registers, as in ``lstm_family``: forward_sum
leaves R h_{t-1} in the da slots (GRU's n rows in slot 2, for hidden_n), and backward_sum
stages da_{t+1} (GRU: its r and z columns, then d_hidden_n) for dh_t and R's gradient.

Work vector of one model (``work_size``), row-major, G = n_gates·H:
    gates [T,B,G] post-activation (GRU: r, z, n; MIN: z, h̃ or f, i, h̃; none for ELMAN,
        whose h is its own cache: tanh' = 1 − h², relu' = [h > 0])
    hidden_n [T,B,H] = R_n h_{t-1} + b_hn (GRU only)     h [T,B,H]     dy [T,B,O]
    da [T,B,G] = dL/d(W_k x_t + b_k), the input-side pre-activations
    d_hidden_n [T,B,H] = dL/d(R_n h_{t-1} + b_hn) (GRU only)
    carry [B,H]: dL/dh_{t-1} through the elementwise path of step t (GRU, MIN)
Gate rows are packed per (t, row) as in ``lstm_family``; the CPU's planes exist for LLVM's
vectoriser and have no use here. The backward kernel writes each tile's gradient to
grad_tiles[model, tile, :]; the Adam kernel sums the tiles in a fixed order
(deterministic, no atomics).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import cuda

from ablate.cells import pointwise
from ablate.cells.simple_family import ELMAN, GRU, MIN, VARIANTS, Variant
from ablate.cuda.activations import for_dtype
from ablate.cuda.blocking import make_blocked
from ablate.cuda.index import at
from ablate.cuda.readout import make_readout
from ablate.cuda.resident import Layout, kernel_parts
from ablate.cuda.tiles import block_rows, spread_functions, unit_of

__all__ = ["VARIANTS", "make_kernels", "output_offset", "work_size"]


def _layout(variant: Variant) -> tuple[int, int, int]:
    """(stored gate planes, GRU's hidden_n planes, carry planes) of the work vector."""
    n_gates = len(variant.gates)
    stored = 0 if variant.kind == ELMAN else n_gates  # Elman's h is its own cache
    hidden = 1 if variant.kind == GRU else 0
    carry = 0 if variant.kind == ELMAN else 1  # Elman's h_{t-1} path is R only
    return stored, hidden, carry


def work_size(variant: Variant, T: int, B: int, H: int, O: int) -> int:
    """Elements of one model's work vector (see the module docstring)."""
    stored, hidden, carry = _layout(variant)
    G = len(variant.gates) * H
    return T * B * (stored * H + 2 * hidden * H + H + O + G) + carry * B * H


def output_offset(variant: Variant, T: int, B: int, H: int, O: int) -> int:
    """Where y (then dy) [T,B,O] starts in the work vector: after the stored gates, GRU's
    hidden_n and h, [T,B,H] each (``work_offsets``' o_dy)."""
    stored, hidden, _ = _layout(variant)
    return T * B * (stored + hidden + 1) * H


def make_kernels(variant: Variant, dtype: np.dtype, rows_per_thread: int = 1,
                 resident: Layout | None = None, spread: bool = False,
                 clusters: bool = False) -> tuple:
    """(forward, backward) CUDA kernels of one variant and precision; a thread computes one
    unit for ``rows_per_thread`` batch rows at once (see the module docstring). With a
    ``resident`` layout (ELMAN and GRU) the sums through R hold R in registers
    (``ablate.cuda.resident``): the kernels then run only at that layout's H, threads a
    block and tile_rows.
    ``spread``: for a tile over several blocks (``ablate.cuda.tiles``); ``clusters``: those
    blocks a thread-block cluster meeting at its hardware barrier (``ablate.cuda.cluster``)."""
    dtype = np.dtype(dtype)
    RB = rows_per_thread
    ACC = numba.from_dtype(dtype)
    blocked = make_blocked(dtype, RB, spread)
    transposed_rows, outer_sum, outer_sum_x, column_sum = (
        blocked.transposed_rows, blocked.outer_sum, blocked.outer_sum_x, blocked.column_sum)
    tanh, sigmoid = for_dtype(dtype)
    readout_step, readout_grad = make_readout(dtype)
    zero = dtype.type(0)
    KIND, NORMALISED = variant.kind, variant.normalised
    # One unit's step and its backward, the CPU kernels' own (cells/pointwise.py).
    device = cuda.jit(device=True)
    if KIND == ELMAN:
        step, step_back = pointwise.elman(variant.relu, tanh, dtype, device)
    elif KIND == GRU:
        step, step_back = pointwise.gru(tanh, sigmoid, dtype, device)
    else:
        step, step_back = pointwise.minimal(NORMALISED, sigmoid, dtype, device)
    N_GATES = len(variant.gates)
    N_STORED, N_HIDDEN, N_CARRY = _layout(variant)
    N_REC = 0 if KIND == MIN else 1  # R [G,H] is absent for the min cells
    H_SLOT = N_GATES - 1  # MIN: the h̃ rows come last; slot 0 is z or f, slot 1 i (minlstm)
    N_R_SLOTS = 1 if KIND == ELMAN else (2 if KIND == GRU else 0)  # slots R h_{t-1} feeds
    RESIDENT = resident is not None
    SPREAD = spread  # a tile over several blocks (ablate.cuda.tiles); else parts is 1
    locate, meet, elements, reader = spread_functions(spread, clusters)
    # R in registers (ablate.cuda.resident): the functions, and the arrays' sizes
    assert not (RESIDENT and KIND == MIN), "the min cells have no R"  # resident_layout says so
    (load_rows, forward_step, load_columns, backward_sum, store_gradient, N_HROWS, N_DAROWS,
     N_SCRATCH, HP, HELD_F, HELD_B) = kernel_parts(dtype, resident)
    assert resident is None or (resident.parts > 1) == spread, "a spread layout, spread kernels"

    @cuda.jit(device=True)
    def param_offsets(n_in, H, O):
        """Offsets of W, R, b, b_hn, W_out, b_out in the flat vector (``make_views`` order;
        an absent block has length 0)."""
        G = N_GATES * H
        o_w = 0
        o_r = o_w + G * n_in
        o_b = o_r + G * H * N_REC
        o_bhn = o_b + G
        o_wout = o_bhn + H * N_HIDDEN
        o_bout = o_wout + O * H
        return o_w, o_r, o_b, o_bhn, o_wout, o_bout

    @cuda.jit(device=True)
    def work_offsets(T, B, H, O):
        """Offsets of gates, hidden_n, h, dy, da, d_hidden_n, carry in the work vector."""
        G = N_GATES * H
        o_gates = 0
        o_hn = o_gates + T * B * N_STORED * H
        o_h = o_hn + T * B * N_HIDDEN * H
        o_dy = o_h + T * B * H
        o_da = o_dy + T * B * O
        o_dhn = o_da + T * B * G
        o_carry = o_dhn + T * B * N_HIDDEN * H
        return o_gates, o_hn, o_h, o_dy, o_da, o_dhn, o_carry

    @cuda.jit(device=True)
    def preactivations(p, rt, xs, w, o_b, o_bhn, o_h, o_da, o_hn, t, B, H, n_in, first, stop,
                       j):
        """Unit j's input-side sums b_s + W_s x_t of every slot s, plus R_s h_{t-1} for the
        slots R feeds (ELMAN's one, GRU's r and z), and GRU's hidden_n = R_n h_{t-1} + b_hn,
        for rows first … stop − 1 (at most RB): into the da slots of step t (free until the
        backward) and hidden_n's own, for ``unit_forward``.

        Each weight is loaded once for the RB rows; the loops over u have a constant trip
        count, so the accumulators stay in registers; a row past ``stop`` repeats the last
        one and is not stored.
        """
        G = N_GATES * H
        last = stop - 1
        acc = cuda.local.array((RB, 4), ACC)  # slots 0 … N_GATES − 1; GRU's hidden_n in 3
        for u in range(RB):
            for k in range(N_GATES):
                acc[u, k] = p[o_b + k * H + j]
            if KIND == GRU:
                acc[u, 3] = p[o_bhn + j]
            if RESIDENT and t > 0:  # R h_{t-1}, left in the da slots by forward_sum
                sums = o_da + (t * B + min(first + u, last)) * G
                acc[u, 0] += w[at(sums + j)]
                if KIND == GRU:  # z's rows, and R_n's into hidden_n
                    acc[u, 1] += w[at(sums + H + j)]
                    acc[u, 3] += w[at(sums + 2 * H + j)]
        w_i = cuda.local.array(N_GATES, ACC)
        for i in range(n_in):
            for k in range(N_GATES):
                w_i[k] = rt[at(i * G + k * H + j)]  # Wᵀ [I, G] at 0
            for u in range(RB):
                xv = xs[at(t), at(min(first + u, last)), at(i)]
                for k in range(N_GATES):
                    acc[u, k] += w_i[k] * xv
        if t > 0 and KIND != MIN and not RESIDENT:
            prev = o_h + (t - 1) * B * H
            for q in range(H):
                base_q = G * n_in + q * G  # Rᵀ [H, G] after Wᵀ
                r_0 = rt[at(base_q + j)]
                r_1 = rt[at(base_q + H + j)] if KIND == GRU else zero
                r_n = rt[at(base_q + 2 * H + j)] if KIND == GRU else zero
                for u in range(RB):
                    hq = w[at(prev + min(first + u, last) * H + q)]
                    acc[u, 0] += r_0 * hq
                    if KIND == GRU:
                        acc[u, 1] += r_1 * hq
                        acc[u, 3] += r_n * hq
        for u in range(RB):
            if first + u < stop:
                row = t * B + first + u
                for k in range(N_GATES):
                    w[o_da + row * G + k * H + j] = acc[u, k]
                if KIND == GRU:
                    w[o_hn + row * H + j] = acc[u, 3]

    @cuda.jit(device=True)
    def unit_forward(w, o_da, o_gates, o_hn, o_h, t, B, H, r, j):
        """Unit j of row r at step t from ``preactivations``' sums: the gates and h_t."""
        G = N_GATES * H
        kh = H_SLOT * H
        row = t * B + r
        a = o_da + row * G
        base = o_gates + row * G
        h_prev = w[o_h + ((t - 1) * B + r) * H + j] if t > 0 else zero
        if KIND == ELMAN:  # h_t = act(b + W x_t + R h_{t-1})
            hv = step(w[a + j])
        elif KIND == GRU:
            # h_t = (1 − z) ⊙ n + z ⊙ h_{t-1}, n = tanh(a_n + r ⊙ hn)
            rg, zg, ng, hv = step(w[a + j], w[a + H + j], w[a + 2 * H + j],
                                  w[o_hn + row * H + j], h_prev)
            w[base + j] = rg
            w[base + H + j] = zg
            w[base + 2 * H + j] = ng
        else:  # MIN: gates and h̃ = W_h x_t + b_h from x_t only
            acc_h = w[a + kh + j]
            w[base + kh + j] = acc_h  # h̃ is linear
            # mingru: h_t = (1 − z) ⊙ h_{t-1} + z ⊙ h̃; minlstm: f' ⊙ h_{t-1} + i' ⊙ h̃
            zf, ig, hv = step(w[a + j], w[a + H + j] if NORMALISED else zero, acc_h, h_prev)
            w[base + j] = zf
            if NORMALISED:
                w[base + H + j] = ig
        w[o_h + row * H + j] = hv

    @cuda.jit
    def forward(params, transposed, x, target_class, target_value, mask, scale, limit, s,
                loss_code, n_hidden, n_out, tile_rows, work, loss_rows, parts, sync):
        """Step s of the interval: the cell over x[m, s] [T,B,I], the readout and the loss.

        Writes the states, dy and loss_rows[m, r] (Σ_t scale·mask·ℓ of row r) of the
        block's rows; a model runs step s only while s < limit[m]. With x [1,S,T,B,I] (and
        targets, mask and scale for one) every model reads the same inputs: evaluation
        chunks, loss code PREDICT (ablate.cuda.evaluation).
        """
        # two branches, not one helper: see ablate.cuda.tiles.spread_functions
        if SPREAD:  # a tile over several blocks (ablate.cuda.tiles); else not compiled
            m, tile, part, T, B, n_in, row0, rows, tid, n_threads = locate(
                x, tile_rows, limit.shape[0], parts, sync)
        else:
            m = cuda.blockIdx.y
        if s >= limit[m]:  # the model has stopped, or its interval is shorter
            return
        if not SPREAD:
            tile, part = cuda.blockIdx.x, 0
            T, B, n_in, row0, rows, tid, n_threads = block_rows(x, tile_rows)
        group = m * ((B + tile_rows - 1) // tile_rows) + tile if SPREAD else 0  # barrier set
        H = n_hidden
        O = n_out
        p = params[m]
        rt = transposed[m]  # Wᵀ [I, G], Rᵀ [H, G], W_outᵀ [H, O]: a warp's threads (units
        # j) read adjacent words (ablate.cuda.device.TRANSPOSED)
        w = work[m]
        xm = m if x.shape[0] > 1 else 0  # one x for every model: evaluation inputs
        xs = x[xm, s]
        _, _, o_b, o_bhn, _, o_bout = param_offsets(n_in, H, O)
        o_gates, o_hn, o_h, o_dy, o_da, _, _ = work_offsets(T, B, H, O)
        o_wout_t = N_GATES * H * (n_in + H * N_REC)  # W_outᵀ [H, O] after Wᵀ and Rᵀ
        for rr in range(tid, rows, n_threads):
            loss_rows[m, row0 + rr] = 0
        # resident weights: this lane's share of R, h_{t-1} of the tile's rows (0 past H)
        held = cuda.local.array(HELD_F, ACC)
        h_rows = cuda.shared.array(N_HROWS, ACC)
        scratch = cuda.shared.array(N_SCRATCH, ACC)
        if RESIDENT:
            load_rows(held, h_rows, p, param_offsets(n_in, H, O)[1], part)
        groups = (rows + RB - 1) // RB  # a thread takes unit j of RB rows at once
        # this thread's (group, unit) elements: the tile's, or its block's run of units
        e0, e_stop, e_step, unit0, units = elements(groups, H, tid, n_threads, part, parts)
        for t in range(T):
            if RESIDENT and t > 0:  # R h_{t-1} into the da slots, before the sums below
                forward_step(held, h_rows, scratch, w, o_h + (t - 1) * B * H, o_da, t, B,
                             row0, rows, part)
            for e in range(e0, e_stop, e_step):
                g_e, j = unit_of(e, unit0, units)
                first = row0 + g_e * RB
                stop = min(first + RB, row0 + rows)
                preactivations(p, rt, xs, w, o_b, o_bhn, o_h, o_da, o_hn, t, B, H, n_in, first,
                               stop, j)
                for r in range(first, stop):
                    unit_forward(w, o_da, o_gates, o_hn, o_h, t, B, H, r, j)
                    if RESIDENT and not SPREAD:  # h_t for step t+1's forward_sum
                        h_rows[(r - row0) * HP + j] = w[o_h + (t * B + r) * H + j]
            meet(sync, group, parts)  # the readout reads h_t of every unit
            # each block reads out its share of the rows (all of them at parts 1): block
            # barriers inside, and nothing the other blocks write next step is read there
            read0, n_read, r_tid, r_threads = reader(row0, rows, tid, n_threads, part, parts)
            readout_step(p, rt, w, o_wout_t, o_bout, o_h, o_dy, t, B, H, O, read0, n_read,
                         r_tid, r_threads, mask[xm, s, t], target_class[xm, s, t],
                         target_value[xm, s, t], loss_code, scale[xm, s], loss_rows[m])

    @cuda.jit(device=True)
    def unit_backward(p, w, o_wout, o_dy, o_gates, o_hn, o_h, o_da, o_dhn, o_carry, t, T, B,
                      H, O, r, j, mask_t):
        """dL/dh_t of unit j, row r (the readout's; through R h_t at t+1, left in the da
        slot 0 by ``transposed_sum``; the elementwise carry), then through the unit's step:
        da_t, GRU's d_hidden_n and the carry into h_{t-1}."""
        G = N_GATES * H
        kh = H_SLOT * H
        here = t * B
        dh = readout_grad(p, w, o_wout, o_dy, t, B, H, O, r, j, mask_t)
        base = o_gates + (here + r) * G
        dbase = o_da + (here + r) * G
        if t < T - 1:
            if KIND != MIN:
                dh += w[dbase + j]
            if KIND != ELMAN:
                dh += w[o_carry + r * H + j]
        h_prev = w[o_h + ((t - 1) * B + r) * H + j] if t > 0 else zero
        if KIND == ELMAN:
            w[dbase + j] = step_back(dh, w[o_h + (here + r) * H + j])  # relu or tanh
        elif KIND == GRU:
            # carry: into h_{t-1} through z ⊙ h_{t-1}; dhn: into R_n h + b_hn through r
            carry, dar, daz, dan, dhn = step_back(
                dh, w[base + j], w[base + H + j], w[base + 2 * H + j],
                w[o_hn + (here + r) * H + j], h_prev)
            w[o_carry + r * H + j] = carry
            w[dbase + j] = dar
            w[dbase + H + j] = daz
            w[dbase + 2 * H + j] = dan
            w[o_dhn + (here + r) * H + j] = dhn
        else:  # mingru, minlstm: carry into h_{t-1} through z or f'
            ig = w[base + H + j] if NORMALISED else zero
            carry, dzf, di, dht = step_back(dh, w[base + j], ig, w[base + kh + j], h_prev)
            w[o_carry + r * H + j] = carry
            w[dbase + j] = dzf
            if NORMALISED:
                w[dbase + H + j] = di
            w[dbase + kh + j] = dht

    @cuda.jit
    def backward(params, x, mask, limit, s, n_hidden, n_out, tile_rows, work, grad_tiles,
                 parts, sync):
        """Backpropagation through time of step s for the block's rows, then this tile's
        weight gradients into grad_tiles[m, tile, :] (forward must have run on work)."""
        if SPREAD:
            m, tile, part, T, B, n_in, row0, rows, tid, n_threads = locate(
                x, tile_rows, limit.shape[0], parts, sync)
        else:
            m = cuda.blockIdx.y
        if s >= limit[m]:  # the model has stopped, or its interval is shorter
            return
        if not SPREAD:
            tile, part = cuda.blockIdx.x, 0
            T, B, n_in, row0, rows, tid, n_threads = block_rows(x, tile_rows)
        group = m * ((B + tile_rows - 1) // tile_rows) + tile if SPREAD else 0  # barrier set
        H = n_hidden
        O = n_out
        G = N_GATES * H
        p = params[m]
        w = work[m]
        xs = x[m, s]
        o_w, o_r, o_b, o_bhn, o_wout, o_bout = param_offsets(n_in, H, O)
        o_gates, o_hn, o_h, o_dy, o_da, o_dhn, o_carry = work_offsets(T, B, H, O)
        groups = (rows + RB - 1) // RB  # as in the forward: unit j of RB rows per thread
        e0, e_stop, e_step, unit0, units = elements(groups, H, tid, n_threads, part, parts)
        # resident weights: this lane's share of R's columns and of R's gradient
        held = cuda.local.array(HELD_B, ACC)
        grad_r = cuda.local.array(HELD_B, ACC)
        da_rows = cuda.shared.array(N_DAROWS, ACC)
        scratch = cuda.shared.array(N_SCRATCH, ACC)
        if RESIDENT:
            load_columns(held, grad_r, da_rows, p, o_r, part)
        for t in range(T - 1, -1, -1):
            here = t * B
            if t < T - 1 and KIND != MIN:
                # dL/dh_t through R h_t at t+1 (GRU: r and z rows against da, R_n against
                # d_hidden_n), RB rows × GT units a thread, into the da slot 0 of step t
                # (written for real below, after the barrier)
                if RESIDENT:  # and R's gradient, term (t+1, t), in registers
                    backward_sum(held, grad_r, da_rows, scratch, w, o_da + (t + 1) * B * G, G,
                                 N_R_SLOTS * H, o_dhn + (t + 1) * B * H, H, o_h,
                                 o_da + here * G, G, t, B, row0, rows, part)
                else:
                    transposed_rows(w, o_da + here * G, G, w, o_da + (t + 1) * B * G, G,
                                    N_R_SLOTS * H, p, o_r, H, H, row0, rows, tid, n_threads,
                                    False, parts)
                    if KIND == GRU:
                        transposed_rows(w, o_da + here * G, G, w, o_dhn + (t + 1) * B * H, H,
                                        H, p, o_r + 2 * H * H, H, H, row0, rows, tid,
                                        n_threads, True, parts)
                if RESIDENT:  # the sums through R wrote this block's units' slots only
                    cuda.syncthreads()
                else:
                    meet(sync, group, parts)
            # Total dL/dh_t: the readout, R h_t at t+1 (ELMAN, GRU), the elementwise carry.
            for e in range(e0, e_stop, e_step):
                g_e, j = unit_of(e, unit0, units)
                first = row0 + g_e * RB
                for r in range(first, min(first + RB, row0 + rows)):
                    unit_backward(p, w, o_wout, o_dy, o_gates, o_hn, o_h, o_da, o_dhn,
                                  o_carry, t, T, B, H, O, r, j, mask[m, s, t])
            # Step t-1 reads da_t of every unit (through R); also orders the weight
            # gradients below after the last step.
            meet(sync, group, parts)
        # This tile's weight gradients: W, R and W_out in OT × OT tiles (``outer_sum``), the
        # others one parameter per thread at a time (k skips W, R and W_out).
        g = grad_tiles[m, tile]
        if RESIDENT:  # R's gradient leaves the registers first, which frees them for the tiles
            store_gradient(grad_r, g, o_r, part)
        outer_sum_x(g, o_w, n_in, w, o_da, G, G, xs, 0, n_in, n_in, 0, T, B, row0, rows, tid,
                    n_threads)
        if KIND != MIN and not RESIDENT:  # R [G, H]: Σ_{t≥1} dL/d(R h_{t-1}) h_{t-1}
            outer_sum(g, o_r, H, w, o_da, G, N_R_SLOTS * H, w, o_h, H, H, 1, T, B, row0, rows,
                      tid, n_threads)
        if KIND == GRU and not RESIDENT:  # R_n is behind the reset gate: against d_hidden_n
            outer_sum(g, o_r + 2 * H * H, H, w, o_dhn, H, H, w, o_h, H, H, 1, T, B, row0, rows,
                      tid, n_threads)
        outer_sum(g, o_wout, H, w, o_dy, O, O, w, o_h, H, H, 0, T, B, row0, rows, tid,
                  n_threads)
        n_middle = o_wout - o_b  # b, b_hn
        for slot in range(tid, n_middle + O, n_threads):
            k = o_b + slot if slot < n_middle else o_bout + slot - n_middle
            if k < o_bhn:  # b [G]
                g[k] = column_sum(w, o_da, G, k - o_b, T, B, row0, rows)
            elif k < o_wout:  # b_hn [H] (GRU): beside R_n h_{t-1}, so t = 0 included
                g[k] = column_sum(w, o_dhn, H, k - o_bhn, T, B, row0, rows)
            else:  # b_out [O]
                g[k] = column_sum(w, o_dy, O, k - o_bout, T, B, row0, rows)

    return forward, backward
