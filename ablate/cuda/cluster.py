"""Thread-block clusters (sm_90): the hardware barrier of a spread tile's blocks, and the
launch that makes them a cluster.

A tile spread over P blocks (``ablate.cuda.tiles``) meets 1–2 times a time step in each
direction. By default its blocks meet at a count in global memory (``tiles.barrier``: an
atomic add, polling, a fence each side). On Hopper the P ≤ 8 blocks of a thread-block
cluster are scheduled onto one GPC at once and meet in hardware at ``barrier.cluster``,
whose arrive releases and whose wait acquires at cluster scope: what a thread of the
cluster wrote before it, in global or shared memory, every thread of the cluster sees
after it. Every thread of every block arrives (it is also the block's barrier). A cluster
launch along x groups consecutive blocks, so a block's (model, tile, part) follows from
blockIdx alone: no ticket, and no limit on the sets a launch may hold (a cluster starts
only once all its blocks have SMs).

numba-cuda 0.30 has neither, so:

- ``cluster_sync`` is inline PTX through ``@intrinsic`` (as numba-cuda's own cache hints
  are written). Under the simulator, which runs no PTX, it is a barrier of Python threads
  over the launch's blocks ``blockIdx.x // P`` (the simulator runs them at once:
  ``ablate.cuda.simulator.blocks_at_once``), which every simulated thread of the cluster
  must reach.
- a launch inside ``launching(P)`` is a cluster launch: numba-cuda launches through
  cuda.core's ``LaunchConfig``, which ``install`` replaces once by ``cluster_config``; it
  adds ``cluster=(P, 1, 1)`` where the calling thread asked for it (the grid then counted
  in clusters, cuda.core's rule once a cluster is given) and leaves other launches alone.

Clusters of more than 8 blocks need the compiled kernel's non-portable opt-in before its
first launch; this module stops at 8 (``PORTABLE``) until a GPU shows clusters of 16 of
these blocks schedule at all (bench/barrier_cost.py times them).
"""

from __future__ import annotations

import contextlib
import math
import threading

from ablate.cuda import simulator

PORTABLE = 8  # blocks a cluster may have without the non-portable opt-in
MIN_CAPABILITY = (9, 0)  # clusters exist from Hopper on
# PTX ISA 8.0, sm_90: arrive with release, wait with acquire (both also the defaults)
SYNC_PTX = "barrier.cluster.arrive.release;\n\tbarrier.cluster.wait.acquire;"
SIMULATED_WAIT_S = 120.0  # a simulated cluster whose threads never all arrive: an error


def hardware_sync():
    """``barrier.cluster`` arrive + wait as a numba intrinsic (no arguments, no result)."""
    from llvmlite import ir
    from numba import types
    from numba.cuda.extending import intrinsic

    @intrinsic
    def cluster_sync(typingctx):
        def codegen(context, builder, signature, args):
            asm = ir.InlineAsm(ir.FunctionType(ir.VoidType(), []), SYNC_PTX, "~{memory}",
                               side_effect=True)
            # convergent, as a barrier must be (clang marks CUDA's inline asm so): LLVM
            # may then not move it into code that only some threads run
            builder.call(asm, [], attrs=("convergent",))
            return context.get_dummy_value()

        return types.void(), codegen

    return cluster_sync


class _SimulatedClusters:
    """The clusters of one simulated launch: a Python barrier per cluster, made by its
    first thread to arrive, for every thread of its ``parts`` blocks."""

    def __init__(self, parts: int):
        self.parts = parts
        self.lock = threading.Lock()
        self.barriers: dict[int, threading.Barrier] = {}

    def sync(self) -> None:
        thread = threading.current_thread()
        cluster = thread.blockIdx.x // self.parts
        with self.lock:
            barrier = self.barriers.get(cluster)
            if barrier is None:
                threads = math.prod(thread._manager._block_dim)
                barrier = self.barriers[cluster] = threading.Barrier(
                    self.parts * threads, timeout=SIMULATED_WAIT_S)
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            raise RuntimeError(
                f"cluster {cluster}: not every thread of its {self.parts} blocks reached "
                f"barrier.cluster within {SIMULATED_WAIT_S:.0f} s") from None


