"""Small matrix products in register tiles: out [B, N] = a [B, K] · M [K, N], one thread.

The recurrent products run once per time step at small shapes (B ≤ 64 rows, K and N from
32 to 512), where single-threaded OpenBLAS reaches 60–90 GFLOP/s of a core's ~165 (AVX-512)
and a Numba loop nest 20–30: LLVM does not keep a loop nest's accumulators in registers
(bench/gemm_probe.py). Here the inner kernel is written in LLVM IR through a Numba
intrinsic: a tile of ROWS rows × VECTORS vectors of ``out`` lives in vector registers for
the whole k loop; each k loads VECTORS vectors of M's row k, broadcasts ROWS values of a
and issues ROWS·VECTORS fused multiply-adds (``llvm.fma``). M is packed once per sequence
into panels [⌈N/W⌉, K, W] (zero-padded to a multiple of W = VECTORS·lanes), so a panel is
contiguous and stays in the L1 cache while every row tile streams past it; a long K is cut
into blocks of PANEL_BLOCK_BYTES of panel, each continuing the accumulators through out.
~155–170 GFLOP/s against OpenBLAS' 61–94 on the development VM (bench/vector_probe.py,
bench/RESULTS.md).

Each out element is one chain of FMAs over k = 0, 1, …, K−1 whatever the tile shape, so the
result does not depend on the tiling or the number of rows. ``out`` has ⌈N/W⌉·W columns
(``padded_width``); the padding columns come out 0.

Used where the CPU has AVX-512 (``AVAILABLE``): 16 accumulators of 512 bits fit its 32
vector registers. Elsewhere, and where NUMBA_CPU_NAME names another target than the host,
``ablate.kernels.products`` keeps OpenBLAS. (The tiles are correct on any CPU LLVM targets,
wider vectors split, only slower.)
"""

from __future__ import annotations

import llvmlite.binding as llvm
from llvmlite import ir
from numba import config, njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from ablate.kernels.aligned import aligned_zeros
from ablate.kernels.jit import FLAGS, kernel

VECTOR_BITS = 512
_FEATURES = llvm.get_host_cpu_features()
# AVX-512 and FMA on this CPU, and Numba compiling for it (NUMBA_CPU_NAME unset or "host")
AVAILABLE: bool = (bool(_FEATURES.get("avx512f", False)) and bool(_FEATURES.get("fma", False))
                   and config.CPU_NAME in (None, "host"))
# (rows, vectors) of the wide and the narrow tile: 16 accumulators each.
WIDE, NARROW = (4, 4), (8, 2)
PANEL_BLOCK_BYTES = 24 * 1024  # a K-block of one panel: stays in L1 while the rows stream by


def _float_arrays(*typs) -> bool:
    first = typs[0]
    return all(
        isinstance(t, types.Array) and t.ndim == 2 and t.layout == "C"
        and t.dtype in (types.float32, types.float64) and t.dtype == first.dtype
        for t in typs
    )


