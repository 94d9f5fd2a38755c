"""Compile every CUDA kernel to PTX for sm_90 and read ``ptxas -v``: registers, shared
memory, spills. Needs no GPU (NVVM and ptxas only); run outside the CUDA simulator.

    python -m ablate.cuda.resources [--out bench/cuda_resources.txt] [--cells lstm,gru]
                                    [--resident-rows 1,8] [--only "lstm forward float32"]

Each cell's kernels at every rows_per_thread, and, for the cells with R, the same kernels
with R resident in registers (``ablate.cuda.resident``, at the largest share of R a thread
holds: ``resident_checked``); ``--resident-rows`` limits those to some rows_per_thread
(the committed report has them all). Kernels for a tile spread
over blocks (``ablate.cuda.tiles``) likewise at ``--spread-rows``, and with R resident too
(each block its units' share: ``resident_checked``) where both lists have the rows; each
spread kernel also for the blocks of a thread-block cluster ("… cluster", sm_90:
``ablate.cuda.cluster``).
``--only`` compiles just the kernels named (as in the report's first column).

The report names the hash of the code its kernels compile from (``source_version``: the
cells, the CPU kernels' shared math and the CUDA package); the tests fail while the
committed report is of other code, so it always lists what these sources compile to.

Budgets, checked by tests/test_cuda_resources.py:
  - no spill stores or loads in any kernel (a spill turns a register into local memory
    traffic in the innermost time loop);
  - static shared memory ≤ 48 KiB (the limit without opting in to more per block);
  - registers × the largest block ablate launches (ablate.cuda.device.MAX_THREADS) fit the
    65,536 registers of an SM, so every default launch can be resident.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import NamedTuple

import numpy as np

CC = (9, 0)
# The code the kernels compile from (globs under ablate/): the variants and pointwise math
# (cells), the Adam update and activations shared with the CPU (kernels), the CUDA package.
SOURCES = ("cells/**/*.py", "kernels/**/*.py", "cuda/**/*.py")
SHARED_BUDGET = 48 * 1024
REGISTER_FILE = 65536
# (H, tile_rows, parts) of the resident-weights layouts checked: see resident_checked
CHECKED_ONE_BLOCK = (64, 32, 1)
CHECKED_SPREAD = (128, 16, 8)


class Usage(NamedTuple):
    kernel: str  # "<cell> forward float32[ rows<n>]", "adam float32", ...
    registers: int
    shared: int  # bytes of static shared memory
    spill_stores: int
    spill_loads: int
    stack: int  # bytes of stack frame (local memory)
    rows_per_thread: int = 1  # the cell kernels' row blocking (1 for Adam)


def source_version() -> str:
    """The hash of ``SOURCES``' code (comments and docstrings aside: ablate.store.code_text)."""
    from ablate.store import source_hash

    return source_hash(SOURCES)


def ptxas_path() -> str:
    """ptxas from PATH, else the one the nvidia-cuda-nvcc wheel brings; FileNotFoundError
    naming both places otherwise."""
    found = shutil.which("ptxas")
    if found:
        return found
    try:
        import nvidia

        for root in nvidia.__path__:
            for candidate in sorted(Path(root).glob("*/bin/ptxas")):
                return str(candidate)
    except ImportError:
        pass
    raise FileNotFoundError("ptxas not found on PATH nor in the nvidia-cuda-nvcc wheel; "
                            "pip install 'nvidia-cuda-nvcc==13.0.*'")


def signatures(dtype) -> dict[str, tuple]:
    """Numba argument types of the launches in ablate.cuda.device, by kernel role."""
    from numba import types

    f = types.float32 if np.dtype(dtype) == np.float32 else types.float64
    i64, f64 = types.int64, types.float64

    def array(dt, ndim):
        return types.Array(dt, ndim, "C")

    forward = (array(f, 2), array(f, 2), array(f, 5), array(i64, 4), array(f, 5), array(f, 4),
               array(f, 2), array(i64, 1), i64, i64, i64, i64, i64, array(f, 2), array(f64, 2),
               i64, array(i64, 1))
    backward = (array(f, 2), array(f, 5), array(f, 4), array(i64, 1), i64, i64, i64, i64,
                array(f, 2), array(f, 3), i64, array(i64, 1))
    adam = (array(f, 2), array(f, 2), array(f, 2), array(f, 3), array(f64, 2), array(i64, 1),
            array(i64, 1), array(f64, 1), array(f64, 1), i64, array(f64, 2), array(f64, 2),
            array(f, 2), array(i64, 2))
    return {"forward": forward, "backward": backward, "adam": adam}


