"""Small statistics the report needs: Wilson intervals, interval comparison, log-linear fits.

Wilson score interval for k successes in n trials at confidence 1 − α (z = Φ⁻¹(1 − α/2),
z = 1.96 for 95%)::

    p̂ = k/n
    centre    = (p̂ + z²/(2n)) / (1 + z²/n)
    half width = z / (1 + z²/n) · sqrt(p̂(1 − p̂)/n + z²/(4n²))

It stays inside [0, 1] and is not degenerate at k = 0 or k = n (0/3 gives [0, 0.562], not
[0, 0]), which matters with a handful of seeds. Two intervals *separate* when one lies
entirely below the other; with 3 seeds 0/3 and 3/3 still overlap ([0, 0.562] and
[0.438, 1]), so 4 seeds per point is the fewest that can separate a total failure from a
total success.

Exponential decay: ``decay_fit`` (defined in ``ablate.decay``, which training imports
without the report's plotting stack) and ``attenuation``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from ablate.decay import DecayFit, decay_fit  # noqa: F401  (re-exported)

Z95 = 1.959963984540054  # Φ⁻¹(0.975)


class Interval(NamedTuple):
    low: float
    high: float


def wilson(successes: int, trials: int, z: float = Z95) -> Interval:
    """Wilson score interval of ``successes``/``trials``; (nan, nan) for no trials."""
    if trials <= 0:
        return Interval(math.nan, math.nan)
    if not 0 <= successes <= trials:
        raise ValueError(f"successes must be in [0, {trials}], got {successes}")
    p = successes / trials
    z2 = z * z
    denominator = 1.0 + z2 / trials
    centre = (p + z2 / (2 * trials)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials))
    # p = 0 or 1 puts a bound exactly on 0 or 1; rounding must not move it off
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return Interval(low, high)


def below(a: Interval, b: Interval) -> bool:
    """True when interval ``a`` lies entirely below ``b`` (they do not overlap)."""
    return bool(a.high < b.low)


def attenuation(rate: float, steps: float) -> float:
    """exp(rate · steps): the fraction of the error signal left after ``steps`` steps."""
    return float(math.exp(rate * steps))
