"""The readout and the masked losses as device functions, shared by every CUDA cell kernel.

Called by all threads of a block at step t of the forward kernel's time loop, after h_t
of the block's batch rows is written (ablate.kernels.readout is the CPU twin):

    y_t = W_out h_t + b_out                                  (only rows with mask > 0)
    xent: ℓ = logsumexp(y) − y[target]     dℓ/dy = softmax(y) − onehot(target)
    mse:  ℓ = mean_o (y_o − target_o)²    dℓ/dy = 2 (y − target) / O
    loss_rows[r] += scale · mask · ℓ;       dy = scale · mask · dℓ/dy   (0 where mask = 0)

dy [T,B,O] lives in the model's work vector at ``o_dy``; it first holds y, then dℓ/dy.
With loss code ``PREDICT`` (evaluation: ablate.cuda.evaluation) it keeps y, of every row
whatever its mask, and no loss is computed.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from ablate.cuda.index import at

XENT, MSE = 0, 1  # as ablate.kernels.driver.LOSS_CODES
PREDICT = 2  # outputs only: y of every row stays in dy


def make_readout(dtype) -> tuple:
    """(readout_step, readout_grad) device functions for one precision: dℓ/dh accumulates
    in the parameters' precision, the softmax normaliser in float64 (as on the CPU)."""
    zero = np.dtype(dtype).type(0)

    @cuda.jit(device=True)
    def readout_step(p, rt, w, o_wout_t, o_bout, o_h, o_dy, t, B, H, O, row0, rows, tid,
                     n_threads, mask_t, target_class_t, target_value_t, loss_code, scale,
                     loss_rows):
        """Logits, loss and dℓ/dy of step t for the block's rows; ends with a block barrier.

        W_out is read transposed (W_outᵀ [H, O] at o_wout_t in rt, ablate.cuda.device.
        TRANSPOSED): a warp's threads (outputs k, k+1, …) read adjacent words. mask_t [B],
        target_class_t [B], target_value_t [B,O] are step t's slices; loss_rows [B]
        accumulates each row's scaled, masked loss over t.
        """
        # Logits of the scored rows (of all when predicting), one (row, output) per thread.
        for e in range(tid, rows * O, n_threads):
            r = row0 + e // O
            k = e % O
            if mask_t[r] != 0 or loss_code == PREDICT:
                acc = p[o_bout + k]
                base_h = o_h + (t * B + r) * H
                for q in range(H):
                    acc += rt[at(o_wout_t + q * O + k)] * w[at(base_h + q)]
                w[o_dy + (t * B + r) * O + k] = acc
        cuda.syncthreads()
        if loss_code == PREDICT:
            return  # the barrier above ends the step: y stays for the host
        # Loss and its gradient, one row per thread (O is small: classes or targets).
        for rr in range(tid, rows, n_threads):
            r = row0 + rr
            base = o_dy + (t * B + r) * O
            weight = mask_t[r]
            if weight == 0:
                for k in range(O):
                    w[base + k] = 0
            elif loss_code == XENT:
                peak = w[base]
                for k in range(1, O):
                    peak = max(peak, w[base + k])
                norm = 0.0
                for k in range(O):
                    norm += math.exp(w[base + k] - peak)
                log_norm = peak + math.log(norm)
                target = target_class_t[r]
                loss_rows[r] += scale * weight * (log_norm - w[base + target])
                for k in range(O):
                    w[base + k] = scale * weight * math.exp(w[base + k] - log_norm)
                w[base + target] -= scale * weight
            else:
                total = 0.0
                for k in range(O):
                    diff = w[base + k] - target_value_t[r, k]
                    total += diff * diff / O
                    w[base + k] = scale * weight * 2 * diff / O
                loss_rows[r] += scale * weight * total
        cuda.syncthreads()


    @cuda.jit(device=True)
    def readout_grad(p, w, o_wout, o_dy, t, B, H, O, r, j, mask_t):
        """dL/dh_t[r, j] from the readout: Σ_o dy[t,r,o] W_out[o,j] (0 where mask = 0)."""
        acc = zero
        if mask_t[r] != 0:
            base = o_dy + (t * B + r) * O
            for k in range(O):
                acc += w[at(base + k)] * p[at(o_wout + k * H + j)]
        return acc

    return readout_step, readout_grad
