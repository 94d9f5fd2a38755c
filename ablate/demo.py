"""A first look in under a minute: which cells remember a cue across a gap?

    python -m ablate.demo [--gap 20] [--steps 300] [--cells lstm,rnn,nfg]

Trains each cell on the ``tv`` task (a cue animal, ``gap`` unknown objects, then a canine
query whose answer the cue decides) with Adam, then prints test accuracy against chance.
This is a plain Python loop over ``loss_and_grad`` and ``adam_step``; sweeps of many seeds
and gaps belong to ``run_suite.py``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import ablate
from ablate import tasks


def train(cell: str, gap: int, steps: int, n_hidden: int, lr: float, seed: int) -> dict:
    task = tasks.get("tv")
    n_in, n_out = task.n_in(gap), task.n_out(gap)
    params = ablate.init_params(cell, n_in, n_hidden, n_out, seed=seed)
    m, v = np.zeros_like(params), np.zeros_like(params)
    started = time.perf_counter()
    for step in range(1, steps + 1):
        batch = task.batch(gap, 32, seed, "train", step)
        _, grad = ablate.loss_and_grad(
            cell, params, batch.x, batch.target, batch.mask, task.loss, n_hidden, n_out
        )
        ablate.adam_step(params, grad, m, v, step, lr)
    test = task.batch(gap, 512, seed, "test", 0)
    y = ablate.forward(cell, params, test.x, n_hidden, n_out).y
    return {
        "accuracy": task.metric(y, test),
        "chance": task.chance(gap),
        "solved": task.solved(task.metric(y, test)),
        "seconds": time.perf_counter() - started,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gap", type=int, default=20, help="steps between cue and query")
    parser.add_argument("--steps", type=int, default=300, help="Adam steps per cell")
    parser.add_argument("--cells", default="lstm,rnn,nfg", help="comma-separated cell names")
    parser.add_argument("--hidden", type=int, default=32, help="hidden units H")
    parser.add_argument("--lr", type=float, default=1e-2, help="Adam learning rate")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.gap < 1 or args.steps < 1 or args.hidden < 1:
        parser.error("--gap, --steps and --hidden must be positive integers")
    names = [name.strip() for name in args.cells.split(",") if name.strip()]
    try:
        for name in names:
            ablate.cells.get(name)
    except ValueError as error:
        parser.error(str(error))
    print(f"tv task, gap {args.gap}, {args.steps} Adam steps, H={args.hidden}, lr={args.lr}")
    print(f"{'cell':<16}{'test accuracy':>14}{'chance':>8}{'solved':>8}{'seconds':>9}")
    for name in names:
        result = train(name, args.gap, args.steps, args.hidden, args.lr, args.seed)
        print(
            f"{name:<16}{result['accuracy']:>14.3f}{result['chance']:>8.3f}"
            f"{'yes' if result['solved'] else 'no':>8}{result['seconds']:>9.1f}"
        )


if __name__ == "__main__":
    main()
