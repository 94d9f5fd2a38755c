"""Which batch rows, and which share of them, a block of a cell kernel owns, and the barrier
between the blocks that share them.

One block a tile (``parts`` 1, grid = (batch tiles, models)): the block owns rows row0 …
row0 + rows − 1 of one model for the whole sequence and its barriers are ``syncthreads``.

Several blocks a tile (``parts`` P > 1, grid = M · tiles · P blocks in one dimension): the
P blocks of a (model, tile) act as one block of P · blockDim threads (thread ``tid`` of
``n_threads`` = part · blockDim + threadIdx), so every loop over (row, unit) elements is
shared among P SMs (the cell's loops by runs of units, ``unit_run``), and each SM reads only
its share of the weights each time step: the way to spread one model over the GPU (at H 128
R alone is 256 KiB, an SM's whole register file, and one block re-reads all of it every
step). They meet at ``barrier``: a count per
(model, tile) in ``sync`` that each block adds itself to and waits on, as a grid barrier
does (a fence before and after, so the states written before are seen after).

Waiting on another block needs it to be running. A block takes its place from a ticket
(an atomic count in ``sync``), not from blockIdx, so the places are handed out in the
order blocks start: every block with a lower ticket has started, every set of P blocks
below the newest is complete, and the newest set completes as the others finish and free
their SMs; P must not exceed what the GPU holds at once (``ablate.cuda.device`` checks).
A barrier that waits past SPIN_LIMIT polls (seconds) gives up and raises the FAILED flag,
which the host reads, instead of hanging the GPU.

Built for clusters (``clusters``, P ≤ 8 on sm_90: ``ablate.cuda.cluster``), the P blocks of
a set are one thread-block cluster instead: launched together onto one GPC, the block's
place is its blockIdx (``place``, ``clustered``), and ``meet`` is the cluster's hardware barrier.
The ticket, the counts and the FAILED flag are then unused.

sync (int64), one array per launch shape: [TICKET] the tickets handed out in this launch
(the block that takes the last one sets it back to 0 for the next launch on the stream),
[FAILED] 0, or 1 once a barrier gave up, [COUNTERS + m · tiles + tile] the barrier count of
each set, a multiple of P between launches.
"""

from numba import cuda, int64

TICKET, FAILED, COUNTERS = 0, 1, 2
SPIN_LIMIT = 1 << 22  # polls of a barrier count before it gives up (a few seconds)
_CHECK_EVERY = 1024  # polls between looks at FAILED (another set may have given up)


def sync_size(n_models: int, n_tiles: int) -> int:
    """Elements of the ``sync`` array of a launch over n_models × n_tiles (model, tile)."""
    return COUNTERS + n_models * n_tiles


@cuda.jit(device=True)
def block_rows(x, tile_rows):
    """(T, B, I, row0, rows, tid, n_threads) of this block for x [M,S,T,B,I] at one block a
    tile: the block owns rows row0 … row0 + rows − 1 (the last tile may be short); its
    threads are tid of n_threads, and take the elements e = tid, tid + n_threads, …"""
    T, B, n_in = x.shape[2], x.shape[3], x.shape[4]
    row0 = cuda.blockIdx.x * tile_rows
    return T, B, n_in, row0, min(tile_rows, B - row0), cuda.threadIdx.x, cuda.blockDim.x


