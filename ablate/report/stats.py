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

Exponential decay: ``decay_fit`` is the least-squares line through ln(norm) against distance
over d ≥ 1 (d = 0 is the loss step itself, whose norm is the readout's, not the memory's) up
to the first distance where the norm is exactly 0; its slope is the decay rate per step (0:
constant, ln ½ ≈ −0.69: halves every step) and exp(rate · gap) the fraction of the error
signal left after ``gap`` steps. An exact 0 ends the fit because past it the signal along
this path is gone: it underflowed, or a saturated read (tanh(c) = ±1) cut it; what shows
up further back arrives through other paths (e.g. h into the gates) and is not the decay of
the error that left the loss (a ``sigmoid_input`` cell state: 0 for the 45 steps next to
the loss, then 1e-18 at 100 steps, would otherwise fit as growing).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

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


class DecayFit(NamedTuple):
    rate: float  # slope of ln(norm) per step of distance
    intercept: float  # ln(norm) at distance 0 on the fitted line
    r2: float  # fraction of ln(norm)'s variance the line explains
    points: int  # distances used


def decay_fit(distance, norm) -> DecayFit | None:
    """Least-squares fit ln(norm) ≈ intercept + rate · distance over d ≥ 1 before the first
    exact 0 (module doc); missing (None, NaN) norms are skipped.

    None with fewer than two usable points.
    """
    distance = np.asarray(distance, float)
    norm = np.asarray([math.nan if v is None else v for v in norm], float)
    use = (distance >= 1) & np.isfinite(norm) & (norm > 0)
    zero = (distance >= 1) & (norm == 0)
    if zero.any():
        use &= distance < distance[zero].min()
    if use.sum() < 2:
        return None
    d, y = distance[use], np.log(norm[use])
    rate, intercept = np.polyfit(d, y, 1)
    residual = y - (intercept + rate * d)
    total = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float((residual**2).sum()) / total if total > 0 else 1.0
    return DecayFit(float(rate), float(intercept), r2, int(use.sum()))


def attenuation(rate: float, steps: float) -> float:
    """exp(rate · steps): the fraction of the error signal left after ``steps`` steps."""
    return float(math.exp(rate * steps))
