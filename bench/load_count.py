"""Memory instructions of the CUDA kernels per model-step, counted, for each rows_per_thread.

No GPU needed: the kernels run under Numba's CUDA simulator (this script turns it on), with
every element read and written from a device array counted as one load or store. That is
each thread's count of global-memory instructions (the default kernels use no shared memory); a
warp issues one instruction for its 32 threads, so a warp-load is 32 thread-loads. It says
nothing of caching or latency, and the simulator's timings mean nothing: it measures how
much the register blocking (``rows_per_thread``, ablate/cuda/blocking.py) cuts the
loads the step time was predicted to be bound by (bench/RESULTS.md, "GPU (issue 7)").

The workload is bench/gpu.py's ensemble model (lstm, I=10, O=9, H=64, B=32, copy's 10
scored steps, T=100; --cell for another), one model in one block. Simulating T=100 would
take hours, so the count is measured at three small shapes and extrapolated exactly: the
kernels' loads are a + b·T + c·(scored steps) for a fixed tiling (each time step does the
same work; the readout's work depends on the scored steps), fitted at (T, scored) = (3, 1),
(4, 1), (4, 2).

    python bench/load_count.py                     # rows_per_thread 1, 2, 4, 8 (~3 min)
    python bench/load_count.py --rows-per-thread 1,4 --cell gru --json counts.json
    python bench/load_count.py --resident          # R in registers (ablate.cuda.resident)

With --resident the kernels hold R in registers and read h_{t-1} and da_{t+1} from shared
memory, which this count does not see (shared and local arrays are plain NumPy arrays in
the simulator): it counts what still goes to global memory.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path

os.environ["NUMBA_ENABLE_CUDASIM"] = "1"  # before numba is imported

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout

I, O, H, B = 10, 9, 64, 32
T_FULL, SCORED_FULL = 100, 10  # copy at gap 80: T = 80 + 2·10, the last 10 steps scored
SHAPES = ((3, 1), (4, 1), (4, 2))  # (T, scored steps) the count is fitted at


class Counter:
    """Counts element reads and writes of device arrays inside simulated kernels."""

    def __init__(self) -> None:
        from numba.cuda.simulator.cudadrv import devicearray

        self.cls = devicearray.FakeWithinKernelCUDAArray
        self.loads = itertools.count()  # next() is atomic in CPython: threads may race
        self.stores = itertools.count()

    def __enter__(self) -> Counter:
        cls, loads, stores = self.cls, self.loads, self.stores
        self.original = cls.__getitem__, cls.__setitem__
        get, put = self.original

        def counted_get(array, index):
            value = get(array, index)
            if not isinstance(value, cls):  # an element, not a view
                next(loads)
            return value

        def counted_put(array, index, value):
            next(stores)
            put(array, index, value)

        cls.__getitem__, cls.__setitem__ = counted_get, counted_put
        return self

    def __exit__(self, *exc) -> None:
        self.cls.__getitem__, self.cls.__setitem__ = self.original

    @staticmethod
    def read(counter: itertools.count) -> int:
        return next(counter)  # the calls so far (this read is not one of them)


def count(cell: str, rows_per_thread: int, T: int, scored: int,
          resident: bool = False) -> dict[str, int]:
    """Thread-level loads and stores of one forward and one backward launch of one model."""
    from ablate import init_params
    from ablate.cuda.device import DeviceEnsemble
    from ablate.kernels.driver import LOSS_CODES

    rng = np.random.default_rng(0)
    ens = DeviceEnsemble(cell, np.float32, 1, T, B, I, H, O, 1, tile_rows=B,
                         rows_per_thread=rows_per_thread, resident=resident)
    ens.set_params(init_params(cell, I, H, O, seed=0, dtype=np.float32)[None])
    x = rng.normal(size=(1, 1, T, B, I)).astype(np.float32)
    mask = np.zeros((1, 1, T, B), np.float32)
    mask[:, :, T - scored:] = 1
    target = rng.integers(0, O, (1, 1, T, B))
    ens.load_interval(x, target, np.zeros((1, 1, T, B, 0), np.float32), mask,
                      np.ones(1, np.int64), np.ones(1, np.int64), np.full(1, 1e-3), np.zeros(1))
    result = {}
    for role in ("forward", "backward"):
        with Counter() as counter:
            if role == "forward":
                ens.kernels.forward[(1, 1), ens.threads](
                    ens.params, ens.transposed, ens.x, ens.target_class, ens.target_value,
                    ens.mask, ens.scale, ens.limit, 0, LOSS_CODES["xent"], H, O, ens.tile_rows,
                    ens.work, ens.loss_rows, 1, ens.sync)
            else:
                ens.kernels.backward[(1, 1), ens.threads](
                    ens.params, ens.x, ens.mask, ens.limit, 0, H, O, ens.tile_rows, ens.work,
                    ens.grad_tiles, 1, ens.sync)
            result[f"{role}_loads"] = Counter.read(counter.loads)
            result[f"{role}_stores"] = Counter.read(counter.stores)
    result["threads"] = ens.threads
    return result


def extrapolate(counts: dict[tuple[int, int], dict[str, int]], key: str) -> float:
    """a + b·T + c·scored through the three measured shapes, at T_FULL and SCORED_FULL."""
    (t0, s0), (t1, _), (_, s2) = SHAPES
    base, longer, scored = (counts[shape][key] for shape in SHAPES)
    per_step = (longer - base) / (t1 - t0)
    per_scored = (scored - longer) / (s2 - s0)
    return base + per_step * (T_FULL - t0) + per_scored * (SCORED_FULL - s0)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows-per-thread", default="1,2,4,8",
                        help="comma-separated values of ablate.cuda.device.ROWS_PER_THREAD")
    parser.add_argument("--cell", default="lstm", help="a registered cell (default lstm)")
    parser.add_argument("--json", type=Path, help="also write the counts here")
    parser.add_argument("--resident", action="store_true",
                        help="R resident in registers (global loads only: see above)")
    args = parser.parse_args(argv)
    from ablate import cells
    from ablate.cuda.device import ROWS_PER_THREAD

    try:
        cells.get(args.cell)
    except ValueError as error:
        parser.error(str(error))

    try:
        values = [int(v) for v in args.rows_per_thread.split(",") if v.strip()]
    except ValueError:
        parser.error(f"--rows-per-thread takes integers, got {args.rows_per_thread!r}")
    if not values or any(v not in ROWS_PER_THREAD for v in values):
        parser.error(f"--rows-per-thread values must be among {ROWS_PER_THREAD}")

    print(f"# {args.cell} I={I} O={O} H={H} B={B}, one model in one block"
          f"{', R resident in registers (global loads only)' if args.resident else ''}; per "
          f"model-step at T={T_FULL} with {SCORED_FULL} scored steps (fitted at (T, scored) "
          f"{SHAPES})")
    print("| rows / thread | threads | forward loads | backward loads | total loads | "
          "warp-loads (÷32) | vs 1 | stores |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    rows, first_total = [], None
    for rb in values:
        started = time.perf_counter()
        counts = {shape: count(args.cell, rb, *shape, args.resident) for shape in SHAPES}
        fwd, bwd = extrapolate(counts, "forward_loads"), extrapolate(counts, "backward_loads")
        stores = extrapolate(counts, "forward_stores") + extrapolate(counts, "backward_stores")
        total = fwd + bwd
        first_total = first_total or total
        threads = counts[SHAPES[0]]["threads"]
        print(f"| {rb} | {threads} | {fwd:,.0f} | {bwd:,.0f} | {total:,.0f} | "
              f"{total / 32:,.0f} | {total / first_total:.2f} | {stores:,.0f} |", flush=True)
        rows.append({"rows_per_thread": rb, "resident": args.resident, "threads": threads,
                     "forward_loads": fwd,
                     "backward_loads": bwd, "stores": stores,
                     "measured": {f"T{t}_scored{s}": c for (t, s), c in counts.items()},
                     "seconds": time.perf_counter() - started})
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
