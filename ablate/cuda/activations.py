"""The activations the CUDA kernels call: the CPU kernels' own where the CUDA target can
compile them, so the pointwise math has one definition for both targets.

float32: ``ablate.kernels.activations.tanh32/sigmoid32`` themselves (Numba CPU functions; a CUDA
kernel compiles a call to one for the device). float64: the CPU versions call ``np.tanh``
and ``np.exp``, which numba-cuda 0.30 does not implement as scalar functions on the device
("KeyError: <ufunc 'exp'>"), so the same equations are written with ``math``:
tanh(x) and σ(x) = 1 / (1 + e^{-x}) (e^{-x} overflowing to inf gives exactly 0).
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from ablate.kernels import activations


@cuda.jit(device=True)
def tanh64(x):
    return math.tanh(x)


@cuda.jit(device=True)
def sigmoid64(x):
    return 1.0 / (1.0 + math.exp(-x))


def for_dtype(dtype) -> tuple:
    """(tanh, sigmoid) device functions for a float dtype."""
    if np.dtype(dtype) == np.float64:
        return tanh64, sigmoid64
    return activations.for_dtype(dtype)
