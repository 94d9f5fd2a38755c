"""An ensemble's state on the GPU and the three launches of one training step.

    ens = DeviceEnsemble("lstm", np.float32, n_models=16, T=100, B=32, n_in=10, H=64, O=9,
                         interval=100)
    ens.set_params(params)                       # [M, P] host array
    ens.load_interval(x, target_class, target_value, mask, limit, first_step, lr, clip)
    for s in range(n_steps): ens.step(s, loss_code)
    params, losses, grad_norms, limit = ens.fetch()

Tiling: a block owns ``tile_rows`` batch rows of one model; grid = (ceil(B / tile_rows), M).
A thread computes one unit of ``rows_per_thread`` rows at once (1 by default). The default
tile aims at about 256 threads per block, so at one row a thread a model spreads over
several SMs and 16 models fill an H100's 132 SMs; ``tile_rows``, ``threads`` and
``rows_per_thread`` can be given (tests use odd sizes to check the ragged paths;
bench/gpu.py times the choices).
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from ablate import cells
from ablate.cuda.adam import ADAM_THREADS, make_adam
from ablate.cuda.kernels import kernels

_ADAM: dict = {}
# The largest block launched: 256 threads × up to 255 registers each fit an SM's 65,536
# registers, so no kernel can fail to launch for lack of registers (ablate.cuda.resources).
MAX_THREADS = 256
# Rows a thread computes at once (one unit each, the weights loaded once for them): each is
# a compiled variant of the kernels, so the choice is a short list.
ROWS_PER_THREAD = (1, 2, 4, 8)
# The matrices the forward kernels would read by column, kept transposed beside the
# parameters (a warp's threads then read adjacent words, one transaction instead of 32):
# W x_t, R h_{t-1}, fgr's R_gates, the cell-state networks P_c (single_net), P_h
# (net_readout), W_u (use_gate), and the readout's W_out h_t. In flat-vector order in
# ``DeviceEnsemble.transposed``; a cell has W, R (but the min cells), at most one of the
# next four, and W_out.
TRANSPOSED = ("W", "R", "R_gates", "P_c", "P_h", "W_u", "W_out")


def default_tiling(B: int, H: int, rows_per_thread: int = 1) -> tuple[int, int]:
    """(tile_rows, threads) for a batch of B rows and H units: about MAX_THREADS threads
    per block, each taking one unit of rows_per_thread rows."""
    tile_rows = max(1, min(B, rows_per_thread * (MAX_THREADS // max(H, 1))))
    return tile_rows, threads_for(tile_rows, H, rows_per_thread)


def threads_for(tile_rows: int, H: int, rows_per_thread: int = 1) -> int:
    """Threads of a block of tile_rows rows: one per unit of each group of rows_per_thread
    rows, in whole warps, at most MAX_THREADS (the threads then take several each)."""
    groups = math.ceil(tile_rows / rows_per_thread)
    return min(MAX_THREADS, max(32, 32 * math.ceil(groups * H / 32)))


def transposed_blocks(spec, n_in: int, H: int, O: int) -> list[tuple[int, int, int, int]]:
    """[(offset in the flat parameters, rows, columns, offset in the transposed copy)] of the
    cell's ``TRANSPOSED`` matrices, in flat-vector order (W, R, R_gates or P, W_out)."""
    blocks, offset, at = [], 0, 0
    for name, shape in spec.block_shapes(n_in, H, O):
        size = math.prod(shape)
        if name in TRANSPOSED:
            blocks.append((offset, shape[0], shape[1], at))
            at += size
        offset += size
    return blocks


def check_memory(needed: int, n_models: int) -> None:
    """ValueError in one line when the ensemble cannot fit the GPU's free memory."""
    free, _ = cuda.current_context().get_memory_info()
    if needed > free:
        fit = max(1, int(n_models * free / needed))
        raise ValueError(f"an ensemble of {n_models} models needs {needed / 2**30:.1f} GiB of "
                         f"GPU memory, {free / 2**30:.1f} GiB are free; use --max-ensemble "
                         f"{fit} or fewer")


