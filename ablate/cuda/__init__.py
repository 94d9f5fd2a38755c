"""The CUDA backend: persistent ensemble kernels for every cell (``numba-cuda``).

One training step of an ensemble is three launches whatever the sequence length: the
forward kernel runs the whole time loop, the readout and the loss; the backward kernel
runs backpropagation through time and the weight gradients; the Adam kernel sums the
batch tiles' gradients, clips by the global norm and updates. The grid of the two cell
kernels spans (batch tiles, models), so one launch trains every model of the ensemble.

The pointwise math is written once: ``ablate.cells.pointwise`` holds each cell's unit
equations and their backward as plain Python, which the CPU kernels compile with njit and
the CUDA kernels as device functions, from the same ``Variant`` flags. The float32
activations under them are the CPU kernels' own (``ablate.kernels.activations``; CUDA
kernels call those Numba CPU functions); ``ablate.cuda.activations`` says why float64
differs. What is the CUDA kernels' own is the indexing: tiles, threads, barriers, and the
products written as loops.

Without the ``numba-cuda`` package or without a GPU, ``require()`` raises
``CudaUnavailable`` with one line saying which. Tests run these kernels under Numba's CUDA
simulator (``NUMBA_ENABLE_CUDASIM=1``) and compile them to PTX for sm_90.
"""

from __future__ import annotations

from ablate.cuda.compat import restore_numpy_aliases

restore_numpy_aliases()  # before numba-cuda's first compile loads its registries


class CudaUnavailable(RuntimeError):
    """The CUDA backend cannot run here; the message says why in one line."""


def require() -> None:
    """Raise CudaUnavailable unless numba-cuda is installed and a GPU (or the simulator)
    is usable."""
    try:
        from numba import cuda
    except ImportError as error:  # numba without any CUDA target
        raise CudaUnavailable(
            f"backend 'cuda' needs the numba-cuda package ({error}); "
            "install it with: pip install 'ablate[cuda]'"
        ) from None
    if getattr(cuda, "implementation", None) != "NVIDIA":  # Numba's deprecated built-in one
        raise CudaUnavailable(
            "backend 'cuda' needs the numba-cuda package, not Numba's deprecated built-in "
            "CUDA target; install it with: pip install 'ablate[cuda]'"
        )
    try:
        present = cuda.is_available()
    except Exception as error:  # a broken driver install raises instead of answering
        present, reason = False, str(error).splitlines()[0] if str(error) else type(error).__name__
    else:
        reason = "no CUDA GPU or driver found"
    if not present:
        raise CudaUnavailable(
            f"backend 'cuda' cannot run on this machine: {reason}; use --backend cpu"
        )
