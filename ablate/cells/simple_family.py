"""The gate-light cells: Elman RNN, IRNN, GRU, minGRU and minLSTM, forward and backward.

Every name is one ``Variant``; ``make_kernels`` closes over its flags as compile-time
constants, so Numba prunes the branches a variant does not take (haste's approach), the
same way as ``lstm_family``. Three kernel pairs cover the five cells:

    ELMAN  rnn, irnn          h_t = act(W x_t + R h_{t-1} + b)
    GRU    gru                torch.nn.GRU's equations, b_hn inside the reset gate
    MIN    mingru, minlstm    no R: the recurrence is elementwise only

Shapes (one batch chunk): x [T,B,I]; h [T,B,H]; gates [n_gates,T,B,H] post-activation,
one plane per gate in spec.py's ``gates`` order (G = n_gates·H rows of W, R, b). None of
these cells has a memory besides h, so ``state[1]`` is c [T,B,0] and the backward returns
dc_sq = 0. The input projections W_k x_t and the weight gradients are whole-sequence
matrix products (one per gate block; ``kernels/weight_grads.py``); only the recurrent
product runs per time step.

Why planes and not lstm_family's packed [T,B,G] rows: LLVM vectorises the pointwise loop
over j behind run-time alias checks, and hoists those checks out to the batch loop, where
it widens each access to all B rows. The gate blocks of packed rows then overlap, the
check fails, and the scalar loop runs (GRU forward 6× slower). Planes never overlap.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ablate.cells import pointwise
from ablate.kernels.activations import for_dtype
from ablate.kernels.aligned import aligned_empty, aligned_zeros
from ablate.kernels.jit import CELL_LOOPS, inline, kernel
from ablate.kernels.products import (
    backprop_product,
    backward_operand,
    forward_operand,
    product_out,
    recurrent_product,
)
from ablate.kernels.reductions import add_column_sums, sum_squares
from ablate.kernels.weight_grads import stacked_inputs, weight_grad_blocks

ELMAN, GRU, MIN = 0, 1, 2  # kernel pair of a variant


class Variant(NamedTuple):
    kind: int  # ELMAN, GRU or MIN
    gates: str  # packed gate letters in row order, as spec.py's ``gates``
    relu: bool = False  # ELMAN: h = relu(a_h) instead of tanh(a_h)
    normalised: bool = False  # MIN: minLSTM's f' = f/(f+i), i' = i/(f+i); else minGRU's z


VARIANTS: dict[str, Variant] = {
    "rnn": Variant(ELMAN, "h"),
    "irnn": Variant(ELMAN, "h", relu=True),
    "gru": Variant(GRU, "rzn"),
    "mingru": Variant(MIN, "zh"),
    "minlstm": Variant(MIN, "fih", normalised=True),
}


def make_kernels(variant: Variant, dtype: np.dtype) -> tuple:
    """Build the njit (views, forward, backward) triple of one variant and precision."""
    views = make_views(len(variant.gates), variant.kind != MIN, variant.kind == GRU)
    if variant.kind == ELMAN:
        forward, backward = make_elman(views, variant.relu, dtype)
    elif variant.kind == GRU:
        forward, backward = make_gru(views, dtype)
    else:
        forward, backward = make_min(views, variant.normalised, dtype)
    return views, forward, backward


def make_views(n_gates: int, recurrent: bool, hidden_bias: bool):
    """The ``views`` kernel of a layout: G = n_gates·H rows, R if recurrent, b_hn if asked."""

    @kernel
    def views(params, n_in, n_hidden, n_out):
        """(W [G,I], R [G,H], b [G], b_hn [H], W_out [O,H], b_out [O]) views of the flat
        vector, in spec.py's block order; absent blocks (R of the min cells, b_hn of all
        but the GRU) are empty."""
        H = n_hidden
        G = n_gates * H
        n_rec = G if recurrent else 0
        n_hn = H if hidden_bias else 0
        k = 0
        W = params[k : k + G * n_in].reshape((G, n_in))
        k += G * n_in
        R = params[k : k + n_rec * H].reshape((n_rec, H))
        k += n_rec * H
        b = params[k : k + G]
        k += G
        b_hn = params[k : k + n_hn]
        k += n_hn
        W_out = params[k : k + n_out * H].reshape((n_out, H))
        k += n_out * H
        b_out = params[k : k + n_out]
        return W, R, b, b_hn, W_out, b_out

    return views


# --- whole-sequence products shared by the families -----------------------------------


@kernel
def project(x, W, n_gates):
    """planes [n_gates,T,B,H], plane k = W_k x_t for every t (W_k: rows kH…(k+1)H of W)."""
    T, B, n_in = x.shape
    H = W.shape[0] // n_gates
    planes = aligned_empty((n_gates, T, B, H), x)
    flat_x = x.reshape((T * B, n_in))
    for k in range(n_gates):
        np.dot(flat_x, W[k * H : (k + 1) * H].T, planes[k].reshape((T * B, H)))
    return planes


@kernel
def add_input_grads(d_pre, x, dW, db):
    """dW_k += Σ_t d_pre_kᵀ x_t and db_k += Σ_t Σ_b d_pre_k for every gate block k.

    d_pre [n_gates,T,B,H]: dL/d(W_k x_t + b_k); x [T,B,I]; dW [G,I]; db [G].
    """
    n_gates, T, B, H = d_pre.shape
    flat_x = x.reshape((T * B, x.shape[2]))
    for k in range(n_gates):
        flat_d = d_pre[k].reshape((T * B, H))
        dW_k = dW[k * H : (k + 1) * H]
        dW_k += np.dot(flat_d.T, flat_x)
        add_column_sums(flat_d, db[k * H : (k + 1) * H])


@kernel
def add_layer_grads(d_pre, x, h, dW, dR, db):
    """dW_k, dR_k, db_k += Σ_t d_pre_kᵀ [x_t, h_{t-1}, 1] for gate blocks k whose input and
    recurrent sides share dL/da (one product per block: ``weight_grads.py``).

    d_pre [n_gates,T,B,H]; x [T,B,I]; h [T,B,H]; dW [G,I], dR [G,H], db [G] for these
    blocks. Returns the stacked operand for further blocks.
    """
    n_gates, T, B, H = d_pre.shape
    n_in = x.shape[2]
    stacked = stacked_inputs(x, h)
    for k in range(n_gates):
        grad_W, grad_R, grad_b = weight_grad_blocks(d_pre[k].reshape((T * B, H)), stacked, n_in)
        dW[k * H : (k + 1) * H] += grad_W
        dR[k * H : (k + 1) * H] += grad_R
        db[k * H : (k + 1) * H] += grad_b
    return stacked


# --- rnn, irnn -------------------------------------------------------------------------


def make_elman(views, relu: bool, dtype: np.dtype) -> tuple:
    """h_t = act(W x_t + R h_{t-1} + b), act = relu (irnn) or tanh (rnn)."""
    tanh, _ = for_dtype(dtype)
    step, step_back = pointwise.elman(relu, tanh, dtype, inline)  # shared with CUDA

    @kernel(**CELL_LOOPS)
    def forward(params, x, n_hidden, n_out):
        """Run the cell over x [T,B,I]; returns the state (h [T,B,H], c [T,B,0]).

        h is its own post-activation cache: tanh' = 1 − h², relu' = [h > 0].
        """
        T, B, n_in = x.shape
        H = n_hidden
        W, R, b, _, _, _ = views(params, n_in, H, n_out)
        # h[t] starts as the input projection W x_t and is overwritten in place.
        h = project(x, W, 1)[0]
        R_operand = forward_operand(R)  # R packed for the per-step product
        recurrent = product_out(B, H, x)  # [:, :H] = R h_{t-1}
        scratch = np.empty((H, B), dtype=x.dtype)
        for t in range(T):
            if t > 0:
                recurrent_product(h[t - 1], R_operand, recurrent, scratch)
            a = h[t]
            for bb in range(B):
                for j in range(H):
                    a[bb, j] = step(a[bb, j] + b[j] + recurrent[bb, j])
        return h, np.zeros((T, B, 0), dtype=x.dtype)

    @kernel(**CELL_LOOPS)
    def backward(params, x, n_hidden, n_out, state, dh_out, grad, flow):
        """Backpropagate dL/dh_t [T,B,H] (from the readout) through time; adds into grad.

        Returns (dh_sq [T], dc_sq [T]): squared norms over the chunk of the total dL/dh_t
        where ``flow`` (else zeros), and zeros (no memory).
        """
        h = state[0]
        T, B, n_in = x.shape
        H = n_hidden
        _, R, _, _, _, _ = views(params, n_in, H, n_out)
        dW, dR, db, _, _, _ = views(grad, n_in, H, n_out)
        d_pre = aligned_empty((1, T, B, H), x)  # dL/da_t
        R_operand = backward_operand(R)  # R packed for the per-step product
        dh_next = product_out(B, H, x)  # [:, :H]: via R h_t at t+1
        dh = aligned_empty((B, H), x)  # total dL/dh_t
        dh_sq = np.zeros(T)
        dc_sq = np.zeros(T)
        for t in range(T - 1, -1, -1):
            da = d_pre[0, t]
            for bb in range(B):
                for j in range(H):
                    d = dh_out[t, bb, j] + dh_next[bb, j]
                    dh[bb, j] = d
                    da[bb, j] = step_back(d, h[t, bb, j])  # through relu or tanh
            if flow:
                dh_sq[t] = sum_squares(dh)
            if t > 0:
                backprop_product(da, R_operand, dh_next)  # into h_{t-1} through R
        add_layer_grads(d_pre, x, h, dW, dR, db)
        return dh_sq, dc_sq

    return forward, backward


# --- gru -------------------------------------------------------------------------------


def make_gru(views, dtype: np.dtype) -> tuple:
    """torch.nn.GRU: r = σ(a_r)  z = σ(a_z)  n = tanh(W_n x_t + b_n + r ⊙ (R_n h_{t-1} + b_hn));
    h_t = (1 − z) ⊙ n + z ⊙ h_{t-1}. Rows r, z, n; b is the input-side bias."""
    tanh, sigmoid = for_dtype(dtype)
    step, step_back = pointwise.gru(tanh, sigmoid, dtype, inline)  # shared with CUDA

    @kernel(**CELL_LOOPS)
    def forward(params, x, n_hidden, n_out):
        """Run the cell over x [T,B,I]; returns the state (h, c, gates, hidden_n).

        gates [3,T,B,H] post-activation r, z, n; hidden_n [T,B,H] = R_n h_{t-1} + b_hn, the
        term the reset gate multiplies (its gradient is dL/da_n ⊙ hidden_n).
        """
        T, B, n_in = x.shape
        H = n_hidden
        W, R, b, b_hn, _, _ = views(params, n_in, H, n_out)
        # gates[k, t] starts as the input projection W_k x_t and is overwritten in place.
        gates = project(x, W, 3)
        h = aligned_empty((T, B, H), x)
        hidden_n = aligned_empty((T, B, H), x)
        R_operand = forward_operand(R)  # R packed for the per-step product
        recurrent = product_out(B, 3 * H, x)  # [:, :3H] = R h_{t-1}
        scratch = np.empty((3 * H, B), dtype=x.dtype)
        zero_state = aligned_zeros((B, H), x)
        for t in range(T):
            h_prev = h[t - 1] if t > 0 else zero_state
            if t > 0:
                recurrent_product(h_prev, R_operand, recurrent, scratch)
            r_t, z_t, n_t = gates[0, t], gates[1, t], gates[2, t]
            for bb in range(B):
                for j in range(H):
                    hn = recurrent[bb, 2 * H + j] + b_hn[j]
                    r, z, n, h[t, bb, j] = step(
                        r_t[bb, j] + b[j] + recurrent[bb, j],
                        z_t[bb, j] + b[H + j] + recurrent[bb, H + j],
                        n_t[bb, j] + b[2 * H + j], hn, h_prev[bb, j],
                    )
                    r_t[bb, j] = r
                    z_t[bb, j] = z
                    n_t[bb, j] = n
                    hidden_n[t, bb, j] = hn
        return h, np.zeros((T, B, 0), dtype=x.dtype), gates, hidden_n

    @kernel(**CELL_LOOPS)
    def backward(params, x, n_hidden, n_out, state, dh_out, grad, flow):
        """Backpropagate dL/dh_t [T,B,H] (from the readout) through time; adds into grad.

        Returns (dh_sq [T], dc_sq [T]): squared norms over the chunk of the total dL/dh_t
        where ``flow`` (else zeros), and zeros (no memory).
        """
        h, _, gates, hidden_n = state
        T, B, n_in = x.shape
        H = n_hidden
        _, R, _, _, _, _ = views(params, n_in, H, n_out)
        dW, dR, db, db_hn, _, _ = views(grad, n_in, H, n_out)
        # The input side W x_t + b and the recurrent side R h_{t-1} + b_hn share dL/da for
        # r and z; for n the recurrent side is behind the reset gate: dL/da_n ⊙ r.
        d_pre = aligned_empty((3, T, B, H), x)  # dL/d(W_k x_t + b_k), k = r, z, n
        d_hidden_n = aligned_empty((T, B, H), x)  # dL/d(R_n h_{t-1} + b_hn)
        d_rec = aligned_empty((B, 3 * H), x)  # dL/d(R h_{t-1}) of one step, packed
        dh_direct = aligned_zeros((B, H), x)  # dL/dh_t through z ⊙ h_t at t+1
        R_operand = backward_operand(R)  # R packed for the per-step product
        dh_next = product_out(B, H, x)  # [:, :H]: via R h_t at t+1
        dh = aligned_empty((B, H), x)  # total dL/dh_t
        zero_state = aligned_zeros((B, H), x)
        dh_sq = np.zeros(T)
        dc_sq = np.zeros(T)
        for t in range(T - 1, -1, -1):
            h_prev = h[t - 1] if t > 0 else zero_state
            r_t, z_t, n_t = gates[0, t], gates[1, t], gates[2, t]
            dar_t, daz_t, dan_t = d_pre[0, t], d_pre[1, t], d_pre[2, t]
            dhn_t = d_hidden_n[t]
            for bb in range(B):
                for j in range(H):
                    d = dh_out[t, bb, j] + dh_direct[bb, j] + dh_next[bb, j]
                    dh[bb, j] = d
                    # dh_direct: into h_{t-1} through z ⊙ h_{t-1}; dhn: into R_n h_{t-1} + b_hn
                    direct, dar, daz, dan, dhn = step_back(
                        d, r_t[bb, j], z_t[bb, j], n_t[bb, j], hidden_n[t, bb, j], h_prev[bb, j]
                    )
                    dh_direct[bb, j] = direct
                    dar_t[bb, j] = dar
                    daz_t[bb, j] = daz
                    dan_t[bb, j] = dan
                    dhn_t[bb, j] = dhn
            if flow:
                dh_sq[t] = sum_squares(dh)
            if t > 0:
                # Pack [dL/da_r, dL/da_z, dL/d(R_n h)] into rows for one product with R,
                # a block per loop so that no loop writes two blocks of one row.
                for bb in range(B):
                    for j in range(H):
                        d_rec[bb, j] = dar_t[bb, j]
                for bb in range(B):
                    for j in range(H):
                        d_rec[bb, H + j] = daz_t[bb, j]
                for bb in range(B):
                    for j in range(H):
                        d_rec[bb, 2 * H + j] = dhn_t[bb, j]
                backprop_product(d_rec, R_operand, dh_next)  # into h_{t-1} through R
        # r and z: the input and recurrent sides share dL/da.
        stacked = add_layer_grads(d_pre[:2], x, h, dW[: 2 * H], dR[: 2 * H], db[: 2 * H])
        # n: W_n x_t + b_n takes dL/da_n; R_n h_{t-1} + b_hn takes dL/d(R_n h + b_hn) (t = 0
        # included for b_hn), each from one product with [x_t, h_{t-1}, 1].
        grad_W, _, grad_b = weight_grad_blocks(d_pre[2].reshape((T * B, H)), stacked, n_in)
        dW[2 * H :] += grad_W
        db[2 * H :] += grad_b
        _, grad_R, grad_b = weight_grad_blocks(d_hidden_n.reshape((T * B, H)), stacked, n_in)
        dR[2 * H :] += grad_R
        db_hn += grad_b
        return dh_sq, dc_sq

    return forward, backward


# --- mingru, minlstm -------------------------------------------------------------------


def make_min(views, normalised: bool, dtype: np.dtype) -> tuple:
    """Feng et al. 2024, no recurrent matrix, h̃ = W_h x_t + b_h (linear):

    mingru (rows z, h):     z = σ(a_z);  h_t = (1 − z) ⊙ h_{t-1} + z ⊙ h̃
    minlstm (rows f, i, h): f = σ(a_f)  i = σ(a_i)  f' = f/(f+i)  i' = i/(f+i);
                            h_t = f' ⊙ h_{t-1} + i' ⊙ h̃
    """
    _, sigmoid = for_dtype(dtype)
    zero = dtype.type(0)
    step, step_back = pointwise.minimal(normalised, sigmoid, dtype, inline)  # shared with CUDA
    NORMALISED = normalised
    n_gates = 3 if normalised else 2
    H_SLOT = n_gates - 1  # the h̃ plane comes last; plane 0 is z or f, plane 1 i (minlstm)

    @kernel(**CELL_LOOPS)
    def forward(params, x, n_hidden, n_out):
        """Run the cell over x [T,B,I]; returns the state (h, c, gates).

        gates [n_gates,T,B,H] post-activation: z, h̃ (mingru) or f, i, h̃ (minlstm).
        """
        T, B, n_in = x.shape
        H = n_hidden
        W, _, b, _, _, _ = views(params, n_in, H, n_out)
        # gates[k, t] starts as the input projection W_k x_t and is overwritten in place.
        gates = project(x, W, n_gates)
        h = aligned_empty((T, B, H), x)
        zero_state = aligned_zeros((B, H), x)
        for t in range(T):
            h_prev = h[t - 1] if t > 0 else zero_state
            zf_t, i_t, ht_t = gates[0, t], gates[1, t], gates[H_SLOT, t]
            for bb in range(B):
                for j in range(H):
                    h_tilde = ht_t[bb, j] + b[H_SLOT * H + j]
                    ht_t[bb, j] = h_tilde
                    a_i = i_t[bb, j] + b[H + j] if NORMALISED else zero
                    zf, i, h[t, bb, j] = step(zf_t[bb, j] + b[j], a_i, h_tilde, h_prev[bb, j])
                    zf_t[bb, j] = zf
                    if NORMALISED:
                        i_t[bb, j] = i
        return h, np.zeros((T, B, 0), dtype=x.dtype), gates

    @kernel(**CELL_LOOPS)
    def backward(params, x, n_hidden, n_out, state, dh_out, grad, flow):
        """Backpropagate dL/dh_t [T,B,H] (from the readout) through time; adds into grad.

        Returns (dh_sq [T], dc_sq [T]): squared norms over the chunk of the total dL/dh_t
        where ``flow`` (else zeros), and zeros (no memory).
        """
        h, _, gates = state
        T, B, n_in = x.shape
        H = n_hidden
        dW, _, db, _, _, _ = views(grad, n_in, H, n_out)
        d_pre = aligned_empty((n_gates, T, B, H), x)  # dL/da_t, one plane per gate
        dh_next = aligned_zeros((B, H), x)  # dL/dh_t through step t+1
        dh = aligned_empty((B, H), x)  # total dL/dh_t
        zero_state = aligned_zeros((B, H), x)
        dh_sq = np.zeros(T)
        dc_sq = np.zeros(T)
        for t in range(T - 1, -1, -1):
            h_prev = h[t - 1] if t > 0 else zero_state
            zf_t, i_t, ht_t = gates[0, t], gates[1, t], gates[H_SLOT, t]
            dzf_t, di_t, dht_t = d_pre[0, t], d_pre[1, t], d_pre[H_SLOT, t]
            for bb in range(B):
                for j in range(H):
                    d = dh_out[t, bb, j] + dh_next[bb, j]
                    dh[bb, j] = d
                    i = i_t[bb, j] if NORMALISED else zero
                    dh_next[bb, j], dzf, di, dht = step_back(
                        d, zf_t[bb, j], i, ht_t[bb, j], h_prev[bb, j]
                    )
                    dzf_t[bb, j] = dzf
                    if NORMALISED:
                        di_t[bb, j] = di
                    dht_t[bb, j] = dht
            if flow:
                dh_sq[t] = sum_squares(dh)
        add_input_grads(d_pre, x, dW, db)
        return dh_sq, dc_sq

    return forward, backward