_SIMULATED: list[_SimulatedClusters] = []  # the running simulated launch's, if any


def _simulated_sync() -> None:
    """``cluster_sync`` under the simulator: the calling thread's cluster meets."""
    if not _SIMULATED:
        raise RuntimeError("barrier.cluster in a launch that is not a cluster launch "
                           "(launch spread kernels built for clusters inside launching())")
    _SIMULATED[0].sync()


cluster_sync = _simulated_sync if simulator.active() else hardware_sync()


_LOCAL = threading.local()  # .parts: the calling thread's cluster size, while launching


def cluster_config(original):
    """A stand-in for cuda.core's LaunchConfig (``original``) that makes the calling
    thread's launches inside ``asking(P)`` cluster launches of P blocks along x: numba
    passes the grid in blocks, cuda.core counts it in clusters once ``cluster`` is given."""

    def config(*, grid, block, **options):
        parts = getattr(_LOCAL, "parts", 1)
        if parts == 1:
            return original(grid=grid, block=block, **options)
        x, y, z = grid
        if x % parts:
            raise ValueError(f"a grid of {x} blocks is not whole clusters of {parts}")
        return original(grid=(x // parts, y, z), cluster=(parts, 1, 1), block=block,
                        **options)

    config.adds_clusters = True
    return config


def install() -> None:
    """Put ``cluster_config`` in numba-cuda's place for LaunchConfig once; ValueError where
    this numba-cuda launches otherwise."""
    from numba.cuda import dispatcher

    original = getattr(dispatcher, "LaunchConfig", None)
    if original is None:
        raise ValueError("cluster launches need numba-cuda launching through cuda.core's "
                         "LaunchConfig (numba-cuda 0.30); this one does not: use "
                         "clusters=False")
    if not getattr(original, "adds_clusters", False):
        dispatcher.LaunchConfig = cluster_config(original)


@contextlib.contextmanager
def asking(parts: int):
    """The calling thread's launches inside ask for clusters of ``parts`` blocks."""
    before = getattr(_LOCAL, "parts", 1)
    _LOCAL.parts = parts
    try:
        yield
    finally:
        _LOCAL.parts = before


def check(parts: int) -> int:
    """``parts`` for a cluster launch, or ValueError naming the limit: 2 … PORTABLE blocks,
    on a GPU of compute capability 9.0 or more."""
    if not 2 <= parts <= PORTABLE:
        raise ValueError(f"a tile spread over a cluster needs parts in 2..{PORTABLE} "
                         f"(clusters of more blocks need an opt-in not made here), "
                         f"got {parts}")
    if not simulator.active():
        from numba import cuda

        capability = cuda.get_current_device().compute_capability
        if tuple(capability) < MIN_CAPABILITY:
            raise ValueError(f"thread-block clusters need compute capability "
                             f"{MIN_CAPABILITY[0]}.{MIN_CAPABILITY[1]} or more; this GPU "
                             f"has {capability[0]}.{capability[1]}: use clusters=False")
        install()
    return parts


@contextlib.contextmanager
def launching(parts: int):
    """Launches from this thread inside are cluster launches of ``parts`` blocks along x,
    once ``install`` has run (``check`` runs it; not here: this is entered at every launch).
    Under the simulator one launch's clusters meet at Python barriers; hold
    ``simulator.turn()`` and ``blocks_at_once()`` around it."""
    if simulator.active():
        _SIMULATED[:] = [_SimulatedClusters(parts)]
        try:
            yield
        finally:
            _SIMULATED.clear()
        return
    with asking(parts):
        yield
