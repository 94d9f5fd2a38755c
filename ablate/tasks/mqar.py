"""Multi-query associative recall (Arora, Eyuboglu et al. 2023, "Zoology"), with a gap.

Vocabulary, one-hot (I = n_keys + n_values + n_noise): keys, values, noise tokens. Like
Zoology's generator, each sequence draws ``n_pairs`` distinct keys and ``n_pairs`` distinct
values (without replacement), lists the pairs, and later queries every key once, in random
order; the target at a query is its key's value (xent over O = n_values). Zoology fills the
space between queries with random tokens; here the ``gap`` knob sets the space between the
pairs and the queries, filled with noise tokens (never keys or values, so no false pair):

    steps 0 .. 2P-1              key_1 value_1 key_2 value_2 ... (P = n_pairs)
    steps 2P .. 2P+gap-1         gap noise tokens, uniform over n_noise
    steps 2P+gap .. 3P+gap-1     the P keys again, shuffled: the queries
T = 3P + gap. Every pair waits at least gap + 1 steps (value) or gap + 2 (key) for its query.

Worked example, n_pairs = 2, gap = 3 (T = 9); keys k*, values v*, noise n*:

    step    0    1    2    3    4    5    6    7    8
    x       k5   v9   k2   v0   n1   n3   n1   k2   k5
    target                                     v0   v9      (mask 1 at steps 7 and 8 only)

Metric: accuracy over the queries. Chance: 1/n_values (each query's value is uniform over
the values, whatever else is seen); chance loss ln n_values. Solved: >= 99% of queries right.
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
    integer_at_least,
)


@njit(cache=True)
def draw_distinct(state: np.ndarray, n_draws: int, n_choices: int) -> np.ndarray:
    """n_draws distinct integers from [0, n_choices), in random order (partial Fisher-Yates)."""
    pool = np.arange(n_choices)
    for k in range(n_draws):
        j = rng.integer(state, k, n_choices - 1)
        pool[k], pool[j] = pool[j], pool[k]
    return pool[:n_draws].copy()


@njit(cache=True)
def generate_mqar(
    gap: int,
    batch_size: int,
    seed: np.uint64,
    n_pairs: int,
    n_keys: int,
    n_values: int,
    n_noise: int,
) -> tuple[np.ndarray, ...]:
    """x [T,B,I], target [T,B], mask, role, link; T = 3·n_pairs + gap."""
    n_steps = 3 * n_pairs + gap
    first_query = 2 * n_pairs + gap
    x = np.zeros((n_steps, batch_size, n_keys + n_values + n_noise), dtype=np.float32)
    target = np.zeros((n_steps, batch_size), dtype=np.int64)
    mask = np.zeros((n_steps, batch_size), dtype=np.float32)
    role = np.zeros((n_steps, batch_size), dtype=np.int8)
    link = np.full((n_steps, batch_size), -1, dtype=np.int32)
    for b in range(batch_size):
        state = rng.sequence_state(seed, b)
        keys = draw_distinct(state, n_pairs, n_keys)
        values = draw_distinct(state, n_pairs, n_values)
        order = draw_distinct(state, n_pairs, n_pairs)  # pair order[j] is queried j-th
        for t in range(2 * n_pairs, first_query):
            x[t, b, n_keys + n_values + rng.integer(state, 0, n_noise - 1)] = 1.0
            role[t, b] = DISTRACTOR
        for j in range(n_pairs):
            pair = order[j]
            query = first_query + j
            x[2 * pair, b, keys[pair]] = 1.0
            x[2 * pair + 1, b, n_keys + values[pair]] = 1.0
            x[query, b, keys[pair]] = 1.0
            role[2 * pair, b] = CUE
            role[2 * pair + 1, b] = CUE
            link[2 * pair, b] = query
            link[2 * pair + 1, b] = query
            role[query, b] = MARKER
            target[query, b] = values[pair]
            mask[query, b] = 1.0
    return x, target, mask, role, link


class MQAR(ClassTask):
    name = "mqar"
    loss = "xent"
    metric_name = "accuracy over queries"
    options_spec = {
        "n_pairs": Option(4, integer_at_least(1), "an integer >= 1"),
        "n_keys": Option(16, integer_at_least(1), "an integer >= n_pairs"),
        "n_values": Option(16, integer_at_least(2), "an integer >= max(2, n_pairs)"),
        "n_noise": Option(4, integer_at_least(1), "an integer >= 1"),
    }

    def _check_options(self) -> None:
        o = self.options
        for key in ("n_keys", "n_values"):
            if o[key] < o["n_pairs"]:
                raise ValueError(
                    f"{self.name}: option {key} must be an integer >= n_pairs "
                    f"({o['n_pairs']}), got {o[key]!r}"
                )

    def n_in(self, gap: int) -> int:
        o = self.options
        return o["n_keys"] + o["n_values"] + o["n_noise"]

    def n_out(self, gap: int) -> int:
        return self.options["n_values"]

    def min_lag(self, gap: int) -> int:
        return gap + 2

    def _generate(self, gap, batch_size, seed, stream):
        o = self.options
        x, target, mask, role, link = generate_mqar(
            gap, batch_size, seed, o["n_pairs"], o["n_keys"], o["n_values"], o["n_noise"]
        )
        return Batch(x, target, mask), Annotation(role, link)
