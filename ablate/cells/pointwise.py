"""The cells' pointwise math, written once and compiled for both targets.

Each factory takes the target's decorator — ``ablate.kernels.jit.inline`` for the CPU
kernels, ``cuda.jit(device=True)`` for the CUDA ones — with that target's tanh and σ and
the variant's flags, and returns scalar functions of one unit: the activations with their
backward (the derivative taken from the stored output) and each family's gate algebra with
its chain rule. The kernels around them only index, sum pre-activations and multiply
matrices, so the CPU and the GPU cannot disagree on an equation.

Backward functions take the incoming gradient first and multiply left to right
(``d * y * (1 − y)``), the order the CPU kernels always used, so their results are
bit-for-bit what they were before this module existed.
"""

from __future__ import annotations

# Activation kinds of the LSTM family: g = act(a_g) and h = o ⊙ act(c).
TANH, LINEAR, SIGMOID, SCALED_SIGMOID = 0, 1, 2, 3  # SCALED: kσ(a) − k/2


def activation(kind: int, k: int, tanh, sigmoid, dtype, jit) -> tuple:
    """(act, act_back) of one kind: y = act(a) and dL/da = act_back(dL/dy, y).

    TANH: y = tanh(a), act' = 1 − y²;  LINEAR: y = a, act' = 1;  SIGMOID: y = σ(a),
    act' = y(1 − y);  SCALED_SIGMOID: y = kσ(a) − k/2, act' = kσ(1 − σ) = (k/2 + y)(k/2 − y)/k
    (Hochreiter & Schmidhuber 1997: k = 4 for g, 2 for h).
    """
    one = dtype.type(1)
    scale, half = dtype.type(k), dtype.type(k / 2)

    @jit
    def act(a):
        if kind == TANH:
            return tanh(a)
        if kind == LINEAR:
            return a
        if kind == SIGMOID:
            return sigmoid(a)
        return scale * sigmoid(a) - half

    @jit
    def act_back(d, y):
        if kind == TANH:
            return d * (one - y * y)
        if kind == LINEAR:
            return d
        if kind == SIGMOID:
            return d * y * (one - y)
        return d * (half + y) * (half - y) / scale

    return act, act_back


def sigmoid_back(dtype, jit):
    """dL/da = d·s(1 − s) for a gate s = σ(a)."""
    one = dtype.type(1)

    @jit
    def gate_back(d, s):
        return d * s * (one - s)

    return gate_back


def lstm_memory(has_i: bool, has_f: bool, cifg: bool, dtype, jit) -> tuple:
    """(keep, remember, remember_back) of the LSTM family's memory update

        c_t = f ⊙ c_{t-1} + i ⊙ g    with i = 1 without an input gate (nig),
                                     f = 1 − i for cifg, f = 1 without a forget gate (nfg).

    keep(i, f) is the forget factor actually applied (f as given where the cell has a
    forget gate). remember_back(dc, f, c_{t-1}, i, g) = (dL/df, dL/dc_{t-1}, dL/di, dL/dg)
    for dc = dL/dc_t, with cifg's dL/di = dc ⊙ g − dc ⊙ c_{t-1} (through f = 1 − i).
    """
    one = dtype.type(1)

    @jit
    def keep(ig, fg):
        if has_f:
            return fg
        if cifg:
            return one - ig
        return one

    @jit
    def remember(fg, c_prev, ig, gv):
        return fg * c_prev + ig * gv

    @jit
    def remember_back(dc, fg, c_prev, ig, gv):
        d_i = dc * gv - dc * c_prev if cifg else dc * gv
        d_g = dc * ig if has_i else dc
        return dc * c_prev, dc * fg, d_i, d_g

    return keep, remember, remember_back


