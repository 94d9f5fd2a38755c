"""Time one training step of every cell: ablate's compiled kernels against PyTorch.

One step = forward over T steps, cross-entropy on the last step only (mask 1 at t = T−1),
backpropagation through time, an Adam update. Input size 10, 10 output classes, float32.

Compared in the same process, with torch.set_num_threads(2) and denormal floats flushed to
zero on both sides (ablate.loss_and_grad does; torch.set_flush_denormal(True)):
  ours   ablate.loss_and_grad + Adam (ablate.adam_step if exported, else a njit Adam here)
  nn     torch.nn.LSTM/GRU/RNN + Linear + torch.optim.Adam, where PyTorch has the cell
  eager  the same cell as a PyTorch eager loop (ablate.reference.torch_cells) + torch Adam

ours and eager compute the readout at every step and mask all but the last (the same
work); nn reads out only the last step, as idiomatic PyTorch code would.

Every implementation is warmed up (compiled) first; the time is the median of --repeats
steps, taken in 3 rounds of consecutive steps per implementation (see ``median_ms``).
A ratio is torch's time / ours: above 1 means ours is faster.

    python bench/cells.py --quick
    python bench/cells.py --cells lstm,gru --hidden 128 --batch 32 --steps 100 --out t.md
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numba
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

import ablate  # noqa: E402
from ablate.reference import torch_cells  # noqa: E402

N_IN = 10  # input size
N_CLASSES = 10  # output classes of the last-step cross-entropy
LEARNING_RATE = 1e-3
TORCH_THREADS = 2

FULL_GRID = dict(hidden=(32, 128, 256), batch=(32, 128), steps=(100, 500))
QUICK_GRID = dict(hidden=(32, 128), batch=(32,), steps=(100,))
QUICK_CELLS = ("lstm", "gru", "rnn", "nfg", "single_net")
TORCH_NN = {"LSTM": torch.nn.LSTM, "GRU": torch.nn.GRU, "RNN": torch.nn.RNN}


@numba.njit(cache=True)
def _adam_step(params, grad, m, v, step, lr):  # pragma: no cover - compiled
    """torch.optim.Adam's update (β1 0.9, β2 0.999, ε 1e-8), in place."""
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    correction1 = 1.0 - beta1**step
    correction2 = 1.0 - beta2**step
    for k in range(params.size):
        m[k] = beta1 * m[k] + (1.0 - beta1) * grad[k]
        v[k] = beta2 * v[k] + (1.0 - beta2) * grad[k] * grad[k]
        params[k] -= lr * (m[k] / correction1) / (math.sqrt(v[k] / correction2) + eps)


def adam_step() -> tuple[Callable, str]:
    """The lead's exported Adam if there is one, else ours."""
    if hasattr(ablate, "adam_step"):
        return ablate.adam_step, "ablate.adam_step"
    return _adam_step, "bench njit Adam"


SETTLE_SECONDS = 0.1  # > libgomp's spin before its idle workers sleep


