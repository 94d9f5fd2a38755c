#!/usr/bin/env bash
# Two versions of the CUDA kernels timed in one device run, and the changed one checked on
# the GPU (the lease is short: one command, about 5 minutes):
#   1. this checkout's bench/gpu.py --quick at the default tiling (after.md, after.json);
#   2. every cell's CUDA gradients, row-blocked gradients and training against the CPU
#      kernels, on the real GPU (tests.log);
#   3. an older checkout's bench/gpu.py --quick, same sizes (before.md, before.json), from
#      $BEFORE: a folder holding that version's ablate/ and bench/gpu.py.
#
#     BEFORE=.gpu_before OUT=/tmp/gpu bash bench/gpu_before_after.sh
set -u
out="${OUT:-gpu_out}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1
py="$(command -v python3 || command -v python)"
status=0
timeout 100 "$py" bench/gpu.py --quick --json "$out/after.json" > "$out/after.md" 2>&1 || status=3
ABLATE_TEST_GPU=1 timeout 120 "$py" -m pytest -q -n 8 -p no:cacheprovider tests/test_cuda.py \
    -k "gradients_equal or row_blocked or training_equals" > "$out/tests.log" 2>&1 \
    || [ "$status" != 0 ] || status=1
# An older version may predate ablate.cuda.compat: give it NumPy's removed alias itself.
shim="$(mktemp -d)"
printf 'import numpy\nif not hasattr(numpy, "row_stack"):\n    numpy.row_stack = numpy.vstack\n' \
    > "$shim/sitecustomize.py"
PYTHONPATH="$shim" timeout 100 "$py" "${BEFORE:?BEFORE names the older checkout}/bench/gpu.py" \
    --quick --json "$out/before.json" > "$out/before.md" 2>&1 || [ "$status" != 0 ] || status=4
tail -n 2 "$out/tests.log"
for side in before after; do
    echo "== $side"
    grep -v "NumbaPerformanceWarning\|warn(errors" "$out/$side.md" | sed -n '/^| H |/,$p'
done
exit "$status"
