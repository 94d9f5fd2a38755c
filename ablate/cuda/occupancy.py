"""How many blocks of a kernel one SM holds at once, and in how many waves a grid runs.

A block of ablate's persistent kernels stays on its SM for the whole sequence, so a grid
with more blocks than the GPU holds at once runs in waves, one after another, and each wave
takes as long as the first. An ensemble's step time therefore grows with its waves, not
with its models: 16 models in one wave and 128 in eight take about 1 and 8 wave times.

The rules are those of NVIDIA's occupancy calculator (``cuda_occupancy.h``, CUDA 13.0,
``cudaOccMaxActiveBlocksPerMultiprocessor``) for the default shared-memory carveout, no
dynamic shared memory and one block barrier (``cuda.syncthreads``), which is what ablate
launches:

    warps of a block    w = ⌈threads / 32⌉
    by warps            ⌊max_threads_per_sm / 32 / w⌋
    by registers        each warp gets r_w = ⌈32 · registers / 256⌉ · 256 registers from one
                        of the SM's 4 sub-partitions (regs_per_sm / 4 each):
                        ⌊4 · ⌊regs_per_sm / 4 / r_w⌋ / w⌋; 0 when a block's r_w · ⌈w⌉₄
                        exceed regs_per_block or registers > 256
    by shared memory    ⌊shared_per_sm / ⌈static + reserved_per_block⌉₁₂₈⌋
    by blocks           max_blocks_per_sm
    by barriers         2 · max_blocks_per_sm / 1 (never the smallest)

tests/test_cuda_occupancy.py checks this against the header itself (compiled with g++), and
on a GPU against the driver's own answer (``cuOccupancyMaxActiveBlocksPerMultiprocessor``).

    python -m ablate.cuda.occupancy     # the benchmark's ensembles on an H100/H200, predicted
                                        # from ptxas' registers (no GPU needed)
"""

from __future__ import annotations

import argparse
import math
from typing import NamedTuple

WARP = 32
REGISTER_UNIT = 256  # registers are allocated to a warp in multiples of this
SUB_PARTITIONS = 4
SHARED_UNIT = 128  # bytes


class SMLimits(NamedTuple):
    """Per-SM limits of a GPU (compute capability 9.0 values by default)."""

    sm_count: int
    max_threads: int = 2048
    max_blocks: int = 32
    registers: int = 65536
    registers_per_block: int = 65536
    shared: int = 233472  # 228 KiB
    reserved_shared_per_block: int = 1024


H100_SXM = SMLimits(sm_count=132)  # an H200 has the same 132 SMs and limits
H100_PCIE = SMLimits(sm_count=114)


def blocks_per_sm(registers: int, threads: int, shared: int = 0,
                  limits: SMLimits = H100_SXM) -> int:
    """Blocks of ``threads`` threads using ``registers`` a thread and ``shared`` bytes of
    static shared memory that one SM holds at once (0: the block cannot launch)."""
    if not 1 <= threads <= 1024:
        raise ValueError(f"threads must be in 1..1024, got {threads}")
    warps = math.ceil(threads / WARP)
    by_warps = limits.max_threads // WARP // warps
    per_warp = math.ceil(registers * WARP / REGISTER_UNIT) * REGISTER_UNIT
    # the launch check counts the block's warps rounded up to whole sub-partitions
    if registers > 256 or per_warp * math.ceil(warps / SUB_PARTITIONS) * SUB_PARTITIONS \
            > limits.registers_per_block:
        return 0
    by_registers = (limits.registers // SUB_PARTITIONS // per_warp * SUB_PARTITIONS // warps
                    if per_warp else limits.max_blocks)
    allocated = math.ceil((shared + limits.reserved_shared_per_block) / SHARED_UNIT) * SHARED_UNIT
    by_shared = limits.shared // allocated
    return min(by_warps, by_registers, by_shared, limits.max_blocks)


def waves(grid_blocks: int, per_sm: int, limits: SMLimits = H100_SXM) -> float:
    """Waves a grid of ``grid_blocks`` takes when each SM holds ``per_sm`` blocks: the
    fraction counts a last, partly filled wave by its share (8.2 is 9 wave times)."""
    if per_sm < 1:
        raise ValueError("a block that fits no SM never runs (blocks per SM < 1)")
    return grid_blocks / (per_sm * limits.sm_count)


def driver_blocks_per_sm(dispatcher, threads: int) -> int:
    """The driver's answer for a compiled kernel (needs a GPU; its one specialisation)."""
    from numba import cuda

    kernel = next(iter(dispatcher.overloads.values()))
    sms = cuda.get_current_device().MULTIPROCESSOR_COUNT
    return kernel.max_cooperative_grid_blocks(threads) // sms


