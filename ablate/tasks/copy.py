"""Copy memory (Arjovsky, Shah & Bengio 2016, "Unitary evolution RNNs", §4.1).

Alphabet a_0 (blank), a_1..a_8 (symbols), a_9 (delimiter), one-hot inputs (I = 10). A sequence
has T = gap + 20 steps:

    steps 0..9             10 symbols drawn uniformly with replacement from a_1..a_8
    steps 10..gap+8        gap - 1 blanks
    step  gap+9            the delimiter
    steps gap+10..gap+19   blanks; here the 10 symbols must be output, in order

Targets are classes over a_0..a_8 (O = 9; the delimiter is never a target): blank everywhere,
the k-th symbol at step gap + 10 + k. Arjovsky's T is our ``gap``: the last symbol waits
gap + 10 steps for its recall step, every symbol the same.

Worked example, gap = 3 (T = 23), symbols written as digits, blank as '.', delimiter ':':

    x       3 1 4 1 5 2 6 5 3 5 . . : . . . . . . . . . .
    target  . . . . . . . . . . . . . 3 1 4 1 5 2 6 5 3 5
    mask    0 0 0 0 0 0 0 0 0 0 0 0 0 1 1 1 1 1 1 1 1 1 1      (loss_on="recall")

Metric: the fraction of recalled symbols right (argmax over the 9 classes on the 10 recall
steps, whatever the mask). Chance: 1/8. Solved: >= 99% of recalled symbols right.

Chance loss (the best input-blind predictor: blank with certainty before the recall steps,
uniform over the 8 symbols on them), in the cells' normalisation Σ mask·ℓ / Σ mask:
  - loss_on="recall" (mask on the 10 recall steps, the default):  ln 8 per masked step;
  - loss_on="all"    (mask on every step, Arjovsky's loss):        10 ln 8 / (gap + 20),
    the figure Arjovsky et al. quote; ``arjovsky_chance_loss(gap)`` gives it either way.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ablate.tasks import rng
from ablate.tasks.task import (
    CUE,
    MARKER,
    Annotation,
    Batch,
    Option,
    Task,
    integer_at_least,
    one_of,
)


@njit(cache=True)
def generate_copy(
    gap: int, batch_size: int, seed: np.uint64, n_symbols: int, n_recall: int, loss_on_all: bool
) -> tuple[np.ndarray, ...]:
    """x [T,B,n_symbols+2], target [T,B] (classes 0..n_symbols), mask, role, link."""
    n_steps = gap + 2 * n_recall
    delimiter_step = n_recall + gap - 1
    first_recall = delimiter_step + 1
    x = np.zeros((n_steps, batch_size, n_symbols + 2), dtype=np.float32)
    target = np.zeros((n_steps, batch_size), dtype=np.int64)
    mask = np.zeros((n_steps, batch_size), dtype=np.float32)
    role = np.zeros((n_steps, batch_size), dtype=np.int8)
    link = np.full((n_steps, batch_size), -1, dtype=np.int32)
    for b in range(batch_size):
        state = rng.sequence_state(seed, b)
        for t in range(n_steps):
            x[t, b, 0] = 1.0  # blank unless overwritten below
            if loss_on_all:
                mask[t, b] = 1.0
        for k in range(n_recall):
            symbol = rng.integer(state, 1, n_symbols)
            x[k, b, 0] = 0.0
            x[k, b, symbol] = 1.0
            role[k, b] = CUE
            link[k, b] = first_recall + k
            target[first_recall + k, b] = symbol
            mask[first_recall + k, b] = 1.0
        x[delimiter_step, b, 0] = 0.0
        x[delimiter_step, b, n_symbols + 1] = 1.0
        role[delimiter_step, b] = MARKER
    return x, target, mask, role, link


def arjovsky_chance_loss(gap: int, n_symbols: int = 8, n_recall: int = 10) -> float:
    """Arjovsky et al.'s memoryless baseline: 10 ln 8 / (gap + 20), averaged over all steps."""
    return n_recall * math.log(n_symbols) / (gap + 2 * n_recall)


class Copy(Task):
    name = "copy"
    loss = "xent"
    metric_name = "fraction of recalled symbols right"
    options_spec = {
        "n_symbols": Option(8, integer_at_least(2), "an integer >= 2 (Arjovsky: 8)"),
        "n_recall": Option(10, integer_at_least(1), "an integer >= 1 (Arjovsky: 10)"),
        "loss_on": Option("recall", one_of("recall", "all"), "'recall' or 'all'"),
    }

    def n_in(self, gap: int) -> int:
        return self.options["n_symbols"] + 2

    def n_out(self, gap: int) -> int:
        return self.options["n_symbols"] + 1

    def chance(self, gap: int) -> float:
        return 1.0 / self.options["n_symbols"]

    def chance_loss(self, gap: int) -> float:
        if self.options["loss_on"] == "all":
            return self.arjovsky_chance_loss(gap)
        return math.log(self.options["n_symbols"])

    def arjovsky_chance_loss(self, gap: int) -> float:
        """The memoryless cross-entropy averaged over all gap + 20 steps (Arjovsky's figure)."""
        return arjovsky_chance_loss(gap, self.options["n_symbols"], self.options["n_recall"])

    def min_lag(self, gap: int) -> int:
        return gap + self.options["n_recall"]

    def metric(self, y: np.ndarray, batch: Batch) -> float:
        y = self.check_output(y, batch)
        recall = slice(batch.mask.shape[0] - self.options["n_recall"], None)
        logits = y[recall]
        right = np.argmax(logits, axis=-1) == batch.target[recall]
        right &= np.all(np.isfinite(logits), axis=-1)
        return float(np.mean(right))

    def _generate(self, gap, batch_size, seed, stream):
        x, target, mask, role, link = generate_copy(
            gap,
            batch_size,
            seed,
            self.options["n_symbols"],
            self.options["n_recall"],
            self.options["loss_on"] == "all",
        )
        return Batch(x, target, mask), Annotation(role, link)
