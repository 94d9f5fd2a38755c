"""An ensemble's state on the GPU and the three launches of one training step.

    ens = DeviceEnsemble("lstm", np.float32, n_models=16, T=100, B=32, n_in=10, H=64, O=9,
                         interval=100)
    ens.set_params(params)                       # [M, P] host array
    ens.load_interval(x, target_class, target_value, mask, limit, first_step, lr, clip)
    for s in range(n_steps): ens.step(s, loss_code)
    params, losses, grad_norms, limit = ens.fetch()

Streams: every copy and launch of an ensemble goes on its own CUDA stream (``stream``) and
only that stream is waited for, so ensembles driven from different host threads of one
process run at once on the GPU (the sweep's CUDA worker trains several shape groups so:
``ablate.gpu_worker``). Nothing touches the legacy default stream, which would serialise
them, and the interval buffers are reused, not freed and allocated again (a free waits for
the whole device). Under the simulator, launches and kernel builds from different threads
take turns (``ablate.cuda.simulator``).

Tiling: a block owns ``tile_rows`` batch rows of one model; grid = (ceil(B / tile_rows), M).
A thread computes one unit of ``rows_per_thread`` rows at once (1 by default). The default
tile aims at about 256 threads per block, so at one row a thread a model spreads over
several SMs and 16 models fill an H100's 132 SMs; ``tile_rows``, ``threads`` and
``rows_per_thread`` can be given (tests use odd sizes to check the ragged paths;
bench/gpu.py times the choices). ``resident=True`` holds R in registers for the whole
launch (``ablate.cuda.resident``; cells with R, H ≤ 64 at 256 threads): a block then has
MAX_THREADS threads unless ``threads`` says otherwise, and a layout it cannot take is one
ValueError that names the limit. ``parts=P`` spreads each tile over P blocks that act as one
(``ablate.cuda.tiles``: one model over P SMs); the grid is then M · tiles · P blocks. Both
together: each of the P blocks holds in registers the rows and columns of R of its run of
units, 1/P of R (H 128 at P 8: 32 weights a thread of 256). ``clusters=True`` (sm_90, P ≤ 8)
launches each tile's P blocks as a thread-block cluster meeting at the hardware barrier
instead of a count in global memory (``ablate.cuda.cluster``).
"""

from __future__ import annotations

import math
import weakref
from contextlib import contextmanager, nullcontext

import numpy as np
from numba import cuda

from ablate import cells
from ablate.cuda import cluster, memory, simulator
from ablate.cuda.adam import ADAM_THREADS, make_adam
from ablate.cuda.kernels import kernels
from ablate.cuda.tiles import FAILED, SPIN_LIMIT, sync_size

_ADAM: dict = {}
simulator.hand_over_sooner()  # a no-op on a GPU; under the simulator, 2× faster
simulator.shared_arrays_made_once()  # a no-op on a GPU; under the simulator, no race
simulator.barriers_without_polling()  # a no-op on a GPU; under the simulator, no poller
# The largest block launched: 256 threads × up to 255 registers each fit an SM's 65,536
# registers, so no kernel can fail to launch for lack of registers (ablate.cuda.resources).
MAX_THREADS = 256
# Blocks a tile can be spread over (ablate.cuda.tiles): a bound, not a measurement; at 32
# a block of an H 128 model holds 4 units, and more blocks poll each barrier's count.
MAX_PARTS = 32
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


def put(owner, name: str, host: np.ndarray, stream) -> None:
    """Copy a host array into the device array ``owner.name`` on ``stream``: into the one
    already there when the shape and type match, else into a new one. (The host side may
    go at once: a copy from pageable memory is staged before it returns.)"""
    host = np.ascontiguousarray(host)
    there = getattr(owner, name, None)
    if there is not None and there.shape == host.shape and there.dtype == host.dtype:
        there.copy_to_device(host, stream=stream)
    else:
        setattr(owner, name, cuda.to_device(host, stream=stream))


def empty(shape: tuple, dtype, stream):
    """An uninitialised device array on ``stream``. Every allocation goes through here (and
    ``put``), in a module that defines no kernel: under the simulator a launch rebinds
    ``cuda`` in a kernel's module while it runs (ablate.cuda.simulator)."""
    return cuda.device_array(shape, dtype, stream=stream)


def free_device_arrays(owner) -> None:
    """Drop every device array ``owner`` holds, once the work queued on its stream is done,
    free them now, and give its claim back (``owner._release``) so that an ensemble waiting
    for the memory in another thread can start."""
    owner.stream.synchronize()
    for name, value in list(vars(owner).items()):
        if hasattr(value, "copy_to_host"):  # a device array
            delattr(owner, name)
    memory.free_pending()
    owner._release()