def device_limits(device=None) -> SMLimits:
    """The limits of ``device`` (default: the current GPU; needs one)."""
    if device is None:
        from numba import cuda

        device = cuda.get_current_device()
    return SMLimits(
        sm_count=device.MULTIPROCESSOR_COUNT,
        max_threads=device.MAX_THREADS_PER_MULTIPROCESSOR,
        max_blocks=device.MAX_BLOCKS_PER_MULTIPROCESSOR,
        registers=device.MAX_REGISTERS_PER_MULTIPROCESSOR,
        registers_per_block=device.MAX_REGISTERS_PER_BLOCK,
        shared=device.MAX_SHARED_MEMORY_PER_MULTIPROCESSOR,
        reserved_shared_per_block=device.RESERVED_SHARED_MEMORY_PER_BLOCK)


def ensemble_table(usages: dict, models=(16, 128), B=32, H=64,
                   tile_rows=(1, 2, 4, 8, 16, 32),
                   limits: SMLimits = H100_SXM) -> tuple[str, dict]:
    """(markdown, {models: fewest rounds over the tilings}) for usages {rows_per_thread:
    [forward, backward Usage]}: for each ensemble size, rows a thread takes and tile
    (tiles smaller than those rows are left out), the grid, the blocks an SM holds (forward
    and backward, from their ptxas registers), the waves of the kernel that fits fewer
    blocks and its rounds: ⌈waves⌉ · row groups a thread takes one after another (a group's
    rows go together: their loads interleave). A kernel bound by latency (each thread's
    chain of loads and barriers) takes time in proportion to its rounds; one bound by the
    SMs' throughput, to its work."""
    from ablate.cuda.device import default_tiling, threads_for

    lines = [f"| models | rows / thread | tile_rows | threads | blocks | blocks / SM (fwd, bwd) "
             f"| waves on {limits.sm_count} SMs | groups / thread | rounds |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    fewest: dict[int, int] = {}
    for M in models:
        for rows_per_thread, pair in sorted(usages.items()):
            default_rows, _ = default_tiling(B, H, rows_per_thread)
            for rows in sorted({*tile_rows, default_rows}):
                if not rows_per_thread <= rows <= B:
                    continue
                threads = threads_for(rows, H, rows_per_thread)
                grid = M * math.ceil(B / rows)
                per_sm = [blocks_per_sm(u.registers, threads, u.shared, limits) for u in pair]
                each = math.ceil(math.ceil(rows / rows_per_thread) * H / threads)
                w = waves(grid, min(per_sm), limits)
                serial = math.ceil(w) * each
                fewest[M] = min(fewest.get(M, serial), serial)
                mark = " (default)" if rows == default_rows else ""
                lines.append(f"| {M} | {rows_per_thread} | {rows}{mark} | {threads} | {grid} | "
                             f"{', '.join(map(str, per_sm))} | {w:.2f} | {each} | {serial} |")
    return "\n".join(lines), fewest


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ablate.cuda.occupancy",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--cell", default="lstm")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--sms", type=int, default=H100_SXM.sm_count,
                        help="SMs of the GPU (H100 SXM and H200: 132, H100 PCIe: 114)")
    args = parser.parse_args(argv)
    from ablate.cuda.resources import measure, refuse_simulator

    if refuse_simulator():
        return 2

    usages: dict[int, list] = {}  # rows_per_thread: [forward, backward]
    for u in measure([args.cell]):
        if not u.kernel.startswith("adam"):
            usages.setdefault(u.rows_per_thread, []).append(u)
    limits = H100_SXM._replace(sm_count=args.sms)
    print(f"# {args.cell}, H{args.hidden}, B{args.batch}: registers (forward, backward) by rows "
          "a thread: " + "; ".join(f"{rows}: {pair[0].registers}, {pair[1].registers}"
                                   for rows, pair in sorted(usages.items())))
    table, fewest = ensemble_table(usages, B=args.batch, H=args.hidden, limits=limits)
    print(table)
    small, large = sorted(fewest)
    print(f"# fewest rounds: {small} models {fewest[small]}, {large} models {fewest[large]}: "
          f"a latency-bound step of {large} models takes at least "
          f"{fewest[large] / fewest[small]:.1f}x the best {small}-model step; where the "
          f"{small}-model step already fills the GPU's throughput, {large / small:.1f}x "
          "(its work)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