def median_ms(steps: dict[str, Callable[[], None]], repeats: int, warmup: int,
              rounds: int = 3) -> dict[str, float]:
    """Median ms per implementation over ``rounds`` rounds of consecutive steps.

    Each round runs every implementation in turn, a block of about repeats/rounds timed
    steps each, after a pause of SETTLE_SECONDS and one untimed step: a load change on a
    shared machine hits every implementation alike, and the untimed step absorbs the
    switch. The pause is for torch's OpenMP workers (GNU libgomp): after each parallel
    region they spin on the cores (GOMP_SPINCOUNT, 300,000 pause instructions, ~10-40 ms)
    before they sleep, so a block of ours started right after torch's ran beside two
    spinning threads — measured 1.9× slower (lstm, H=32) with steps interleaved one by one,
    and ~1 ms per step slower (2.80 against 1.34-1.46 ms alone) in blocks without the pause.
    Every implementation gets the same pause; torch's untimed step wakes its workers again.
    """
    for step in steps.values():
        for _ in range(warmup):
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    per_round = max(1, -(-repeats // rounds))
    for _ in range(rounds):
        for name, step in steps.items():
            time.sleep(SETTLE_SECONDS)  # the other implementation's threads go idle
            step()  # untimed: caches and thread wake-up after the switch
            for _ in range(per_round):
                start = time.perf_counter()
                step()
                times[name].append(time.perf_counter() - start)
    return {name: 1e3 * statistics.median(values) for name, values in times.items()}


def problem(n_hidden: int, n_batch: int, n_steps: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 1.0, (n_steps, n_batch, N_IN)).astype(np.float32)
    target = rng.integers(0, N_CLASSES, (n_steps, n_batch)).astype(np.int64)
    mask = np.zeros((n_steps, n_batch), dtype=np.float32)
    mask[-1] = 1.0  # the loss only on the last step
    return x, target, mask


def ours_step(cell, params0, x, target, mask, n_hidden) -> Callable[[], None]:
    params = params0.copy()
    m, v = np.zeros_like(params), np.zeros_like(params)
    update, _ = adam_step()
    counter = [0]

    def step():
        _, grad = ablate.loss_and_grad(cell.name, params, x, target, mask, "xent",
                                       n_hidden, N_CLASSES)
        counter[0] += 1
        update(params, grad, m, v, counter[0], LEARNING_RATE)

    return step


def nn_step(cell, x, target, n_hidden) -> Callable[[], None]:
    torch.manual_seed(0)
    module = TORCH_NN[cell.torch_module](N_IN, n_hidden)
    linear = torch.nn.Linear(n_hidden, N_CLASSES)
    optimiser = torch.optim.Adam([*module.parameters(), *linear.parameters()],
                                 lr=LEARNING_RATE)
    x_t, last_target = torch.from_numpy(x), torch.from_numpy(target[-1])

    def step():
        optimiser.zero_grad()
        out, _ = module(x_t)
        loss = torch.nn.functional.cross_entropy(linear(out[-1]), last_target)
        loss.backward()
        optimiser.step()

    return step


def eager_step(cell, params0, x, target, mask, n_hidden) -> Callable[[], None]:
    blocks = ablate.unflatten(cell.name, params0.copy(), N_IN, n_hidden, N_CLASSES)
    model = torch_cells.EagerCell(cell.name, blocks)
    optimiser = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    x_t, target_t, mask_t = (torch.from_numpy(a) for a in (x, target, mask))

    def step():
        optimiser.zero_grad()
        loss = torch_cells.reference_loss(model(x_t), target_t, mask_t, "xent")
        loss.backward()
        optimiser.step()

    return step


def run(cells: list[str], grid: dict, repeats: int, baselines: bool = True) -> list[dict]:
    rows = []
    for name in cells:
        cell = ablate.cells.get(name)
        for n_hidden in grid["hidden"]:
            params0 = ablate.init_params(cell.name, N_IN, n_hidden, N_CLASSES, seed=0,
                                         dtype=np.float32)
            for n_batch in grid["batch"]:
                for n_steps in grid["steps"]:
                    x, target, mask = problem(n_hidden, n_batch, n_steps)
                    start = time.perf_counter()
                    ablate.loss_and_grad(cell.name, params0, x, target, mask, "xent",
                                         n_hidden, N_CLASSES)  # compiles on first use
                    first_ms = 1e3 * (time.perf_counter() - start)
                    row = dict(cell=name, H=n_hidden, B=n_batch, T=n_steps, first_ms=first_ms)
                    steps = {"ours": ours_step(cell, params0, x, target, mask, n_hidden)}
                    if baselines and cell.torch_module in TORCH_NN:
                        steps["nn"] = nn_step(cell, x, target, n_hidden)
                    if baselines:
                        steps["eager"] = eager_step(cell, params0, x, target, mask, n_hidden)
                    medians = median_ms(steps, repeats, warmup=2)
                    row.update({k: medians.get(k) for k in ("ours", "nn", "eager")})
                    rows.append(row)
                    print(format_row(row), flush=True)
    return rows


HEADER = ("| cell | H | B | T | ours ms | nn ms | eager ms | ratio vs nn | ratio vs eager |\n"
          "|---|---:|---:|---:|---:|---:|---:|---:|---:|")


def format_row(row: dict) -> str:
    def ms(value):
        return "—" if value is None else f"{value:.2f}"

    def ratio(value):
        return "—" if value is None else f"{value / row['ours']:.2f}×"

    return (f"| {row['cell']} | {row['H']} | {row['B']} | {row['T']} | {ms(row['ours'])} | "
            f"{ms(row['nn'])} | {ms(row['eager'])} | {ratio(row['nn'])} | "
            f"{ratio(row['eager'])} |")


def header_lines(repeats: int) -> list[str]:
    _, adam_name = adam_step()
    return [
        f"One training step (forward, last-step cross-entropy, BPTT, Adam), float32, "
        f"I={N_IN}, {N_CLASSES} classes; median of ≥ {repeats} steps in 3 rounds after warm-up; "
        f"ratio = torch ms / ours ms (> 1: ours faster).",
        f"python {platform.python_version()}, numba {numba.__version__}, "
        f"numpy {np.__version__}, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), numba threads {numba.get_num_threads()}, "
        f"{platform.processor() or platform.machine()}; ours' Adam: {adam_name}.",
    ]


def parse_ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(",") if v)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"H∈{QUICK_GRID['hidden']}, B=32, T=100, cells "
                             f"{','.join(QUICK_CELLS)} (under a minute)")
    parser.add_argument("--cells", help="comma-separated cell names (default: all)")
    parser.add_argument("--hidden", type=parse_ints, help="comma-separated H values")
    parser.add_argument("--batch", type=parse_ints, help="comma-separated B values")
    parser.add_argument("--steps", type=parse_ints, help="comma-separated T values")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed steps per implementation (default 9)")
    parser.add_argument("--out", type=Path, help="also write the markdown table here")
    args = parser.parse_args(argv)

    # ablate.loss_and_grad flushes denormal floats to zero (ablate.kernels.fpmode); torch
    # does the same here, so that long sequences, whose error signal decays through the
    # denormal range, cost both sides the same arithmetic. Set before torch starts its
    # worker threads, which take the mode of the thread that creates them.
    torch.set_flush_denormal(True)
    torch.set_num_threads(TORCH_THREADS)
    known = ablate.cells.names()
    if args.cells:
        cells = [c.strip() for c in args.cells.split(",") if c.strip()]
    else:
        cells = [c for c in QUICK_CELLS if c in known] if args.quick else known
    unknown = [c for c in cells if c not in known]
    if unknown:
        print(f"error: unknown cell(s) {', '.join(unknown)}; known: {', '.join(known)}",
              file=sys.stderr)
        return 2
    grid = dict(QUICK_GRID if args.quick else FULL_GRID)
    for key in ("hidden", "batch", "steps"):
        if getattr(args, key):
            grid[key] = getattr(args, key)
    repeats = args.repeats or 9
    if repeats < 1:
        print("error: --repeats must be at least 1", file=sys.stderr)
        return 2

    lines = header_lines(repeats)
    print("\n".join(lines), end="\n\n")
    print(HEADER, flush=True)
    rows = run(cells, grid, repeats)
    compile_note = ", ".join(f"{r['cell']} {r['first_ms'] / 1e3:.1f}s" for r in rows
                             if r["first_ms"] > 500)
    if compile_note:
        print(f"\nfirst call (includes compiling or loading the cache): {compile_note}")
    if args.out:
        text = "\n".join(lines) + "\n\n" + HEADER + "\n" + \
            "\n".join(format_row(r) for r in rows) + "\n"
        args.out.write_text(text)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