class DeviceEnsemble:
    """Parameters, Adam moments, one interval's batches and the work space of M models."""

    def __init__(self, cell: str, dtype, n_models: int, T: int, B: int, n_in: int, H: int,
                 O: int, interval: int, tile_rows: int | None = None,
                 threads: int | None = None, rows_per_thread: int = 1) -> None:
        self.cell, self.dtype = cell, np.dtype(dtype)
        self.M, self.T, self.B, self.n_in, self.H, self.O = n_models, T, B, n_in, H, O
        self.interval = interval
        if rows_per_thread not in ROWS_PER_THREAD:
            raise ValueError(f"rows_per_thread must be one of {ROWS_PER_THREAD}, "
                             f"got {rows_per_thread}")
        self.rows_per_thread = rows_per_thread
        self.kernels = kernels(cell, self.dtype, rows_per_thread)
        if self.dtype.name not in _ADAM:
            _ADAM[self.dtype.name] = make_adam(self.dtype)
        self.adam = _ADAM[self.dtype.name]
        self.tile_rows = tile_rows or default_tiling(B, H, rows_per_thread)[0]
        self.threads = threads or threads_for(self.tile_rows, H, rows_per_thread)
        if not 1 <= self.threads <= MAX_THREADS or not 1 <= self.tile_rows <= B:
            raise ValueError(f"threads must be in 1..{MAX_THREADS} and tile_rows in 1..{B}, "
                             f"got {self.threads} and {self.tile_rows}")
        self.n_tiles = math.ceil(B / self.tile_rows)
        spec = cells.get(cell)
        self.P = spec.n_params(n_in, H, O)
        self.blocks = transposed_blocks(spec, n_in, H, O)
        self.n_transposed = sum(rows * cols for _, rows, cols, _ in self.blocks)
        M, P, f = n_models, self.P, self.dtype
        check_memory(self.bytes_needed(), n_models)
        self.blocks_device = cuda.to_device(np.array(self.blocks, np.int64).reshape(-1, 4))
        self.params = cuda.to_device(np.zeros((M, P), f))
        self.transposed = cuda.to_device(np.zeros((M, self.n_transposed), f))
        self.m1 = cuda.to_device(np.zeros((M, P), f))
        self.v1 = cuda.to_device(np.zeros((M, P), f))
        self.work = cuda.device_array((M, self.kernels.work_size(T, B, H, O)), f)
        self.grad_tiles = cuda.device_array((M, self.n_tiles, P), f)
        self.loss_rows = cuda.device_array((M, B), np.float64)
        self.losses = cuda.to_device(np.full((M, interval), np.nan))
        self.grad_norms = cuda.to_device(np.full((M, interval), np.nan))

    def bytes_needed(self) -> int:
        """Device memory of the ensemble: parameters, the transposed matrices, Adam moments,
        work vectors, tile gradients and one upload of ``interval`` steps of batches."""
        f = self.dtype.itemsize
        M, T, B, H, O, S = self.M, self.T, self.B, self.H, self.O, self.interval
        per_model = (4 * self.P + self.n_transposed + self.kernels.work_size(T, B, H, O)
                     + self.n_tiles * self.P) * f + B * 8 + 2 * S * 8
        batches = S * T * B * ((self.n_in + 1 + O) * f + 8) + S * 8
        return M * (per_model + batches)

    def set_params(self, params: np.ndarray) -> None:
        """Upload [M, P] parameters (and the transposed matrices, which the Adam kernel keeps
        up to date); the Adam moments start at zero."""
        params = np.ascontiguousarray(params, self.dtype)
        self.params = cuda.to_device(params)
        transposed = np.empty((self.M, self.n_transposed), self.dtype)
        for offset, rows, cols, at in self.blocks:
            block = params[:, offset:offset + rows * cols].reshape(self.M, rows, cols)
            transposed[:, at:at + rows * cols] = block.transpose(0, 2, 1).reshape(self.M, -1)
        self.transposed = cuda.to_device(transposed)
        self.m1 = cuda.to_device(np.zeros_like(params, self.dtype))
        self.v1 = cuda.to_device(np.zeros_like(params, self.dtype))

    def load_interval(self, x, target_class, target_value, mask, limit, first_step, lr,
                      clip) -> None:
        """Upload one interval: x [M,S,T,B,I], target_class int [M,S,T,B], target_value
        [M,S,T,B,O] (or [M,S,T,B,0]), mask [M,S,T,B]; per model limit (steps to run, 0:
        none), first_step (Adam's t of step 0), lr and clip."""
        mask = np.ascontiguousarray(mask, self.dtype)
        weight = mask.sum(axis=(2, 3), dtype=np.float64)
        self.scale = cuda.to_device(np.where(weight > 0, 1.0 / np.where(weight > 0, weight, 1),
                                             0.0).astype(self.dtype))
        self.x = cuda.to_device(np.ascontiguousarray(x, self.dtype))
        self.target_class = cuda.to_device(np.ascontiguousarray(target_class, np.int64))
        self.target_value = cuda.to_device(np.ascontiguousarray(target_value, self.dtype))
        self.mask = cuda.to_device(mask)
        self.limit = cuda.to_device(np.asarray(limit, np.int64))
        self.first_step = cuda.to_device(np.asarray(first_step, np.int64))
        self.lr = cuda.to_device(np.asarray(lr, np.float64))
        self.clip = cuda.to_device(np.asarray(clip, np.float64))
        self.losses = cuda.to_device(np.full((self.M, self.interval), np.nan))
        self.grad_norms = cuda.to_device(np.full((self.M, self.interval), np.nan))

    def loss_and_grad(self, s: int, loss_code: int) -> None:
        """Forward and backward of step s: loss_rows and grad_tiles, no update."""
        grid = (self.n_tiles, self.M)
        self.kernels.forward[grid, self.threads](
            self.params, self.transposed, self.x, self.target_class, self.target_value,
            self.mask, self.scale, self.limit, s, loss_code, self.H, self.O, self.tile_rows,
            self.work, self.loss_rows)
        self.kernels.backward[grid, self.threads](
            self.params, self.x, self.mask, self.limit, s, self.H, self.O, self.tile_rows,
            self.work, self.grad_tiles)

    def step(self, s: int, loss_code: int) -> None:
        """Training step s of the loaded interval: three launches."""
        self.loss_and_grad(s, loss_code)
        self.adam[self.M, ADAM_THREADS](
            self.params, self.m1, self.v1, self.grad_tiles, self.loss_rows, self.limit,
            self.first_step, self.lr, self.clip, s, self.losses, self.grad_norms,
            self.transposed, self.blocks_device)

    def fetch_progress(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(losses [M,S], grad_norms [M,S], limit [M]) back on the host; limit[m] is the
        steps model m took (less than loaded where it diverged). No parameters: cheap."""
        return (self.losses.copy_to_host(), self.grad_norms.copy_to_host(),
                self.limit.copy_to_host())

    def fetch(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(params [M,P], losses, grad_norms, limit): fetch_progress with the parameters."""
        return (self.params.copy_to_host(), *self.fetch_progress())
