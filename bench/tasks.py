"""Time batch generation against one LSTM training step on the same batch.

For every task (default options) and gap, with B = 64: the median time of
``task.batch(gap, 64, seed, "train", index)`` (a fresh index each call, as in training)
against ``ablate.loss_and_grad("lstm", params, x, target, mask, task.loss, n_hidden=64,
n_out=...)`` on that batch (forward, loss, backpropagation through time; float32).
The ratio is generation / step: the share of a training step spent making its data.

    python bench/tasks.py
    python bench/tasks.py --tasks copy,tv --gaps 100,1000,5000 --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

import ablate  # noqa: E402
import ablate.tasks  # noqa: E402

N_HIDDEN = 64
BATCH = 64
CELL = "lstm"


def median_ms(run: Callable[[int], object], repeats: int) -> float:
    """Median wall time of run(k) over k = 1..repeats, after one warm-up call (compiles)."""
    run(0)
    times = []
    for k in range(1, repeats + 1):
        start = time.perf_counter()
        run(k)
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def measure(name: str, gap: int, repeats: int) -> dict:
    task = ablate.tasks.get(name)
    batch = task.batch(gap, BATCH, seed=0)
    n_out = task.n_out(gap)
    params = ablate.init_params(CELL, task.n_in(gap), N_HIDDEN, n_out, seed=0, dtype=np.float32)
    generate_ms = median_ms(lambda k: task.batch(gap, BATCH, seed=0, index=k), repeats)
    step_ms = median_ms(
        lambda k: ablate.loss_and_grad(
            CELL,
            params,
            batch.x,
            batch.target,
            batch.mask,
            task.loss,
            n_hidden=N_HIDDEN,
            n_out=n_out,
        ),
        max(1, repeats // 4),
    )
    return dict(
        task=name,
        gap=gap,
        steps=batch.x.shape[0],
        inputs=batch.x.shape[2],
        generate_ms=generate_ms,
        step_ms=step_ms,
        ratio=generate_ms / step_ms,
    )


def table(rows: list[dict]) -> str:
    lines = [
        f"| task | gap | T | I | generate (ms) | {CELL} H={N_HIDDEN} B={BATCH} step (ms) "
        "| generate / step |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['task']} | {r['gap']} | {r['steps']} | {r['inputs']} | "
            f"{r['generate_ms']:.3f} | {r['step_ms']:.1f} | {100 * r['ratio']:.2f}% |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(ablate.tasks.names()))
    parser.add_argument("--gaps", default="100,1000")
    parser.add_argument("--repeats", type=int, default=20, help="timed generation calls")
    args = parser.parse_args()
    rows = [
        measure(name, int(gap), args.repeats)
        for name in args.tasks.split(",")
        for gap in args.gaps.split(",")
    ]
    print(table(rows))


if __name__ == "__main__":
    main()
