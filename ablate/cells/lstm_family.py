"""The LSTM and its ablations: one forward/backward kernel pair, specialised per cell.

Every LSTM-family name of ``spec.py`` is one ``Variant`` of flags. ``make_kernels`` closes
over the flags as compile-time constants, so Numba prunes the branches a variant does not
take (haste's approach): each name runs exactly its own equations and nothing more.

Shapes (one batch chunk): x [T,B,I]; gates [T,B,G] post-activation, G = len(gates)·H;
c, h [T,B,H]. Forward, one product a step gives R h_{t-1} + W x_t (the register tiles of
``kernels/products.py``); backward, one product a step gives dL/dh_{t-1}, and the weight
gradients [dW, dR, db] one product per chunk of steps, added up while the time loop runs
(``kernels/weight_grads.py``). Where x is one-hot, W x_t is a column of W added after the
product on h_{t-1} alone, and dW is collected by column (``kernels/one_hot.py``).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ablate.cells import pointwise
from ablate.cells.pointwise import LINEAR, SCALED_SIGMOID, SIGMOID, TANH
from ablate.kernels.activations import for_dtype
from ablate.kernels.aligned import aligned_empty, aligned_zeros
from ablate.kernels.jit import CELL_LOOPS, inline, kernel
from ablate.kernels.one_hot import (
    add_input_columns,
    add_to_columns,
    input_columns,
    one_hot_columns,
)
from ablate.kernels.products import (
    backprop_product,
    backward_operand,
    forward_operand,
    product_out,
    recurrent_product,
)
from ablate.kernels.reductions import sum_squares
from ablate.kernels.weight_grads import (
    gradient_store,
    stacked_inputs,
    store_step,
    stored_weight_grads,
)

# Input activations g(a_g) and memory activations h = o ⊙ act(c) (pointwise.py):
# TANH, LINEAR, SIGMOID, SCALED_SIGMOID (4σ−2 for g, 2σ−1 for c).
__all__ = ["LINEAR", "SCALED_SIGMOID", "SIGMOID", "TANH", "VARIANTS", "Variant", "make_kernels"]


class Variant(NamedTuple):
    gates: str  # packed gate letters in row order, e.g. "ifgo"
    input_act: int = TANH  # g = act(a_g)
    memory_act: int = TANH  # h = o ⊙ act(c)
    cifg: bool = False  # f = 1 − i
    peephole: bool = False  # p_i, p_f see c_{t-1}; p_o sees c_t
    full_gate_recurrence: bool = False  # [a_i;a_f;a_o] += R_gates [i;f;o]_{t-1}
    single_net: bool = False  # c_t = tanh(a_c + P_c c_{t-1}); the "c" rows sit in the g slot
    net_readout: bool = False  # h_t = tanh(a_h + P_h c_t); the "h" rows sit in the o slot
    use_gate: bool = False  # h_t = tanh(W_u (f ⊙ c_{t-1}) + b_u) ⊙ o

    def slots(self) -> tuple[int, int, int, int]:
        """Row-block slot of i, f, g and o in the packed rows, -1 where absent (single_net's
        "c" rows sit in the g slot, net_readout's "h" rows in the o slot)."""
        return tuple(self.gates.find(letter) for letter in "ifgo")

    @property
    def has_output_gate(self) -> bool:
        """An o slot that is a gate (net_readout's holds the readout network)."""
        return "o" in self.gates and not self.net_readout

    @property
    def gated_read(self) -> bool:
        """The memory is read by h = o ⊙ act(c) (act(c) without o), not by a network."""
        return not self.net_readout and not self.use_gate


VARIANTS: dict[str, Variant] = {
    "lstm": Variant("ifgo"),
    "lstm_peephole": Variant("ifgo", peephole=True),
    "nig": Variant("fgo"),
    "nfg": Variant("igo"),
    "nog": Variant("ifg"),
    "niaf": Variant("ifgo", input_act=LINEAR),
    "noaf": Variant("ifgo", memory_act=LINEAR),
    "cifg": Variant("igo", cifg=True),
    "fgr": Variant("ifgo", full_gate_recurrence=True),
    "single_net": Variant("go", single_net=True),
    "net_readout": Variant("ifgo", net_readout=True),
    "sigmoid_input": Variant("ifgo", input_act=SIGMOID),
    "sigmoid_readout": Variant("ifgo", memory_act=SIGMOID),
    "use_gate": Variant("ifgo", use_gate=True),
    "lstm97": Variant("igo", input_act=SCALED_SIGMOID, memory_act=SCALED_SIGMOID),
}


def make_kernels(variant: Variant, dtype: np.dtype) -> tuple:
    """Build the njit (views, forward, backward) triple of one variant and precision."""
    tanh, sigmoid = for_dtype(dtype)
    one = dtype.type(1)
    n_slots = len(variant.gates)
    I_SLOT, F_SLOT, G_SLOT, O_SLOT = variant.slots()  # -1 where absent
    INPUT_ACT, MEMORY_ACT, CIFG = variant.input_act, variant.memory_act, variant.cifg
    PEEP, FGR = variant.peephole, variant.full_gate_recurrence
    SINGLE, NET_READOUT, USE_GATE = variant.single_net, variant.net_readout, variant.use_gate
    HAS_I, HAS_F = I_SLOT >= 0, F_SLOT >= 0
    HAS_O, GATED_READ = variant.has_output_gate, variant.gated_read
    NET = not GATED_READ or SINGLE  # a network inside the cell: d_net holds its dL/da
    # The pointwise math, shared with the CUDA kernels (cells/pointwise.py).
    input_act, input_back = pointwise.activation(INPUT_ACT, 4, tanh, sigmoid, dtype, inline)
    memory_act, memory_back = pointwise.activation(MEMORY_ACT, 2, tanh, sigmoid, dtype, inline)
    tanh_act, tanh_back = pointwise.activation(TANH, 0, tanh, sigmoid, dtype, inline)
    gate_back = pointwise.sigmoid_back(dtype, inline)
    keep, remember, remember_back = pointwise.lstm_memory(HAS_I, HAS_F, CIFG, dtype, inline)

    @kernel
    def views(params, n_in, n_hidden, n_out):
        """Named views of the flat vector, in spec.py's block order; absent extras are empty."""
        H = n_hidden
        G = n_slots * H
        n_peep = H if PEEP else 0
        n_fgr = 3 * H if FGR else 0
        n_net = H if (SINGLE or NET_READOUT or USE_GATE) else 0
        n_use = H if USE_GATE else 0
        k = 0
        W = params[k : k + G * n_in].reshape((G, n_in))
        k += G * n_in
        R = params[k : k + G * H].reshape((G, H))
        k += G * H
        b = params[k : k + G]
        k += G
        peep = params[k : k + 3 * n_peep].reshape((3, n_peep))
        k += 3 * n_peep
        R_gates = params[k : k + n_fgr * n_fgr].reshape((n_fgr, n_fgr))
        k += n_fgr * n_fgr
        P = params[k : k + n_net * n_net].reshape((n_net, n_net))  # P_c, P_h or W_u
        k += n_net * n_net
        b_u = params[k : k + n_use]
        k += n_use
        W_out = params[k : k + n_out * H].reshape((n_out, H))
        k += n_out * H
        b_out = params[k : k + n_out]
        return W, R, b, peep, R_gates, P, b_u, W_out, b_out

    @kernel(**CELL_LOOPS)
    def forward(params, x, n_hidden, n_out):
        """Run the cell over x [T,B,I]; returns the state (h, c, gates, aux, ifo, one_hot, hot).

        gates [T,B,G] post-activation; aux [T,B,H] holds act(c_t) (or u_t for use_gate);
        ifo [T,B,3H] the i, f, o gate values again, contiguous, for full gate recurrence;
        one_hot, hot [T,B]: whether x is one-hot, each row's column (kernels/one_hot.py).
        """
        T, B, n_in = x.shape
        H = n_hidden
        G = n_slots * H
        W, R, b, peep, R_gates, P, b_u, _, _ = views(params, n_in, H, n_out)
        gates = aligned_empty((T, B, G), x)
        h = aligned_empty((T, B, H), x)
        c = aligned_empty((T, B, H), x)
        aux = aligned_empty((T, B, H), x)
        ifo = np.zeros((T if FGR else 0, B, 3 * H), dtype=x.dtype)
        # One product a step gives R h_{t-1} + W x_t = [h_{t-1}, x_t] · [R, W]ᵀ: the input
        # projection rides on the recurrent product's register tiles (K = H + I) instead of
        # a separate K = I matrix product over the sequence. One-hot inputs instead add
        # a column of W after the product on h_{t-1} alone (kernels/one_hot.py).
        one_hot, hot = one_hot_columns(x)
        n_dense = 0 if one_hot else n_in  # input columns the product carries
        R_operand = forward_operand(np.concatenate((R, W[:, :n_dense]), axis=1))  # packed once
        W_columns = input_columns(W, one_hot)  # Wᵀ and a zero row, one-hot only
        h_x = np.zeros((0 if one_hot else B, H + n_in), dtype=x.dtype)  # [h_{t-1}, x_t], dense only
        recurrent = product_out(B, G, x)  # [:, :G] = R h + W x
        recurrent_t = np.empty((G, B), dtype=x.dtype)
        # The extra matrices' per-step products run on the same register tiles (their
        # outputs padded to the tiles' width; only the first columns are read).
        n_fgr, n_net = 3 * H if FGR else 0, H if NET else 0
        gates_operand = forward_operand(R_gates)  # R_gates [i;f;o]_{t-1} (fgr)
        net_operand = forward_operand(P)  # P_c c_{t-1}, P_h c_t or W_u (f ⊙ c_{t-1})
        gate_feedback = product_out(B, n_fgr, x)
        gate_scratch = np.empty((n_fgr, B), dtype=x.dtype)
        memory_feedback = product_out(B, H if SINGLE else 0, x)
        read = product_out(B, 0 if GATED_READ else H, x)
        net_scratch = np.empty((n_net, B), dtype=x.dtype)
        forgotten = np.zeros((B, H if USE_GATE else 0), dtype=x.dtype)
        zero_state = aligned_zeros((B, H), x)
        for t in range(T):
            h_prev = h[t - 1] if t > 0 else zero_state
            c_prev = c[t - 1] if t > 0 else zero_state
            if one_hot:
                recurrent_product(h_prev, R_operand, recurrent, recurrent_t)  # R h_{t-1}
                add_input_columns(recurrent, W_columns, hot[t])  # + W x_t
            else:
                for bb in range(B):
                    if t > 0:
                        for j in range(H):
                            h_x[bb, j] = h_prev[bb, j]
                    for i in range(n_in):
                        h_x[bb, H + i] = x[t, bb, i]
                recurrent_product(h_x, R_operand, recurrent, recurrent_t)  # R h_{t-1} + W x_t
            if t > 0:
                if FGR:
                    # R_gates [i;f;o]_{t-1}
                    recurrent_product(ifo[t - 1], gates_operand, gate_feedback, gate_scratch)
                if SINGLE:
                    recurrent_product(c_prev, net_operand, memory_feedback, net_scratch)  # P_c c
            # Pointwise, one batch row at a time, one short loop per gate: each loop touches
            # few arrays, so LLVM can prove them disjoint and vectorise it. Views are taken
            # per step, not per row: each view of an array costs an atomic incref/decref
            # pair (a fifth of the kernel time at H=64 when they were per row).
            a = gates[t]  # [B,G] post-activation
            rec, cp, ct, act, ht = recurrent, c_prev, c[t], aux[t], h[t]
            for bb in range(B):
                if HAS_I:
                    k0 = I_SLOT * H
                    for j in range(H):
                        pre = rec[bb, k0 + j] + b[k0 + j]
                        if PEEP:
                            pre += peep[0, j] * cp[bb, j]
                        if FGR:
                            pre += gate_feedback[bb, j]
                        a[bb, k0 + j] = sigmoid(pre)  # i = σ(a_i)
                if HAS_F:
                    k0 = F_SLOT * H
                    for j in range(H):
                        pre = rec[bb, k0 + j] + b[k0 + j]
                        if PEEP:
                            pre += peep[1, j] * cp[bb, j]
                        if FGR:
                            pre += gate_feedback[bb, H + j]
                        a[bb, k0 + j] = sigmoid(pre)  # f = σ(a_f)
                k0 = G_SLOT * H
                if SINGLE:
                    for j in range(H):
                        # c_t = tanh(a_c + P_c c_{t-1}), kept in the g slot as well
                        pre = rec[bb, k0 + j] + b[k0 + j]
                        value = tanh_act(pre + memory_feedback[bb, j])
                        a[bb, k0 + j] = value
                        ct[bb, j] = value
                else:
                    for j in range(H):
                        a[bb, k0 + j] = input_act(rec[bb, k0 + j] + b[k0 + j])
                    # c_t = f ⊙ c_{t-1} + i ⊙ g  (i = 1 for nig, f = 1 for nfg, f = 1 − i for cifg)
                    ki, kf = I_SLOT * H, F_SLOT * H
                    for j in range(H):
                        ig = a[bb, ki + j] if HAS_I else one
                        fg = keep(ig, a[bb, kf + j] if HAS_F else one)
                        ct[bb, j] = remember(fg, cp[bb, j], ig, a[bb, k0 + j])
                        if USE_GATE:
                            forgotten[bb, j] = fg * cp[bb, j]
                if HAS_O:
                    k0 = O_SLOT * H
                    for j in range(H):
                        pre = rec[bb, k0 + j] + b[k0 + j]
                        if PEEP:
                            pre += peep[2, j] * ct[bb, j]
                        if FGR:
                            pre += gate_feedback[bb, 2 * H + j]
                        a[bb, k0 + j] = sigmoid(pre)  # o = σ(a_o), peephole on c_t
                if FGR:
                    for j in range(H):
                        ifo[t, bb, j] = a[bb, I_SLOT * H + j]
                        ifo[t, bb, H + j] = a[bb, F_SLOT * H + j]
                        ifo[t, bb, 2 * H + j] = a[bb, O_SLOT * H + j]
                if GATED_READ:
                    for j in range(H):
                        act[bb, j] = memory_act(ct[bb, j])
                    if HAS_O:
                        k0 = O_SLOT * H
                        for j in range(H):
                            ht[bb, j] = a[bb, k0 + j] * act[bb, j]  # h_t = o ⊙ act(c_t)
                    else:
                        for j in range(H):
                            ht[bb, j] = act[bb, j]
            if NET_READOUT:
                recurrent_product(c[t], net_operand, read, net_scratch)  # P_h c_t
                for bb in range(B):
                    for j in range(H):
                        k = O_SLOT * H + j
                        hv = tanh_act(recurrent[bb, k] + b[k] + read[bb, j])
                        a[bb, k] = hv
                        h[t, bb, j] = hv
            if USE_GATE:
                recurrent_product(forgotten, net_operand, read, net_scratch)  # W_u (f ⊙ c)
                for bb in range(B):
                    for j in range(H):
                        u = tanh_act(read[bb, j] + b_u[j])
                        aux[t, bb, j] = u
                        h[t, bb, j] = u * a[bb, O_SLOT * H + j]
        return h, c, gates, aux, ifo, one_hot, hot

    @kernel(**CELL_LOOPS)
    def backward(params, x, n_hidden, n_out, state, dh_out, grad, flow):
        """Backpropagate dL/dh_t [T,B,H] (from the readout) through time; adds into grad.

        Returns (dh_sq [T], dc_sq [T]): squared Euclidean norms over the chunk of the total
        dL/dh_t and dL/dc_t — the error flow the diagnostics plot — where ``flow``, else zeros
        (training skips them: 3% of a step at H=64).
        """
        h, c, gates, aux, ifo, one_hot, hot = state
        T, B, n_in = x.shape
        H = n_hidden
        G = n_slots * H
        W, R, b, peep, R_gates, P, b_u, _, _ = views(params, n_in, H, n_out)
        dW, dR, db, dpeep, dR_gates, dP, db_u, _, _ = views(grad, n_in, H, n_out)
        da = aligned_empty((B, G), x)  # dL/da_t, all gates, this step
        # every step's dL/da, for the weight gradients (weight_grads.py); one-hot inputs
        # leave x_t out and collect dL/dW by column instead (kernels/one_hot.py)
        n_dense = 0 if one_hot else n_in
        stacked = stacked_inputs(x[:, :, :n_dense], h)  # [x_t, h_{t-1}, 1]
        dW_columns = np.zeros((n_in + 1 if one_hot else 0, G), dtype=x.dtype)  # dL/dWᵀ
        d_store, d_totals = gradient_store(T, B, G, stacked.shape[1], x)
        d_ifo = np.zeros((T if FGR else 0, B, 3 * H), dtype=x.dtype)
        d_net = np.zeros((T if NET else 1, B, H if NET else 0), dtype=x.dtype)
        R_operand = backward_operand(R)  # R packed for the per-step product
        dh_next = product_out(B, H, x)  # [:, :H]: dL/dh_t via R h_t
        # dL/dc_t from step t+1, [:, :H] (tile-padded: single_net's P_c product lands here)
        dc_next = product_out(B, H, x)
        n_fgr = 3 * H if FGR else 0
        gates_operand = backward_operand(R_gates)  # into [i;f;o]_{t-1} (fgr)
        net_operand = backward_operand(P)  # through P_c, P_h or W_u
        d_gates_next = product_out(B, n_fgr, x)  # [:, :3H]
        d_read = product_out(B, 0 if GATED_READ else H, x)
        dc = aligned_empty((B, H), x)
        dh = aligned_empty((B, H), x)
        zero_state = aligned_zeros((B, H), x)
        dh_norm = np.zeros(T)
        dc_norm = np.zeros(T)
        for t in range(T - 1, -1, -1):
            a = gates[t]
            c_prev = c[t - 1] if t > 0 else zero_state
            for bb in range(B):
                for j in range(H):
                    dh[bb, j] = dh_out[t, bb, j] + dh_next[bb, j]  # from y_t and from step t+1
            if flow:
                dh_norm[t] = sum_squares(dh)
            # One batch row at a time, one short loop per gate (few arrays per loop, so
            # LLVM proves them disjoint and vectorises); views per step, not per row (each
            # view costs an atomic incref/decref pair).
            ct, act, dnet = c[t], aux[t], d_net[t if NET else 0]
            # Pass 1: into the read-out of the memory, giving dL/dc_t from h_t.
            for bb in range(B):
                if GATED_READ:
                    k0 = O_SLOT * H
                    for j in range(H):
                        d_act = dh[bb, j] * a[bb, k0 + j] if HAS_O else dh[bb, j]
                        # into c_t through the memory activation, plus dL/dc_t from step t+1
                        dc[bb, j] = dc_next[bb, j] + memory_back(d_act, act[bb, j])
                    if HAS_O:
                        for j in range(H):
                            og = a[bb, k0 + j]
                            do = dh[bb, j] * act[bb, j]
                            if FGR:
                                do += d_gates_next[bb, 2 * H + j]
                            da[bb, k0 + j] = gate_back(do, og)  # into a_o through σ
                        if PEEP:
                            for j in range(H):  # into c_t via the o peephole
                                dc[bb, j] += da[bb, k0 + j] * peep[2, j]
                                dpeep[2, j] += da[bb, k0 + j] * ct[bb, j]
                elif NET_READOUT:
                    k0 = O_SLOT * H
                    for j in range(H):
                        dah = tanh_back(dh[bb, j], a[bb, k0 + j])  # into a_h + P_h c_t via tanh
                        da[bb, k0 + j] = dah
                        dnet[bb, j] = dah
                    for j in range(H):
                        dc[bb, j] = dc_next[bb, j]
                else:  # USE_GATE: h = u ⊙ o, u = tanh(W_u (f ⊙ c_{t-1}) + b_u)
                    k0 = O_SLOT * H
                    for j in range(H):
                        # into a_o via σ
                        da[bb, k0 + j] = gate_back(dh[bb, j] * act[bb, j], a[bb, k0 + j])
                    for j in range(H):
                        # into W_u (f ⊙ c_{t-1}) + b_u through tanh
                        dnet[bb, j] = tanh_back(dh[bb, j] * a[bb, k0 + j], act[bb, j])
                        db_u[j] += dnet[bb, j]
                    for j in range(H):
                        dc[bb, j] = dc_next[bb, j]
            if NET_READOUT:
                backprop_product(d_net[t], net_operand, d_read)  # into c_t through P_h
                for bb in range(B):
                    for j in range(H):
                        dc[bb, j] += d_read[bb, j]
            if USE_GATE:
                backprop_product(d_net[t], net_operand, d_read)  # into f ⊙ c_{t-1} via W_u
            if flow:
                dc_norm[t] = sum_squares(dc)
            # Pass 2: into the gates and c_{t-1}.
            ki, kf, kg = I_SLOT * H, F_SLOT * H, G_SLOT * H
            for bb in range(B):
                if SINGLE:
                    for j in range(H):
                        dnet[bb, j] = tanh_back(dc[bb, j], a[bb, kg + j])  # into a_c + P_c c_{t-1}
                        da[bb, kg + j] = dnet[bb, j]
                    continue
                # One loop per gate, each through remember_back (c_t = f ⊙ c_{t-1} + i ⊙ g);
                # LLVM drops the parts a loop does not store.
                for j in range(H):  # into a_g through the input activation
                    ig = a[bb, ki + j] if HAS_I else one
                    _, _, _, dg = remember_back(dc[bb, j], one, c_prev[bb, j], ig, a[bb, kg + j])
                    da[bb, kg + j] = input_back(dg, a[bb, kg + j])
                if HAS_I:
                    for j in range(H):  # into a_i through σ
                        ig = a[bb, ki + j]
                        gv = a[bb, kg + j]
                        _, _, di, _ = remember_back(dc[bb, j], one, c_prev[bb, j], ig, gv)
                        if FGR:
                            di += d_gates_next[bb, j]
                        da[bb, ki + j] = gate_back(di, ig)
                if HAS_F:
                    for j in range(H):  # into a_f through σ (+ the use gate's share)
                        fg = a[bb, kf + j]
                        df, _, _, _ = remember_back(dc[bb, j], fg, c_prev[bb, j], one, one)
                        if USE_GATE:
                            df += d_read[bb, j] * c_prev[bb, j]
                        if FGR:
                            df += d_gates_next[bb, H + j]
                        da[bb, kf + j] = gate_back(df, fg)
                # into c_{t-1} through the forget gate (and the use gate, the peepholes)
                for j in range(H):
                    ig = a[bb, ki + j] if HAS_I else one
                    fg = keep(ig, a[bb, kf + j] if HAS_F else one)
                    _, d_prev, _, _ = remember_back(dc[bb, j], fg, c_prev[bb, j], ig, one)
                    dc_next[bb, j] = d_prev
                    if USE_GATE:
                        dc_next[bb, j] += d_read[bb, j] * fg
                if PEEP:
                    for j in range(H):
                        dc_next[bb, j] += da[bb, ki + j] * peep[0, j] + da[bb, kf + j] * peep[1, j]
                        dpeep[0, j] += da[bb, ki + j] * c_prev[bb, j]
                        dpeep[1, j] += da[bb, kf + j] * c_prev[bb, j]
            if SINGLE:
                backprop_product(d_net[t], net_operand, dc_next)  # into c_{t-1} via P_c
            if FGR:
                for bb in range(B):
                    for j in range(H):
                        d_ifo[t, bb, j] = da[bb, I_SLOT * H + j]
                        d_ifo[t, bb, H + j] = da[bb, F_SLOT * H + j]
                        d_ifo[t, bb, 2 * H + j] = da[bb, O_SLOT * H + j]
                backprop_product(d_ifo[t], gates_operand, d_gates_next)  # into [i;f;o]_{t-1}
            backprop_product(da, R_operand, dh_next)  # into h_{t-1} through R
            if one_hot:
                add_to_columns(dW_columns, da, hot[t])  # dL/dW, column by column
            store_step(d_store, d_totals, da, t, stacked)
        # W, R and b: the chunks' products, added up during the loop (weight_grads.py).
        grad_W, grad_R, grad_b = stored_weight_grads(d_store, d_totals, stacked, n_dense, G)
        if one_hot:
            dW += dW_columns[:n_in].T
        else:
            dW += grad_W
        dR += grad_R
        db += grad_b
        if T > 1:
            if FGR:
                dR_gates += np.dot(
                    d_ifo[1:].reshape(((T - 1) * B, 3 * H)).T,
                    ifo[:-1].reshape(((T - 1) * B, 3 * H)),
                )
            if SINGLE:
                dP += np.dot(
                    d_net[1:].reshape(((T - 1) * B, H)).T, c[:-1].reshape(((T - 1) * B, H))
                )
        if NET_READOUT:
            dP += np.dot(d_net.reshape((T * B, H)).T, c.reshape((T * B, H)))
        if USE_GATE:
            forgotten = np.zeros((T, B, H), dtype=x.dtype)  # f ⊙ c_{t-1}
            for t in range(1, T):
                for bb in range(B):
                    for j in range(H):
                        forgotten[t, bb, j] = gates[t, bb, F_SLOT * H + j] * c[t - 1, bb, j]
            dP += np.dot(d_net.reshape((T * B, H)).T, forgotten.reshape((T * B, H)))
        return dh_norm, dc_norm

    return views, forward, backward