def _make_tile(rows: int, vectors: int):
    """tile(a, panel, out, r0, c0, k0, k1, accumulate): out[r0:r0+rows, c0:c0+W] (+)=
    a[r0:r0+rows, k0:k1] · panel[k0:k1], for a [B,K], panel [K,W] (W = vectors·lanes),
    out [B,·]; float32 or float64; panel and out C-contiguous, a of any layout. With
    ``accumulate`` the tile starts from out's values, so K can be split into blocks without
    changing a bit of the result."""

    @intrinsic
    def tile(typingctx, a_t, panel_t, out_t, r0_t, c0_t, k0_t, k1_t, accumulate_t):
        if not (_float_arrays(panel_t, out_t) and isinstance(a_t, types.Array)
                and a_t.ndim == 2 and a_t.dtype == panel_t.dtype):
            return None
        a_contiguous = a_t.layout == "C"  # else a strided view, e.g. a transpose
        sig = types.void(a_t, panel_t, out_t, types.intp, types.intp, types.intp, types.intp,
                         types.boolean)

        def codegen(context, builder, signature, args):
            a_arr, panel_arr, out_arr, r0, c0, k0, k1, accumulate = args
            a = context.make_array(signature.args[0])(context, builder, a_arr)
            panel = context.make_array(signature.args[1])(context, builder, panel_arr)
            out = context.make_array(signature.args[2])(context, builder, out_arr)
            dtype = signature.args[0].dtype
            element = context.get_value_type(dtype)
            lanes = VECTOR_BITS // dtype.bitwidth
            vec = ir.VectorType(element, lanes)
            vec_ptr = vec.as_pointer()
            align = dtype.bitwidth // 8
            intp = context.get_value_type(types.intp)
            n_k = cgutils.unpack_tuple(builder, a.shape, 2)[1]  # K, also a's row stride if C
            item_bytes = ir.Constant(intp, dtype.bitwidth // 8)
            a_strides = cgutils.unpack_tuple(builder, a.strides, 2)  # in bytes
            a_row_step = builder.sdiv(a_strides[0], item_bytes)  # in elements
            a_k_step = builder.sdiv(a_strides[1], item_bytes)
            width = cgutils.unpack_tuple(builder, panel.shape, 2)[1]  # W
            out_stride = cgutils.unpack_tuple(builder, out.shape, 2)[1]
            suffix = "f32" if dtype == types.float32 else "f64"
            fma = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(vec, [vec, vec, vec]), f"llvm.fma.v{lanes}{suffix}"
            )
            undef = ir.Constant(vec, ir.Undefined)
            lane0 = ir.Constant(ir.IntType(32), 0)
            splat_mask = ir.Constant(ir.VectorType(ir.IntType(32), lanes), [0] * lanes)

            def const(value):
                return ir.Constant(intp, value)

            def out_pointer(r, v):
                row = builder.add(builder.mul(builder.add(r0, const(r)), out_stride), c0)
                pointer = builder.gep(out.data, [builder.add(row, const(v * lanes))])
                return builder.bitcast(pointer, vec_ptr)

            # the tile's starting values: out's (accumulate) or zeros
            zeros = ir.Constant(vec, [0.0] * lanes)
            accumulate = context.cast(builder, accumulate, types.boolean, types.boolean)
            starts = [builder.select(accumulate, builder.load(out_pointer(r, v), align=align),
                                     zeros)
                      for r in range(rows) for v in range(vectors)]
            # k loop: for k in k0..k1-1, the accumulators as loop-carried values (registers)
            entry = builder.basic_block
            loop = builder.append_basic_block("tile.loop")
            body = builder.append_basic_block("tile.body")
            done = builder.append_basic_block("tile.done")
            builder.branch(loop)
            builder.position_at_end(loop)
            k = builder.phi(intp, "k")
            k.add_incoming(k0, entry)
            accumulators = []
            for start in starts:
                phi = builder.phi(vec)
                phi.add_incoming(start, entry)
                accumulators.append(phi)
            builder.cbranch(builder.icmp_signed("<", k, k1), body, done)

            builder.position_at_end(body)
            panel_row = builder.mul(k, width)
            m_vectors = [
                builder.load(builder.bitcast(
                    builder.gep(panel.data, [builder.add(panel_row, const(v * lanes))]), vec_ptr
                ), align=align)
                for v in range(vectors)
            ]
            updated = []
            for r in range(rows):
                if a_contiguous:
                    index = builder.add(builder.mul(builder.add(r0, const(r)), n_k), k)
                else:
                    index = builder.add(builder.mul(builder.add(r0, const(r)), a_row_step),
                                        builder.mul(k, a_k_step))
                value = builder.load(builder.gep(a.data, [index]))
                splat = builder.shuffle_vector(
                    builder.insert_element(undef, value, lane0), undef, splat_mask
                )
                for v in range(vectors):
                    updated.append(
                        builder.call(fma, [splat, m_vectors[v], accumulators[r * vectors + v]])
                    )
            k.add_incoming(builder.add(k, const(1)), builder.basic_block)
            for phi, value in zip(accumulators, updated, strict=True):
                phi.add_incoming(value, builder.basic_block)
            builder.branch(loop)

            builder.position_at_end(done)
            for r in range(rows):
                for v in range(vectors):
                    builder.store(accumulators[r * vectors + v], out_pointer(r, v), align=align)
            return context.get_dummy_value()

        return sig, codegen

    return tile


