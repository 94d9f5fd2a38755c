"""One training step of ablate's CUDA kernels for a profiler: Nsight Compute (ncu) reads the
hardware counters of its three launches (forward, backward, Adam), and only those.

The case is built and compiled first (bench/gpu.py's AblateCase: lstm on copy, float32, the
default tiling), then one step runs between ``cuda.profile_start()`` and
``cuda.profile_stop()``, so ``ncu --profile-from-start off`` skips the compiles, the
uploads and the warm-up. Cases: the issue's ensemble target (16 × H64, B32, T100) and its
single-model target (H128, B32, T100); ``--resident`` holds R in registers
(ablate.cuda.resident; H128's R does not fit one block, but over 8 or more it does);
``--parts P`` spreads the batch, one tile, over P blocks (ablate.cuda.tiles: the single
model's design; with --resident the largest tile that layout takes). bench/gpu_check.sh
runs the resident ensemble and the resident spread single model under ncu:

    ncu --clock-control none --profile-from-start off --section WarpStateStats \\
        python bench/profile_step.py --case ensemble16
    NUMBA_ENABLE_CUDASIM=1 python bench/profile_step.py --simulate   # code paths only
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/gpu.py beside this

import gpu  # noqa: E402  (puts the checkout on the path too)

CASES = {  # name: (models, H, copy gap); T = gap + 20 recall and query steps
    "ensemble16": (16, 64, 80),
    "single": (1, 128, 80),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", choices=sorted(CASES), default="ensemble16")
    parser.add_argument("--resident", action="store_true",
                        help="R resident in registers (ablate.cuda.resident; H ≤ 64, "
                             "or spread over --parts blocks)")
    parser.add_argument("--parts", type=int, default=1,
                        help="spread each batch tile over this many blocks "
                             "(ablate.cuda.tiles; the single case's design)")
    parser.add_argument("--simulate", action="store_true",
                        help="tiny sizes under the CUDA simulator (NUMBA_ENABLE_CUDASIM=1)")
    args = parser.parse_args(argv)
    problem = gpu.unusable("bench/profile_step.py", args.simulate)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    from numba import cuda

    simulated = args.simulate
    if simulated:
        sizes, (models, hidden, gap) = gpu.SIMULATED, (2, 4, 1)
    else:
        sizes, (models, hidden, gap) = gpu.FULL, CASES[args.case]
    data, n_out = gpu.copy_data(sizes, models, 2, gap)
    # spread: the whole batch, one tile (with R resident, the largest tile its layout takes)
    tile = (gpu.spread_tile(sizes.batch, hidden, np.float32, 1, args.parts, args.resident)
            if args.parts > 1 else None)
    case = gpu.AblateCase(data, hidden, n_out, tile, resident=args.resident,
                          parts=args.parts)  # compiles, warms up
    case.sync()
    ens = case.ens
    name = "simulated" if simulated else args.case
    print(f"case {name}: {models} model(s), H {hidden}, B {sizes.batch}, "
          f"T {data.shape[2]}; tile_rows {ens.tile_rows}, {ens.rows_per_thread} row(s) a "
          f"thread, {ens.threads} threads a block, {ens.n_tiles * ens.M * ens.parts} blocks"
          + (", R resident in registers" if ens.resident else "")
          + (f", each tile over {ens.parts} blocks" if ens.parts > 1 else ""), flush=True)
    if not simulated:  # the simulator has no profiler API
        cuda.profile_start()
    ens.step(1, case.loss_code)  # the profiled launches: forward, backward, Adam
    case.sync()
    if not simulated:
        cuda.profile_stop()
    print("profiled one step: 3 launches")
    return 0


if __name__ == "__main__":
    sys.exit(main())
