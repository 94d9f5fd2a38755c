"""Denormal floats flushed to zero inside the training kernels (x86-64: MXCSR FTZ and DAZ).

Why: error signals that decay over a long gap pass through the denormal range (float32
below 1.2e-38) on their way to zero, and every x86 operation on a denormal costs ~100
cycles. Measured on the 2-core development VM (lstm, H32, B32, T1000, forget bias 1, a
loss at the last 10 steps only): backward through time 24 ms with a dense error signal,
243 ms when the signal decays from the end (10×); rnn 2.7×, gru 2.8× (bench/RESULTS.md).
Values below 1.2e-38 carry no information a float32 training can use: added to any normal
number they vanish, so flushing them changes a gradient only where it is already below
1e-38 everywhere.

    mode = flush_denormals()      # FTZ (results) and DAZ (inputs) on; the old mode back
    ...                           # compiled training code, BLAS calls included
    restore_fp_mode(mode)

MXCSR is per thread, so each kernel call sets and restores it in the thread it runs on.
From Python, ``with denormals_flushed():`` does the same around a kernel call (the public
``loss_and_grad`` does, in each thread that runs a batch chunk: measured at
H128 B32 T500 with the loss at the last step, one thread, gru 636 → 74 ms, rnn 143 → 24,
lstm 106 → 72). The diagnostics' error flow keeps IEEE denormals (it measures how far an
error signal decays, to the last representable value); so does Python code outside those
calls. On other architectures all of these do nothing.
"""

import platform
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from ablate.kernels.jit import inline, kernel

_X86 = platform.machine().lower() in ("x86_64", "amd64")
_FTZ_DAZ = np.uint32(0x8040)  # MXCSR bit 15: flush to zero; bit 6: denormals are zero


def _mxcsr(builder, name: str, slot) -> None:
    byte_pointer = ir.IntType(8).as_pointer()
    function = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(ir.VoidType(), [byte_pointer]), name)
    builder.call(function, [builder.bitcast(slot, byte_pointer)])


@intrinsic
def _read_mxcsr(typingctx):
    def codegen(context, builder, signature, args):
        slot = cgutils.alloca_once(builder, ir.IntType(32))
        _mxcsr(builder, "llvm.x86.sse.stmxcsr", slot)
        return builder.load(slot)

    return types.uint32(), codegen


@intrinsic
def _write_mxcsr(typingctx, value):
    def codegen(context, builder, signature, args):
        _mxcsr(builder, "llvm.x86.sse.ldmxcsr", cgutils.alloca_once_value(builder, args[0]))
        return context.get_dummy_value()

    return types.void(types.uint32), codegen


@inline
def flush_denormals():
    """Turn FTZ and DAZ on in this thread; returns the previous mode for restore_fp_mode."""
    if _X86:
        mode = _read_mxcsr()
        _write_mxcsr(mode | _FTZ_DAZ)
        return mode
    return np.uint32(0)


@inline
def restore_fp_mode(mode):
    """Put back the mode flush_denormals returned."""
    if _X86:
        _write_mxcsr(mode)


@kernel
def enter_flush_mode():
    """flush_denormals() for a caller in Python: FTZ and DAZ stay on in this thread until
    leave_flush_mode(mode) puts back the mode returned here (call it in a ``finally``)."""
    return flush_denormals()


@kernel
def leave_flush_mode(mode):
    """Put back the mode enter_flush_mode returned, in the same thread."""
    restore_fp_mode(mode)


@contextmanager
def denormals_flushed(enabled: bool = True) -> Iterator[None]:
    """FTZ and DAZ on in the calling thread for the block (``enabled=False``: unchanged),
    the previous mode back afterwards, also when the block raises."""
    if not enabled:
        yield
        return
    mode = enter_flush_mode()
    try:
        yield
    finally:
        leave_flush_mode(mode)
