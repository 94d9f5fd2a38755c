"""Timing: measure the delay between two pulses, then reproduce it after a go pulse.

The peephole task of Gers, Schraudolph & Schmidhuber 2002 ("Learning precise timing with
LSTM recurrent networks": measuring and generating delays). Two input channels (I = 2):
channel 0 carries the two measuring pulses, channel 1 the go pulse. One output (O = 1, MSE).

    Δ uniform in [1, gap]          the delay to measure
    W uniform in [gap, 2·gap]      the wait from the second pulse to go: Δ must be held
                                   for at least ``gap`` steps
    go at step 3·gap (fixed), second pulse at 3·gap - W, first pulse Δ earlier (>= step 0)
    target: 1 at step go + Δ, 0 elsewhere; T = 4·gap + 1
    mask: the response window, steps go + 1 .. go + gap

The go pulse sits at a fixed step so that no input-blind output can beat 1/gap (below).

A sequence's pulse is right when the output exceeds 0.5 at step go + Δ and at no other step
of the response window (strictly greater than 0.5; NaN counts as no pulse).

Worked example, gap = 3 (T = 13, go at 9), Δ = 2, W = 4:

    step     0 1 2 3 4 5 6 7 8 9 10 11 12
    pulse    0 0 0 1 0 1 0 0 0 0  0  0  0
    go       0 0 0 0 0 0 0 0 0 1  0  0  0
    target   0 0 0 0 0 0 0 0 0 0  0  1  0
    mask     0 0 0 0 0 0 0 0 0 0  1  1  1

Metric: fraction of sequences whose pulse is right. Chance: 1/gap (an input-blind output
can pulse at one window step at most without failing everywhere; go + Δ is uniform over the
window); at gap 1 the answer is forced and chance is 1. Chance loss: the per-step mean
1/gap predicted everywhere gives (1/gap)(1 - 1/gap). Solved: >= 99% pulses right.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ablate.tasks import rng
from ablate.tasks.task import CUE, MARKER, Annotation, Batch, Task

THRESHOLD = 0.5  # an output above this is a pulse


@njit(cache=True)
def generate_timing(gap: int, batch_size: int, seed: np.uint64) -> tuple[np.ndarray, ...]:
    """x [T,B,2], target [T,B,1], mask, role, link; T = 4·gap + 1."""
    n_steps = 4 * gap + 1
    go = 3 * gap
    x = np.zeros((n_steps, batch_size, 2), dtype=np.float32)
    target = np.zeros((n_steps, batch_size, 1), dtype=np.float32)
    mask = np.zeros((n_steps, batch_size), dtype=np.float32)
    role = np.zeros((n_steps, batch_size), dtype=np.int8)
    link = np.full((n_steps, batch_size), -1, dtype=np.int32)
    for b in range(batch_size):
        state = rng.sequence_state(seed, b)
        delay = rng.integer(state, 1, gap)
        wait = rng.integer(state, gap, 2 * gap)
        second = go - wait
        for t in (second - delay, second):
            x[t, b, 0] = 1.0
            role[t, b] = CUE
            link[t, b] = go + 1
        x[go, b, 1] = 1.0
        role[go, b] = MARKER
        for t in range(go + 1, go + gap + 1):
            mask[t, b] = 1.0
        target[go + delay, b, 0] = 1.0
    return x, target, mask, role, link


class Timing(Task):
    name = "timing"
    loss = "mse"
    metric_name = "fraction of pulses at the exact step"
    options_spec = {}

    def n_in(self, gap: int) -> int:
        return 2

    def n_out(self, gap: int) -> int:
        return 1

    def chance(self, gap: int) -> float:
        return 1.0 / gap

    def chance_loss(self, gap: int) -> float:
        return (1.0 / gap) * (1.0 - 1.0 / gap)

    def min_lag(self, gap: int) -> int:
        return gap + 2  # first pulse to the first response step: W + Δ + 1

    def metric(self, y: np.ndarray, batch: Batch) -> float:
        y = self.check_output(y, batch)
        window = batch.mask > 0
        pulse = y[..., 0] > THRESHOLD
        wanted = batch.target[..., 0] > THRESHOLD
        right = np.all((pulse == wanted) | ~window, axis=0)  # every window step as wanted
        return float(np.mean(right))

    def _generate(self, gap, batch_size, seed, stream):
        x, target, mask, role, link = generate_timing(gap, batch_size, seed)
        return Batch(x, target, mask), Annotation(role, link)
