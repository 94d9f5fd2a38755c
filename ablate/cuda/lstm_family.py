"""The LSTM and its ablations on the GPU: one persistent forward and backward kernel per cell.

The same ``Variant`` flags as the CPU kernels (``ablate.cells.lstm_family``) are closed
over as compile-time constants, so each name compiles exactly its own equations. The
pointwise math — activations, the memory update c_t = f ⊙ c_{t-1} + i ⊙ g and their
backward — is the CPU kernels' own (``ablate.cells.pointwise``), compiled here as device
functions; this module only indexes, sums pre-activations and synchronises.

The forward reads its weight matrices transposed (``transposed`` [M, …]: Wᵀ, Rᵀ and fgr's
R_gatesᵀ or the cell-state network's Pᵀ, kept by the Adam kernel): with R [G, H] row-major,
the 32 threads of a warp (units j, j+1, …) would read words H apart for each q, 32 memory
transactions; from Rᵀ they read 32 adjacent words, one. The backward reads the matrices by
column already (Σ_k left[k] R[k, j]) and takes them as they are.

Launch: grid (batch tiles, models), any block size. A block owns ``tile_rows`` batch rows
of one model for the whole sequence, so the time loop needs only block barriers (kernels
built ``spread`` share a tile among P blocks instead: ``ablate.cuda.tiles``). Its rows are
cut into groups of RB = ``rows_per_thread``; each thread takes its (group, unit j) pairs
(``elements``) and computes every gate of unit j for the group's rows.
Step t's states are written to the model's work vector and read back by the other threads
of the block after a barrier.

Row blocking (RB > 1): the sums that read weights load each weight once for the group's
rows and keep RB accumulators per slot in registers (loops of constant trip count, which
NVVM unrolls): b + W x_t + R h_{t-1} (fgr's R_gates [i; f; o]_{t-1}, single_net's
P_c c_{t-1}) in the forward (``preactivations``; net_readout's P_h c_t and use_gate's
W_u (f ⊙ c_{t-1}) in ``read_network``), and in the backward Σ_k da_{t+1}[r, k] R[k, j]
(R_gates, P likewise), which also takes GT = min(RB, 4) units per thread
(``transposed_rows``, its own loop and barrier). Every weight matrix's gradient is summed
in OT × OT tiles (``outer_sum``, OT = min(RB, 8)); both are ``ablate.cuda.blocking``'s. The
pointwise rest runs row by row. RB = 1 is one (row, unit) element per thread.
bench/load_count.py counts the loads per model-step for each RB.

Resident weights (``resident``, a layout of ``ablate.cuda.resident``): the sums through R
hold R in registers instead. At each step t > 0 the forward first writes R h_{t-1} into
the gate slots (``forward_sum``, h_{t-1} of the tile in shared memory, kept there by the
units as they compute h), a barrier, then ``preactivations`` adds b + W x_t (and the other
matrices' sums) to it. The backward's sum through R (``backward_sum``) also accumulates
R's gradient, which leaves the registers after the time loop instead of ``outer_sum``'s
tile. Everything else is the same code. Resident in a spread tile, each block holds R's rows
and columns of its run of units and stages h_{t-1} of every unit from the work vector
(``stage_rows``) after the blocks' barrier; both sums through R then feed only the block's
own units, so a block barrier orders them (one barrier between blocks a step fewer in the
backward, but for fgr and single_net, whose other sums cross the blocks).

Work vector of one model (``work_size``), row-major:
    gates [T,B,G] post-activation    c, h, aux [T,B,H]   aux = act(c_t) (u_t for use_gate)
    dy [T,B,O]                       da [T,B,G] = dL/da_t (gate pre-activations)
    d_net [T,B,H] (single_net, net_readout, use_gate)   dc, dc_next, d_read [B,H]
    fc [T,B,H] = f_t ⊙ c_{t-1} (use_gate only: what W_u reads)
The backward kernel writes each tile's gradient to grad_tiles[model, tile, :]; the Adam
kernel sums the tiles in a fixed order (deterministic, no atomics).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import cuda

from ablate.cells import pointwise
from ablate.cells.lstm_family import TANH, VARIANTS, Variant
from ablate.cuda.activations import for_dtype
from ablate.cuda.blocking import make_blocked
from ablate.cuda.index import at
from ablate.cuda.readout import make_readout
from ablate.cuda.resident import Layout, kernel_parts
from ablate.cuda.tiles import block_rows, spread_functions, unit_of

__all__ = ["VARIANTS", "make_kernels", "output_offset", "work_size"]


def work_size(variant: Variant, T: int, B: int, H: int, O: int) -> int:
    """Elements of one model's work vector (see the module docstring)."""
    G = len(variant.gates) * H
    fc = H if variant.use_gate else 0
    return T * B * (2 * G + 4 * H + O + fc) + 3 * B * H


