"""The public model API: parameters, forward, loss and gradient for any registered cell.

A model is ``cell -> linear readout``; its parameters are one flat vector (float32 or
float64) laid out as ``ablate.cells.spec`` describes. Shapes: x [T,B,I]; y [T,B,O];
h, c [T,B,H]; target int64 [T,B] for "xent" or [T,B,O] for "mse"; mask [T,B].

Batch rows are independent through time, so a batch is split into contiguous chunks that
run the whole sequence on separate threads (compiled, GIL released): one hand-off per
call, none per time step. The chunks' gradients are summed afterwards.
"""

from __future__ import annotations

import math
import numbers
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import NamedTuple

import numpy as np

from ablate import cells
from ablate.kernels.driver import LOSS_CODES
from ablate.kernels.fpmode import denormals_flushed

LOSSES = tuple(LOSS_CODES)
DTYPES = ("float32", "float64")
_MIN_CHUNK_ROWS = 8  # below this a thread's share is too small to pay for the hand-off


class Forward(NamedTuple):
    y: np.ndarray  # [T,B,O] readout outputs (logits for "xent")
    h: np.ndarray  # [T,B,H] hidden states
    c: np.ndarray | None  # [T,B,H] cell states, None for cells without one


class LossGrad(NamedTuple):
    loss: float
    grad: np.ndarray  # [P] flat, same dtype as params
    dh_norm: np.ndarray  # [T] ‖∂L/∂h_t‖ over the batch (error flow)
    dc_norm: np.ndarray  # [T] ‖∂L/∂c_t‖, zeros for cells without a cell state


# ---------------------------------------------------------------- parameters


def init_params(
    cell: str, n_in: int, n_hidden: int, n_out: int, seed: int = 0, dtype=np.float32,
    forget_bias: float | None = None,
) -> np.ndarray:
    """A fresh flat parameter vector.

    Every block is uniform(±1/√H) like PyTorch's RNN modules (the readout: ±1/√H for
    W_out and b_out, like nn.Linear with fan-in H); then the cell's rules: forget-gate bias
    shifted by ``forget_bias`` (None: the cell's default, +1 for the LSTM family after
    Jozefowicz et al. 2015; larger values keep memory longer at the start of training,
    σ(3) ≈ 0.95 per step), input-gate bias +``input_bias`` (lstm97), identity R and zero
    bias for irnn (Le et al. 2015). ``forget_bias`` is an error for a cell without a
    forget gate ``f``.
    """
    spec = cells.get(cell)
    _check_sizes(n_in, n_hidden, n_out)
    dtype = _check_dtype(dtype)
    forget_shift = check_forget_bias(cell, forget_bias)
    rng = np.random.default_rng(seed)
    bound = 1.0 / np.sqrt(n_hidden)
    params = rng.uniform(-bound, bound, spec.n_params(n_in, n_hidden, n_out))
    blocks = _views(spec, params, n_in, n_hidden, n_out)
    for gate, shift in (("f", forget_shift), ("i", spec.input_bias)):
        if gate in spec.gates and shift:
            slot = spec.gates.index(gate)
            blocks["b"][slot * n_hidden : (slot + 1) * n_hidden] += shift
    if spec.identity_recurrence:
        blocks["R"][:] = np.eye(n_hidden)
        blocks["b"][:] = 0.0
    return params.astype(dtype)


def check_forget_bias(cell: str, forget_bias) -> float:
    """The forget-gate bias shift to use: the cell's default for None, else the value
    (a finite number), after checking that ``cell`` has a forget gate; ValueError if not."""
    spec = cells.get(cell)
    if forget_bias is None:
        return spec.forget_bias
    if isinstance(forget_bias, bool) or not isinstance(forget_bias, numbers.Real) or not (
        math.isfinite(forget_bias)
    ):
        raise ValueError(f"forget_bias must be a finite number or None, got {forget_bias!r}")
    if "f" not in spec.gates:
        with_f = [name for name in cells.names() if "f" in cells.get(name).gates]
        raise ValueError(
            f"forget_bias: cell {cell!r} has no forget gate (gates {', '.join(spec.gates)}); "
            f"cells with one: {', '.join(with_f)}"
        )
    return float(forget_bias)


