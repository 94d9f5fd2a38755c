"""What the CUDA kernels need when they run under Numba's CUDA simulator
(``NUMBA_ENABLE_CUDASIM=1``: the tests on a machine without a GPU); nothing on a GPU.

Three things, all process-wide:

- **Launches take turns.** Under the simulator ``kernel[grid, block]`` stores the grid on
  the shared kernel object and a launch rebinds ``cuda`` in the modules of the kernel and
  its device functions, so two launches at once from two threads would run with each
  other's grid, and a kernel built meanwhile would call the launch's stand-in for
  ``cuda.jit``: launches and builds hold ``turn()``. Host code on another thread would meet
  the stand-in too, which cannot allocate, so modules that define kernels or device
  functions leave allocations and copies to ablate.cuda.device.
- **The GIL changes hands sooner.** The simulator runs every CUDA thread of a block as a
  Python thread while the launching thread polls them in a loop that never waits; by
  default a thread keeps the GIL for Python's 5 ms switch interval before a waiting one
  may take it, so a block's threads each reaching a barrier spend most of their time
  waiting behind the poller. With 0.1 ms, one simulated lstm training check
  (tests/test_cuda.py, lstm-tv-None-2-1) took 14.4 s instead of 30.3 s here (1e-5 s: 15.3 s,
  1 ms: 19.0 s).
- **A block's threads get one shared array.** ``cuda.shared.array`` looks the call site up
  in the launch's table and, where it is missing, makes the array and stores it: two
  simulated threads switched between the lookup and the store each keep an array of their
  own, and the slots one writes are missing from the other's. The Adam kernel's reduction
  (ablate.cuda.adam) then sums unwritten memory into the gradient norm it clips by: with
  that window widened, a gru ensemble's parameters ended 1.5e-3 away from the CPU engine's
  after two steps. ``shared_arrays_made_once`` does the lookup and the store under a lock.
"""

from __future__ import annotations

import sys
import threading
from contextlib import contextmanager, nullcontext

import numpy as np

SWITCH_INTERVAL_S = 1e-4

_LAUNCH = threading.Lock()


def active() -> bool:
    """Whether numba-cuda runs kernels under its simulator."""
    try:
        from numba.cuda.core import config  # numba-cuda's own config, where it has one
    except ImportError:  # an older numba-cuda reads Numba's
        from numba import config
    return bool(getattr(config, "ENABLE_CUDASIM", 0))


def turn():
    """The simulator's one-at-a-time lock for launches and kernel builds; nothing on a GPU."""
    return _LAUNCH if active() else nullcontext()


def hand_over_sooner() -> None:
    """Under the simulator, shorten Python's switch interval to SWITCH_INTERVAL_S (module
    doc); on a GPU leave it alone."""
    if active() and sys.getswitchinterval() > SWITCH_INTERVAL_S:
        sys.setswitchinterval(SWITCH_INTERVAL_S)


_SHARED = threading.Lock()


def shared_arrays_made_once() -> None:
    """Under the simulator, make ``cuda.shared.array`` give every thread of a launch the
    one array of its call site (module doc); on a GPU, or done already, nothing."""
    if not active():
        return
    from numba.cuda.simulator import kernelapi

    made = kernelapi.FakeCUDAShared
    if getattr(made.array, "made_once", False):
        return
    known = hasattr(kernelapi, "types") and hasattr(kernelapi, "numpy_support")
    if not known or not isinstance(getattr(made(0), "_allocations", None), dict):
        return  # a simulator built otherwise: leave it as it is
    original = made.array

    def array(self, shape, dtype, alignment=None):
        if alignment is not None or shape == 0:  # refused, or the one dynamic buffer
            return original(self, shape, dtype, alignment)
        caller = sys._getframe(1)  # the simulator keys an array by (file, line) of its call
        key = (caller.f_code.co_filename, caller.f_lineno)
        if isinstance(dtype, kernelapi.types.Type):
            dtype = kernelapi.numpy_support.as_dtype(dtype)
        with _SHARED:
            there = self._allocations.get(key)
            if there is None:
                there = self._allocations[key] = np.empty(shape, dtype)
        return there

    array.made_once = True
    made.array = array


_BLOCKS = threading.Lock()


@contextmanager
def blocks_at_once():
    """Under the simulator, run the blocks of the launches inside at once, each on a thread
    of its own with shared arrays of its own (the simulator runs one block after another,
    so blocks that wait for each other, ablate.cuda.tiles.barrier, would wait forever);
    on a GPU nothing. Hold ``turn()`` around it: it patches the simulator for the launch."""
    if not active():
        yield
        return
    from numba.cuda.simulator import kernel, kernelapi

    with _BLOCKS:
        manager, shared = kernel.BlockManager, kernelapi.FakeCUDAModule.shared
        kernel.BlockManager = _concurrent_blocks(manager)
        kernelapi.FakeCUDAModule.shared = property(_shared_of_the_block(kernelapi))
        try:
            yield
        finally:
            kernel.BlockManager = manager
            kernelapi.FakeCUDAModule.shared = shared


def _concurrent_blocks(manager):
    """A BlockManager whose ``run`` starts the block on a thread and returns, but for the
    launch's last block, which waits for them all and raises the first error."""
    started: list = []

    class ConcurrentBlocks(manager):
        def run(self, grid_point, *args):
            errors: list = []

            def block():
                try:
                    manager.run(self, grid_point, *args)
                except BaseException as error:  # re-raised by the launch's last block
                    errors.append(error)

            thread = threading.Thread(target=block, name=f"block {grid_point}", daemon=True)
            thread.start()
            started.append((thread, errors))
            if tuple(grid_point) == tuple(d - 1 for d in self._grid_dim):
                launch, started[:] = list(started), []
                for each, _ in launch:
                    each.join()
                for _, raised in launch:
                    if raised:
                        raise raised[0]

    return ConcurrentBlocks


def _shared_of_the_block(kernelapi):
    """``cuda.shared`` of the calling thread's block: one FakeCUDAShared a block."""
    lock = threading.Lock()

    def shared(module):
        block = threading.current_thread().blockIdx
        with lock:
            by_block = module.__dict__.setdefault("_shared_by_block", {})
            key = (block.x, block.y, block.z)
            if key not in by_block:
                by_block[key] = kernelapi.FakeCUDAShared(module._shared._dynshared_size)
            return by_block[key]

    return shared
