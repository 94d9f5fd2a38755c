"""Cell-independent drivers: readout and loss around a cell family's kernels, per batch chunk.

A cell family provides ``forward(params, x, n_hidden, n_out) -> state`` (``state[0]`` is
h [T,B,H], ``state[1]`` is c [T,B,H] or [T,B,0]) and
``backward(params, x, n_hidden, n_out, state, dh_out, grad, flow) -> (dh_sq [T], dc_sq [T])``
(the error-flow norms where ``flow``, else zeros: training does not read them).
The readout blocks W_out [O,H], b_out [O] are always the last entries of the flat vector.

The loss is a run-time code (XENT or MSE) rather than a compile-time flag, so each cell
compiles once per precision; the unused target array is passed empty.
"""

import numpy as np

from ablate.kernels.aligned import aligned_zeros
from ablate.kernels.jit import kernel
from ablate.kernels.readout import (
    mse_loss_grad,
    readout_backward,
    readout_forward,
    xent_loss_grad,
)

XENT, MSE = 0, 1
LOSS_CODES = {"xent": XENT, "mse": MSE}


@kernel
def readout_views(params, n_hidden, n_out):
    """(W_out [O,H], b_out [O]): the tail of the flat vector."""
    n = params.size
    W_out = params[n - n_out - n_out * n_hidden : n - n_out].reshape((n_out, n_hidden))
    return W_out, params[n - n_out :]


def make_drivers(forward, backward) -> tuple:
    """(chunk_loss_grad, chunk_predict) compiled kernels for one cell family and precision."""

    @kernel
    def chunk_loss_grad(
        params, x, target_class, target_value, mask, loss_code, n_hidden, n_out, scale, grad,
        flow,
    ):
        """Loss·scale of one batch chunk; adds its gradient into grad [P].

        x [T,B,I]; target_class int64 [T,B] (xent) or target_value [T,B,O] (mse); mask [T,B].
        Returns (loss·scale, dh_sq [T], dc_sq [T]); the norms are zeros unless ``flow``.
        """
        T, B, _ = x.shape
        N = T * B
        H = n_hidden
        state = forward(params, x, n_hidden, n_out)
        hs = state[0].reshape((N, H))
        W_out, b_out = readout_views(params, n_hidden, n_out)
        dW_out, db_out = readout_views(grad, n_hidden, n_out)
        # Only the scored (t, b) reach the loss: the readout, its loss and its gradient run
        # on those rows alone (most tasks score a few steps at the end of a long sequence).
        flat_mask = mask.reshape(N)
        scored = np.nonzero(flat_mask)[0]
        K = scored.size
        hs_scored = np.empty((K, H), dtype=hs.dtype)
        for k in range(K):
            hs_scored[k] = hs[scored[k]]
        y = readout_forward(hs_scored, W_out, b_out)
        dy = np.empty_like(y)
        if loss_code == XENT:
            loss = xent_loss_grad(y, target_class.reshape(N)[scored], flat_mask[scored], scale,
                                  dy)
        else:
            loss = mse_loss_grad(y, target_value.reshape((N, n_out))[scored], flat_mask[scored],
                                 scale, dy)
        dh_scored = readout_backward(dy, hs_scored, W_out, dW_out, db_out)
        dh = aligned_zeros((T, B, H), hs)
        flat_dh = dh.reshape((N, H))
        for k in range(K):
            flat_dh[scored[k]] = dh_scored[k]
        dh_sq, dc_sq = backward(params, x, n_hidden, n_out, state, dh, grad, flow)
        return loss, dh_sq, dc_sq

    @kernel
    def chunk_predict(params, x, n_hidden, n_out):
        """(y [T,B,O], h [T,B,H], c [T,B,H] or [T,B,0]) of one batch chunk."""
        T, B, _ = x.shape
        state = forward(params, x, n_hidden, n_out)
        W_out, b_out = readout_views(params, n_hidden, n_out)
        y = readout_forward(state[0].reshape((T * B, n_hidden)), W_out, b_out)
        return y.reshape((T, B, n_out)), state[0], state[1]

    return chunk_loss_grad, chunk_predict
