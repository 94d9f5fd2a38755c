"""The TV watcher (the seed story): a cue animal says what the next canine will be.

Watching TV, you see a bear; from then on any canine on screen is a wolf. A goldfish instead
means the next canine is a dog. In between, ``gap`` frames of "unknown" objects and other
noise go by. Generalised to ``n_classes`` answers with ``cues_per_class`` cue animals each.

Symbols, one-hot (I = 1 + n_noise + n_classes·cues_per_class + 1):
    0                          "unknown" object (the filler)
    1 .. n_noise               noise objects (tree, car, ...): they mean nothing
    then n_classes·cues_per_class cue animals; cue j announces class j // cues_per_class
                               (defaults: cue 0 = bear -> class 0 = wolf,
                                           cue 1 = goldfish -> class 1 = dog)
    last                       the canine query
Each non-cue, non-query frame is "unknown" with probability 1 - noise_rate, else a noise
object drawn uniformly.

An episode (T = max_prefix + gap + 2 steps):
    steps 0..P-1        P frames, P uniform in [0, max_prefix] (the cue's time is not fixed)
    step  P             the cue animal, uniform over all cues
    steps P+1..P+gap    exactly ``gap`` frames
    step  P+gap+1       the canine query; the target: the cue's class (xent, O = n_classes)
    the rest            frames (no target) up to the fixed length T
so the cue waits exactly gap + 1 steps for its query.

Worked example, defaults, gap = 4, max_prefix = 2 (T = 8); u = unknown, n1.. = noise:

    step    0     1     2   3   4   5   6       7
    x       n2    bear  u   n1  u   u   canine  u
    target  at step 6: wolf (class 0); mask 1 at step 6 only.

Metric: accuracy at the query. Chance: 1/n_classes; chance loss ln n_classes.
Solved: >= 99% of queries answered right.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ablate.tasks import rng
from ablate.tasks.task import (
    CUE,
    DISTRACTOR,
    FILLER,
    MARKER,
    Annotation,
    Batch,
    ClassTask,
    Option,
    integer_at_least,
)

UNKNOWN = 0


def is_rate(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1


TV_OPTIONS = {
    "n_classes": Option(2, integer_at_least(2), "an integer >= 2 (wolf, dog, ...)"),
    "cues_per_class": Option(1, integer_at_least(1), "an integer >= 1"),
    "n_noise": Option(4, integer_at_least(1), "an integer >= 1"),
    "noise_rate": Option(0.25, is_rate, "a number in [0, 1]"),
    "max_prefix": Option(10, integer_at_least(0), "an integer >= 0"),
}


@njit(cache=True)
def write_frame(x, role, t, b, state, n_noise, noise_rate):
    """One filler frame: "unknown", or with probability noise_rate a random noise object."""
    if rng.uniform(state) < noise_rate:
        x[t, b, rng.integer(state, 1, n_noise)] = 1.0
        role[t, b] = DISTRACTOR
    else:
        x[t, b, UNKNOWN] = 1.0
        role[t, b] = DISTRACTOR if noise_rate > 0.0 else FILLER  # constant without noise


@njit(cache=True)
def write_episode(
    x,
    target,
    mask,
    role,
    link,
    start,
    b,
    state,
    gap,
    n_classes,
    cues_per_class,
    n_noise,
    noise_rate,
    max_prefix,
):
    """Write one episode into steps start .. start + max_prefix + gap + 1 of sequence b."""
    n_cues = n_classes * cues_per_class
    first_cue = 1 + n_noise
    query_symbol = first_cue + n_cues
    episode_steps = max_prefix + gap + 2
    prefix = rng.integer(state, 0, max_prefix)
    cue = rng.integer(state, 0, n_cues - 1)
    cue_step = start + prefix
    query_step = cue_step + gap + 1
    for t in range(start, start + episode_steps):
        if t == cue_step:
            x[t, b, first_cue + cue] = 1.0
            role[t, b] = CUE
            link[t, b] = query_step
        elif t == query_step:
            x[t, b, query_symbol] = 1.0
            role[t, b] = MARKER
            target[t, b] = cue // cues_per_class
            mask[t, b] = 1.0
        else:
            write_frame(x, role, t, b, state, n_noise, noise_rate)


@njit(cache=True)
def generate_episodes(
    gap: int,
    batch_size: int,
    seed: np.uint64,
    n_episodes: int,
    n_classes: int,
    cues_per_class: int,
    n_noise: int,
    noise_rate: float,
    max_prefix: int,
) -> tuple[np.ndarray, ...]:
    """n_episodes episodes back to back: x [T,B,I], target [T,B], mask, role, link."""
    episode_steps = max_prefix + gap + 2
    n_steps = n_episodes * episode_steps
    n_in = 1 + n_noise + n_classes * cues_per_class + 1
    x = np.zeros((n_steps, batch_size, n_in), dtype=np.float32)
    target = np.zeros((n_steps, batch_size), dtype=np.int64)
    mask = np.zeros((n_steps, batch_size), dtype=np.float32)
    role = np.zeros((n_steps, batch_size), dtype=np.int8)
    link = np.full((n_steps, batch_size), -1, dtype=np.int32)
    for b in range(batch_size):
        state = rng.sequence_state(seed, b)
        for episode in range(n_episodes):
            write_episode(
                x,
                target,
                mask,
                role,
                link,
                episode * episode_steps,
                b,
                state,
                gap,
                n_classes,
                cues_per_class,
                n_noise,
                noise_rate,
                max_prefix,
            )
    return x, target, mask, role, link


class TV(ClassTask):
    name = "tv"
    loss = "xent"
    metric_name = "accuracy"
    options_spec = TV_OPTIONS

    def n_in(self, gap: int) -> int:
        o = self.options
        return 1 + o["n_noise"] + o["n_classes"] * o["cues_per_class"] + 1

    def n_out(self, gap: int) -> int:
        return self.options["n_classes"]

    def min_lag(self, gap: int) -> int:
        return gap + 1

    def episodes(self, stream: str) -> int:
        return 1

    def _generate(self, gap, batch_size, seed, stream):
        o = self.options
        x, target, mask, role, link = generate_episodes(
            gap,
            batch_size,
            seed,
            self.episodes(stream),
            o["n_classes"],
            o["cues_per_class"],
            o["n_noise"],
            float(o["noise_rate"]),
            o["max_prefix"],
        )
        return Batch(x, target, mask), Annotation(role, link)
