"""ablate.cuda.occupancy against NVIDIA's occupancy calculator (``cuda_occupancy.h``, which
the test extras bring in the CUDA runtime wheel), compiled here with g++; on a GPU
(ABLATE_TEST_GPU=1), also against the driver's answer for the compiled kernels."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from ablate.cuda.occupancy import H100_PCIE, H100_SXM, SMLimits, blocks_per_sm, waves

ORACLE = r"""
#include <cstdio>
#include "cuda_occupancy.h"
// Each input line: registers threads shared sm_count max_threads max_blocks regs_per_sm
// regs_per_block shared_per_sm reserved; each output line: blocks per SM (or -error).
int main() {
  int regs, threads, shared, sms, max_threads, max_blocks, regs_sm, regs_block;
  long shared_sm, reserved;
  while (scanf("%d %d %d %d %d %d %d %d %ld %ld", &regs, &threads, &shared, &sms,
               &max_threads, &max_blocks, &regs_sm, &regs_block, &shared_sm, &reserved) == 10) {
    cudaOccDeviceProp prop;
    prop.computeMajor = 9; prop.computeMinor = 0; prop.maxThreadsPerBlock = 1024;
    prop.maxThreadsPerMultiprocessor = max_threads; prop.regsPerBlock = regs_block;
    prop.regsPerMultiprocessor = regs_sm; prop.warpSize = 32; prop.sharedMemPerBlock = 49152;
    prop.sharedMemPerMultiprocessor = shared_sm; prop.numSms = sms;
    prop.sharedMemPerBlockOptin = 232448; prop.reservedSharedMemPerBlock = reserved;
    cudaOccFuncAttributes attr;
    attr.maxThreadsPerBlock = 1024; attr.numRegs = regs; attr.sharedSizeBytes = shared;
    attr.numBlockBarriers = 1;  // cuda.syncthreads
    cudaOccDeviceState state;
    cudaOccResult result;
    cudaOccError e = cudaOccMaxActiveBlocksPerMultiprocessor(&result, &prop, &attr, &state,
                                                             threads, 0);
    printf("%d\n", e == CUDA_OCC_SUCCESS ? result.activeBlocksPerMultiprocessor : -(int)e);
  }
  return 0;
}
"""


def header_folder() -> Path | None:
    """The folder holding cuda_occupancy.h: the nvidia CUDA runtime wheel's, else CUDA_HOME's."""
    try:
        import nvidia

        for root in nvidia.__path__:
            for found in sorted(Path(root).glob("*/include/cuda_occupancy.h")):
                return found.parent
    except ImportError:
        pass
    for home in (os.environ.get("CUDA_HOME"), "/usr/local/cuda"):
        if home and (Path(home) / "include" / "cuda_occupancy.h").exists():
            return Path(home) / "include"
    return None


@pytest.fixture(scope="module")
def oracle(tmp_path_factory):
    """A function: list of (registers, threads, shared, limits) -> the header's answers."""
    compiler, folder = shutil.which("g++"), header_folder()
    if compiler is None or folder is None:
        pytest.skip(f"needs g++ ({compiler or 'not found'}) and cuda_occupancy.h "
                    f"({folder or 'not found'}: pip install -e '.[test]')")
    work = tmp_path_factory.mktemp("occupancy")
    (work / "oracle.cpp").write_text(ORACLE)
    subprocess.run([compiler, "-O1", f"-I{folder}", "-o", str(work / "oracle"),
                    str(work / "oracle.cpp")], check=True, capture_output=True, timeout=120)

    def ask(cases):
        text = "".join(f"{r} {t} {s} {' '.join(map(str, limits))}\n" for r, t, s, limits in cases)
        done = subprocess.run([str(work / "oracle")], input=text, capture_output=True,
                              text=True, check=True, timeout=60)
        return [int(v) for v in done.stdout.split()]

    return ask


