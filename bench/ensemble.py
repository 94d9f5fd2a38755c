"""Ensemble training throughput: ablate's engine against the best PyTorch routes, same run.

The workload (defaults): 16 ``lstm`` models, H=64, B=32, T=100 (the ``copy`` task at gap 80:
I=10, O=9, cross-entropy on the 10 recall steps), Adam, global-norm clipping at 1.0, each
model with its own seed and its own training batches, float32. Measured in one run:

  ablate     ``ablate.train.train_ensemble`` (threads over models, compiled interval
             kernels), with 1 thread and with 2; evaluation at step 0 and at the end only
  torch seq  ``nn.LSTM`` + ``nn.Linear`` + ``torch.optim.Adam``, one model after another, in
             2 processes side by side with 1 torch thread each (8 models per process)
  torch vmap ``torch.func.stack_module_state`` + ``vmap`` over the 16 models (``nn.LSTM``
             has no vmap batching rule, so the LSTM is written out with its own weights:
             the input projection for all steps at once, then one matmul per step), with 1
             and with 2 torch threads

Every route draws its batches with ``task.batch`` inside the timed loop. Throughput is
model-steps per second (models × steps / wall seconds) after a warm-up, compile time
excluded; the routes are timed in interleaved rounds and each route's best round counts
(the machine is shared). Model-steps per CPU-second (all threads and processes of the route)
is shown beside it: less sensitive to other jobs, it compares work per core.

Then cold and warm start: the time from launching a fresh ``python`` process to its first
training step finished, first with an empty Numba cache directory (cold), then again with
the cache it left (warm).

    python bench/ensemble.py                 # full: about 4 minutes on 2 cores
    python bench/ensemble.py --steps 20 --repeats 1 --no-start
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout

GAP = 80  # copy at gap 80: T = gap + 20 = 100
CLIP = 1.0
LR = 1e-3


# ---------------------------------------------------------------- ablate


def ablate_route(args, threads: int):
    """A measure() for the ablate ensemble on ``threads`` threads (compiled on creation)."""
    from ablate.results import RunSpec
    from ablate.train import train_ensemble

    specs = [
        RunSpec("lstm", "copy", gap=GAP, seed=seed, lr=LR, n_hidden=args.hidden,
                batch_size=args.batch, budget=args.steps, eval_every=args.steps, clip=CLIP,
                eval_batch=32, test_batch=32)
        for seed in range(args.models)
    ]
    train_ensemble(specs[:threads], diagnostics=False, threads=threads)  # warm-up, compile

    def measure() -> tuple[float, float]:
        cpu = time.process_time()
        result = train_ensemble(specs, diagnostics=False, threads=threads).results[0]
        cpu = time.process_time() - cpu
        return result.ensemble["model_steps_per_second"], args.models * args.steps / cpu

    return measure


# ---------------------------------------------------------------- torch


def _torch_batches(args, seed: int, index: int, torch):
    from ablate import tasks

    batch = tasks.get("copy").batch(GAP, args.batch, seed, "train", index)
    return (torch.from_numpy(batch.x), torch.from_numpy(batch.target),
            torch.from_numpy(batch.mask))


def masked_xent(torch, y, target, mask):
    """Σ mask·(−log softmax(y)[target]) / Σ mask (log_softmax + gather: vmap-friendly)."""
    picked = torch.log_softmax(y, dim=-1).gather(-1, target.unsqueeze(-1)).squeeze(-1)
    return -(picked * mask).sum() / mask.sum()


def torch_sequential_worker(args, first: int, count: int, start_at: float) -> str:
    """Train models first..first+count−1 one after another from ``start_at`` (epoch seconds).

    Returns "seconds cpu_seconds" of the timed part.
    """
    import torch

    torch.set_num_threads(1)
    n_in, n_out = 10, 9

    def run(seed: int, steps: int) -> None:
        torch.manual_seed(seed)
        lstm = torch.nn.LSTM(n_in, args.hidden)
        readout = torch.nn.Linear(args.hidden, n_out)
        parameters = list(lstm.parameters()) + list(readout.parameters())
        optimiser = torch.optim.Adam(parameters, lr=LR)
        for step in range(steps):
            x, target, mask = _torch_batches(args, seed, step, torch)
            loss = masked_xent(torch, readout(lstm(x)[0]), target, mask)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, CLIP)
            optimiser.step()

    run(first, 3)  # warm-up
    time.sleep(max(0.0, start_at - time.time()))  # both processes start together
    started, cpu = time.perf_counter(), time.process_time()
    for seed in range(first, first + count):
        run(seed, args.steps)
    return f"{time.perf_counter() - started} {time.process_time() - cpu}"


def torch_sequential_route(args):
    """A measure(): 2 processes side by side, 1 torch thread each, half the models each."""
    half = args.models // 2
    shares = ((0, half), (half, args.models - half))

    def measure() -> tuple[float, float]:
        start_at = time.time() + 6.0  # after both have imported torch and warmed up
        commands = [
            [sys.executable, __file__, "--torch-worker", str(first), str(count), str(start_at),
             "--hidden", str(args.hidden), "--batch", str(args.batch), "--steps",
             str(args.steps)]
            for first, count in shares
        ]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        processes = [subprocess.Popen(c, stdout=subprocess.PIPE, text=True, env=env)
                     for c in commands]
        times = [[float(v) for v in p.communicate()[0].split()[-2:]] for p in processes]
        wall = max(seconds for seconds, _ in times)  # they ran at once: the slower one counts
        cpu = sum(cpu_seconds for _, cpu_seconds in times)
        return args.models * args.steps / wall, args.models * args.steps / cpu

    return measure


def torch_vmap_route(args, threads: int):
    """A measure() for 16 models under vmap on ``threads`` torch threads."""
    import copy

    import torch
    from torch.func import functional_call, stack_module_state, vmap

    torch.set_num_threads(threads)
    n_in, n_out, H = 10, 9, args.hidden

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = torch.nn.LSTM(n_in, H)
            self.readout = torch.nn.Linear(H, n_out)

        def forward(self, x):  # nn.LSTM's equations with its weights, written out
            lstm = self.lstm
            projected = x @ lstm.weight_ih_l0.T + lstm.bias_ih_l0 + lstm.bias_hh_l0
            h = x.new_zeros(x.shape[1], H)
            c = x.new_zeros(x.shape[1], H)
            hs = []
            for projected_t in projected.unbind(0):  # unbind: one backward node, not T
                gates = projected_t + h @ lstm.weight_hh_l0.T
                i, f, g, o = gates.chunk(4, dim=-1)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(c)
                hs.append(h)
            return self.readout(torch.stack(hs))

    def loss_of(params, buffers, model, x, target, mask):
        y = functional_call(model, (params, buffers), (x,))
        return masked_xent(torch, y, target, mask)

    def run(steps: int) -> None:
        torch.manual_seed(0)
        models = [Net() for _ in range(args.models)]
        params, buffers = stack_module_state(models)
        template = copy.deepcopy(models[0]).to("meta")
        leaves = list(params.values())
        optimiser = torch.optim.Adam(leaves, lr=LR)  # elementwise: per model as if alone
        batched_loss = vmap(lambda p, b, x, t, m: loss_of(p, b, template, x, t, m))
        for step in range(steps):
            data = [_torch_batches(args, seed, step, torch) for seed in range(args.models)]
            x, target, mask = (torch.stack(parts) for parts in zip(*data, strict=True))
            loss = batched_loss(params, buffers, x, target, mask).sum()
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            with torch.no_grad():  # global-norm clipping per model
                norms = torch.sqrt(sum(p.grad.reshape(args.models, -1).pow(2).sum(1)
                                       for p in leaves))
                factor = (CLIP / (norms + 1e-6)).clamp(max=1.0)
                for p in leaves:
                    p.grad.mul_(factor.reshape((-1,) + (1,) * (p.dim() - 1)))
            optimiser.step()

    run(2)  # warm-up

    def measure() -> tuple[float, float]:
        torch.set_num_threads(threads)
        started, cpu = time.perf_counter(), time.process_time()
        run(args.steps)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        return args.models * args.steps / wall, args.models * args.steps / cpu

    return measure


# ---------------------------------------------------------------- start-up

_START_CHILD = """
import time
from ablate.results import RunSpec
from ablate.train import train_ensemble
spec = RunSpec("lstm", "copy", gap={gap}, n_hidden={hidden}, batch_size={batch}, budget=1,
               eval_every=1, eval_batch=8, test_batch=8)