def default_tiling(B: int, H: int, rows_per_thread: int = 1) -> tuple[int, int]:
    """(tile_rows, threads) for a batch of B rows and H units: about MAX_THREADS threads
    per block, each taking one unit of rows_per_thread rows."""
    tile_rows = max(1, min(B, rows_per_thread * (MAX_THREADS // max(H, 1))))
    return tile_rows, threads_for(tile_rows, H, rows_per_thread)


def threads_for(tile_rows: int, H: int, rows_per_thread: int = 1, parts: int = 1) -> int:
    """Threads of a block of tile_rows rows: one per unit of each group of rows_per_thread
    rows, in whole warps, at most MAX_THREADS (the threads then take several each); a tile
    spread over ``parts`` blocks gives each block a run of ⌈H / parts⌉ units
    (``ablate.cuda.tiles.unit_run``)."""
    groups = math.ceil(tile_rows / rows_per_thread)
    return min(MAX_THREADS, max(32, 32 * math.ceil(groups * math.ceil(H / parts) / 32)))


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


def check_parts(parts: int) -> int:
    """``parts``, the blocks a tile is spread over (``ablate.cuda.tiles``), or ValueError:
    an int in 1 … MAX_PARTS, at most the GPU's SMs."""
    if not isinstance(parts, (int, np.integer)) or not 1 <= parts <= MAX_PARTS:
        raise ValueError(f"parts (blocks a tile is spread over) must be an integer in "
                         f"1..{MAX_PARTS}, got {parts!r}")
    if parts > 1 and not simulator.active():
        sms = cuda.get_current_device().MULTIPROCESSOR_COUNT
        if parts > sms:  # a tile's blocks wait for each other: all must run at once
            raise ValueError(f"parts must be at most this GPU's {sms} SMs, got {parts}")
    return int(parts)


def resident_layout(cell: str, H: int, threads: int, tile_rows: int, dtype,
                    rows_per_thread: int = 1, parts: int = 1):
    """The ``ablate.cuda.resident`` layout of a cell's R [G, H] (each of ``parts`` blocks
    holding its units' share), or ValueError (a cell without R, a shape whose share of R
    does not fit a thread or the block, or a cell whose second recurrent matrix's
    row-blocked sums would spill beside R)."""
    from ablate.cuda import lstm_family
    from ablate.cuda.resident import layout, without_r

    spec = cells.get(cell)  # an unknown name raises with the known ones
    if not spec.recurrent:
        raise without_r(cell, [name for name in cells.names() if cells.get(name).recurrent])
    variant = lstm_family.VARIANTS.get(cell)
    if variant is not None and rows_per_thread > 1 and (
            variant.full_gate_recurrence or variant.net_readout or variant.use_gate):
        # measured (python -m ablate.cuda.resources): 4-312 B of spills at H 64, rows 2-8
        raise ValueError(f"resident weights: {cell}'s second recurrent matrix, summed for "
                         f"{rows_per_thread} rows a thread beside R in registers, spills; "
                         f"use rows_per_thread 1 or resident=False")
    return layout(len(spec.gates) * H, H, threads, tile_rows, dtype, parts)


class DeviceEnsemble:
    """Parameters, Adam moments, one interval's batches and the work space of M models."""

    def __init__(self, cell: str, dtype, n_models: int, T: int, B: int, n_in: int, H: int,
                 O: int, interval: int, tile_rows: int | None = None,
                 threads: int | None = None, rows_per_thread: int = 1,
                 resident: bool = False, parts: int = 1, clusters: bool = False) -> None:
        self.cell, self.dtype = cell, np.dtype(dtype)
        self.M, self.T, self.B, self.n_in, self.H, self.O = n_models, T, B, n_in, H, O
        self.interval = interval
        if rows_per_thread not in ROWS_PER_THREAD:
            raise ValueError(f"rows_per_thread must be one of {ROWS_PER_THREAD}, "
                             f"got {rows_per_thread}")
        self.rows_per_thread = rows_per_thread
        self.tile_rows = tile_rows or default_tiling(B, H, rows_per_thread)[0]
        self.parts = check_parts(parts)
        self.clusters = bool(clusters)
        if self.clusters:
            cluster.check(self.parts)
        # resident weights need one thread per gate row at least: a full block by default
        self.threads = threads or (MAX_THREADS if resident else
                                   threads_for(self.tile_rows, H, rows_per_thread, parts))
        if not 1 <= self.threads <= MAX_THREADS or not 1 <= self.tile_rows <= B:
            raise ValueError(f"threads must be in 1..{MAX_THREADS} and tile_rows in 1..{B}, "
                             f"got {self.threads} and {self.tile_rows}")
        self.resident = (resident_layout(cell, H, self.threads, self.tile_rows, self.dtype,
                                         rows_per_thread, self.parts) if resident else None)
        with simulator.turn():  # building runs cuda.jit, which a simulated launch rebinds
            self.kernels = kernels(cell, self.dtype, rows_per_thread, self.resident,
                                   self.parts > 1, self.clusters)
            if self.dtype.name not in _ADAM:
                _ADAM[self.dtype.name] = make_adam(self.dtype)
        self.adam = _ADAM[self.dtype.name]
        self.n_tiles = math.ceil(B / self.tile_rows)
        spec = cells.get(cell)
        self.P = spec.n_params(n_in, H, O)
        self.blocks = transposed_blocks(spec, n_in, H, O)
        self.n_transposed = sum(rows * cols for _, rows, cols, _ in self.blocks)
        M, P, f = n_models, self.P, self.dtype
        with memory.admitted(id(self), self.bytes_needed(), self.batch_bytes(), n_models):
            self.stream = cuda.stream()
            self._put("blocks_device", np.array(self.blocks, np.int64).reshape(-1, 4))
            for name, shape in (("params", (M, P)), ("transposed", (M, self.n_transposed)),
                                ("m1", (M, P)), ("v1", (M, P))):
                self._put(name, np.zeros(shape, f))
            self.work = empty((M, self.kernels.work_size(T, B, H, O)), f, self.stream)
            self.grad_tiles = empty((M, self.n_tiles, P), f, self.stream)
            self._put("sync", np.zeros(sync_size(M, self.n_tiles), np.int64))
            self.loss_rows = empty((M, B), np.float64, self.stream)
            self._put("losses", np.full((M, interval), np.nan))
            self._put("grad_norms", np.full((M, interval), np.nan))
        self._release = weakref.finalize(self, memory.release, id(self))

    def _put(self, name: str, host: np.ndarray) -> None:
        put(self, name, host, self.stream)

    def bytes_needed(self) -> int:
        """Device memory of the ensemble: parameters, the transposed matrices, Adam moments,
        work vectors, tile gradients and one upload of ``interval`` steps of batches."""
        f = self.dtype.itemsize
        M, T, B, H, O, S = self.M, self.T, self.B, self.H, self.O, self.interval
        per_model = (4 * self.P + self.n_transposed + self.kernels.work_size(T, B, H, O)
                     + self.n_tiles * self.P) * f + B * 8 + 2 * S * 8
        return M * per_model + self.batch_bytes()

    def batch_bytes(self) -> int:
        """Device memory of one upload of ``interval`` steps of batches (x, targets, mask)."""
        f = self.dtype.itemsize
        M, T, B, O, S = self.M, self.T, self.B, self.O, self.interval
        return M * (S * T * B * ((self.n_in + 1 + O) * f + 8) + S * 8)

    def close(self) -> None:
        """Free the device memory now (after the work queued on the stream) and let an
        ensemble waiting for it in another thread start; the ensemble is unusable after."""
        free_device_arrays(self)

    def set_params(self, params: np.ndarray) -> None:
        """Upload [M, P] parameters (and the transposed matrices, which the Adam kernel keeps
        up to date); the Adam moments start at zero."""
        params = np.ascontiguousarray(params, self.dtype)
        self._put("params", params)
        transposed = np.empty((self.M, self.n_transposed), self.dtype)
        for offset, rows, cols, at in self.blocks:
            block = params[:, offset:offset + rows * cols].reshape(self.M, rows, cols)
            transposed[:, at:at + rows * cols] = block.transpose(0, 2, 1).reshape(self.M, -1)
        self._put("transposed", transposed)
        self._put("m1", np.zeros_like(params, self.dtype))
        self._put("v1", np.zeros_like(params, self.dtype))

    def load_interval(self, x, target_class, target_value, mask, limit, first_step, lr,
                      clip) -> None:
        """Upload one interval: x [M,S,T,B,I], target_class int [M,S,T,B], target_value
        [M,S,T,B,O] (or [M,S,T,B,0]), mask [M,S,T,B]; per model limit (steps to run, 0:
        none), first_step (Adam's t of step 0), lr and clip."""
        mask = np.ascontiguousarray(mask, self.dtype)
        weight = mask.sum(axis=(2, 3), dtype=np.float64)
        self._put("scale", np.where(weight > 0, 1.0 / np.where(weight > 0, weight, 1),
                                    0.0).astype(self.dtype))
        self._put("x", np.asarray(x, self.dtype))
        self._put("target_class", np.asarray(target_class, np.int64))
        self._put("target_value", np.asarray(target_value, self.dtype))
        self._put("mask", mask)
        self._put("limit", np.asarray(limit, np.int64))
        self._put("first_step", np.asarray(first_step, np.int64))
        self._put("lr", np.asarray(lr, np.float64))
        self._put("clip", np.asarray(clip, np.float64))
        self._put("losses", np.full((self.M, self.interval), np.nan))
        self._put("grad_norms", np.full((self.M, self.interval), np.nan))

    def loss_and_grad(self, s: int, loss_code: int) -> None:
        """Forward and backward of step s: loss_rows and grad_tiles, no update."""
        self.forward(s, loss_code)
        self.backward(s)

    def forward(self, s: int, loss_code: int) -> None:
        """The forward kernel of step s alone: states, outputs and loss_rows in the work
        vectors (bench/gpu.py times it apart from the backward)."""
        self.launch_forward(self.x, self.target_class, self.target_value, self.mask,
                            self.scale, self.limit, s, loss_code)

    def launch_forward(self, x, target_class, target_value, mask, scale, limit, s: int,
                       loss_code: int) -> None:
        """The forward kernel over these inputs (the interval's, or an evaluation's)."""
        with simulator.turn(), self._blocks_at_once():
            self.kernels.forward[self.grid, self.threads, self.stream](
                self.params, self.transposed, x, target_class, target_value, mask, scale,
                limit, s, loss_code, self.H, self.O, self.tile_rows, self.work,
                self.loss_rows, self.parts, self.sync)

    def backward(self, s: int) -> None:
        """The backward kernel of step s: grad_tiles from the forward's work vectors."""
        with simulator.turn(), self._blocks_at_once():
            self.kernels.backward[self.grid, self.threads, self.stream](
                self.params, self.x, self.mask, self.limit, s, self.H, self.O, self.tile_rows,
                self.work, self.grad_tiles, self.parts, self.sync)

    @property
    def grid(self) -> tuple[int, ...]:
        """(tiles, models) at one block a tile; M · tiles · parts blocks in a row when the
        tiles are spread (``ablate.cuda.tiles``: a block takes its place from a ticket)."""
        if self.parts == 1:
            return (self.n_tiles, self.M)
        return (self.M * self.n_tiles * self.parts,)

    def _blocks_at_once(self):
        """Under the simulator the blocks of a spread tile must run at once (they wait for
        each other); on a GPU, or at one block a tile, nothing. Built for clusters, the
        launches inside are cluster launches of ``parts`` blocks."""
        if self.parts == 1:
            return nullcontext()
        return self._clustered() if self.clusters else simulator.blocks_at_once()

    @contextmanager
    def _clustered(self):
        with simulator.blocks_at_once(), cluster.launching(self.parts):
            yield

    def step(self, s: int, loss_code: int) -> None:
        """Training step s of the loaded interval: three launches."""
        self.loss_and_grad(s, loss_code)
        with simulator.turn():
            self.adam[self.M, ADAM_THREADS, self.stream](
                self.params, self.m1, self.v1, self.grad_tiles, self.loss_rows, self.limit,
                self.first_step, self.lr, self.clip, s, self.losses, self.grad_norms,
                self.transposed, self.blocks_device)

    def fetch_progress(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(losses [M,S], grad_norms [M,S], limit [M]) back on the host; limit[m] is the
        steps model m took (less than loaded where it diverged). No parameters: cheap."""
        if self.parts == 1 or self.clusters:  # no barrier count in sync to read
            return self._get(self.losses, self.grad_norms, self.limit)
        losses, grad_norms, limit, sync = self._get(self.losses, self.grad_norms, self.limit,
                                                    self.sync)
        if sync[FAILED]:
            raise RuntimeError(
                f"the {self.parts} blocks of a tile could not all run at once (a barrier "
                f"waited {SPIN_LIMIT} polls); this ensemble's results are void: use fewer "
                f"parts, or leave the GPU to it alone")
        return losses, grad_norms, limit

    def fetch_params(self) -> np.ndarray:
        """The parameters [M, P] on the host, once the steps launched so far are done."""
        return self._get(self.params)[0]

    def fetch(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(params [M,P], losses, grad_norms, limit): fetch_progress with the parameters."""
        return (self.fetch_params(), *self.fetch_progress())

    def _get(self, *arrays) -> tuple[np.ndarray, ...]:
        """Host copies of device arrays, after everything queued on the stream before."""
        hosts = tuple(array.copy_to_host(stream=self.stream) for array in arrays)
        self.stream.synchronize()
        return hosts
