"""The decay of the error signal with distance from the loss: one least-squares fit, used by
the diagnostics a run stores and by the report (``ablate.report.stats`` re-exports it).
Numpy only: training processes import it without the report's plotting stack.

``decay_fit`` is the least-squares line through ln(norm) against distance
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
