"""The adding problem: Hochreiter & Schmidhuber 1997 (Experiment 4), or Arjovsky et al. 2016.

Each step is a pair (value, marker), I = 2; one output (O = 1, MSE), read at the sequence end.

variant="1997" (the default; the paper's T is our ``gap``):
    length L uniform in [gap, ⌊1.1·gap⌋]; values uniform in [-1, 1]; markers 0 except:
    X1 is one of the first 10 pairs, X2 one of the first gap/2 - 1 pairs still unmarked
    (both uniform), both marked +1; the first and the last pair are marked -1 unless marked
    +1; if X1 is the first pair its value is 0 (the paper: "In the rare case where the first
    pair of the sequence gets marked, we set X1 to zero"). Target at step L-1:
    0.5 + (X1 + X2) / 4. A sequence is right when |output - target| < 0.04 (the paper's test).
    Chance: the best constant, 0.5, is right with probability
    0.9·P(|X1+X2| < 0.16) + 0.1·P(|X2| < 0.16) = 0.9·0.1536 + 0.1·0.16 = 0.15424.
    Chance loss: Var(target) = (0.9/3 + 1/3) / 16 = 0.0395833.
    Below gap 3 the definition leaves no room for the end marker, so L >= 3 there.

variant="arjovsky" (Arjovsky et al. 2016 §4.2): L = gap; values uniform in [0, 1]; exactly
    two markers 1, one uniform in the first half [0, ⌊L/2⌋), one in the second half; target the
    plain sum X1 + X2. Right when |output - target| < 0.04 (the 1997 test, unscaled: stricter
    than on the 1997 scale). Chance: the best constant, 1, is right with probability
    2·0.04 - 0.04² = 0.0784; chance loss Var(X1 + X2) = 1/6. For gap 1, L = 2.

Padding: sequences of one batch differ in length; all start at step 0 from a zero state and
the batch is right-padded to T = the longest possible length (⌊1.1·gap⌋), so its shape depends
on gap only. The target sits at each sequence's own last step (mask 1 there, 0 elsewhere);
padded steps are all-zero inputs with target 0 and mask 0, after the end marker: they carry
no information and cannot affect the output at the masked step.

Worked example, variant="1997", gap = 10 (T = 11), this sequence of length L = 10:

    step     0     1     2     3     4     5     6     7     8     9    10
    value  -0.31  0.72  0.05 -0.88  0.41  0.93 -0.12  0.66 -0.50  0.27  0
    marker  -1     0     1     0     1     0     0     0     0    -1    0      (step 10: pad)
    X1 = 0.05 (step 2), X2 = 0.41 (step 4): target[9] = 0.5 + 0.46/4 = 0.615, mask[9] = 1.

Metric: fraction of sequences right. Solved: >= 99% of test sequences right (not an MSE
threshold).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ablate.tasks import rng
from ablate.tasks.task import (
    CUE,
    DISTRACTOR,
    MARKER,
    Annotation,
    Batch,
    Option,
    Task,
    one_of,
)

TOLERANCE = 0.04  # a sequence is right when its absolute error is below this (1997)


def lengths_1997(gap: int) -> tuple[int, int]:
    """(shortest, longest) sequence length of the 1997 variant at this gap."""
    shortest = max(gap, 3)
    return shortest, max(shortest, (11 * gap) // 10)


@njit(cache=True)
def generate_1997(
    gap: int, batch_size: int, seed: np.uint64, shortest: int, longest: int
) -> tuple[np.ndarray, ...]:
    """x [T,B,2], target [T,B,1], mask, role, link; T = longest."""
    x = np.zeros((longest, batch_size, 2), dtype=np.float32)
    target = np.zeros((longest, batch_size, 1), dtype=np.float32)
    mask = np.zeros((longest, batch_size), dtype=np.float32)
    role = np.zeros((longest, batch_size), dtype=np.int8)
    link = np.full((longest, batch_size), -1, dtype=np.int32)
    n_second = max(1, shortest // 2 - 1)  # X2 among the first gap/2 - 1 unmarked pairs
    for b in range(batch_size):
        state = rng.sequence_state(seed, b)
        length = rng.integer(state, shortest, longest)
        end = length - 1
        for t in range(length):
            x[t, b, 0] = 2.0 * rng.uniform(state) - 1.0
            role[t, b] = DISTRACTOR
        first = rng.integer(state, 0, min(10, end) - 1)
        second = rng.integer(state, 0, n_second - 1)
        if second >= first:  # the second-th pair among those still unmarked
            second += 1
        if first == 0:
            x[0, b, 0] = 0.0
        for t in (0, end):
            x[t, b, 1] = -1.0
            role[t, b] = MARKER
        for t in (first, second):
            x[t, b, 1] = 1.0
            role[t, b] = CUE
            link[t, b] = end
        target[end, b, 0] = 0.5 + (x[first, b, 0] + x[second, b, 0]) / 4.0
        mask[end, b] = 1.0
    return x, target, mask, role, link


@njit(cache=True)
def generate_arjovsky(
    gap: int, batch_size: int, seed: np.uint64, length: int
) -> tuple[np.ndarray, ...]:
    """x [T,B,2], target [T,B,1], mask, role, link; T = length."""
    x = np.zeros((length, batch_size, 2), dtype=np.float32)
    target = np.zeros((length, batch_size, 1), dtype=np.float32)
    mask = np.zeros((length, batch_size), dtype=np.float32)
    role = np.full((length, batch_size), DISTRACTOR, dtype=np.int8)
    link = np.full((length, batch_size), -1, dtype=np.int32)
    half = length // 2
    for b in range(batch_size):
        state = rng.sequence_state(seed, b)
        for t in range(length):
            x[t, b, 0] = rng.uniform(state)
        first = rng.integer(state, 0, half - 1)
        second = rng.integer(state, half, length - 1)
        total = np.float32(0.0)
        for t in (first, second):
            x[t, b, 1] = 1.0
            role[t, b] = CUE
            link[t, b] = length - 1
            total += x[t, b, 0]
        target[length - 1, b, 0] = total
        mask[length - 1, b] = 1.0
    return x, target, mask, role, link


class Adding(Task):
    name = "adding"
    loss = "mse"
    metric_name = "fraction of sequences with absolute error < 0.04"
    options_spec = {
        "variant": Option("1997", one_of("1997", "arjovsky"), "'1997' or 'arjovsky'"),
    }

    def n_in(self, gap: int) -> int:
        return 2

    def n_out(self, gap: int) -> int:
        return 1

    def chance(self, gap: int) -> float:
        a = 4 * TOLERANCE  # |X1 + X2| < 0.16 on the 1997 scale
        if self.options["variant"] == "arjovsky":
            return 2 * TOLERANCE - TOLERANCE**2  # P(|U1 + U2 - 1| < 0.04)
        # S = X1 + X2 is triangular on [-2, 2]: P(|S| < a) = a - a²/4; X1 = 0 w.p. 1/10.
        return 0.9 * (a - a * a / 4) + 0.1 * a

    def chance_loss(self, gap: int) -> float:
        if self.options["variant"] == "arjovsky":
            return 1.0 / 6.0
        return (0.9 / 3.0 + 1.0 / 3.0) / 16.0

    def min_lag(self, gap: int) -> int:
        if self.options["variant"] == "arjovsky":
            length = max(gap, 2)
            return length - length // 2  # the first marker lies in the first half
        shortest, _ = lengths_1997(gap)
        return shortest - min(10, shortest - 1)  # X1 among the first 10: gap - 10 (1997)

    def metric(self, y: np.ndarray, batch: Batch) -> float:
        y = self.check_output(y, batch)
        steps, rows = np.nonzero(batch.mask)
        error = np.abs(y[steps, rows, 0] - batch.target[steps, rows, 0])
        return float(np.mean(error < TOLERANCE))  # NaN compares False: counted wrong

    def _generate(self, gap, batch_size, seed, stream):
        if self.options["variant"] == "arjovsky":
            arrays = generate_arjovsky(gap, batch_size, seed, max(gap, 2))
        else:
            shortest, longest = lengths_1997(gap)
            arrays = generate_1997(gap, batch_size, seed, shortest, longest)
        x, target, mask, role, link = arrays
        return Batch(x, target, mask), Annotation(role, link)