def unflatten(cell: str, params: np.ndarray, n_in: int, n_hidden: int, n_out: int) -> dict:
    """{block name: view into params} in flat order (W, R, b, extras, W_out, b_out)."""
    spec = cells.get(cell)
    _check_params(spec, params, n_in, n_hidden, n_out)
    return _views(spec, params, n_in, n_hidden, n_out)


def flatten(cell: str, blocks: dict, n_in: int, n_hidden: int, n_out: int, dtype=None):
    """The flat vector of named blocks (the inverse of ``unflatten``)."""
    spec = cells.get(cell)
    shapes = spec.block_shapes(n_in, n_hidden, n_out)
    expected = [name for name, _ in shapes]
    if sorted(blocks) != sorted(expected):
        raise ValueError(f"{cell} needs exactly the blocks {expected}, got {sorted(blocks)}")
    parts = []
    for name, shape in shapes:
        block = np.asarray(blocks[name])
        if block.shape != shape:
            raise ValueError(f"{cell} block {name!r} must have shape {shape}, got {block.shape}")
        parts.append(block.ravel())
    flat = np.concatenate(parts)
    return flat.astype(_check_dtype(dtype if dtype is not None else flat.dtype))


def _views(spec, params, n_in, n_hidden, n_out) -> dict:
    views, offset = {}, 0
    for name, shape in spec.block_shapes(n_in, n_hidden, n_out):
        size = int(np.prod(shape))
        views[name] = params[offset : offset + size].reshape(shape)
        offset += size
    return views


# ---------------------------------------------------------------- compute


def forward(cell: str, params: np.ndarray, x: np.ndarray, n_hidden: int, n_out: int) -> Forward:
    """Run the model over x [T,B,I] from zero states; y, h (and c) for every step."""
    spec = cells.get(cell)
    x = _check_inputs(spec, params, x, n_hidden, n_out)
    _, chunk_predict = cells.drivers(cell, params.dtype)
    T, B, _ = x.shape
    y = np.empty((T, B, n_out), params.dtype)
    h = np.empty((T, B, n_hidden), params.dtype)
    c = np.empty((T, B, n_hidden), params.dtype) if spec.has_cell_state else None

    def run(rows: slice) -> None:
        y[:, rows], h[:, rows], c_chunk = chunk_predict(
            params, np.ascontiguousarray(x[:, rows]), n_hidden, n_out
        )
        if c is not None:
            c[:, rows] = c_chunk

    _in_parallel(run, B)
    return Forward(y, h, c)


def loss_and_grad(
    cell: str,
    params: np.ndarray,
    x: np.ndarray,
    target: np.ndarray,
    mask: np.ndarray,
    loss: str,
    n_hidden: int,
    n_out: int,
) -> tuple[float, np.ndarray]:
    """(loss, ∂loss/∂params [P]) by hand-written backpropagation through time.

    loss = Σ_tb mask·ℓ(t,b) / Σ_tb mask, with ℓ the softmax cross-entropy against the class
    index target [T,B] ("xent") or the mean over outputs of the squared error against
    target [T,B,O] ("mse"). Computed in the dtype of params. ``unflatten(cell, grad, …)``
    gives the gradient by block name. Denormal floats are flushed to zero during the call,
    as in training (``ablate.kernels.fpmode``): an error signal decaying over a long gap
    otherwise makes a step up to ~9× slower; values below the normal range (1.2e-38 in
    float32, 2.2e-308 in float64) come out 0.
    """
    result = loss_grad_flow(cell, params, x, target, mask, loss, n_hidden, n_out)
    return result.loss, result.grad


