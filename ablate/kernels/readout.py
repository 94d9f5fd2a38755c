"""The linear readout and the masked losses every model ends in (whole-sequence, compiled).

    y_t = W_out h_t + b_out                                       y: [T,B,O]
    xent: ℓ(t,b) = logsumexp(y_tb) − y_tb[target_tb]              target: int64 [T,B]
    mse:  ℓ(t,b) = mean_o (y_tbo − target_tbo)²                    target: [T,B,O]
    loss = Σ_tb mask_tb ℓ(t,b) / Σ_tb mask_tb                     mask: [T,B]

``scale`` is 1/Σ mask over the whole batch, passed in so that batch chunks processed on
different threads add up to the same loss and gradient.
"""

import numpy as np

from ablate.kernels.jit import kernel


@kernel
def readout_forward(hs, W_out, b_out):
    """y [N,O] = hs [N,H] W_outᵀ + b_out."""
    y = np.dot(hs, W_out.T)
    for n in range(y.shape[0]):
        for k in range(y.shape[1]):
            y[n, k] += b_out[k]
    return y


@kernel
def xent_loss_grad(y, target, mask, scale, dy):
    """Masked softmax cross-entropy; writes dℓ/dy into dy [N,O]; returns the scaled loss sum.

    dloss/dy = scale · mask · (softmax(y) − onehot(target))
    """
    total = 0.0
    n_out = y.shape[1]
    for n in range(y.shape[0]):
        weight = mask[n]
        if weight == 0:
            for k in range(n_out):
                dy[n, k] = 0
            continue
        peak = y[n, 0]
        for k in range(1, n_out):
            peak = max(peak, y[n, k])
        norm = 0.0
        for k in range(n_out):
            norm += np.exp(y[n, k] - peak)
        log_norm = peak + np.log(norm)
        total += weight * (log_norm - y[n, target[n]])
        for k in range(n_out):
            dy[n, k] = scale * weight * np.exp(y[n, k] - log_norm)
        dy[n, target[n]] -= scale * weight
    return total * scale


@kernel
def mse_loss_grad(y, target, mask, scale, dy):
    """Masked mean squared error; writes dℓ/dy into dy [N,O]; returns the scaled loss sum.

    dloss/dy = scale · mask · 2 (y − target) / O
    """
    total = 0.0
    n_out = y.shape[1]
    for n in range(y.shape[0]):
        weight = mask[n]
        for k in range(n_out):
            diff = y[n, k] - target[n, k]
            total += weight * diff * diff / n_out
            dy[n, k] = scale * weight * 2 * diff / n_out
    return total * scale


@kernel
def readout_backward(dy, hs, W_out, dW_out, db_out):
    """Adds dW_out += dyᵀ hs and db_out += Σ dy; returns dL/dh [N,H] = dy W_out."""
    dW_out += np.dot(dy.T, hs)
    for n in range(dy.shape[0]):
        for k in range(dy.shape[1]):
            db_out[k] += dy[n, k]
    return np.dot(dy, W_out)
