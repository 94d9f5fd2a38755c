"""What the hardware barrier of a thread-block cluster (sm_90) costs, beside the barrier in
global memory that the spread tiles use (ablate.cuda.tiles.barrier); imported by
bench/barrier_cost.py, which prints both.

Why: a tile spread over P blocks meets 1–2 times a time step in each direction, and the
one-model target (≤ 20 µs a step, forward + backward) leaves a few µs for all of them. A
cluster of P ≤ 8 blocks (16 with the non-portable opt-in on an H100) is scheduled onto one
GPC at once and meets at ``barrier.cluster``, whose arrive has release and whose wait has
acquire semantics at cluster scope: what a block wrote before it, in global or shared
memory, is seen by the cluster's other blocks after it. If it costs a fraction of the global
barrier, the spread kernels built for clusters (``DeviceEnsemble(..., clusters=True)``)
should be the default for P ≤ 8; this measures the barrier alone, bench/gpu.py the kernels.

The barrier and the cluster launch are ablate's (``ablate.cuda.cluster``: inline PTX through
``@intrinsic``, and numba's launches made cluster launches through cuda.core's
``LaunchConfig``); this adds the cluster's special registers, so that the kernel can see
the cluster it ran in. The simulator runs no inline PTX, so only the PTX is checked
without a GPU (tests/test_cuda_parts.py: ptxas accepts it for sm_90).

    python bench/cluster_barrier.py     # its PTX for sm_90 and ptxas's usage, no GPU needed
"""

from __future__ import annotations

import sys
from pathlib import Path

SIGNATURE = "void(int64[::1], int64[::1], int64[::1], int64)"  # counts, violations, seen, steps


def special_registers() -> tuple:
    """(cluster_rank, cluster_size, cluster_index) as numba intrinsics reading
    %cluster_ctarank, %cluster_nctarank and %clusterid.x."""
    from llvmlite import ir
    from numba import types
    from numba.cuda.extending import intrinsic

    def special_register(name):
        @intrinsic
        def read(typingctx):
            def codegen(context, builder, signature, args):
                asm = ir.InlineAsm(ir.FunctionType(ir.IntType(32), []),
                                   f"mov.u32 $0, %{name};", "=r", side_effect=True)
                return builder.call(asm, [])

            return types.uint32(), codegen

        return read

    return (special_register("cluster_ctarank"), special_register("cluster_nctarank"),
            special_register("clusterid.x"))


def kernel_function():
    """The cluster twin of barrier_cost.make_kernel's kernel, as a Python function: each
    block writes its count, meets its cluster, reads the count of the next block of its
    cluster; ``seen`` gathers the blocks that ran and the largest cluster size any block saw
    (a launch that came out without clusters sees 1, and then its neighbour is itself: no
    barrier measured)."""
    from numba import cuda

    from ablate.cuda.cluster import hardware_sync

    cluster_sync = hardware_sync()
    cluster_rank, cluster_size, cluster_index = special_registers()

    def meet(counts, violations, seen, steps):
        parts = cluster_size()
        rank = cluster_rank()
        block = cluster_index() * parts + rank
        neighbour = block - rank + (rank + 1) % parts
        if cuda.threadIdx.x == 0:
            cuda.atomic.add(seen, 0, 1)
            cuda.atomic.max(seen, 1, parts)
        for s in range(steps):
            if cuda.threadIdx.x == 0:
                counts[block] = s + 1
            cluster_sync()
            if cuda.threadIdx.x == 0:
                value = counts[neighbour]  # written before this barrier, at most a step on
                if value < s + 1 or value > s + 2:
                    cuda.atomic.add(violations, 0, 1)

    return meet


def make_kernel():
    """The kernel, compiled now (on a GPU): a cluster of more than 8 blocks needs the
    compiled kernel's opt-in before its first launch."""
    from numba import cuda

    return cuda.jit(SIGNATURE)(kernel_function())


def allow_large_clusters(kernel_dispatcher) -> None:
    """Let the compiled kernel run clusters of more than 8 blocks (an H100 takes 16)."""
    from numba.cuda.cudadrv.driver import binding, driver

    attribute = binding.CUfunction_attribute.CU_FUNC_ATTRIBUTE_NON_PORTABLE_CLUSTER_SIZE_ALLOWED
    for kernel in kernel_dispatcher.overloads.values():
        function = kernel._codelibrary.get_cufunc()
        driver.cuKernelSetAttribute(attribute, 1, function.handle, function.device.id)


def ptx_usage() -> tuple[str, object]:
    """The kernel's PTX for sm_90 and its ``ptxas -v`` usage (ablate.cuda.resources; no GPU,
    outside the simulator)."""
    from numba import cuda

    from ablate.cuda import resources

    with resources._compiling_for(resources.CC):
        ptx, _ = cuda.compile_ptx(kernel_function(), SIGNATURE, cc=resources.CC)
    return ptx, resources.ptxas_usage("cluster barrier", ptx, resources.ptxas_path())


def main() -> int:
    """Print the kernel's cluster instructions and ptxas's usage (bench/barrier_cost.py
    times it on a GPU)."""
    ptx, usage = ptx_usage()
    for line in ptx.splitlines():
        if "cluster" in line and not line.lstrip().startswith((".", "//", "ld.param")):
            print(line.strip())
    print(usage)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout
    sys.exit(main())
