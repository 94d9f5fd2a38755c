"""Temporal order: Hochreiter & Schmidhuber 1997, Experiments 6a (two symbols) and 6b (three).

Symbols, one-hot (I = 8): E (start), B (end, the trigger), a b c d (noise), X, Y. A sequence
starts with E, ends with B, holds X or Y at the relevant positions t1 < t2 (< t3) and noise
drawn uniformly from {a, b, c, d} everywhere else. The class is the order of X and Y, read as
binary digits X = 0, Y = 1 (6a: XX=Q=0, XY=R=1, YX=S=2, YY=U=3; 6b: XXX=Q=0 ... YYY=C=7),
and is the target at the B step (xent over O = 4 or 8 classes).

The paper's numbers are for gap = 100, and every window scales with gap (rounded):
    6a: length in [gap, 1.1·gap], t1 in [0.10·gap, 0.20·gap], t2 in [0.50·gap, 0.60·gap]
    6b: length in [gap, 1.1·gap], t1 in [0.10·gap, 0.20·gap], t2 in [0.33·gap, 0.43·gap],
        t3 in [0.66·gap, 0.76·gap]
all uniform, with E at step 0 (gap = 100 is exactly the paper's setup). Where rounding would
make windows touch (gap below ~20) each window starts after the previous one ends, and the
length is at least the last window's end + 2. The earliest relevant symbol waits at least
min_lag(gap) ≈ 0.8·gap steps for the B step.

Padding: as in ``adding``: right-padded to the longest possible length, target at each
sequence's own B step (mask 1 there only), padded steps all-zero with mask 0.

Worked example, 6a, gap = 10 (t1 in [1, 2], t2 in [5, 6], length in [10, 11], T = 11):

    step    0 1 2 3 4 5 6 7 8 9 10
    x       E c Y a d X b b a B .        ('.' = padding: all-zero input)
    target  at step 9: S (Y then X = class 2); mask 1 at step 9 only.

Metric: accuracy at the B step. Chance: 1/4 (6a), 1/8 (6b); chance loss ln 4, ln 8.
Solved: >= 99% of sequences classified right.
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
    ClassTask,
    Option,
    one_of,
)

START, END, NOISE_FIRST, NOISE_LAST, SYMBOL_X, SYMBOL_Y = 0, 1, 2, 5, 6, 7
N_SYMBOLS = 8
PAPER_WINDOWS = {  # positions for gap = 100, inclusive, Hochreiter & Schmidhuber 1997
    "6a": ((10, 20), (50, 60)),
    "6b": ((10, 20), (33, 43), (66, 76)),
}


def layout(gap: int, variant: str) -> tuple[np.ndarray, int, int]:
    """(windows [K,2] inclusive, shortest, longest) for this gap, scaled from gap = 100."""
    windows = []
    earliest = 1  # step 0 holds E
    for low, high in PAPER_WINDOWS[variant]:
        low = max(earliest, (low * gap + 50) // 100)
        high = max(low, (high * gap + 50) // 100)
        windows.append((low, high))
        earliest = high + 1
    shortest = max(gap, earliest + 1)  # the last window's end + 2
    longest = max(shortest, (11 * gap) // 10)
    return np.array(windows, dtype=np.int64), shortest, longest


@njit(cache=True)
def generate_temporal_order(
    gap: int, batch_size: int, seed: np.uint64, windows: np.ndarray, shortest: int, longest: int
) -> tuple[np.ndarray, ...]:
    """x [T,B,8], target [T,B], mask, role, link; T = longest."""
    n_relevant = windows.shape[0]
    x = np.zeros((longest, batch_size, N_SYMBOLS), dtype=np.float32)
    target = np.zeros((longest, batch_size), dtype=np.int64)
    mask = np.zeros((longest, batch_size), dtype=np.float32)
    role = np.zeros((longest, batch_size), dtype=np.int8)
    link = np.full((longest, batch_size), -1, dtype=np.int32)
    for b in range(batch_size):
        state = rng.sequence_state(seed, b)
        length = rng.integer(state, shortest, longest)
        end = length - 1
        for t in range(1, end):
            x[t, b, rng.integer(state, NOISE_FIRST, NOISE_LAST)] = 1.0
            role[t, b] = DISTRACTOR
        x[0, b, START] = 1.0
        x[end, b, END] = 1.0
        role[0, b] = MARKER
        role[end, b] = MARKER
        label = 0
        for k in range(n_relevant):
            t = rng.integer(state, windows[k, 0], windows[k, 1])
            is_y = rng.integer(state, 0, 1)
            x[t, b, :] = 0.0
            x[t, b, SYMBOL_X + is_y] = 1.0
            role[t, b] = CUE
            link[t, b] = end
            label = 2 * label + is_y
        target[end, b] = label
        mask[end, b] = 1.0
    return x, target, mask, role, link


class TemporalOrder(ClassTask):
    name = "temporal_order"
    loss = "xent"
    metric_name = "accuracy"
    options_spec = {"variant": Option("6a", one_of("6a", "6b"), "'6a' or '6b'")}

    def n_in(self, gap: int) -> int:
        return N_SYMBOLS

    def n_out(self, gap: int) -> int:
        return 2 ** len(PAPER_WINDOWS[self.options["variant"]])

    def min_lag(self, gap: int) -> int:
        windows, shortest, _ = layout(gap, self.options["variant"])
        return shortest - 1 - int(windows[0, 1])

    def _generate(self, gap, batch_size, seed, stream):
        windows, shortest, longest = layout(gap, self.options["variant"])
        x, target, mask, role, link = generate_temporal_order(
            gap, batch_size, seed, windows, shortest, longest
        )
        return Batch(x, target, mask), Annotation(role, link)