@cuda.jit(device=True)
def place(x, tile_rows, n_models, parts, sync, clustered):
    """(m, tile, part, T, B, I, row0, rows, tid, n_threads) of this block: at parts 1 from
    blockIdx (``block_rows``); at parts P > 1 from the block's ticket, the P blocks of a
    (model, tile) being parts 0 … P − 1 of one virtual block of P · blockDim threads.
    ``clustered`` (a compile-time constant; a cluster launch, ``ablate.cuda.cluster``): the
    clusters are the sets in ticket order and a cluster's blocks are consecutive in
    blockIdx.x, so blockIdx.x stands for the ticket."""
    T, B, n_in = x.shape[2], x.shape[3], x.shape[4]
    # Spread kernels run at parts > 1 only, but this branch stays: without it ptxas put
    # fgr's backward at 8 rows a thread at 255 registers and 24 B of spills (230 and none
    # with it), and single_net's over a cluster at 255 and 12 B (248 and none with it;
    # python -m ablate.cuda.resources, 2026-12-05).
    if parts == 1:
        m = cuda.blockIdx.y
        tile = cuda.blockIdx.x
        part = 0
        tid = cuda.threadIdx.x
        n_threads = cuda.blockDim.x
    else:
        n_tiles = (B + tile_rows - 1) // tile_rows
        if clustered:
            ticket = int64(cuda.blockIdx.x)
        else:
            n_blocks = n_models * n_tiles * parts
            taken = cuda.shared.array(1, int64)
            if cuda.threadIdx.x == 0:
                taken[0] = cuda.atomic.add(sync, TICKET, 1)
                if taken[0] == n_blocks - 1:  # the last block to start: the next launch from 0
                    cuda.atomic.add(sync, TICKET, -n_blocks)
            cuda.syncthreads()
            ticket = taken[0]
        m = ticket // (n_tiles * parts)
        tile = (ticket // parts) % n_tiles
        part = ticket % parts
        tid = part * cuda.blockDim.x + cuda.threadIdx.x
        n_threads = parts * cuda.blockDim.x
    row0 = tile * tile_rows
    return m, tile, part, T, B, n_in, row0, min(tile_rows, B - row0), tid, n_threads


@cuda.jit(device=True)
def barrier(sync, group, parts):
    """Every thread of the ``parts`` blocks of set ``group`` (m · tiles + tile) waits here
    for the others; at parts 1 a block barrier. The count only grows: arrivals of one
    barrier take it from k · parts to (k + 1) · parts, which is what each waits for."""
    cuda.syncthreads()
    if parts > 1:
        if cuda.threadIdx.x == 0:
            cuda.threadfence()  # this block's writes before the others read them
            here = COUNTERS + group
            arrived = cuda.atomic.add(sync, here, 1)
            target = (arrived // parts + 1) * parts
            polls = 0
            while cuda.atomic.add(sync, here, 0) < target:  # an atomic read: never cached
                polls += 1
                if polls % _CHECK_EVERY == 0 and (
                        polls >= SPIN_LIMIT or cuda.atomic.add(sync, FAILED, 0) != 0):
                    cuda.atomic.max(sync, FAILED, 1)
                    break
            cuda.threadfence()  # and the others' writes before this block reads them
        cuda.syncthreads()


@cuda.jit(device=True)
def element(e, H, groups, parts):
    """(group of RB rows, unit j) of element e of a (rows, units) loop over the virtual
    block's threads: group-major at one block a tile (a warp's threads take adjacent units:
    adjacent weights); unit-major when the tile is spread over parts, so that each block
    takes a run of units (``ablate.cuda.blocking``'s transposed sums)."""
    if parts == 1:
        return e // H, e % H
    return e % groups, e // groups


@cuda.jit(device=True)
def unit_run(H, part, parts):
    """(first unit, units) of the run of ⌈H / parts⌉ units that part ``part`` of a spread
    tile owns in the cell's element loops (the last run may be short, or empty)."""
    share = (H + parts - 1) // parts
    first = min(part * share, H)
    return first, min(share, H - first)


@cuda.jit(device=True)
def unit_of(e, unit0, units):
    """(group of RB rows, unit j) of element e of a block's loop over the (group, unit)
    pairs of its units unit0 … unit0 + units − 1, group-major: a warp's threads take
    adjacent units, so they read adjacent weights."""
    return e // units, unit0 + e % units


@cuda.jit(device=True)
def part_rows(row0, rows, part, parts):
    """(first row, rows) of a tile's rows that part ``part`` of ``parts`` reads out: the
    readout of a row stays within one block, so its barriers are block barriers."""
    share = (rows + parts - 1) // parts
    first = row0 + min(part * share, rows)
    return first, max(0, min(share, row0 + rows - first))


_SPREAD_FUNCTIONS: dict = {}


def spread_functions(spread: bool, clusters: bool = False) -> tuple:
    """(locate, meet, elements, reader) for a cell kernel built ``spread`` or not, and
    spread over clusters or not: ``locate(x, tile_rows, n_models, parts, sync)`` is
    ``place`` for that launch; ``meet(sync, group, parts)`` is ``barrier``, the
    cluster's barrier (``ablate.cuda.cluster.cluster_sync``) or a plain block barrier;
    ``elements(groups, H, tid,
    n_threads, part, parts)`` the (start, stop, step, unit0, units) of this thread's loop
    over the (group, unit) elements (``unit_of`` decodes one): every element of the tile at
    one block a tile, this block's run of units (``unit_run``) over its own threads when
    spread, so a unit's elements, and the resident weights of its gate rows
    (``ablate.cuda.resident``), stay in one block; ``reader(row0, rows, tid, n_threads,
    part, parts)`` the (first row, rows, tid, n_threads) of the readout: this block's share
    (``part_rows``) with its own threads, or the tile with the tile's. The other branch is
    not compiled.

    The kernels call ``locate`` only when spread, and ``block_rows`` after their limit test
    otherwise: one helper for both layouts put block_rows ahead of that test and made ptxas
    spill fgr's resident backward (12 B), and one returning a sentinel m spilled 56 B
    (python -m ablate.cuda.resources, 2026-12-05)."""
    key = (bool(spread), bool(clusters))
    if clusters and not spread:
        raise ValueError("clusters are for kernels built spread (a tile over blocks)")
    if key not in _SPREAD_FUNCTIONS:
        SPREAD, CLUSTERS = key
        if CLUSTERS:
            from ablate.cuda.cluster import cluster_sync
        else:
            cluster_sync = None  # never compiled: the branch below is not taken

        @cuda.jit(device=True)
        def locate(x, tile_rows, n_models, parts, sync):
            return place(x, tile_rows, n_models, parts, sync, CLUSTERS)

        @cuda.jit(device=True)
        def meet(sync, group, parts):
            if CLUSTERS:
                cluster_sync()  # every thread of the cluster's blocks: no syncthreads
            elif SPREAD:
                barrier(sync, group, parts)
            else:
                cuda.syncthreads()

        @cuda.jit(device=True)
        def elements(groups, H, tid, n_threads, part, parts):
            if SPREAD:
                unit0, units = unit_run(H, part, parts)
                return cuda.threadIdx.x, groups * units, cuda.blockDim.x, unit0, units
            return tid, groups * H, n_threads, 0, H

        @cuda.jit(device=True)
        def reader(row0, rows, tid, n_threads, part, parts):
            if SPREAD:
                first, count = part_rows(row0, rows, part, parts)
                return first, count, cuda.threadIdx.x, cuda.blockDim.x
            return row0, rows, tid, n_threads

        _SPREAD_FUNCTIONS[key] = locate, meet, elements, reader
    return _SPREAD_FUNCTIONS[key]
