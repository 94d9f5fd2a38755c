"""What one barrier between blocks costs on this GPU (ablate.cuda.tiles.barrier), and whether
what a block wrote before it is seen by the others after it.

A tile spread over P blocks (``DeviceEnsemble(..., parts=P)``) meets at this barrier once or
twice a time step in each direction, so its cost bounds the spread designs from below: at
2–3 barriers a time step, the one-model target (≤ 20 µs a time step forward + backward)
needs a barrier well under 10 µs. RESULTS.md guessed 1–2 µs; this measures it.

The kernel: each of ``sets`` × P blocks (``threads`` threads each; the sets are the
(model, tile) pairs of a spread launch) writes a count of its own in global memory, meets
its set at ``barrier`` and reads the count of the next block of its set, ``steps`` times. A
read that misses the write before the barrier (a count below the step's) is counted as a
violation: the barrier's fences must make the writes visible. Grids stay within the GPU's
SMs, one block an SM at most, so every block of a set runs at once (as ``blocks_at_once``
makes the simulator do). Time a barrier = (launch of N steps − launch of 0 steps) / N, the
best of --repeats, measured with CUDA events; P = 1 is a plain ``syncthreads`` for
comparison. Then the same in thread-block clusters of P blocks meeting at the hardware's
cluster barrier (bench/cluster_barrier.py), the alternative for P ≤ 8 (16 on an H100 with
the non-portable opt-in); not under the simulator, which runs no inline PTX.

    python bench/barrier_cost.py                      # a few seconds on an H100
    NUMBA_ENABLE_CUDASIM=1 python bench/barrier_cost.py --simulate   # code paths only
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout

from ablate.cuda import simulator  # noqa: E402

try:  # a module global: the simulator swaps it in a launch (``unusable`` says if it is missing)
    from numba import cuda
except ImportError:
    cuda = None

CASES = ((1, 1), (1, 2), (1, 8), (1, 16), (16, 8), (8, 16))  # (sets, parts a set)
SIMULATED_CASES = ((1, 1), (2, 2), (1, 3))
# (clusters, blocks a cluster): 16 × 8 mirrors the spread ensemble above; beside 8 × 8 it
# shows whether 16 clusters of 8 were resident at once (else its launches run in waves)
CLUSTER_CASES = ((1, 2), (1, 8), (1, 16), (8, 8), (16, 8))


def make_kernel():
    """The kernel, built once numba-cuda is known to work here."""
    from ablate.cuda.tiles import barrier

    @cuda.jit
    def meet(sync, counts, violations, steps, parts):
        block = cuda.blockIdx.x
        group = block // parts
        neighbour = group * parts + (block % parts + 1) % parts
        for s in range(steps):
            if cuda.threadIdx.x == 0:
                counts[block] = s + 1
            barrier(sync, group, parts)
            if cuda.threadIdx.x == 0:
                # written before this barrier, and at most one step further since
                seen = counts[neighbour]
                if seen < s + 1 or seen > s + 2:
                    cuda.atomic.add(violations, 0, 1)

    return meet


def run_case(meet, sets: int, parts: int, threads: int, steps: int, repeats: int) -> dict:
    """Microseconds a barrier of ``sets`` sets of ``parts`` blocks, and the violations seen."""
    from ablate.cuda.tiles import FAILED, sync_size

    blocks = sets * parts
    sync = cuda.to_device(np.zeros(sync_size(sets, 1), np.int64))
    counts = cuda.to_device(np.zeros(blocks, np.int64))
    violations = cuda.to_device(np.zeros(1, np.int64))

    def launch(n: int) -> float:
        start, end = cuda.event(), cuda.event()
        with simulator.turn(), simulator.blocks_at_once():
            start.record()
            meet[blocks, threads](sync, counts, violations, n, parts)
            end.record()
        end.synchronize()
        return 1e3 * start.elapsed_time(end)  # ms → µs

    per_barrier, empty = timed(launch, steps, repeats)
    state = sync.copy_to_host()
    return {"sets": sets, "parts": parts, "blocks": blocks, "threads": threads,
            "steps": steps, "us_per_barrier": per_barrier, "launch_us": empty,
            "violations": int(violations.copy_to_host()[0]), "gave_up": bool(state[FAILED])}


def run_cluster_case(meet, clusters: int, parts: int, threads: int, steps: int,
                     repeats: int) -> dict:
    """The same in ``clusters`` thread-block clusters of ``parts`` blocks meeting at the
    cluster barrier (bench/cluster_barrier.py), and whether the launch really had clusters
    of that size (every block ran and saw it)."""
    import cluster_barrier

    from ablate.cuda import cluster

    cluster.install()
    blocks = clusters * parts
    counts = cuda.to_device(np.zeros(blocks, np.int64))
    violations = cuda.to_device(np.zeros(1, np.int64))
    seen = cuda.to_device(np.zeros(2, np.int64))

    def launch(n: int) -> float:
        start, end = cuda.event(), cuda.event()
        with cluster.launching(parts):
            start.record()
            meet[blocks, threads](counts, violations, seen, n)
            end.record()
        end.synchronize()
        return 1e3 * start.elapsed_time(end)  # ms → µs

    if parts > cluster.PORTABLE:
        cluster_barrier.allow_large_clusters(meet)
    launch(1)  # the first launch: it counts the blocks that ran and the cluster size seen
    ran, size = (int(v) for v in seen.copy_to_host())
    per_barrier, empty = timed(launch, steps, repeats)
    return {"clusters": clusters, "parts": parts, "blocks": blocks, "threads": threads,
            "steps": steps, "us_per_barrier": per_barrier, "launch_us": empty,
            "violations": int(violations.copy_to_host()[0]), "blocks_ran": ran,
            "cluster_size_seen": size, "clustered": ran == blocks and size == parts}


def timed(launch, steps: int, repeats: int) -> tuple[float, float]:
    """(µs a barrier, µs of a launch with none): ``launch(n)`` runs n barriers and returns
    its µs; a warm-up launch first, then the best of ``repeats`` of each."""
    launch(steps)  # warm-up: compiles
    empty = min(launch(0) for _ in range(repeats))
    full = min(launch(steps) for _ in range(repeats))
    return max(0.0, full - empty) / steps, empty


def print_row(kind: str, row: dict, trouble: str) -> None:
    print(f"  {kind}: {row['us_per_barrier']:.2f} µs a barrier (launch "
          f"{row['launch_us']:.1f} µs){trouble}", flush=True)


def too_many(blocks: int, label: str) -> bool:
    """Whether ``blocks`` exceed the GPU's SMs (then one line says the case is not run)."""
    from gpu import sm_count

    if blocks <= sm_count():
        return False
    print(f"  {label}: not run (more blocks than the {sm_count()} SMs)")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=2000, help="barriers a timed launch")
    parser.add_argument("--repeats", type=int, default=5, help="timed launches, best counts")
    parser.add_argument("--threads", type=int, default=256,
                        help="threads a block (256: the resident designs' blocks)")
    parser.add_argument("--simulate", action="store_true",
                        help="tiny sizes under the CUDA simulator (NUMBA_ENABLE_CUDASIM=1)")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args(argv)
    if min(args.steps, args.repeats, args.threads) < 1:
        parser.error("--steps, --repeats and --threads must be positive")
    sys.path.insert(0, str(ROOT / "bench"))
    from gpu import device_line, unusable

    problem = unusable("bench/barrier_cost.py", args.simulate)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    cases, steps, threads, repeats = CASES, args.steps, args.threads, args.repeats
    if args.simulate:
        cases, steps, threads, repeats = SIMULATED_CASES, 3, 4, 1
    simulator.hand_over_sooner()
    print(f"# barrier between blocks (ablate.cuda.tiles.barrier): {device_line()}, {threads} "
          f"threads a block, {steps} barriers a launch, best of {repeats}")
    if args.simulate:
        print("SIMULATOR RUN: timings mean nothing; only the counts and code paths count")
    meet = make_kernel()
    rows = []
    for sets, parts in cases:
        if too_many(sets * parts, f"{sets} × {parts} blocks"):
            continue
        row = run_case(meet, sets, parts, threads, steps, repeats)
        rows.append(row)
        kind = "syncthreads" if parts == 1 else f"{sets} set(s) of {parts} blocks"
        print_row(kind, row, (f", {row['violations']} VIOLATIONS" if row["violations"] else "")
                  + (", GAVE UP (a block never arrived)" if row["gave_up"] else ""))
    cluster_rows = [] if args.simulate else run_clusters(threads, steps, repeats)
    if args.json:
        args.json.write_text(json.dumps({"device": device_line(), "simulated": args.simulate,
                                         "rows": rows, "cluster_rows": cluster_rows},
                                        indent=2))
    troubled = [r for r in rows if r["violations"] or r["gave_up"]]
    troubled += [r for r in cluster_rows if r["violations"] and r["clustered"]]
    return 1 if troubled else 0