def elman(relu: bool, tanh, dtype, jit) -> tuple:
    """(step, step_back) of rnn/irnn: h = act(a), act = relu or tanh; dL/da from h."""
    zero, one = dtype.type(0), dtype.type(1)

    @jit
    def step(a):
        if relu:
            return a if a > zero else zero
        return tanh(a)

    @jit
    def step_back(d, hv):
        if relu:
            return d if hv > zero else zero  # relu' = [h > 0]
        return d * (one - hv * hv)

    return step, step_back


def gru(tanh, sigmoid, dtype, jit) -> tuple:
    """(step, step_back) of torch.nn.GRU for one unit:

        r = σ(a_r)  z = σ(a_z)  n = tanh(a_n + r ⊙ hn)  h = (1 − z) ⊙ n + z ⊙ h_{t-1}

    with a_n = W_n x_t + b_n and hn = R_n h_{t-1} + b_hn. step returns (r, z, n, h);
    step_back(d, r, z, n, hn, h_{t-1}) returns (dL/dh_{t-1} through z ⊙ h_{t-1},
    dL/da_r, dL/da_z, dL/da_n, dL/dhn) for d = dL/dh_t.
    """
    one = dtype.type(1)

    @jit
    def step(a_r, a_z, a_n, hn, h_prev):
        r = sigmoid(a_r)
        z = sigmoid(a_z)
        n = tanh(a_n + r * hn)  # the reset gate scales R_n h_{t-1} + b_hn
        return r, z, n, (one - z) * n + z * h_prev

    @jit
    def step_back(d, r, z, n, hn, h_prev):
        dan = d * (one - z) * (one - n * n)  # through (1 − z) ⊙ n and tanh
        daz = d * (h_prev - n) * z * (one - z)  # through z ⊙ (h_{t-1} − n) and σ
        dar = dan * hn * r * (one - r)  # through r ⊙ hn and σ
        return d * z, dar, daz, dan, dan * r

    return step, step_back


def minimal(normalised: bool, sigmoid, dtype, jit) -> tuple:
    """(step, step_back) of minGRU / minLSTM (Feng et al. 2024) for one unit, h̃ linear:

        mingru:  z = σ(a_z);  h_t = (1 − z) ⊙ h_{t-1} + z ⊙ h̃
        minlstm: f = σ(a_f)  i = σ(a_i)  f' = f/(f+i)  i' = i/(f+i);  h_t = f' ⊙ h_{t-1} + i' ⊙ h̃

    step(a_zf, a_i, h̃, h_{t-1}) returns (z or f, i (0 for mingru), h_t);
    step_back(d, z or f, i, h̃, h_{t-1}) returns (dL/dh_{t-1}, dL/da_zf, dL/da_i, dL/dh̃).
    """
    zero, one = dtype.type(0), dtype.type(1)

    @jit
    def step(a_zf, a_i, h_tilde, h_prev):
        if normalised:
            f = sigmoid(a_zf)
            i = sigmoid(a_i)
            total = f + i
            return f, i, (f / total) * h_prev + (i / total) * h_tilde
        z = sigmoid(a_zf)
        return z, zero, (one - z) * h_prev + z * h_tilde

    @jit
    def step_back(d, zf, i, h_tilde, h_prev):
        if normalised:
            f = zf
            inv_total = one / (f + i)
            # i' = 1 − f', so h_t = f' ⊙ (h_{t-1} − h̃) + h̃ and dL/df' = d ⊙ (h_{t-1} − h̃);
            # f' = f/(f+i) has ∂f'/∂f = i/(f+i)², ∂f'/∂i = −f/(f+i)².
            d_norm = d * (h_prev - h_tilde) * inv_total * inv_total
            return (d * (f * inv_total), d_norm * i * f * (one - f),
                    -d_norm * f * i * (one - i), d * (i * inv_total))
        z = zf
        # into h_{t-1} through 1 − z, into a_z through z ⊙ (h̃ − h_{t-1}) and σ, into h̃ via z
        return d * (one - z), d * (h_tilde - h_prev) * z * (one - z), zero, d * z

    return step, step_back