result = train_ensemble([spec], diagnostics=False).results[0]
print(time.time(), result.compile_seconds)
"""


def start_times(args) -> list[dict]:
    """Launch → first training step finished, in fresh processes: cold cache, then warm."""
    code = _START_CHILD.format(gap=GAP, hidden=args.hidden, batch=args.batch)
    rows = []
    with tempfile.TemporaryDirectory(prefix="ablate-numba-cache-") as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache, "PYTHONPATH": str(ROOT)}
        for label in ("cold (empty cache)", "warm (second process)", "warm (third process)"):
            launched = time.time()
            out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                                 text=True, check=True).stdout.split()
            rows.append({"start": label, "seconds": float(out[0]) - launched,
                         "compile_seconds": float(out[1])})
    return rows


# ---------------------------------------------------------------- main


ROUTES = (
    ("ablate, 1 thread", lambda args: ablate_route(args, 1)),
    ("ablate, 2 threads", lambda args: ablate_route(args, 2)),
    ("torch nn.LSTM, sequential, 2 processes × 1 thread", torch_sequential_route),
    ("torch stack_module_state + vmap, 1 thread", lambda args: torch_vmap_route(args, 1)),
    ("torch stack_module_state + vmap, 2 threads", lambda args: torch_vmap_route(args, 2)),
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=60, help="training steps per model")
    parser.add_argument("--repeats", type=int, default=3,
                        help="rounds; each round times every route once, the best counts")
    parser.add_argument("--no-start", action="store_true", help="skip cold/warm start")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    parser.add_argument("--torch-worker", nargs=3, type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.torch_worker:
        first, count, start_at = args.torch_worker
        print(torch_sequential_worker(args, int(first), int(count), start_at))
        return
    if min(args.models, args.hidden, args.batch, args.steps, args.repeats) < 1:
        parser.error("--models, --hidden, --batch, --steps and --repeats must be positive")

    import numba
    import torch

    load_before = os.getloadavg()
    print(f"# ensemble benchmark: {args.models} × lstm (H{args.hidden}, B{args.batch}, "
          f"T{GAP + 20}), {args.steps} steps per model, best of {args.repeats} rounds")
    print(f"numba {numba.__version__}, numpy {np.__version__}, torch {torch.__version__}, "
          f"{os.cpu_count()} cores, load average before {load_before[0]:.2f}\n", flush=True)
    measures = {name: make(args) for name, make in ROUTES}  # warm-up and compile
    walls: dict[str, list[float]] = {name: [] for name in measures}
    cpus: dict[str, list[float]] = {name: [] for name in measures}
    for round_ in range(args.repeats):  # interleaved, so a busy spell hits every route
        for name, measure in measures.items():
            wall_rate, cpu_rate = measure()
            walls[name].append(wall_rate)
            cpus[name].append(cpu_rate)
            print(f"  round {round_ + 1}: {name}: {wall_rate:.0f} model-steps/s "
                  f"({cpu_rate:.0f} per CPU-second)", flush=True)
    rows = [{"route": name, "model_steps_per_second": max(walls[name]),
             "model_steps_per_cpu_second": max(cpus[name]), "all": walls[name]}
            for name in measures]
    print("\n| route | model-steps/s (best) | per CPU-second (best) | every round |")
    print("|---|---:|---:|---|")
    for row in rows:
        every = ", ".join(f"{v:.0f}" for v in row["all"])
        print(f"| {row['route']} | {row['model_steps_per_second']:.0f} | "
              f"{row['model_steps_per_cpu_second']:.0f} | {every} |")
    ours, one_thread = rows[1], rows[0]
    best_torch = max(rows[2:], key=lambda row: row["model_steps_per_second"])
    summary = {
        "ablate_2_threads": ours["model_steps_per_second"],
        "best_torch_route": best_torch["route"],
        "speedup_vs_best_torch": ours["model_steps_per_second"]
        / best_torch["model_steps_per_second"],
        "scaling_1_to_2_threads": ours["model_steps_per_second"]
        / one_thread["model_steps_per_second"],
    }
    print(f"\nablate (2 threads) / best PyTorch route ({best_torch['route']}): "
          f"{summary['speedup_vs_best_torch']:.2f}×")
    print(f"ablate scaling 1 → 2 threads: {summary['scaling_1_to_2_threads']:.2f}×")
    starts = [] if args.no_start else start_times(args)
    if starts:
        print("\n| start | launch → first step done (s) | kernel compile/load (s) |")
        print("|---|---:|---:|")
        for row in starts:
            print(f"| {row['start']} | {row['seconds']:.2f} | {row['compile_seconds']:.2f} |")
    load_after = os.getloadavg()
    print(f"\nload average after {load_after[0]:.2f} (others' jobs on the machine make "
          "these numbers noisy; routes are interleaved and the best round counts)")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "summary": summary, "starts": starts,
                                         "load": [load_before[0], load_after[0]]}, indent=2))


if __name__ == "__main__":
    main()
