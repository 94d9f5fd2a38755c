#!/usr/bin/env bash
# The GPU session's checks in one run (issue 7), sized for one device command (< 10 min):
#   1. bench/gpu.py (--quick unless FULL=1) over tilings and rows per thread, each also with
#      R resident in registers where it fits (ablate.cuda.resident), and one model's batch
#      spread over 8 and 16 blocks (ablate.cuda.tiles), also with each block holding its
#      units' share of R, first, each tiling of 8 blocks first as a thread-block cluster
#      meeting at its hardware barrier (ablate.cuda.cluster), then meeting in global memory:
#      the figures the issue asks for, each default case split by kernel; JSON and markdown
#      kept;
#   2. the CUDA tests on the real GPU (ABLATE_TEST_GPU=1: no simulator), tiny sizes, the
#      resident-weights, spread-tile and cluster tests first (never run on a GPU before:
#      warp shuffles, barriers between blocks, cluster launches), then the rest, with
#      ensembles trained at once on threads and streams and the validation on the device;
#   3. beside them, the resource report (ptxas -v for sm_90) with the GPU's own numba-cuda;
#   4. Nsight Compute (ncu) on one training step of the ensemble target with R resident and
#      of the single-model target spread over 16 blocks with R resident in them
#      (bench/profile_step.py): where the cycles go, stall reasons, memory traffic;
#   0. before all that, a few seconds: what one barrier between blocks costs, and whether
#      each block's writes are seen after it (bench/barrier_cost.py), the floor under the
#      spread designs; then the same at the hardware barrier of thread-block clusters
#      (bench/cluster_barrier.py), the alternative a spread tile of up to 8-16 blocks has.
# Output goes to $OUT (the device tool's folder) or ./gpu_out, at most 8 files (the device
# tool brings back no more); every step runs even if an earlier one failed, and the
# script's status is the first failure's. The steps' time limits add up to 581 s, under
# the device tool's 600 s a command; the first run there (2026-12-04, H200) took 338 s
# without step 4 (the benchmark about 150 s, the tests 174 s).
#
#     OUT=/tmp/gpu bash bench/gpu_check.sh        # FULL=1 for the full benchmark
set -u
out="${OUT:-gpu_out}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1
# The device image's interpreter is python3 (its PyTorch venv); a plain "python" may be absent.
py="$(command -v python3 || command -v python)"
status=0
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true; } \
    > "$out/setup.log" 2>&1
# The device machine reaches no package index: use what its image has (numba, numba-cuda,
# setuptools), and fail at once rather than retry an index (everything below also runs
# from the checkout without the install).
"$py" -m pip install -q --no-index --no-build-isolation --no-deps -e . >> "$out/setup.log" 2>&1
"$py" -c "import numba, numba.cuda, numpy; print(numba.__version__)" >> "$out/setup.log" 2>&1

# The barrier first: seconds, and it says whether the spread designs below can be fast.
timeout 30 "$py" bench/barrier_cost.py > "$out/barrier.md" 2>&1 \
    || status=4

quick="--quick"
[ "${FULL:-0}" = 1 ] && quick=""
# 7 tilings a case, each also with R resident where it fits: the fastest of the 16 timed on
# 2026-12-04 were tile 2 at 2 rows a thread (1 to 16 models) and tile 32 at 8 (128 models);
# one model also spread over 8 and 16 blocks at each rows a thread, each also with R
# resident in the blocks (12 more a T; the kernels compile once for both T), those over 8
# blocks also as a cluster just before (--clusters: 6 more); the 16- and 6-model ensembles
# also spread with R resident over as many blocks as fit the SMs (3 and 6 more, and 3 as
# clusters of 8). Each case times the designs never run on a GPU first and stops starting
# tilings at its share of --budget (each tiling compiles its kernels, ~5-10 s, unknown for
# the new ones): the defaults, the targets and the JSON always come back within the
# timeout.
timeout 300 "$py" bench/gpu.py $quick --tile-rows 2,32 --rows-per-thread 1,2,8 --resident \
    --parts 8,16 --clusters --budget 200 --json "$out/gpu.json" > "$out/gpu.md" 2>&1 || \
    [ "$status" != 0 ] || status=3

# The resource report compiles 273 kernels on the CPU (every cell at each rows a thread;
# resident, spread, and resident in spread blocks at 1 row a thread): beside the tests, on
# other cores, within their 175 s.
timeout 175 "$py" -m ablate.cuda.resources --jobs 6 --resident-rows 1 --spread-rows 1 \
    --out "$out/cuda_resources.txt" \
    > "$out/resources.log" 2>&1 &
resources=$!
# Each cell compiles its CPU kernels too (an empty cache there): spread over the cores.
parallel=""
"$py" -c "import xdist" 2> /dev/null && parallel="-n 8"
# Ensembles at once on streams too; not the sweeps, whose workers compile the kernels again.
ABLATE_TEST_GPU=1 timeout 75 "$py" -m pytest -q $parallel tests/test_cuda.py \
    tests/test_cuda_parts.py -k "resident or spread or barrier or parts or cluster" \
    > "$out/tests.log" 2>&1 || [ "$status" != 0 ] || status=1
ABLATE_TEST_GPU=1 timeout 100 "$py" -m pytest -q $parallel tests/test_cuda.py \
    tests/test_cuda_occupancy.py tests/test_cuda_concurrent.py tests/test_gpu_worker.py \
    tests/test_cuda_evaluation.py \
    -k "not sweep and not resident and not spread and not barrier and not parts and not cluster" \
    >> "$out/tests.log" 2>&1 || [ "$status" != 0 ] || status=1
wait "$resources" || [ "$status" != 0 ] || status=2

# ncu on PATH, else the newest Nsight Compute under /opt/nvidia; clocks left as they are.
ncu="$(command -v ncu || ls -d /opt/nvidia/nsight-compute/*/ncu 2> /dev/null | tail -n 1)"
if [ -n "$ncu" ]; then
    for case in "ensemble16 --resident" "single --parts 16 --resident"; do
        echo "=== $case" >> "$out/ncu.txt"
        timeout 38 "$ncu" --clock-control none --profile-from-start off \
            --section SpeedOfLight --section MemoryWorkloadAnalysis \
            --section WarpStateStats --section SchedulerStats --section Occupancy \
            --section LaunchStats "$py" bench/profile_step.py --case $case \
            >> "$out/ncu.txt" 2>&1 || [ "$status" != 0 ] || status=5
    done
else
    echo "no ncu found" > "$out/ncu.txt"
fi
grep -E "passed|failed" "$out/tests.log"
cat "$out/barrier.md" "$out/gpu.md"
exit "$status"