def run_clusters(threads: int, steps: int, repeats: int) -> list[dict]:
    """The cluster barrier's rows (CLUSTER_CASES); a case the launch API or the GPU refuses
    is one line saying why, and the others still run."""
    import cluster_barrier

    print("# barrier within a thread-block cluster (barrier.cluster, bench/cluster_barrier.py)")
    try:
        meet = cluster_barrier.make_kernel()
    except Exception as error:  # noqa: BLE001 - one line, and the global rows stand
        print(f"  not run: the kernel did not build: {type(error).__name__}: {error}")
        return []
    rows = []
    for clusters, parts in CLUSTER_CASES:
        kind = f"{clusters} cluster(s) of {parts} blocks"
        if too_many(clusters * parts, kind):
            continue
        try:
            row = run_cluster_case(meet, clusters, parts, threads, steps, repeats)
        except Exception as error:  # noqa: BLE001
            print(f"  {kind}: not run: {type(error).__name__}: {error}", flush=True)
            continue
        rows.append(row)
        print_row(kind, row, (f", {row['violations']} VIOLATIONS" if row["violations"] else "")
                  + ("" if row["clustered"] else f", NOT CLUSTERED ({row['blocks_ran']} blocks "
                     f"ran, clusters of {row['cluster_size_seen']} seen)"))
    return rows


if __name__ == "__main__":
    sys.exit(main())
