"""Clipping and Adam on the GPU: one block per model, after the backward kernel.

Per model m (grid = models, ADAM_THREADS threads), step s of the interval:
    g = Σ_tiles grad_tiles[m, tile, :]   (fixed order: deterministic)
    ‖g‖ in float64; loss = Σ_rows loss_rows[m, :]
    non-finite loss or ‖g‖: limit[m] ← s (this step and the rest are skipped, no update)
    g ← g · clip/‖g‖ where clip > 0 and ‖g‖ > clip
    Adam as ablate.kernels.adam.adam_step (torch.optim.Adam), step = first_step[m] + s
The loss and ‖g‖ (before clipping) go to losses[m, s], grad_norms[m, s] for the curve.
The matrices the forward kernels read transposed (W, R, R_gates or P where the cell has
them, W_out: ``ablate.cuda.device.TRANSPOSED``) are also written transposed to transposed[m]:
block b of ``blocks`` [n, 4] = (offset in params, rows, columns, offset in transposed).
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda, float64

from ablate.kernels.adam import make_update

ADAM_THREADS = 256  # block size of the Adam kernel (the shared reduction has this many slots)
BETA1, BETA2, EPS = 0.9, 0.999, 1e-8


def make_adam(dtype: np.dtype):
    """The Adam kernel for parameters of one precision."""
    cast = np.dtype(dtype).type
    weight1, decay2, weight2 = cast(1.0 - BETA1), cast(BETA2), cast(1.0 - BETA2)
    epsilon = cast(EPS)
    update = make_update(cuda.jit(device=True))  # ablate.kernels.adam's equations

    @cuda.jit
    def adam(params, m1, v1, grad_tiles, loss_rows, limit, first_step, lr, clip, s, losses,
             grad_norms, transposed, blocks):
        mdl = cuda.blockIdx.x
        if s >= limit[mdl]:
            return
        tid = cuda.threadIdx.x
        n_params = params.shape[1]
        n_tiles = grad_tiles.shape[1]
        partial = cuda.shared.array(ADAM_THREADS, float64)
        squares = 0.0
        for k in range(tid, n_params, ADAM_THREADS):
            g = grad_tiles[mdl, 0, k]
            for tile in range(1, n_tiles):
                g += grad_tiles[mdl, tile, k]
            grad_tiles[mdl, 0, k] = g
            squares += float64(g) * float64(g)
        partial[tid] = squares
        cuda.syncthreads()
        width = ADAM_THREADS // 2
        while width > 0:
            if tid < width:
                partial[tid] += partial[tid + width]
            cuda.syncthreads()
            width //= 2
        norm = math.sqrt(partial[0])
        loss = 0.0
        for r in range(loss_rows.shape[1]):
            loss += loss_rows[mdl, r]
        if tid == 0:
            losses[mdl, s] = loss
            grad_norms[mdl, s] = norm
        if not (math.isfinite(loss) and math.isfinite(norm)):
            cuda.syncthreads()
            if tid == 0:
                limit[mdl] = s
            return
        factor = clip[mdl] / norm if clip[mdl] > 0.0 and norm > clip[mdl] else 1.0
        step = first_step[mdl] + s
        # the scalars rounded to the parameters' dtype once, the loop in that dtype
        step_size = cast(lr[mdl] / (1.0 - BETA1**step))
        bias2_sqrt = cast(math.sqrt(1.0 - BETA2**step))
        for k in range(tid, n_params, ADAM_THREADS):
            g = grad_tiles[mdl, 0, k]
            if factor != 1.0:
                g = cast(g * factor)
            m1[mdl, k], v1[mdl, k], delta = update(g, m1[mdl, k], v1[mdl, k], weight1, decay2,
                                                   weight2, step_size, bias2_sqrt, epsilon)
            params[mdl, k] -= delta
            for b in range(blocks.shape[0]):  # keep Mᵀ [cols, rows] in step with M [rows, cols]
                at = k - blocks[b, 0]
                rows, cols = blocks[b, 1], blocks[b, 2]
                if 0 <= at < rows * cols:
                    transposed[mdl, blocks[b, 3] + (at % cols) * rows + at // cols] = params[mdl, k]

    return adam
