"""Let LLVM vectorise the kernels' loops 512 bits wide where the CPU has AVX-512.

LLVM tunes for Intel's AVX-512 server cores with "prefer-256-bit": auto-vectorised loops
(the cells' gate math, σ and tanh as polynomials) use 8 float32 lanes where the core has 16.
Lifting it doubles the lanes of those loops: the float32 tanh pass 0.5 → 0.2–0.3 ns an
element and the lstm forward at H=64 1.85 → 1.5 ms (bench/RESULTS.md). The register tiles
are 512-bit already, so the core runs at its AVX-512 clock during a step either way. Results
do not change: elementwise loops compute each element the same way at any width, and no
reduction is vectorised (no reassociation is allowed).

Numba reads the feature string once, when it builds its CPU target: at the first ``njit``
anywhere in the process. ``ablate/__init__.py`` calls this before any of its kernels exists;
a process that compiled Numba code before importing ablate keeps 256 bits (slower, same
results). Nothing changes where NUMBA_CPU_NAME or NUMBA_CPU_FEATURES are set, or where the
CPU has no AVX-512.
"""

from __future__ import annotations


def prefer_512_bit_vectors() -> bool:
    """Add "-prefer-256-bit" to Numba's CPU features; True where it took effect."""
    import llvmlite.binding as llvm
    from numba.core import config
    from numba.core.registry import cpu_target

    if config.CPU_NAME not in (None, "host") or config.CPU_FEATURES is not None:
        return False
    if "_toplevel_target_context" in vars(cpu_target):  # a cached_property, once built
        return False  # Numba's CPU target exists already: its features are fixed
    features = llvm.get_host_cpu_features()
    if not features.get("avx512f", False):
        return False
    config.CPU_FEATURES = features.flatten() + ",-prefer-256-bit"
    return True
