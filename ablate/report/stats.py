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

``wilson`` is defined in ``ablate.wilson`` (training's early stop uses it too, without the
report's plotting stack). Exponential decay: ``decay_fit`` (defined in ``ablate.decay``,
likewise) and ``attenuation``.
"""

from __future__ import annotations

import math

from ablate.decay import DecayFit, decay_fit  # noqa: F401  (re-exported)
from ablate.wilson import Z95, Interval, wilson  # noqa: F401  (re-exported)


def below(a: Interval, b: Interval) -> bool:
    """True when interval ``a`` lies entirely below ``b`` (they do not overlap)."""
    return bool(a.high < b.low)


def attenuation(rate: float, steps: float) -> float:
    """exp(rate · steps): the fraction of the error signal left after ``steps`` steps."""
    return float(math.exp(rate * steps))
