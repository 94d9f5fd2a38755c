"""Pointwise activations, one set per precision, written once for njit (and later CUDA).

Inside ``njit`` code ``np.tanh`` is a scalar libm call (~10-15 ns an element, this
llvmlite has no SVML), so the float32 kernels use a rational approximation that LLVM
vectorises (~0.2 ns an element with ``error_model="numpy"``, which drops Python's
zero-division check that would otherwise block vectorisation):

    tanh(x) ≈ x·P(x²) / Q(x²),  |x| clamped to 7.9053   (Eigen's float32 tanh; |error| < 3.2e-7)
    σ(x) = ½ + ½·tanh(x/2)                                 (|error| < 2e-7)

The float64 kernels use the exact functions, so gradient checks against PyTorch hold to
1e-9. The derivatives are taken from the stored outputs: tanh' = 1 − t², σ' = s(1 − s).
"""

import numpy as np

from ablate.kernels.jit import inline

_CLAMP32 = np.float32(7.90531110763549805)
# Numerator coefficients of x, x³, …, x¹³ and denominator of 1, x², x⁴, x⁶.
_A1, _A3, _A5 = np.float32(4.89352455891786e-03), np.float32(6.37261928875436e-04), np.float32(
    1.48572235717979e-05
)
_A7, _A9 = np.float32(5.12229709037114e-08), np.float32(-8.60467152213735e-11)
_A11, _A13 = np.float32(2.00018790482477e-13), np.float32(-2.76076847742355e-16)
_B0, _B2 = np.float32(4.89352518554385e-03), np.float32(2.26843463243900e-03)
_B4, _B6 = np.float32(1.18534705686654e-04), np.float32(1.19825839466702e-06)
_HALF32 = np.float32(0.5)


@inline
def tanh32(x):
    """float32 tanh by Eigen's rational approximation (vectorisable)."""
    x = _CLAMP32 if x > _CLAMP32 else x
    x = -_CLAMP32 if x < -_CLAMP32 else x
    x2 = x * x
    p = x2 * _A13 + _A11
    p = x2 * p + _A9
    p = x2 * p + _A7
    p = x2 * p + _A5
    p = x2 * p + _A3
    p = x2 * p + _A1
    q = x2 * _B6 + _B4
    q = x2 * q + _B2
    q = x2 * q + _B0
    return x * p / q


@inline
def sigmoid32(x):
    """float32 σ(x) = ½ + ½ tanh(x/2)."""
    return _HALF32 + _HALF32 * tanh32(_HALF32 * x)


@inline
def tanh64(x):
    """Exact tanh."""
    return np.tanh(x)


@inline
def sigmoid64(x):
    """Exact σ(x) = 1 / (1 + e^{-x}); e^{-x} overflowing to inf gives exactly 0."""
    return 1.0 / (1.0 + np.exp(-x))


def for_dtype(dtype) -> tuple:
    """(tanh, sigmoid) kernels for a float dtype."""
    if np.dtype(dtype) == np.float32:
        return tanh32, sigmoid32
    if np.dtype(dtype) == np.float64:
        return tanh64, sigmoid64
    raise ValueError(f"unsupported dtype {np.dtype(dtype)}; allowed: float32, float64")