def loss_grad_flow(
    cell: str,
    params: np.ndarray,
    x: np.ndarray,
    target: np.ndarray,
    mask: np.ndarray,
    loss: str,
    n_hidden: int,
    n_out: int,
    flush_denormals: bool = True,
) -> LossGrad:
    """``loss_and_grad`` plus the error flow ‖∂L/∂h_t‖ and ‖∂L/∂c_t‖ for every step t.

    ``flush_denormals=False`` keeps IEEE denormals (slower where the error signal passes
    through them): the diagnostics measure the error flow that way, down to the smallest
    representable value."""
    spec = cells.get(cell)
    x = _check_inputs(spec, params, x, n_hidden, n_out)
    target_class, target_value, mask = _check_targets(x, target, mask, loss, n_out)
    chunk_loss_grad, _ = cells.drivers(cell, params.dtype)
    T, B, _ = x.shape
    scale = 1.0 / float(mask.sum())
    n_chunks = _n_chunks(B)
    grads = np.zeros((n_chunks, params.size), params.dtype)
    parts = [None] * n_chunks

    def run(chunk: int, rows: slice) -> None:
        with denormals_flushed(flush_denormals):  # in this chunk's thread: MXCSR is per thread
            parts[chunk] = chunk_loss_grad(
                params,
                np.ascontiguousarray(x[:, rows]),
                np.ascontiguousarray(target_class[:, rows]) if target_class.size else target_class,
                np.ascontiguousarray(target_value[:, rows]) if target_value.size else target_value,
                np.ascontiguousarray(mask[:, rows]),
                LOSS_CODES[loss],
                n_hidden,
                n_out,
                scale,
                grads[chunk],
                True,  # the error flow ‖∂L/∂h_t‖, ‖∂L/∂c_t‖
            )

    _in_parallel(run, B, with_index=True)
    return LossGrad(
        loss=float(sum(part[0] for part in parts)),
        grad=grads.sum(axis=0) if n_chunks > 1 else grads[0],
        dh_norm=np.sqrt(sum(part[1] for part in parts)),
        dc_norm=np.sqrt(sum(part[2] for part in parts)),
    )


# ---------------------------------------------------------------- threads

_POOL: ThreadPoolExecutor | None = None


def n_threads() -> int:
    """Threads used for batch chunks: ABLATE_NUM_THREADS, else the usable cores."""
    configured = os.environ.get("ABLATE_NUM_THREADS")
    if configured:
        return max(1, int(configured))
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)


_LOCAL = threading.local()


@contextmanager
def serial() -> Iterator[None]:
    """Within this block, the calling thread runs forward / loss_and_grad unchunked.

    The chunking follows the thread count, and a chunk's matrix products round differently
    from the whole batch's, so only an unchunked call gives the same bytes on any number of
    cores. Ensembles use it: they run in parallel over models instead.
    """
    previous = getattr(_LOCAL, "serial", False)
    _LOCAL.serial = True
    try:
        yield
    finally:
        _LOCAL.serial = previous