@intrinsic
def lanes_of(typingctx, array_t):
    """Elements of the array's dtype in one VECTOR_BITS vector (a compile-time constant)."""
    if not isinstance(array_t, types.Array):
        return None

    def codegen(context, builder, signature, args):
        return context.get_constant(types.intp, VECTOR_BITS // array_t.dtype.bitwidth)

    return types.intp(array_t), codegen


def _make_row_sweep(rows: int, vectors: int):
    """sweep(a, panel, out, c0, k0, k1, accumulate): every row of a through one panel block,
    ``rows`` at a time in the register tile, the remainder one row at a time."""
    tile, one_row = _make_tile(rows, vectors), _make_tile(1, vectors)

    def sweep(a, panel, out, c0, k0, k1, accumulate):
        B = a.shape[0]
        r0 = 0
        while r0 + rows <= B:
            tile(a, panel, out, r0, c0, k0, k1, accumulate)
            r0 += rows
        while r0 < B:
            one_row(a, panel, out, r0, c0, k0, k1, accumulate)
            r0 += 1

    # Each tile shape under a name of its own. Numba names a compiled function by its
    # qualified name, a per-process counter and its argument types, and the cached kernels
    # carry their callees under those names. The two sweeps share argument types, so with
    # one name, "sweep v119" was the narrow sweep in kernels cached by one process and the
    # wide one in kernels cached by another; a process loading both linked every call to
    # whichever came first: wrong weight gradients, and a wide tile writing past a narrow
    # panel's output rows (heap corruption; seen as "free(): invalid next size" in sweep
    # workers, and as lstm runs whose results differed from a fresh process's).
    sweep.__qualname__ = f"_make_row_sweep.<locals>.sweep_{rows}x{vectors}"
    return njit(**FLAGS)(sweep)


_wide_sweep, _narrow_sweep = _make_row_sweep(*WIDE), _make_row_sweep(*NARROW)


@kernel
def panel_width(n, like):
    """W for an N-column product in ``like``'s dtype: the wide tile's if it divides N,
    else the narrow tile's (N is then zero-padded up to a multiple of it)."""
    lanes = lanes_of(like)
    wide = 4 * lanes
    return wide if n % wide == 0 else 2 * lanes


@kernel
def padded_width(n, like):
    """Columns of ``out`` for an N-column product: ⌈N/W⌉·W."""
    width = panel_width(n, like)
    return (n + width - 1) // width * width


@kernel
def pack_panels(M):
    """M [K,N] (any layout) as panels [⌈N/W⌉, K, W], zero-padded: panels[p, k, w] = M[k, pW+w]
    (64-byte aligned, so every panel row is whole cache lines: aligned.py)."""
    K, N = M.shape
    width = panel_width(N, M)
    n_panels = (N + width - 1) // width
    panels = aligned_zeros((n_panels, K, width), M)
    for p in range(n_panels):
        columns = min(width, N - p * width)
        for k in range(K):
            for w in range(columns):
                panels[p, k, w] = M[k, p * width + w]
    return panels


@kernel
def _panel_product(a, panels, out, accumulate):
    """out[:, :P·W] (+)= a [B,K] · (the first K rows of every panel)."""
    B, K = a.shape
    n_panels, panel_k, width = panels.shape
    if panel_k < K or out.shape[0] != B or out.shape[1] < n_panels * width:
        raise ValueError("tiled_product: a [B,K], panels [P,≥K,W] and out [B,≥P·W] disagree")
    wide = width == WIDE[1] * lanes_of(a)
    if not wide and width != NARROW[1] * lanes_of(a):
        raise ValueError("tiled_product: panels not made by pack_panels for this dtype")
    # K in blocks of a panel slice that fits half of a 48 KiB L1 cache
    k_block = max(1, PANEL_BLOCK_BYTES // (width * a.itemsize))
    for p in range(n_panels):
        panel = panels[p]
        c0 = p * width
        for k0 in range(0, max(K, 1), k_block):
            k1 = min(K, k0 + k_block)
            if wide:
                _wide_sweep(a, panel, out, c0, k0, k1, accumulate or k0 > 0)
            else:
                _narrow_sweep(a, panel, out, c0, k0, k1, accumulate or k0 > 0)


@kernel
def tiled_product(a, panels, out):
    """out [B, ⌈N/W⌉·W] = a [B,K] · M for panels = pack_panels(M); out C-contiguous, a any
    layout (a transposed view is read in place: the weight gradients' Σ_t [x_t, h_{t-1}, 1]ᵀ)."""
    if panels.shape[1] != a.shape[1]:
        raise ValueError("tiled_product: a [B,K], panels [P,K,W] and out [B,≥P·W] disagree")
    _panel_product(a, panels, out, False)


@kernel
def tiled_product_add(a, panels, out):
    """out[:, :⌈N/W⌉·W] += a [B,K] · M[:K] for panels = pack_panels(M) of M [≥K, N]: only
    the panels' first K rows are read (a store filled a chunk of rows at a time)."""
    _panel_product(a, panels, out, True)