_PATTERNS = {
    "registers": re.compile(r"Used (\d+) registers"),
    "shared": re.compile(r"(\d+) bytes smem"),
    "spill_stores": re.compile(r"(\d+) bytes spill stores"),
    "spill_loads": re.compile(r"(\d+) bytes spill loads"),
    "stack": re.compile(r"(\d+) bytes stack frame"),
}


def ptxas_usage(name: str, ptx: str, ptxas: str, rows_per_thread: int = 1) -> Usage:
    """Assemble ``ptx`` for sm_90 with ``ptxas -v`` and parse its resource lines."""
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "kernel.ptx"
        source.write_text(ptx)
        done = subprocess.run([ptxas, f"-arch=sm_{CC[0]}{CC[1]}", "-v", str(source), "-o",
                               str(Path(folder) / "kernel.cubin")],
                              capture_output=True, text=True)
    text = done.stdout + done.stderr
    if done.returncode != 0:
        raise RuntimeError(f"ptxas failed on {name}: {text.strip().splitlines()[-1:]}")
    values = {}
    for key, pattern in _PATTERNS.items():
        found = [int(v) for v in pattern.findall(text)]
        values[key] = max(found) if found else 0
    return Usage(name, **values, rows_per_thread=rows_per_thread)


@contextlib.contextmanager
def _compiling_for(cc: tuple[int, int]):
    """Let device functions compile without a GPU: numba-cuda asks the current device for
    its compute capability when it types a call to a ``cuda.jit(device=True)`` function
    (``compile_ptx`` passes ``cc`` only to the kernel itself)."""
    from numba import cuda

    dispatcher = cuda.dispatcher

    class _Device:
        compute_capability = cc

    original = dispatcher.get_current_device
    dispatcher.get_current_device = _Device
    try:
        yield
    finally:
        dispatcher.get_current_device = original


def measure(cell_names=None, dtypes=("float32",), jobs: int = 1,
            resident_rows=None, spread_rows=None, only=None) -> list[Usage]:
    """Usage of every kernel: each cell's forward and backward at every rows_per_thread
    (named "… rows<n>" beyond 1), with R resident too (named "… resident") at the
    rows_per_thread in ``resident_rows`` and for a tile spread over blocks (named
    "… spread", ablate.cuda.tiles) at those in ``spread_rows`` (default: every one), and
    Adam, per dtype; ``only``: just the kernels of these names (of any cell, dtype and
    rows; ValueError naming any that is none). ``jobs`` processes compile the cells side by
    side (NVVM runs on one core), the order of the list is the same."""
    from ablate import cells
    from ablate.cuda.device import ROWS_PER_THREAD

    rows = tuple(ROWS_PER_THREAD if resident_rows is None else resident_rows)
    spread = tuple(ROWS_PER_THREAD if spread_rows is None else spread_rows)
    wanted = frozenset(only) if only is not None else None
    if wanted is not None:  # the cells and dtypes the names are of
        dtypes = [d for d in ("float32", "float64") if any(d in n.split() for n in wanted)]
        cell_names = [c for c in cells.names() if any(n.split()[0] == c for n in wanted)]
    parts = [(dtype, None, rows, spread, wanted) for dtype in dtypes
             if wanted is None or f"adam {dtype}" in wanted]  # None: Adam
    parts += [(dtype, cell, rows, spread, wanted) for dtype in dtypes
              for cell in (cell_names if cell_names is not None else cells.names())]
    if jobs <= 1:
        usages = [u for part in parts for u in _measure_part(part)]
    else:
        context = multiprocessing.get_context("spawn")  # a fresh interpreter: no forked NVVM
        with ProcessPoolExecutor(jobs, mp_context=context) as pool:
            usages = [u for found in pool.map(_measure_part, parts) for u in found]
    missing = sorted(wanted - {u.kernel for u in usages}) if wanted is not None else []
    if missing:
        raise ValueError(f"no such kernel: {', '.join(map(repr, missing))}; names are the "
                         "report's first column, as 'lstm backward float32 rows8 resident' "
                         "or 'adam float32'")
    return usages