def _n_chunks(batch: int) -> int:
    if getattr(_LOCAL, "serial", False):
        return 1
    return max(1, min(n_threads(), batch // _MIN_CHUNK_ROWS))


def _in_parallel(run, batch: int, with_index: bool = False) -> None:
    global _POOL
    _keep_freed_memory()
    n_chunks = _n_chunks(batch)
    bounds = [slice(k * batch // n_chunks, (k + 1) * batch // n_chunks) for k in range(n_chunks)]
    calls = [(k, rows) if with_index else (rows,) for k, rows in enumerate(bounds)]
    if n_chunks == 1:
        run(*calls[0])
        return
    _pin_blas_threads()
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=n_threads(), thread_name_prefix="ablate")
    futures = [_POOL.submit(run, *args) for args in calls[1:]]
    run(*calls[0])  # the calling thread takes the first chunk
    for future in futures:
        future.result()


_BLAS_PINNED = False
_MEMORY_KEPT = False


def _keep_freed_memory() -> None:
    """Stop glibc from handing each call's work arrays back to the OS and faulting them in again.

    A training step allocates a few MB of caches; with glibc's defaults, blocks above the
    mmap threshold are unmapped on free and the heap top is trimmed, which cost 1.2 ms of
    page faults per gru step at H=32 (3.4 ms → 1.65 ms with this). Thresholds: keep up to
    1 GiB untrimmed, serve blocks below 32 MiB (glibc's maximum) from the heap.
    """
    global _MEMORY_KEPT
    if _MEMORY_KEPT:
        return
    _MEMORY_KEPT = True
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = libc.mallopt if libc is not None else None
    except (OSError, AttributeError):  # not glibc: nothing to tune
        return
    if mallopt is not None:
        M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
        mallopt(M_TRIM_THRESHOLD, 1 << 30)
        mallopt(M_MMAP_THRESHOLD, 32 << 20)


def _pin_blas_threads() -> None:
    """Compiled np.dot calls SciPy's OpenBLAS; with chunks on every core it must not fork more.

    Only SciPy's BLAS (the one Numba links) is limited; NumPy's own BLAS is left alone.
    """
    global _BLAS_PINNED
    if _BLAS_PINNED:
        return
    import scipy.linalg.cython_blas  # noqa: F401  (loads the BLAS that compiled np.dot calls)
    from threadpoolctl import ThreadpoolController

    controller = ThreadpoolController()
    scipy_blas = [lib for lib in controller.lib_controllers if "scipy.libs" in lib.filepath]
    for lib in scipy_blas:
        lib.set_num_threads(1)
    _BLAS_PINNED = True


# ---------------------------------------------------------------- validation


def _check_sizes(n_in, n_hidden, n_out) -> None:
    for name, value in (("n_in", n_in), ("n_hidden", n_hidden), ("n_out", n_out)):
        if not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _check_dtype(dtype) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype.name not in DTYPES:
        raise ValueError(f"unsupported dtype {dtype.name}; allowed: {', '.join(DTYPES)}")
    return dtype


def _check_params(spec, params, n_in, n_hidden, n_out) -> None:
    _check_sizes(n_in, n_hidden, n_out)
    if not isinstance(params, np.ndarray) or params.ndim != 1:
        raise ValueError("params must be a 1-D numpy array (see init_params)")
    _check_dtype(params.dtype)
    expected = spec.n_params(n_in, n_hidden, n_out)
    if params.size != expected:
        raise ValueError(
            f"params has {params.size} entries but {spec.name} with n_in={n_in}, "
            f"n_hidden={n_hidden}, n_out={n_out} needs {expected}"
        )


def _check_inputs(spec, params, x, n_hidden, n_out) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 3 or 0 in x.shape:
        raise ValueError(f"x must have shape [T,B,I] with T, B, I ≥ 1, got {x.shape}")
    try:
        _check_params(spec, params, x.shape[2], n_hidden, n_out)
    except ValueError as error:
        raise ValueError(f"{error} (n_in={x.shape[2]} is the last axis of x {x.shape})") from None
    if not params.flags.c_contiguous:
        raise ValueError("params must be C-contiguous")
    if not np.isfinite(params).all():
        raise ValueError("params contain NaN or infinity")
    if not np.isfinite(x).all():
        raise ValueError("x contains NaN or infinity")
    return np.ascontiguousarray(x, dtype=params.dtype)


def _check_targets(x, target, mask, loss, n_out):
    if loss not in LOSS_CODES:
        raise ValueError(f"unknown loss {loss!r}; allowed: {', '.join(LOSSES)}")
    T, B, _ = x.shape
    mask = np.asarray(mask)
    if mask.shape != (T, B):
        raise ValueError(f"mask must have shape [T,B] = {(T, B)}, got {mask.shape}")
    if not np.isfinite(mask).all() or (mask < 0).any() or mask.sum() <= 0:
        raise ValueError("mask must be finite, ≥ 0, and select at least one step")
    mask = np.ascontiguousarray(mask, dtype=x.dtype)
    target = np.asarray(target)
    if loss == "xent":
        if target.shape != (T, B) or not np.issubdtype(target.dtype, np.integer):
            raise ValueError(
                f'"xent" needs an integer class target of shape [T,B] = {(T, B)}, '
                f"got {target.dtype} {target.shape}"
            )
        picked = target[mask > 0]
        if picked.size and (picked.min() < 0 or picked.max() >= n_out):
            raise ValueError(f"class targets must lie in [0, {n_out}) where mask > 0")
        target_class = np.where(mask > 0, target, 0).astype(np.int64)
        return target_class, np.zeros((0, 0, 0), x.dtype), mask
    if target.shape != (T, B, n_out):
        raise ValueError(
            f'"mse" needs a target of shape [T,B,O] = {(T, B, n_out)}, got {target.shape}'
        )
    if not np.isfinite(target).all():
        raise ValueError("target contains NaN or infinity")
    return np.zeros((0, 0), np.int64), np.ascontiguousarray(target, dtype=x.dtype), mask
