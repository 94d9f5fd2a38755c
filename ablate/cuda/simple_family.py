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
of one model for the whole sequence, so the time loop needs only block barriers: each
thread takes the elements (row, unit j) e = tid, tid + blockDim, … and computes every gate
of unit j. Step t's states are written to the model's work vector and read back by the
other threads of the block after a barrier. An element keeps its thread at every step, so
the elementwise carries (dc-like terms: GRU's z ⊙ h_{t-1}, the min cells' h_{t-1}) need
no barrier of their own.

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

import numpy as np
from numba import cuda

from ablate.cells import pointwise
from ablate.cells.simple_family import ELMAN, GRU, MIN, VARIANTS, Variant
from ablate.cuda.activations import for_dtype
from ablate.cuda.readout import make_readout
from ablate.cuda.tiles import block_rows

__all__ = ["VARIANTS", "make_kernels", "work_size"]


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


def make_kernels(variant: Variant, dtype: np.dtype) -> tuple:
    """(forward, backward) CUDA kernels of one variant and precision."""
    dtype = np.dtype(dtype)
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

    @cuda.jit
    def forward(params, recurrent_t, x, target_class, target_value, mask, scale, limit, s,
                loss_code, n_hidden, n_out, tile_rows, work, loss_rows):
        """Step s of the interval: the cell over x[m, s] [T,B,I], the readout and the loss.

        Writes the states, dy and loss_rows[m, r] (Σ_t scale·mask·ℓ of row r) of the
        block's rows; a model runs step s only while s < limit[m].
        """
        m = cuda.blockIdx.y
        if s >= limit[m]:  # the model has stopped, or its interval is shorter
            return
        T, B, n_in, row0, rows, tid, n_threads = block_rows(x, tile_rows)
        H = n_hidden
        O = n_out
        G = N_GATES * H
        p = params[m]
        rt = recurrent_t[m]  # Rᵀ [H, G]: a warp's threads (units j) read adjacent words
        w = work[m]
        xs = x[m, s]
        o_w, _, o_b, o_bhn, o_wout, o_bout = param_offsets(n_in, H, O)
        o_gates, o_hn, o_h, o_dy, _, _, _ = work_offsets(T, B, H, O)
        kh = H_SLOT * H
        for rr in range(tid, rows, n_threads):
            loss_rows[m, row0 + rr] = 0
        for t in range(T):
            here = t * B  # row offset of step t
            prev = (t - 1) * B
            for e in range(tid, rows * H, n_threads):
                r = row0 + e // H
                j = e % H
                base = o_gates + (here + r) * G
                base_h = o_h + (prev + r) * H  # h_{t-1} of row r (t > 0)
                h_prev = w[base_h + j] if t > 0 else zero
                if KIND == ELMAN:  # h_t = act(b + W x_t + R h_{t-1})
                    acc = p[o_b + j]
                    for i in range(n_in):
                        acc += p[o_w + j * n_in + i] * xs[t, r, i]
                    if t > 0:
                        for q in range(H):
                            acc += rt[q * G + j] * w[base_h + q]
                    hv = step(acc)
                elif KIND == GRU:
                    # a_k = b_k + W_k x_t (+ R_k h_{t-1} for r, z); hidden_n = R_n h_{t-1} + b_hn
                    acc_r = p[o_b + j]
                    acc_z = p[o_b + H + j]
                    acc_n = p[o_b + 2 * H + j]
                    hn = p[o_bhn + j]
                    for i in range(n_in):
                        xv = xs[t, r, i]
                        acc_r += p[o_w + j * n_in + i] * xv
                        acc_z += p[o_w + (H + j) * n_in + i] * xv
                        acc_n += p[o_w + (2 * H + j) * n_in + i] * xv
                    if t > 0:
                        for q in range(H):
                            hq = w[base_h + q]
                            acc_r += rt[q * G + j] * hq
                            acc_z += rt[q * G + H + j] * hq
                            hn += rt[q * G + 2 * H + j] * hq
                    # h_t = (1 − z) ⊙ n + z ⊙ h_{t-1}, n = tanh(a_n + r ⊙ hn)
                    rg, zg, ng, hv = step(acc_r, acc_z, acc_n, hn, h_prev)
                    w[base + j] = rg
                    w[base + H + j] = zg
                    w[base + 2 * H + j] = ng
                    w[o_hn + (here + r) * H + j] = hn
                else:  # MIN: gates and h̃ = W_h x_t + b_h from x_t only
                    acc_zf = p[o_b + j]
                    acc_i = p[o_b + H + j] if NORMALISED else zero
                    acc_h = p[o_b + kh + j]
                    for i in range(n_in):
                        xv = xs[t, r, i]
                        acc_zf += p[o_w + j * n_in + i] * xv
                        if NORMALISED:
                            acc_i += p[o_w + (H + j) * n_in + i] * xv
                        acc_h += p[o_w + (kh + j) * n_in + i] * xv
                    w[base + kh + j] = acc_h  # h̃ is linear
                    # mingru: h_t = (1 − z) ⊙ h_{t-1} + z ⊙ h̃; minlstm: f' ⊙ h_{t-1} + i' ⊙ h̃
                    zf, ig, hv = step(acc_zf, acc_i, acc_h, h_prev)
                    w[base + j] = zf
                    if NORMALISED:
                        w[base + H + j] = ig
                w[o_h + (here + r) * H + j] = hv
            cuda.syncthreads()  # the readout reads h_t of every unit
            readout_step(p, w, o_wout, o_bout, o_h, o_dy, t, B, H, O, row0, rows, tid,
                         n_threads, mask[m, s, t], target_class[m, s, t], target_value[m, s, t],
                         loss_code, scale[m, s], loss_rows[m])

    @cuda.jit
    def backward(params, x, mask, limit, s, n_hidden, n_out, tile_rows, work, grad_tiles):
        """Backpropagation through time of step s for the block's rows, then this tile's
        weight gradients into grad_tiles[m, tile, :] (forward must have run on work)."""
        m = cuda.blockIdx.y
        if s >= limit[m]:  # the model has stopped, or its interval is shorter
            return
        tile = cuda.blockIdx.x
        T, B, n_in, row0, rows, tid, n_threads = block_rows(x, tile_rows)
        H = n_hidden
        O = n_out
        G = N_GATES * H
        p = params[m]
        w = work[m]
        xs = x[m, s]
        o_w, o_r, o_b, o_bhn, o_wout, o_bout = param_offsets(n_in, H, O)
        o_gates, o_hn, o_h, o_dy, o_da, o_dhn, o_carry = work_offsets(T, B, H, O)
        kh = H_SLOT * H
        for t in range(T - 1, -1, -1):
            here = t * B
            nxt = (t + 1) * B
            # Total dL/dh_t: the readout, R h_t at t+1 (ELMAN, GRU), the elementwise carry.
            for e in range(tid, rows * H, n_threads):
                r = row0 + e // H
                j = e % H
                dh = readout_grad(p, w, o_wout, o_dy, t, B, H, O, r, j, mask[m, s, t])
                if t < T - 1:
                    base_d = o_da + (nxt + r) * G
                    if KIND == ELMAN:
                        for k in range(H):
                            dh += w[base_d + k] * p[o_r + k * H + j]  # through R h_t at t+1
                    elif KIND == GRU:
                        # [dL/da_r, dL/da_z, dL/d(R_n h + b_hn)] at t+1 against R's blocks
                        base_n = o_dhn + (nxt + r) * H
                        for q in range(H):
                            dh += (w[base_d + q] * p[o_r + q * H + j]
                                   + w[base_d + H + q] * p[o_r + (H + q) * H + j]
                                   + w[base_n + q] * p[o_r + (2 * H + q) * H + j])
                    if KIND != ELMAN:
                        dh += w[o_carry + r * H + j]
                base = o_gates + (here + r) * G
                dbase = o_da + (here + r) * G
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
            # Step t-1 reads da_t of every unit (through R); also orders the weight
            # gradients below after the last step.
            cuda.syncthreads()
        # This tile's weight gradients, one parameter per thread at a time.
        g = grad_tiles[m, tile]
        n_params = o_bout + O
        for k in range(tid, n_params, n_threads):
            acc = zero
            if k < o_r:  # W [G, I]
                row = k // n_in
                i = k % n_in
                for t in range(T):
                    for r in range(row0, row0 + rows):
                        acc += w[o_da + (t * B + r) * G + row] * xs[t, r, i]
            elif k < o_b:  # R [G, H] (not MIN): Σ_{t≥1} dL/d(R h_{t-1}) h_{t-1}
                row = (k - o_r) // H
                q = (k - o_r) % H
                for t in range(1, T):
                    for r in range(row0, row0 + rows):
                        if KIND == GRU and row >= 2 * H:  # R_n is behind the reset gate
                            d = w[o_dhn + (t * B + r) * H + row - 2 * H]
                        else:
                            d = w[o_da + (t * B + r) * G + row]
                        acc += d * w[o_h + ((t - 1) * B + r) * H + q]
            elif k < o_bhn:  # b [G]
                row = k - o_b
                for t in range(T):
                    for r in range(row0, row0 + rows):
                        acc += w[o_da + (t * B + r) * G + row]
            elif k < o_wout:  # b_hn [H] (GRU): beside R_n h_{t-1}, so t = 0 included
                j = k - o_bhn
                for t in range(T):
                    for r in range(row0, row0 + rows):
                        acc += w[o_dhn + (t * B + r) * H + j]
            elif k < o_bout:  # W_out [O, H]
                row = (k - o_wout) // H
                q = (k - o_wout) % H
                for t in range(T):
                    for r in range(row0, row0 + rows):
                        acc += w[o_dy + (t * B + r) * O + row] * w[o_h + (t * B + r) * H + q]
            else:  # b_out [O]
                row = k - o_bout
                for t in range(T):
                    for r in range(row0, row0 + rows):
                        acc += w[o_dy + (t * B + r) * O + row]
            g[k] = acc

    return forward, backward