def kernel_specs(cell: str, dtype, resident_rows, spread_rows) -> list[tuple]:
    """(name, rows_per_thread, resident layout or None, spread, clusters, role) of each of
    ``cell``'s kernels ``measure`` compiles: every rows_per_thread; resident at those in
    ``resident_rows``, spread at those in ``spread_rows`` (each also for a thread-block
    cluster, named "… cluster": ablate.cuda.cluster), both where both have them."""
    from ablate.cuda.device import ROWS_PER_THREAD

    specs = []
    for rows in ROWS_PER_THREAD:
        checked = resident_checked(cell, dtype, rows) if rows in resident_rows else ()
        kinds = [(None, False, False), *((layout, False, False) for layout in checked)]
        if rows in spread_rows:
            kinds += [(None, True, False), (None, True, True)]
            if rows in resident_rows:
                kinds += [(layout, True, clusters)
                          for layout in resident_checked(cell, dtype, rows, spread=True)
                          for clusters in (False, True)]
        for resident, spread, clusters in kinds:
            suffix = ((f" rows{rows}" if rows > 1 else "") + (" resident" if resident else "")
                      + (" cluster" if clusters else " spread" if spread else ""))
            specs += [(f"{cell} {role} {dtype}{suffix}", rows, resident, spread, clusters, role)
                      for role in ("forward", "backward")]
    return specs


def _measure_part(part: tuple) -> list[Usage]:
    """The usages of one cell's kernels (``kernel_specs``; only those named in the part's
    last item unless it is None), or of Adam, for one dtype."""
    from numba import cuda

    from ablate.cuda.adam import make_adam
    from ablate.cuda.kernels import kernels

    dtype, cell, resident_rows, spread_rows, wanted = part
    ptxas = ptxas_path()
    sig = signatures(dtype)
    with _compiling_for(CC):
        if cell is None:
            ptx, _ = cuda.compile_ptx(make_adam(np.dtype(dtype)).py_func, sig["adam"], cc=CC)
            return [ptxas_usage(f"adam {dtype}", ptx, ptxas)]
        usages = []
        for name, rows, resident, spread, clusters, role in kernel_specs(
                cell, dtype, resident_rows, spread_rows):
            if wanted is None or name in wanted:
                kernel = getattr(kernels(cell, dtype, rows, resident, spread, clusters), role)
                ptx, _ = cuda.compile_ptx(kernel.py_func, sig[role], cc=CC)
                usages.append(ptxas_usage(name, ptx, ptxas, rows))
        return usages


def resident_checked(cell: str, dtype, rows_per_thread: int, spread: bool = False) -> tuple:
    """The resident-weights layout whose kernels are checked for ``cell`` at
    ``rows_per_thread`` (none where ``resident_layout`` refuses it, as for the min cells,
    or in float64), at the largest share of R a thread holds, so the most registers (a
    smaller H holds fewer; ``ablate.cuda.resident.layout`` checks shared memory itself):
    one block a tile, H 64 over the largest block and tile (64 weights of a row, up to 64
    of a column and their gradients); ``spread``, the one-model benchmark's shape, H 128
    over 8 blocks of 256 threads with 16 rows a tile (32 and 32:
    ``resident.MAX_HELD_SPREAD``; 43 KiB of shared memory for the lstm)."""
    from ablate.cuda.device import MAX_THREADS, resident_layout

    if np.dtype(dtype) != np.float32:
        return ()
    H, tile_rows, parts = CHECKED_SPREAD if spread else CHECKED_ONE_BLOCK
    try:
        return (resident_layout(cell, H, MAX_THREADS, tile_rows, dtype, rows_per_thread,
                                parts),)
    except ValueError:
        return ()


def problems(usages: list[Usage], max_threads: int) -> list[str]:
    """One line per kernel over a budget (see the module docstring); empty when all fit."""
    lines = []
    for u in usages:
        if u.spill_stores or u.spill_loads:
            lines.append(f"{u.kernel}: spills {u.spill_stores} B stores, {u.spill_loads} B loads")
        if u.shared > SHARED_BUDGET:
            lines.append(f"{u.kernel}: {u.shared} B static shared memory > {SHARED_BUDGET}")
        if u.registers * max_threads > REGISTER_FILE:
            lines.append(f"{u.kernel}: {u.registers} registers × {max_threads} threads > "
                         f"{REGISTER_FILE}")
    return lines


EVERY = "every ablate CUDA kernel"  # the first line's scope where nothing was left out


