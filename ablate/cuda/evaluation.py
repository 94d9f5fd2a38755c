"""The validation batch scored with the device's forward: every running model's outputs
at once, their loss and metric computed on the host by the CPU backend's own code.

Why: between intervals each model's validation batch (512 sequences) was run through the
CPU kernels. At H 64 that is 16 ms a model, 0.82 of the 1.06 CPU-seconds a 5000-step GPU
run leaves on the host, enough to cap a sweep at ≈ 58 % of an H200 scored by 16 cores
(bench/cpu_share.py, bench/RESULTS.md). On the device the same batch costs one forward
per chunk for the whole ensemble.

How: the training forward kernel runs with loss code ``PREDICT`` (it keeps y of every row
and computes no loss) over the batch in chunks of the training batch's B rows, so the
ensemble's work vectors hold one chunk's states. Every model reads the same inputs
(x [1, chunks, T, B, I]). After each chunk, ``gather`` copies the outputs of the *scored*
steps (where any row's mask is set) out of the work vectors. The host gets
[M, steps, rows, O] and, for one model at a time, fills the other steps with NaN
(``outputs_of``). No task's loss or metric reads them: tests/test_cuda_evaluation.py
checks that for every task.
"""

from __future__ import annotations

import math
import weakref

import numpy as np
from numba import cuda

from ablate.cuda import memory, simulator
from ablate.cuda.device import empty, free_device_arrays, put
from ablate.cuda.readout import PREDICT

GATHER_THREADS = 256


@cuda.jit
def gather(work, start, steps, outputs, chunk, limit):
    """outputs[m, chunk, i] = y [B, O] of step steps[i], read from model m's work vector,
    where y [T, B, O] starts at ``start``; models with limit[m] ≤ chunk are skipped."""
    m = cuda.blockIdx.y
    if chunk >= limit[m]:
        return
    B, O = outputs.shape[3], outputs.shape[4]
    per_step = B * O
    stride = cuda.gridDim.x * cuda.blockDim.x
    for e in range(cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x,
                   steps.shape[0] * per_step, stride):
        i = e // per_step
        rest = e - i * per_step
        outputs[m, chunk, i, rest // O, rest % O] = work[m, start + steps[i] * per_step + rest]


def with_unscored_steps(scored: np.ndarray, steps: np.ndarray, T: int) -> np.ndarray:
    """y [T, N, O] from the outputs [len(steps), N, O] of the scored steps, NaN elsewhere."""
    y = np.full((T, *scored.shape[1:]), np.nan, scored.dtype)
    y[steps] = scored
    return y


class DeviceEvaluation:
    """One evaluation batch (x [T, N, I], mask [T, N]) on the device of ``ensemble``:
    ``predict`` runs the listed models over it, ``outputs_of`` gives one model's y."""

    def __init__(self, ensemble, x: np.ndarray, mask: np.ndarray) -> None:
        T, N, I = x.shape
        if (T, I) != (ensemble.T, ensemble.n_in) or mask.shape != (T, N):
            raise ValueError(f"evaluation inputs [T={T}, N={N}, I={I}] do not match the "
                             f"ensemble's T={ensemble.T}, I={ensemble.n_in}")
        self.ensemble = ensemble
        self.T, self.N = T, N
        B, M, O, dtype = ensemble.B, ensemble.M, ensemble.O, ensemble.dtype
        self.chunks = math.ceil(N / B)
        self.steps = np.flatnonzero(np.asarray(mask).any(axis=1))  # the scored steps
        padded = np.zeros((T, self.chunks * B, I), dtype)
        padded[:, :N] = x
        # [1, chunks, T, B, I]: chunk c is rows c·B … c·B + B − 1
        chunked = padded.reshape(T, self.chunks, B, I).transpose(1, 0, 2, 3)[None]
        self.stream = ensemble.stream
        with memory.admitted(id(self), self.bytes_needed(), 0, M):
            self._put("x", chunked)
            # what PREDICT ignores, in the shapes the forward slices
            self._put("mask", np.zeros((1, self.chunks, T, B), dtype))
            self._put("target_class", np.zeros((1, self.chunks, T, B), np.int64))
            self._put("target_value", np.zeros((1, self.chunks, T, B, 0), dtype))
            self._put("scale", np.zeros((1, self.chunks), dtype))
            self._put("steps_device", self.steps.astype(np.int64))
            self._put("limit", np.zeros(M, np.int64))
            self.outputs = empty((M, self.chunks, len(self.steps), B, O), dtype, self.stream)
        self._release = weakref.finalize(self, memory.release, id(self))

    def _put(self, name: str, host: np.ndarray) -> None:
        put(self, name, host, self.stream)

    def bytes_needed(self) -> int:
        """The inputs, the ignored targets and every model's gathered outputs."""
        e = self.ensemble
        f = e.dtype.itemsize
        rows = self.chunks * e.B
        return (rows * self.T * (e.n_in * f + f + 8) + self.chunks * f
                + len(self.steps) * 8 + e.M * 8 + e.M * rows * len(self.steps) * e.O * f)

    def predict(self, models) -> np.ndarray:
        """Outputs [M, scored steps, N, O] of the listed models (the others' are stale),
        with the parameters the ensemble has now."""
        e = self.ensemble
        limit = np.zeros(e.M, np.int64)
        limit[list(models)] = self.chunks
        self._put("limit", limit)
        start = e.kernels.output_offset(e.T, e.B, e.H, e.O)
        blocks = max(1, min(64, math.ceil(len(self.steps) * e.B * e.O / GATHER_THREADS)))
        for chunk in range(self.chunks):
            e.launch_forward(self.x, self.target_class, self.target_value, self.mask,
                             self.scale, self.limit, chunk, PREDICT)
            with simulator.turn():
                gather[(blocks, e.M), GATHER_THREADS, self.stream](
                    e.work, start, self.steps_device, self.outputs, chunk, self.limit)
        out = self.outputs.copy_to_host(stream=self.stream)
        self.stream.synchronize()
        M, C, S, B, O = out.shape
        return out.transpose(0, 2, 1, 3, 4).reshape(M, S, C * B, O)[:, :, :self.N]

    def outputs_of(self, predicted: np.ndarray, k: int) -> np.ndarray:
        """Model k's y [T, N, O]: the scored steps from ``predict``, NaN elsewhere."""
        return with_unscored_steps(predicted[k], self.steps, self.T)

    def close(self) -> None:
        """Free the device buffers now (after the stream's work)."""
        free_device_arrays(self)
