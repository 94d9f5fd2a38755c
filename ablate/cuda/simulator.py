"""What the CUDA kernels need when they run under Numba's CUDA simulator
(``NUMBA_ENABLE_CUDASIM=1``: the tests on a machine without a GPU); nothing on a GPU.

Four things, all process-wide:

- **Launches take turns.** Under the simulator ``kernel[grid, block]`` stores the grid on
  the shared kernel object and a launch rebinds ``cuda`` in the modules of the kernel and
  its device functions, so two launches at once from two threads would run with each
  other's grid, and a kernel built meanwhile would call the launch's stand-in for
  ``cuda.jit``: launches and builds hold ``turn()``. Host code on another thread would meet
  the stand-in too, which cannot allocate, so modules that define kernels or device
  functions leave allocations and copies to ablate.cuda.device.
- **The GIL changes hands sooner.** The simulator runs every CUDA thread of a block as a
  Python thread; at Python's 5 ms switch interval a thread keeps the GIL that long before a
  waiting one may take it, so threads that need each other's writes (the blocks of a
  spread tile spinning at their barrier) idle. With the simulator's poller (below), 0.1 ms
  took one simulated lstm training check (tests/test_cuda.py, lstm-tv-None-2-1) from
  30.3 s to 14.4 s. Without it, 1 ms is as fast as any: that check and the spread-tile
  training (tests/test_cuda_parts.py) took 5.9 s and 10.4 s at 1 ms, 6.3 s and 11.6 s at
  0.1 ms, 5.1 s and 12.0 s at 5 ms, 7.2 s and 13.5 s at 0.02 ms (with the poller, 0.1 ms:
  10.6 s and 24.3 s).
- **Threads wait at a barrier without a poller.** The simulator's block manager finds the
  threads blocked in ``syncthreads`` by polling every one of them in a loop, and that loop
  takes the GIL from the threads still working. ``barriers_without_polling`` puts a
  count in its place: a thread arriving at ``syncthreads`` counts itself under a lock and
  sleeps on its own event, the last of the block's live threads to arrive wakes them all
  (a thread that has returned no longer counts, as with the poller), and the launching
  thread sleeps until the block's threads have returned; an error in one thread still
  stops the others.
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

SWITCH_INTERVAL_S = 1e-3

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


class _Barrier:
    """syncthreads for one block's simulated threads: ``arrive`` sleeps on the thread's own
    event until every live thread has arrived (one shared lock for the count only: a
    condition all of them wait on makes each wake-up queue for its lock); ``leave`` (a
    thread returning or failing) counts one thread fewer, and a failure wakes the others
    to stop."""

    def __init__(self, threads: int):
        self.lock = threading.Lock()
        self.live = threads
        self.waiting: list = []  # the events of the threads at the barrier
        self.failed = None  # the first thread that raised
        self.done = threading.Event()  # every thread has returned

    def arrive(self, event: threading.Event) -> None:
        with self.lock:
            self._stop_if_failed()
            if len(self.waiting) + 1 < self.live:
                self.waiting.append(event)
                released = None
            else:
                released, self.waiting = self.waiting, []
        if released is None:
            event.wait()
            event.clear()
            self._stop_if_failed()
        else:
            for other in released:
                other.set()

    def leave(self, thread=None) -> None:
        with self.lock:
            self.live -= 1
            if thread is not None and self.failed is None:
                self.failed = thread
            released = []
            if self.failed is not None or (self.live and len(self.waiting) == self.live):
                released, self.waiting = self.waiting, []  # stop, or a thread returned
            if not self.live:
                self.done.set()
        for other in released:
            other.set()

    def _stop_if_failed(self) -> None:
        if self.failed is not None:
            raise RuntimeError("abort flag set on syncthreads: another thread of the block "
                               "raised")


def barriers_without_polling() -> None:
    """Under the simulator, let a block's threads meet at ``syncthreads`` through a count
    and their own events (``_Barrier``) instead of the block manager's polling loop (module
    doc); on a GPU, or done already, nothing."""
    if not active():
        return
    from numba.cuda.simulator import kernel

    manager, thread_class = kernel.BlockManager, kernel.BlockThread
    if getattr(manager.run, "without_polling", False):
        return
    needed = ("_f", "_block_dim", "_debug")
    probe = manager(None, (1, 1, 1), (1, 1, 1), False)
    if not all(hasattr(probe, name) for name in needed) or \
            not hasattr(thread_class, "syncthreads"):
        return  # a simulator built otherwise: leave it as it is
    original_sync = thread_class.syncthreads

    def run(self, grid_point, *args):
        points = list(np.ndindex(*self._block_dim))
        barrier = _Barrier(len(points))
        threads = []
        for block_point in points:
            def target():
                try:
                    self._f(*args)
                except BaseException:
                    barrier.leave(threading.current_thread())
                    raise  # BlockThread.run keeps it, with the thread's indices
                barrier.leave()

            thread = thread_class(target, self, grid_point, block_point, self._debug)
            thread.block_barrier = barrier
            threads.append(thread)
        for thread in threads:
            thread.start()
        barrier.done.wait()
        for thread in threads:
            thread.join()  # each has left the barrier: its exception, if any, is kept
        first = barrier.failed
        if first is not None and first.exception:
            raise first.exception[0].with_traceback(first.exception[1])
        for thread in threads:
            if thread.exception:
                raise thread.exception[0].with_traceback(thread.exception[1])

    def syncthreads(self):
        barrier = getattr(self, "block_barrier", None)
        if barrier is None:  # a thread another manager started
            return original_sync(self)
        barrier.arrive(self.syncthreads_event)

    run.without_polling = True
    manager.run = run
    thread_class.syncthreads = syncthreads


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