def test_blocks_per_sm_equals_nvidias_calculator(oracle):
    rng = np.random.default_rng(20261203)
    # the header takes the blocks per SM from the compute capability (32 for 9.0)
    limits = [H100_SXM, H100_PCIE, SMLimits(sm_count=132, max_threads=1536, shared=167936)]
    cases = [(int(rng.integers(0, 257)), int(rng.integers(1, 1025)),
              int(rng.choice([0, int(rng.integers(0, 49153))])), limits[int(rng.integers(3))])
             for _ in range(2000)]
    # every register count at ablate's block sizes, and the edges of each limit
    cases += [(r, t, s, H100_SXM) for r in range(0, 257) for t in (32, 64, 96, 128, 256)
              for s in (0, 2048)]
    cases += [(255, 1024, 0, H100_SXM), (64, 1024, 0, H100_SXM), (65, 1024, 0, H100_SXM),
              (32, 1, 49152, H100_SXM), (128, 512, 0, H100_SXM), (129, 512, 0, H100_SXM)]
    expected = oracle(cases)
    ours = [blocks_per_sm(r, t, s, limits) for r, t, s, limits in cases]
    wrong = [(case, o, e) for case, o, e in zip(cases, ours, expected, strict=True) if o != e]
    assert not wrong, f"{len(wrong)} of {len(cases)} differ, first: {wrong[:3]}"
    assert min(expected) == 0 and max(expected) == 32  # both ends were reached


def test_waves_count_the_grid_over_what_the_gpu_holds():
    assert waves(132, 1) == 1.0
    assert waves(1024, 1) == pytest.approx(7.76, abs=0.01)
    assert waves(1024, 2, H100_PCIE) == pytest.approx(4.49, abs=0.01)
    with pytest.raises(ValueError, match="blocks per SM"):
        waves(16, 0)
    with pytest.raises(ValueError, match="1..1024"):
        blocks_per_sm(32, 2048)


def test_device_limits_reads_attributes_the_driver_has():
    """numba-cuda reads a device attribute NAME as CU_DEVICE_ATTRIBUTE_NAME: every name
    device_limits asks for must exist there (a typo would only show on a GPU)."""
    bindings = pytest.importorskip("cuda.bindings.driver")
    known = set(dir(bindings.CUdevice_attribute))
    asked = []

    class Device:
        def __getattr__(self, name):
            asked.append(name)
            return 7

    from ablate.cuda.occupancy import device_limits

    assert device_limits(Device()) == SMLimits(*[7] * 7)
    assert len(asked) == 7
    assert [name for name in asked if f"CU_DEVICE_ATTRIBUTE_{name}" not in known] == []


@pytest.mark.skipif(os.environ.get("ABLATE_TEST_GPU") != "1",
                    reason="needs a GPU (ABLATE_TEST_GPU=1)")
def test_blocks_per_sm_equals_the_drivers_for_the_compiled_kernels():
    from ablate.cuda.device import DeviceEnsemble, threads_for
    from ablate.cuda.occupancy import device_limits, driver_blocks_per_sm

    limits = device_limits()
    for cell in ("lstm", "gru", "rnn"):
        for tile_rows in (1, 4, 32):
            ens = DeviceEnsemble(cell, np.float32, 2, 3, 32, 2, 64, 3, 1, tile_rows)
            ens.load_interval(np.zeros((2, 1, 3, 32, 2)), np.zeros((2, 1, 3, 32), np.int64),
                              np.zeros((2, 1, 3, 32, 0)), np.ones((2, 1, 3, 32)),
                              np.ones(2, np.int64), np.ones(2, np.int64), np.full(2, 1e-3),
                              np.zeros(2))
            ens.step(0, 0)  # compiles forward and backward
            threads = threads_for(tile_rows, 64)
            assert ens.threads == threads
            for dispatcher in (ens.kernels.forward, ens.kernels.backward):
                # A dispatcher without a signature answers {signature: value}; the one
                # specialisation compiled here is the launch's.
                kernel = next(iter(dispatcher.overloads.values()))
                ours = blocks_per_sm(kernel.regs_per_thread, threads,
                                     kernel.shared_mem_per_block, limits)
                assert ours == driver_blocks_per_sm(dispatcher, threads), (cell, tile_rows)