def output_offset(variant: Variant, T: int, B: int, H: int, O: int) -> int:
    """Where y (then dy) [T,B,O] starts in the work vector: after the gates [T,B,G] and c,
    h and aux [T,B,H] (``work_offsets``' o_dy)."""
    return T * B * (len(variant.gates) * H + 3 * H)


def make_kernels(variant: Variant, dtype: np.dtype, rows_per_thread: int = 1,
                 resident: Layout | None = None, spread: bool = False,
                 clusters: bool = False) -> tuple:
    """(forward, backward) CUDA kernels of one variant and precision; a thread computes one
    unit for ``rows_per_thread`` batch rows at once (see the module docstring). With a
    ``resident`` layout the sums through R hold R in registers (``ablate.cuda.resident``):
    the kernels then run only at that layout's H, threads a block and tile_rows.
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
    zero, one = dtype.type(0), dtype.type(1)
    device = cuda.jit(device=True)
    N_SLOTS = len(variant.gates)
    I_SLOT, F_SLOT, G_SLOT, O_SLOT = variant.slots()  # -1 where absent
    INPUT_ACT, MEMORY_ACT, CIFG = variant.input_act, variant.memory_act, variant.cifg
    PEEP, FGR = variant.peephole, variant.full_gate_recurrence
    SINGLE, NET_READOUT, USE_GATE = variant.single_net, variant.net_readout, variant.use_gate
    HAS_I, HAS_F = I_SLOT >= 0, F_SLOT >= 0
    O_ROWS = O_SLOT >= 0  # rows in the o slot: the output gate, or net_readout's "h" rows
    HAS_O, GATED_READ = variant.has_output_gate, variant.gated_read
    HAS_NET = SINGLE or NET_READOUT or USE_GATE
    N_PEEP = 1 if PEEP else 0
    N_FGR = 3 if FGR else 0
    N_NET = 1 if HAS_NET else 0
    N_USE = 1 if USE_GATE else 0
    if FGR:  # R_gates' [i; f] block is the gate slots 0 and 1, its o block slot 3
        assert (I_SLOT, F_SLOT, O_SLOT) == (0, 1, 3), variant.slots()
    RESIDENT = resident is not None
    SPREAD = spread  # a tile over several blocks (ablate.cuda.tiles); else parts is 1
    locate, meet, elements, reader = spread_functions(spread, clusters)
    # R in registers (ablate.cuda.resident): the functions, and the arrays' sizes
    (load_rows, forward_step, load_columns, backward_sum, store_gradient, N_HROWS, N_DAROWS,
     N_SCRATCH, HP, HELD_F, HELD_B) = kernel_parts(dtype, resident)
    assert resident is None or (resident.parts > 1) == spread, "a spread layout, spread kernels"
    # The backward's sums through R write dh_t of the block's own units only when R is
    # resident (its columns follow the block's run of units); the other sums' threads take
    # units across the tile, so a spread tile's blocks meet before pass 1 reads them.
    SUMS_IN_BLOCK = RESIDENT and not FGR and not SINGLE

    @cuda.jit(device=True)
    def param_offsets(n_in, H, O):
        """Offsets of W, R, b, peep, R_gates, P, b_u, W_out, b_out in the flat vector."""
        G = N_SLOTS * H
        o_w = 0
        o_r = o_w + G * n_in
        o_b = o_r + G * H
        o_peep = o_b + G
        o_rg = o_peep + 3 * H * N_PEEP
        o_p = o_rg + (N_FGR * H) * (N_FGR * H)
        o_bu = o_p + H * H * N_NET
        o_wout = o_bu + H * N_USE
        o_bout = o_wout + O * H
        return o_w, o_r, o_b, o_peep, o_rg, o_p, o_bu, o_wout, o_bout

    @cuda.jit(device=True)
    def work_offsets(T, B, H, O):
        """Offsets of gates, c, h, aux, dy, da, d_net, dc, dc_next, d_read, fc in the work
        vector."""
        G = N_SLOTS * H
        o_gates = 0
        o_c = o_gates + T * B * G
        o_h = o_c + T * B * H
        o_aux = o_h + T * B * H
        o_dy = o_aux + T * B * H
        o_da = o_dy + T * B * O
        o_dnet = o_da + T * B * G
        o_dc = o_dnet + T * B * H
        o_dcn = o_dc + B * H
        o_dread = o_dcn + B * H
        o_fc = o_dread + B * H
        return o_gates, o_c, o_h, o_aux, o_dy, o_da, o_dnet, o_dc, o_dcn, o_dread, o_fc

    @cuda.jit(device=True)
    def transposed_offsets(n_in, H):
        """Offsets of Rᵀ [H, G], R_gatesᵀ [3H, 3H], Pᵀ [H, H] (P_c, P_h or W_u) and W_outᵀ
        [H, O] in the model's transposed matrices, after Wᵀ [I, G]
        (ablate.cuda.device.TRANSPOSED)."""
        G = N_SLOTS * H
        o_rt = G * n_in
        o_rgt = o_rt + G * H
        o_pt = o_rgt + (N_FGR * H) * (N_FGR * H)
        return o_rt, o_rgt, o_pt, o_pt + N_NET * H * H

    # The pointwise math of the CPU kernels (cells/pointwise.py), compiled for the device:
    # g = act(a_g) (lstm97: 4σ − 2), the memory read act(c) (lstm97: 2σ − 1), c_t's update.
    input_act, input_back = pointwise.activation(INPUT_ACT, 4, tanh, sigmoid, dtype, device)
    memory_act, memory_back = pointwise.activation(MEMORY_ACT, 2, tanh, sigmoid, dtype, device)
    tanh_act, tanh_back = pointwise.activation(TANH, 0, tanh, sigmoid, dtype, device)
    gate_back = pointwise.sigmoid_back(dtype, device)
    keep, remember, remember_back = pointwise.lstm_memory(HAS_I, HAS_F, CIFG, dtype, device)

    @cuda.jit(device=True)
    def add_to_slots(acc, u, c_i, c_f, c_g, c_o, value):
        """acc[u, slot] += (slot's coefficient) · value for the slots the cell has."""
        if HAS_I:
            acc[u, 0] += c_i * value
        if HAS_F:
            acc[u, 1] += c_f * value
        acc[u, 2] += c_g * value
        if O_ROWS:
            acc[u, 3] += c_o * value

    @cuda.jit(device=True)
    def preactivations(p, rt, xs, w, o_b, o_h, o_c, o_gates, t, B, H, n_in, first, stop, j):
        """a = b + W x_t + R h_{t-1} of unit j in each slot, for rows first … stop − 1 (at most
        RB), left in their gate slots of step t for ``unit_forward``; fgr adds R_gates
        [i; f; o]_{t-1} to a_i, a_f, a_o, single_net P_c c_{t-1} to a_c (rt holds the
        matrices transposed, so a warp's threads read adjacent words).

        Each weight is loaded once for the RB rows: 4 + RB loads per 4·RB multiply-adds
        (5 per 4 at RB = 1). The loops over u have a constant trip count, so NVVM unrolls
        them and the accumulators stay in registers; a row past ``stop`` repeats the last
        one (no branch in the sums) and is not stored.
        """
        G = N_SLOTS * H
        ki, kf, kg, ko = I_SLOT * H, F_SLOT * H, G_SLOT * H, O_SLOT * H
        last = stop - 1
        o_rt, o_rgt, o_pt, _ = transposed_offsets(n_in, H)
        acc = cuda.local.array((RB, 4), ACC)
        for u in range(RB):
            acc[u, 0] = p[o_b + ki + j] if HAS_I else zero
            acc[u, 1] = p[o_b + kf + j] if HAS_F else zero
            acc[u, 2] = p[o_b + kg + j]
            acc[u, 3] = p[o_b + ko + j] if O_ROWS else zero
            if RESIDENT and t > 0:  # R h_{t-1}, left in the gate slots by forward_sum
                sums = o_gates + (t * B + min(first + u, last)) * G
                acc[u, 0] += w[at(sums + ki + j)] if HAS_I else zero
                acc[u, 1] += w[at(sums + kf + j)] if HAS_F else zero
                acc[u, 2] += w[at(sums + kg + j)]
                acc[u, 3] += w[at(sums + ko + j)] if O_ROWS else zero
        for i in range(n_in):  # Wᵀ [I, G] at 0
            base_i = i * G
            w_i = rt[at(base_i + ki + j)] if HAS_I else zero
            w_f = rt[at(base_i + kf + j)] if HAS_F else zero
            w_g = rt[at(base_i + kg + j)]
            w_o = rt[at(base_i + ko + j)] if O_ROWS else zero
            for u in range(RB):
                add_to_slots(acc, u, w_i, w_f, w_g, w_o, xs[at(t), at(min(first + u, last)), at(i)])
        if t > 0:
            if not RESIDENT:  # else forward_sum left R h_{t-1} in the gate slots
                prev = o_h + (t - 1) * B * H
                for q in range(H):
                    base_q = o_rt + q * G
                    r_i = rt[at(base_q + ki + j)] if HAS_I else zero
                    r_f = rt[at(base_q + kf + j)] if HAS_F else zero
                    r_g = rt[at(base_q + kg + j)]
                    r_o = rt[at(base_q + ko + j)] if O_ROWS else zero
                    for u in range(RB):
                        h_q = w[at(prev + min(first + u, last) * H + q)]
                        add_to_slots(acc, u, r_i, r_f, r_g, r_o, h_q)
            if FGR:  # R_gatesᵀ row q: the weights of [i; f; o]_{t-1}[q] into a_i, a_f, a_o
                width = 3 * H
                prev_g = o_gates + (t - 1) * B * G
                for q in range(width):
                    here = o_rgt + q * width + j
                    m_i = rt[at(here)]
                    m_f = rt[at(here + H)]
                    m_o = rt[at(here + 2 * H)]
                    slot = q if q < 2 * H else ko + q - 2 * H  # [i; f] are slots 0, 1
                    for u in range(RB):
                        value = w[at(prev_g + min(first + u, last) * G + slot)]
                        acc[u, 0] += m_i * value
                        acc[u, 1] += m_f * value
                        acc[u, 3] += m_o * value
            if SINGLE:  # a_c + P_c c_{t-1}
                prev_c = o_c + (t - 1) * B * H
                for q in range(H):
                    m_c = rt[at(o_pt + q * H + j)]
                    for u in range(RB):
                        acc[u, 2] += m_c * w[at(prev_c + min(first + u, last) * H + q)]
        for u in range(RB):
            if first + u < stop:
                base = o_gates + (t * B + first + u) * G
                if HAS_I:
                    w[base + ki + j] = acc[u, 0]
                if HAS_F:
                    w[base + kf + j] = acc[u, 1]
                w[base + kg + j] = acc[u, 2]
                if O_ROWS:
                    w[base + ko + j] = acc[u, 3]

    @cuda.jit(device=True)
    def unit_forward(p, w, o_gates, o_c, o_h, o_aux, o_fc, o_peep, t, B, H, r, j):
        """Unit j of row r at step t from its pre-activations (all the sums, left in the gate
        slots by ``preactivations``): the gates, c_t, h_t (act(c_t) in aux); use_gate's
        f ⊙ c_{t-1} into fc for ``read_network``."""
        G = N_SLOTS * H
        ki, kf, kg, ko = I_SLOT * H, F_SLOT * H, G_SLOT * H, O_SLOT * H
        here = t * B
        prev = (t - 1) * B
        base = o_gates + (here + r) * G
        acc_i = w[base + ki + j] if HAS_I else zero
        acc_f = w[base + kf + j] if HAS_F else zero
        acc_g = w[base + kg + j]
        acc_o = w[base + ko + j] if O_ROWS else zero
        c_prev = w[o_c + (prev + r) * H + j] if t > 0 else zero
        if PEEP:  # p_i, p_f see c_{t-1}
            acc_i += p[o_peep + j] * c_prev
            acc_f += p[o_peep + H + j] * c_prev
        ig = sigmoid(acc_i) if HAS_I else one
        fg = keep(ig, sigmoid(acc_f) if HAS_F else one)
        if SINGLE:
            ct = tanh_act(acc_g)  # c_t = tanh(a_c + P_c c_{t-1})
            w[base + kg + j] = ct
        else:
            gv = input_act(acc_g)
            w[base + kg + j] = gv
            ct = remember(fg, c_prev, ig, gv)  # c_t = f ⊙ c_{t-1} + i ⊙ g
        if HAS_I:
            w[base + ki + j] = ig
        if HAS_F:
            w[base + kf + j] = fg
        if USE_GATE:
            w[o_fc + (here + r) * H + j] = fg * c_prev
        w[o_c + (here + r) * H + j] = ct
        og = one
        if HAS_O:
            if PEEP:
                acc_o += p[o_peep + 2 * H + j] * ct  # p_o sees c_t
            og = sigmoid(acc_o)
            w[base + ko + j] = og
        elif NET_READOUT:
            w[base + ko + j] = acc_o  # a_h without P_h c_t, finished below
        if GATED_READ:
            act = memory_act(ct)
            w[o_aux + (here + r) * H + j] = act
            w[o_h + (here + r) * H + j] = og * act  # o = 1 without an output gate

    @cuda.jit(device=True)
    def read_network(p, rt, w, o_gates, o_h, o_aux, o_c, o_fc, o_bu, t, B, H, n_in, first,
                     stop, j):
        """h_t of unit j for rows first … stop − 1 (at most RB) through the read-out network,
        which needs c_t of every unit: net_readout h_t = tanh(a_h + P_h c_t) (a_h left in
        the o slot), use_gate h_t = tanh(W_u (f ⊙ c_{t-1}) + b_u) ⊙ o (u_t into aux). Pᵀ
        from rt, each weight loaded once for the RB rows."""
        G = N_SLOTS * H
        ko = O_SLOT * H
        last = stop - 1
        _, _, o_pt, _ = transposed_offsets(n_in, H)
        source = (o_c if NET_READOUT else o_fc) + t * B * H  # c_t or f ⊙ c_{t-1}
        acc = cuda.local.array(RB, ACC)
        for u in range(RB):
            row = t * B + min(first + u, last)
            acc[u] = w[o_gates + row * G + ko + j] if NET_READOUT else p[o_bu + j]
        for q in range(H):
            m_q = rt[at(o_pt + q * H + j)]
            for u in range(RB):
                acc[u] += m_q * w[at(source + min(first + u, last) * H + q)]
        for u in range(RB):
            if first + u < stop:
                row = t * B + first + u
                value = tanh_act(acc[u])
                if NET_READOUT:
                    w[o_gates + row * G + ko + j] = value
                    w[o_h + row * H + j] = value
                else:
                    w[o_aux + row * H + j] = value
                    w[o_h + row * H + j] = value * w[o_gates + row * G + ko + j]

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
        rt = transposed[m]  # Wᵀ, Rᵀ (R_gatesᵀ or Pᵀ), W_outᵀ: a warp reads adjacent words
        w = work[m]
        xm = m if x.shape[0] > 1 else 0  # one x for every model: evaluation inputs
        xs = x[xm, s]
        _, _, o_b, o_peep, _, _, o_bu, _, o_bout = param_offsets(n_in, H, O)
        o_wout_t = transposed_offsets(n_in, H)[3]
        o_gates, o_c, o_h, o_aux, o_dy, _, _, _, _, _, o_fc = work_offsets(T, B, H, O)
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
            if RESIDENT and t > 0:  # R h_{t-1} into the gate slots, before the sums below
                forward_step(held, h_rows, scratch, w, o_h + (t - 1) * B * H, o_gates, t, B,
                             row0, rows, part)
            for e in range(e0, e_stop, e_step):
                g_e, j = unit_of(e, unit0, units)
                first = row0 + g_e * RB
                stop = min(first + RB, row0 + rows)
                preactivations(p, rt, xs, w, o_b, o_h, o_c, o_gates, t, B, H, n_in, first, stop,
                               j)
                for r in range(first, stop):
                    unit_forward(p, w, o_gates, o_c, o_h, o_aux, o_fc, o_peep, t, B, H, r, j)
                    if RESIDENT and GATED_READ and not SPREAD:  # h_t for step t+1's sums
                        h_rows[(r - row0) * HP + j] = w[o_h + (t * B + r) * H + j]
            meet(sync, group, parts)
            if NET_READOUT or USE_GATE:  # reads c_t (f ⊙ c_{t-1}) of every unit
                for e in range(e0, e_stop, e_step):
                    g_e, j = unit_of(e, unit0, units)
                    first = row0 + g_e * RB
                    stop = min(first + RB, row0 + rows)
                    read_network(p, rt, w, o_gates, o_h, o_aux, o_c, o_fc, o_bu, t, B, H, n_in,
                                 first, stop, j)
                    if RESIDENT and not SPREAD:
                        for r in range(first, stop):
                            h_rows[(r - row0) * HP + j] = w[o_h + (t * B + r) * H + j]
                meet(sync, group, parts)
            # each block reads out its share of the rows (all of them at parts 1): block
            # barriers inside, and nothing the other blocks write next step is read there
            read0, n_read, r_tid, r_threads = reader(row0, rows, tid, n_threads, part, parts)
            readout_step(p, rt, w, o_wout_t, o_bout, o_h, o_dy, t, B, H, O, read0, n_read,
                         r_tid, r_threads, mask[xm, s, t], target_class[xm, s, t],
                         target_value[xm, s, t], loss_code, scale[xm, s], loss_rows[m])

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
        G = N_SLOTS * H
        p = params[m]
        w = work[m]
        xs = x[m, s]
        o_w, o_r, o_b, o_peep, o_rg, o_p, o_bu, o_wout, o_bout = param_offsets(n_in, H, O)
        o_gates, o_c, o_h, o_aux, o_dy, o_da, o_dnet, o_dc, o_dcn, o_dread, o_fc = (
            work_offsets(T, B, H, O))
        ki, kf, kg, ko = I_SLOT * H, F_SLOT * H, G_SLOT * H, O_SLOT * H
        width = 3 * H
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
            # Pass 1: dL/dh_t, then into the read-out of the memory: dL/dc_t from h_t.
            if t < T - 1:  # the sums over step t+1's gradients: RB rows × GT units a thread
                d_next = o_da + (t + 1) * B * G
                # through R h_t: into the dc slots
                if RESIDENT:  # and R's gradient, term (t+1, t), in registers
                    backward_sum(held, grad_r, da_rows, scratch, w, d_next, G, G, 0, 0, o_h,
                                 o_dc, H, t, B, row0, rows, part)
                else:
                    transposed_rows(w, o_dc, H, w, d_next, G, G, p, o_r, H, H, row0, rows, tid,
                                    n_threads, False, parts)
                if FGR:
                    # through R_gates [i; f; o]_t: dL/d[i; f; o]_t = Σ_q da_{t+1}[q] R_gates[q, ·]
                    # over the rows q of [i; f] (slots 0, 1) and of o (slot 3), into step t's
                    # own da slots i, f, o, which passes 1 and 2 read before writing them
                    d_here = o_da + here * G
                    o_rows = o_rg + 2 * H * width
                    transposed_rows(w, d_here, G, w, d_next, G, 2 * H, p, o_rg, width, 2 * H,
                                    row0, rows, tid, n_threads, False, parts)
                    transposed_rows(w, d_here, G, w, d_next + ko, G, H, p, o_rows, width,
                                    2 * H, row0, rows, tid, n_threads, True, parts)
                    transposed_rows(w, d_here + ko, G, w, d_next, G, 2 * H, p, o_rg + 2 * H,
                                    width, H, row0, rows, tid, n_threads, False, parts)
                    transposed_rows(w, d_here + ko, G, w, d_next + ko, G, H, p,
                                    o_rows + 2 * H, width, H, row0, rows, tid, n_threads, True,
                                    parts)
                if SUMS_IN_BLOCK:
                    cuda.syncthreads()
                else:
                    meet(sync, group, parts)
            for e in range(e0, e_stop, e_step):
                g_e, j = unit_of(e, unit0, units)
                first = row0 + g_e * RB
                for r in range(first, min(first + RB, row0 + rows)):
                    dh = readout_grad(p, w, o_wout, o_dy, t, B, H, O, r, j, mask[m, s, t])
                    base = o_gates + (here + r) * G
                    dbase = o_da + (here + r) * G
                    dgn_o = zero  # fgr: dL/do_t through R_gates at t+1
                    if t < T - 1:
                        dh += w[o_dc + r * H + j]  # through R h_t at t+1 (transposed_rows)
                        if FGR:
                            dgn_o = w[dbase + ko + j]
                    dcn = w[o_dcn + r * H + j] if t < T - 1 else zero
                    if GATED_READ:
                        act = w[o_aux + (here + r) * H + j]
                        og = w[base + ko + j] if HAS_O else one
                        d_act = dh * og
                        dc = dcn + memory_back(d_act, act)
                        if HAS_O:
                            dao = gate_back(dh * act + dgn_o, og)  # into a_o through σ
                            w[dbase + ko + j] = dao
                            if PEEP:
                                dc += dao * p[o_peep + 2 * H + j]  # into c_t via the o peephole
                    elif NET_READOUT:
                        dah = tanh_back(dh, w[base + ko + j])  # into a_h + P_h c_t through tanh
                        w[dbase + ko + j] = dah
                        w[o_dnet + (here + r) * H + j] = dah
                        dc = dcn
                    else:  # use_gate: h = u ⊙ o
                        og = w[base + ko + j]
                        u = w[o_aux + (here + r) * H + j]
                        w[dbase + ko + j] = gate_back(dh * u, og)  # into a_o through σ
                        w[o_dnet + (here + r) * H + j] = tanh_back(dh * og, u)  # into u's network
                        dc = dcn
                    w[o_dc + r * H + j] = dc
            if NET_READOUT or USE_GATE:  # d_read = Σ_q d_net[q] P[q, ·], d_net of every unit
                meet(sync, group, parts)
                transposed_rows(w, o_dread, H, w, o_dnet + here * H, H, H, p, o_p, H, H, row0,
                                rows, tid, n_threads, False, parts)
                meet(sync, group, parts)
            # Pass 2: into the gates and c_{t-1}.
            for e in range(e0, e_stop, e_step):
                g_e, j = unit_of(e, unit0, units)
                first = row0 + g_e * RB
                for r in range(first, min(first + RB, row0 + rows)):
                    base = o_gates + (here + r) * G
                    dbase = o_da + (here + r) * G
                    dc = w[o_dc + r * H + j]
                    d_read = zero
                    if NET_READOUT or USE_GATE:
                        d_read = w[o_dread + r * H + j]
                        if NET_READOUT:
                            dc += d_read  # into c_t through P_h
                    c_prev = w[o_c + ((t - 1) * B + r) * H + j] if t > 0 else zero
                    if SINGLE:
                        dn = tanh_back(dc, w[base + kg + j])  # into a_c + P_c c_{t-1} through tanh
                        w[dbase + kg + j] = dn
                        w[o_dnet + (here + r) * H + j] = dn
                        continue
                    dgn_i = zero  # fgr: dL/di_t, dL/df_t through R_gates at t+1
                    dgn_f = zero
                    if FGR and t < T - 1:
                        dgn_i = w[dbase + ki + j]
                        dgn_f = w[dbase + kf + j]
                    gv = w[base + kg + j]
                    ig = w[base + ki + j] if HAS_I else one
                    fg = keep(ig, w[base + kf + j] if HAS_F else one)
                    # through c_t = f ⊙ c_{t-1} + i ⊙ g: into f, c_{t-1}, i and g
                    df, dcn, di, dg = remember_back(dc, fg, c_prev, ig, gv)
                    w[dbase + kg + j] = input_back(dg, gv)
                    da_i = zero
                    da_f = zero
                    if HAS_I:
                        da_i = gate_back(di + dgn_i, ig)
                        w[dbase + ki + j] = da_i
                    if HAS_F:
                        if USE_GATE:
                            df += d_read * c_prev  # the use gate reads f ⊙ c_{t-1} too
                        da_f = gate_back(df + dgn_f, fg)
                        w[dbase + kf + j] = da_f
                    if USE_GATE:
                        dcn += d_read * fg
                    if PEEP:
                        dcn += da_i * p[o_peep + j] + da_f * p[o_peep + H + j]
                    w[o_dcn + r * H + j] = dcn
            meet(sync, group, parts)
            if SINGLE:  # into c_{t-1} through P_c: dc_next = Σ_q d_net[q] P_c[q, ·]; step
                # t-1's pass 1 reads it after its own barrier (t-1 < T-1 has the R sums)
                transposed_rows(w, o_dcn, H, w, o_dnet + here * H, H, H, p, o_p, H, H, row0,
                                rows, tid, n_threads, False, parts)
        meet(sync, group, parts)
        # This tile's weight gradients: W, R, W_out, R_gates, P_c, P_h, W_u in OT × OT tiles
        # (``outer_sum``), the biases and peepholes one parameter per thread at a time.
        g = grad_tiles[m, tile]
        if RESIDENT:  # R's gradient leaves the registers first, which frees them for the tiles
            store_gradient(grad_r, g, o_r, part)
        outer_sum_x(g, o_w, n_in, w, o_da, G, G, xs, 0, n_in, n_in, 0, T, B, row0, rows, tid,
                    n_threads)
        if not RESIDENT:  # else store_gradient wrote it above
            outer_sum(g, o_r, H, w, o_da, G, G, w, o_h, H, H, 1, T, B, row0, rows, tid,
                      n_threads)
        outer_sum(g, o_wout, H, w, o_dy, O, O, w, o_h, H, H, 0, T, B, row0, rows, tid,
                  n_threads)
        if SINGLE or NET_READOUT or USE_GATE:  # P_c against c_{t-1}, P_h against c_t, W_u
            # against f ⊙ c_{t-1} (0 at t = 0)
            source = o_fc if USE_GATE else o_c
            outer_sum(g, o_p, H, w, o_dnet, H, H, w, source, H, H, 1 if SINGLE else 0, T, B,
                      row0, rows, tid, n_threads)
        if FGR:  # R_gates [3H, 3H]: Σ_{t≥1} d[i; f; o]_t [i; f; o]_{t-1}, by blocks of gate
            # rows [i; f] (slots 0, 1) and o (slot 3) against the same columns
            o_rows = o_rg + 2 * H * width
            outer_sum(g, o_rg, width, w, o_da, G, 2 * H, w, o_gates, G, 2 * H, 1, T, B, row0,
                      rows, tid, n_threads)
            outer_sum(g, o_rg + 2 * H, width, w, o_da, G, 2 * H, w, o_gates + ko, G, H, 1, T,
                      B, row0, rows, tid, n_threads)
            outer_sum(g, o_rows, width, w, o_da + ko, G, H, w, o_gates, G, 2 * H, 1, T, B,
                      row0, rows, tid, n_threads)
            outer_sum(g, o_rows + 2 * H, width, w, o_da + ko, G, H, w, o_gates + ko, G, H, 1,
                      T, B, row0, rows, tid, n_threads)
        n_bias = o_rg - o_b  # b [G] and the peepholes [3, H]
        n_bu = H * N_USE
        for slot in range(tid, n_bias + n_bu + O, n_threads):
            if slot < n_bias:
                k = o_b + slot
            elif slot < n_bias + n_bu:
                k = o_bu + slot - n_bias
            else:
                k = o_bout + slot - n_bias - n_bu
            acc = zero
            if k < o_peep:  # b [G]
                acc = column_sum(w, o_da, G, k - o_b, T, B, row0, rows)
            elif k < o_rg:  # peep [3, H]: p_i, p_f against c_{t-1}; p_o against c_t
                which = (k - o_peep) // H
                j = (k - o_peep) % H
                gate = ki if which == 0 else (kf if which == 1 else ko)
                for t in range(T):
                    for r in range(row0, row0 + rows):
                        if which == 2:
                            cv = w[at(o_c + (t * B + r) * H + j)]
                        elif t > 0:
                            cv = w[at(o_c + ((t - 1) * B + r) * H + j)]
                        else:
                            cv = zero
                        acc += w[at(o_da + (t * B + r) * G + gate + j)] * cv
            elif k < o_wout:  # b_u [H]
                acc = column_sum(w, o_dnet, H, k - o_bu, T, B, row0, rows)
            else:  # b_out [O]
                acc = column_sum(w, o_dy, O, k - o_bout, T, B, row0, rows)
            g[k] = acc

    return forward, backward
