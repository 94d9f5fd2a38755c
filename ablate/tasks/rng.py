"""Seeded random numbers for the task generators: SplitMix64, compiled and stateless.

Every batch is a pure function of ``(seed, stream, index)``:

    batch_seed = mix(mix(mix(seed) ^ (stream_code · φ)) ^ mix(index + φ))     (Python side)
    state_b    = mix(batch_seed ^ mix((b + 1) · φ))                            (sequence b)
    u_k        = mix(state_b + k · φ)                                          (k-th draw)

where ``mix`` is SplitMix64's finaliser (Steele, Lea & Flood 2014; the generator behind
Java's SplittableRandom) and φ = 0x9E3779B97F4A7C15. Each sequence of a batch draws from
its own stream, so sequence b is the same whatever the batch size, and nothing reads or
changes NumPy's or Numba's global random state.
"""

from __future__ import annotations

import numpy as np
from numba import njit

STREAMS: tuple[str, ...] = ("train", "validation", "test")

_MASK64 = (1 << 64) - 1
_PHI = 0x9E3779B97F4A7C15  # 2^64 / golden ratio: the Weyl increment
_MUL1 = 0xBF58476D1CE4E5B9
_MUL2 = 0x94D049BB133111EB

PHI = np.uint64(_PHI)
MUL1 = np.uint64(_MUL1)
MUL2 = np.uint64(_MUL2)
TO_UNIT = 1.0 / 9007199254740992.0  # 2^-53: 53 random bits -> [0, 1)


def _mix_python(z: int) -> int:
    """SplitMix64's finaliser on Python ints (the same bits as ``mix``)."""
    z &= _MASK64
    z = ((z ^ (z >> 30)) * _MUL1) & _MASK64
    z = ((z ^ (z >> 27)) * _MUL2) & _MASK64
    return z ^ (z >> 31)


def batch_seed(seed: int, stream: str, index: int) -> int:
    """The 64-bit seed of batch (seed, stream, index); arguments already validated."""
    stream_code = STREAMS.index(stream) + 1
    h = _mix_python(seed)
    h = _mix_python(h ^ ((stream_code * _PHI) & _MASK64))
    return _mix_python(h ^ _mix_python(index + _PHI))


@njit(cache=True)
def mix(z: np.uint64) -> np.uint64:
    """SplitMix64's finaliser: a bijection of 64-bit words that scrambles every bit."""
    z = (z ^ (z >> np.uint64(30))) * MUL1
    z = (z ^ (z >> np.uint64(27))) * MUL2
    return z ^ (z >> np.uint64(31))


@njit(cache=True)
def sequence_state(seed: np.uint64, b: int) -> np.ndarray:
    """The generator state (uint64[1]) of sequence b in the batch whose seed is ``seed``."""
    state = np.empty(1, dtype=np.uint64)
    state[0] = mix(seed ^ mix(np.uint64(b + 1) * PHI))
    return state


@njit(cache=True)
def next_word(state: np.ndarray) -> np.uint64:
    """Advance the Weyl sequence and return the next 64 random bits."""
    state[0] += PHI
    return mix(state[0])


@njit(cache=True)
def uniform(state: np.ndarray) -> float:
    """A float64 uniform in [0, 1)."""
    return np.float64(next_word(state) >> np.uint64(11)) * TO_UNIT


@njit(cache=True)
def integer(state: np.ndarray, low: int, high: int) -> int:
    """An integer uniform in [low, high], both ends included (bias < 2^-40)."""
    return low + np.int64(uniform(state) * (high - low + 1))