def report(usages: list[Usage], max_threads: int, scope: str = EVERY) -> str:
    """The text saved to bench/cuda_resources.txt; ``scope`` says which kernels it has."""
    from importlib.metadata import version as installed

    numba_version, cuda_version = installed("numba"), installed("numba-cuda")

    ptxas = ptxas_path()
    version = subprocess.run([ptxas, "--version"], capture_output=True, text=True).stdout
    release = next((line for line in version.splitlines() if "release" in line), "").strip()
    lines = [
        f"# ptxas -v for sm_{CC[0]}{CC[1]}: {scope} (python -m ablate.cuda.resources)",
        f"# numba {numba_version}, numba-cuda {cuda_version}, ptxas: {release}",
        f"# sources: {source_version()} (the code of ablate/cells, ablate/kernels and "
        "ablate/cuda these kernels compile from)",
        f"# budgets: no spills; static shared <= {SHARED_BUDGET} B; registers x "
        f"{max_threads} threads <= {REGISTER_FILE}",
        f"{'kernel':48s} {'registers':>9s} {'smem B':>7s} {'spill st':>8s} "
        f"{'spill ld':>8s} {'stack B':>7s}",
    ]
    for u in usages:
        lines.append(f"{u.kernel:48s} {u.registers:9d} {u.shared:7d} {u.spill_stores:8d} "
                     f"{u.spill_loads:8d} {u.stack:7d}")
    found = problems(usages, max_threads)
    lines.append("# over budget: " + ("; ".join(found) if found else "none"))
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ablate.cuda.resources",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write the report here (else print it)")
    parser.add_argument("--cells", help="comma-separated cell names (default: all)")
    parser.add_argument("--float64", action="store_true", help="also the float64 kernels")
    parser.add_argument("--resident-rows",
                        help="comma-separated rows_per_thread to check the resident-weights "
                             "kernels at (default: every one)")
    parser.add_argument("--spread-rows",
                        help="comma-separated rows_per_thread to check the kernels for a tile "
                             "spread over blocks at (default: every one)")
    parser.add_argument("--only",
                        help="comma-separated kernel names, as the report's first column, to "
                             "compile only those (e.g. 'lstm backward float32 rows8 resident')")
    parser.add_argument("--jobs", type=int, default=None,
                        help="processes compiling side by side (default: the cores this "
                             "process may use)")
    args = parser.parse_args(argv)
    if refuse_simulator():
        return 2
    from ablate.cuda.device import MAX_THREADS
    from ablate.sweep import usable_cores  # not os.cpu_count(): a container may count its host

    jobs = usable_cores() if args.jobs is None else max(1, args.jobs)

    names = args.cells.split(",") if args.cells else None
    dtypes = ("float32", "float64") if args.float64 else ("float32",)
    resident_rows = ([int(v) for v in args.resident_rows.split(",") if v.strip()]
                     if args.resident_rows else None)
    spread_rows = ([int(v) for v in args.spread_rows.split(",") if v.strip()]
                   if args.spread_rows else None)
    only = [n.strip() for n in args.only.split(",") if n.strip()] if args.only else None
    try:
        usages = measure(names, dtypes, jobs, resident_rows, spread_rows, only)
    except ValueError as error:
        parser.exit(2, f"error: {error}\n")
    chosen = [flag for flag, value in (("--cells", args.cells), ("--only", args.only),
                                       ("--resident-rows", args.resident_rows),
                                       ("--spread-rows", args.spread_rows)) if value]
    text = report(usages, MAX_THREADS,
                  f"the kernels {', '.join(chosen)} chose" if chosen else EVERY)
    if args.out:
        args.out.write_text(text)
    print(text, end="")
    return 1 if problems_in(text) else 0


def refuse_simulator() -> bool:
    """True, after one line on stderr, where NUMBA_ENABLE_CUDASIM is on (no PTX there)."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") in ("", "0"):
        return False
    print("error: run without NUMBA_ENABLE_CUDASIM: the simulator compiles no PTX",
          file=sys.stderr)
    return True


def report_sources(text: str) -> str | None:
    """The ``source_version`` a report names, or None where it names none."""
    found = re.search(r"^# sources: ([0-9a-f]+) ", text, re.MULTILINE)
    return found.group(1) if found else None


def problems_in(text: str) -> bool:
    """Whether a report's last line names kernels over budget."""
    return not text.rstrip().endswith("# over budget: none")


if __name__ == "__main__":
    raise SystemExit(main())
