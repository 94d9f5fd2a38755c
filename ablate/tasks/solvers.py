"""Hand-written solvers: read a batch's inputs step by step and answer every task exactly.

They learn nothing and never look at targets or at the generator's annotations: each is
the short program a network would have to become, reading x [T,B,I] causally and writing
y [T,B,O] (logits for "xent" tasks: 1 on the chosen class, 0 elsewhere; values for "mse").
The tests use them to show that every "solved" criterion is reachable and that the targets
depend on the cues and on nothing else.

    solve(task, x) -> y
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ablate.tasks.task import Task


@njit(cache=True)
def solve_copy(x: np.ndarray, n_symbols: int) -> np.ndarray:
    """Store the symbols seen before the delimiter; after it, say them back in order."""
    n_steps, batch_size, _ = x.shape
    y = np.zeros((n_steps, batch_size, n_symbols + 1), dtype=np.float32)
    stored = np.zeros(n_steps, dtype=np.int64)
    for b in range(batch_size):
        n_stored, n_said, recalling = 0, 0, False
        for t in range(n_steps):
            symbol = np.argmax(x[t, b])
            answer = 0  # blank
            if recalling and n_said < n_stored:
                answer = stored[n_said]
                n_said += 1
            if symbol == n_symbols + 1:
                recalling = True
            elif 1 <= symbol <= n_symbols and not recalling:
                stored[n_stored] = symbol
                n_stored += 1
            y[t, b, answer] = 1.0
    return y


@njit(cache=True)
def solve_adding(x: np.ndarray, scaled: bool) -> np.ndarray:
    """Running sum of the values marked +1; output 0.5 + sum/4 (1997) or the sum."""
    n_steps, batch_size, _ = x.shape
    y = np.zeros((n_steps, batch_size, 1), dtype=np.float32)
    for b in range(batch_size):
        total = 0.0
        for t in range(n_steps):
            if x[t, b, 1] == 1.0:
                total += x[t, b, 0]
            y[t, b, 0] = 0.5 + total / 4.0 if scaled else total
    return y


@njit(cache=True)
def solve_temporal_order(x: np.ndarray, n_classes: int) -> np.ndarray:
    """Read X as bit 0 and Y as bit 1, in order; answer the number so far."""
    n_steps, batch_size, _ = x.shape
    y = np.zeros((n_steps, batch_size, n_classes), dtype=np.float32)
    for b in range(batch_size):
        label = 0
        for t in range(n_steps):
            if x[t, b, 6] == 1.0:  # X
                label = 2 * label
            elif x[t, b, 7] == 1.0:  # Y
                label = 2 * label + 1
            y[t, b, label % n_classes] = 1.0
    return y


@njit(cache=True)
def solve_tv(x: np.ndarray, n_noise: int, n_classes: int, cues_per_class: int) -> np.ndarray:
    """Remember the last cue animal seen; answer its class (for tv and continual alike)."""
    n_steps, batch_size, _ = x.shape
    first_cue = 1 + n_noise
    y = np.zeros((n_steps, batch_size, n_classes), dtype=np.float32)
    for b in range(batch_size):
        answer = 0
        for t in range(n_steps):
            symbol = np.argmax(x[t, b])
            if first_cue <= symbol < first_cue + n_classes * cues_per_class:
                answer = (symbol - first_cue) // cues_per_class
            y[t, b, answer] = 1.0
    return y


@njit(cache=True)
def solve_timing(x: np.ndarray) -> np.ndarray:
    """Time the two pulses; after go, pulse once after the same delay."""
    n_steps, batch_size, _ = x.shape
    y = np.zeros((n_steps, batch_size, 1), dtype=np.float32)
    for b in range(batch_size):
        first, second = -1, -1
        for t in range(n_steps):
            if x[t, b, 0] == 1.0:
                if first < 0:
                    first = t
                elif second < 0:
                    second = t
            if x[t, b, 1] == 1.0 and second >= 0 and t + second - first < n_steps:
                y[t + second - first, b, 0] = 1.0
    return y


@njit(cache=True)
def solve_mqar(x: np.ndarray, n_keys: int, n_values: int) -> np.ndarray:
    """A key followed by a value stores the pair; a key seen again recalls its value."""
    n_steps, batch_size, _ = x.shape
    y = np.zeros((n_steps, batch_size, n_values), dtype=np.float32)
    value_of = np.empty(n_keys, dtype=np.int64)
    for b in range(batch_size):
        value_of[:] = -1
        previous = -1
        for t in range(n_steps):
            token = np.argmax(x[t, b])
            if token < n_keys and value_of[token] >= 0:
                y[t, b, value_of[token]] = 1.0
            if n_keys <= token < n_keys + n_values and 0 <= previous < n_keys:
                value_of[previous] = token - n_keys
            previous = token
    return y


def solve(task: Task, x: np.ndarray) -> np.ndarray:
    """The solver's output y [T,B,O] for ``task`` on inputs x [T,B,I]."""
    o = task.options
    if task.name == "copy":
        return solve_copy(x, o["n_symbols"])
    if task.name == "adding":
        return solve_adding(x, o["variant"] == "1997")
    if task.name == "temporal_order":
        return solve_temporal_order(x, task.n_out(1))
    if task.name in ("tv", "continual"):
        return solve_tv(x, o["n_noise"], o["n_classes"], o["cues_per_class"])
    if task.name == "timing":
        return solve_timing(x)
    if task.name == "mqar":
        return solve_mqar(x, o["n_keys"], o["n_values"])
    raise ValueError(f"no solver for task {task.name!r}")
