"""The Wilson score interval: the report's success rates over seeds and training's early
stop (``Task.surely_solved``) share it. Math only: training processes import it without the
report's plotting stack (``ablate.report.stats`` re-exports it and gives the formula).
"""

from __future__ import annotations

import math
from typing import NamedTuple

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
