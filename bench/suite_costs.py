"""Measure what a suite costs and what it takes to solve: the numbers behind suites/*.toml.

Every measurement trains real RunSpecs with ``ablate.train.train`` and appends one JSON line
per run to ``bench/suite_data/<command>.jsonl`` (spec, steps, stop, metric, solved,
steps_to_solve, wall/compile/train seconds), so ``ablate/cost.py`` and bench/SUITES.md can be
rebuilt from them. Run one process at a time with one thread:

    ABLATE_NUM_THREADS=1 python bench/suite_costs.py steps        # step time grid (cell, H, B, T)
    ABLATE_NUM_THREADS=1 python bench/suite_costs.py cells        # every cell at H32 B32 T112
    ABLATE_NUM_THREADS=1 python bench/suite_costs.py overhead     # time outside training steps
    ABLATE_NUM_THREADS=1 python bench/suite_costs.py solve --cell lstm --task tv --gap 100 \\
        --seeds 0,1,2 --lrs 1e-2,3e-3 --hidden 32 --batch 32 --budget 3000 [--options '{...}']
    ABLATE_NUM_THREADS=1 python bench/suite_costs.py suite suites/smoke.toml  # a whole suite
    ABLATE_NUM_THREADS=1 python bench/suite_costs.py predict      # evaluation forward per row
    python bench/suite_costs.py ledger results/why_gates/ledger.sqlite  # a sweep vs the model

``steps`` and ``cells`` report ms per step = train_seconds / steps (the compiled training
steps only); ``overhead`` reports wall_seconds − train_seconds per run (compile or cache load,
evaluations, the test batch, diagnostics) for a few tasks and gaps, with and without
diagnostics.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from ablate.results import RunSpec  # noqa: E402
from ablate.train import train  # noqa: E402

DATA = Path(__file__).resolve().parent / "suite_data"


def record(name: str, results, extra: dict | None = None) -> None:
    DATA.mkdir(exist_ok=True)
    with open(DATA / f"{name}.jsonl", "a") as out:
        for r in results:
            row = {
                "spec": r.spec.to_dict(),
                "steps": r.steps,
                "stop": r.stop_reason,
                "metric": r.metric,
                "solved": r.solved,
                "steps_to_solve": r.steps_to_solve,
                "wall": r.wall_seconds,
                "compile": r.compile_seconds,
                "train": r.train_seconds,
                "ensemble": r.ensemble.get("size"),
                "threads": r.ensemble.get("threads"),
                "load": os.getloadavg()[0],
                "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                **(extra or {}),
            }
            out.write(json.dumps(row) + "\n")


def step_ms(spec: RunSpec) -> tuple[float, float]:
    """(ms per step, compile seconds) of one short run without diagnostics."""
    result = train(spec, diagnostics=False)[0]
    record("steps", [result])
    return 1e3 * result.train_seconds / result.steps, result.compile_seconds


def timed_spec(cell: str, T: int, H: int, B: int, guess_ms: float) -> RunSpec:
    """A tv run of sequence length T (gap = T − 12) sized to ~1.5 s of training."""
    steps = int(max(10, min(300, 1500 / max(guess_ms, 1e-3))))
    half = max(5, steps // 2)
    return RunSpec(cell, "tv", gap=T - 12, n_hidden=H, batch_size=B, budget=2 * half,
                   eval_every=half, eval_batch=16, test_batch=16, lr=1e-3)


def cmd_steps(args) -> None:
    cells = args.cells.split(",")
    for cell in cells:
        for T in (32, 112, 1012):
            for H in (16, 32, 64, 128):
                for B in (16, 32, 64):
                    guess = 0.6e-6 * T * B * (1 + H / 32) ** 2 * 1e3 / 2
                    ms, compiled = step_ms(timed_spec(cell, T, H, B, guess))
                    print(f"{cell:12s} T={T:5d} H={H:4d} B={B:3d} {ms:9.3f} ms/step"
                          f"  (compile {compiled:.2f} s)", flush=True)


def cmd_cells(args) -> None:
    from ablate import cells as cell_registry

    for cell in args.cells.split(",") if args.cells else cell_registry.names():
        for H in (32, 128):
            ms, compiled = step_ms(timed_spec(cell, 112, H, 32, 3.0 * (H / 32) ** 1.5))
            print(f"{cell:16s} H={H:4d} B=32 T=112 {ms:8.3f} ms/step  (compile {compiled:.2f} s)",
                  flush=True)


OVERHEAD_POINTS = [
    ("tv", 10, {}), ("tv", 100, {}), ("tv", 1000, {}),
    ("copy", 100, {"n_recall": 3}), ("copy", 1000, {"n_recall": 3}),
    ("adding", 100, {}), ("adding", 1000, {}),
    # continual at gap 1000 is left out: its 1024-sequence test batch (T = 32 384) is
    # predicted in one call that holds every step's state, > 23 GB (killed by the OOM killer)
    ("continual", 10, {}), ("continual", 100, {}),
    ("temporal_order", 100, {}), ("timing", 100, {}), ("mqar", 100, {}),
]


def cmd_overhead(args) -> None:
    """Outside-training time of one run of `budget` steps with eval every `eval_every`."""
    for cell in args.cells.split(","):
        for task, gap, options in OVERHEAD_POINTS:
            for diagnostics in (False, True):
                spec = RunSpec(cell, task, gap=gap, task_options=options, budget=args.budget,
                               eval_every=args.eval_every, lr=1e-3)
                started = time.perf_counter()
                result = train(spec, diagnostics=diagnostics)[0]
                outside = time.perf_counter() - started
                record("overhead", [result], {"diagnostics": diagnostics, "call": outside})
                n_evals = len(result.curve["step"])
                print(f"{cell:10s} {task:15s} gap={gap:5d} diag={int(diagnostics)} "
                      f"steps={result.steps} evals={n_evals} train={result.train_seconds:7.2f} s "
                      f"wall={result.wall_seconds:7.2f} s "
                      f"outside={result.wall_seconds - result.train_seconds:6.2f} s "
                      f"compile={result.compile_seconds:5.2f} s", flush=True)


def cmd_solve(args) -> None:
    options = json.loads(args.options) if args.options else {}
    specs = [
        RunSpec(args.cell, args.task, gap=args.gap, seed=seed, lr=lr, n_hidden=args.hidden,
                batch_size=args.batch, budget=args.budget, eval_every=args.eval_every,
                task_options=options, eval_batch=args.eval_batch, forget_bias=args.forget_bias)
        for seed in map(int, args.seeds.split(",")) for lr in map(float, args.lrs.split(","))
    ]
    started = time.perf_counter()
    results = train(specs, diagnostics=args.diagnostics)
    elapsed = time.perf_counter() - started
    record("solve", results, {"call": elapsed, "diagnostics": args.diagnostics,
                              "forget_bias": args.forget_bias})
    for r in results:
        values = r.curve["val_metric"]
        curve = ",".join(f"{v:.2f}" for v in values[:: max(1, len(values) // 12)])
        ms = 1e3 * r.train_seconds / max(r.steps, 1)
        print(f"{r.run_id:40s} {r.stop_reason:8s} steps={r.steps:6d} metric={r.metric:.3f} "
              f"solved={int(r.solved)} ms/step={ms:.2f}  [{curve}]", flush=True)
    n_solved = sum(r.solved for r in results)
    print(f"solved {n_solved}/{len(results)}; call {elapsed:.1f} s; "
          f"sum train {sum(r.train_seconds for r in results):.1f} s", flush=True)


def cmd_predict(args) -> None:
    """µs per sequence-step of the evaluation forward (cells.drivers' chunk_predict, as
    ablate.train calls it) on a 1024-sequence tv batch, whole or cut into row chunks."""
    import numpy as np

    from ablate import cells, tasks
    from ablate.model import _keep_freed_memory, _pin_blas_threads, init_params

    _keep_freed_memory()  # as ablate.train does before evaluating
    _pin_blas_threads()
    task = tasks.get("tv")
    for gap in (100, 1000):
        batch = task.batch(gap, 1024, 0, "test", 0)
        x = np.ascontiguousarray(batch.x, dtype=np.float32)
        for cell in args.cells.split(","):
            _, predict = cells.drivers(cell, np.float32)
            params = init_params(cell, task.n_in(gap), 32, 2, 0, np.float32)
            predict(params, np.ascontiguousarray(x[:, :2]), 32, 2)
            for repeat in range(2):
                for chunk in (1024, 256, 64, 16):
                    started = time.perf_counter()
                    for k in range(0, 1024, chunk):
                        predict(params, np.ascontiguousarray(x[:, k : k + chunk]), 32, 2)
                    seconds = time.perf_counter() - started
                    print(f"{cell:6s} gap {gap:5d} rows/call {chunk:5d} repeat {repeat}: "
                          f"{1e6 * seconds / (x.shape[0] * 1024):.3f} us/sequence-step",
                          flush=True)


def cmd_suite(args) -> None:
    """Train a whole suite's specs with train() in this process (one thread) and compare
    the time with ablate.cost's estimates."""
    from collections import defaultdict

    from ablate.cost import estimate_seconds, estimate_suite_seconds
    from ablate.suite import load_suite

    suite = load_suite(args.path)
    started = time.perf_counter()
    results = train(list(suite.specs), diagnostics=True)
    elapsed = time.perf_counter() - started
    record("suite", results, {"suite": suite.name, "call": elapsed})
    table = defaultdict(list)
    for r in results:
        table[(r.spec.task, r.spec.gap, r.spec.cell)].append(r)
    for (task, gap, cell), rs in table.items():
        steps = ",".join(str(r.steps) for r in rs)
        print(f"{task:12s} gap {gap:5d} {cell:14s} solved {sum(r.solved for r in rs)}/{len(rs)}"
              f"  steps [{steps}]  wall {sum(r.train_seconds for r in rs):6.1f} s train")
    estimate_one = sum(estimate_seconds(spec) for spec in suite.specs)
    print(f"{suite.name}: {len(results)} runs, {elapsed:.1f} s on one core "
          f"(estimate, full budgets: {estimate_one:.1f} s; "
          f"2 workers: {estimate_suite_seconds(suite.specs, 2):.1f} s); "
          f"load {os.getloadavg()[0]:.2f}", flush=True)


def cmd_ledger(args) -> None:
    """A running or finished sweep against ablate.cost (``ablate.progress``: the same table
    as ``run_suite.py status``)."""
    from ablate.progress import progress_report

    print(progress_report(args.ledger, workers=args.workers, backend=args.backend))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("steps")
    p.add_argument("--cells", default="lstm,gru,rnn")
    p = sub.add_parser("cells")
    p.add_argument("--cells", default="")
    p = sub.add_parser("overhead")
    p.add_argument("--cells", default="lstm")
    p.add_argument("--budget", type=int, default=100)
    p.add_argument("--eval-every", type=int, default=50)
    p = sub.add_parser("solve")
    p.add_argument("--cell", default="lstm")
    p.add_argument("--task", default="tv")
    p.add_argument("--gap", type=int, default=100)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--lrs", default="1e-2")
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--budget", type=int, default=2000)
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--eval-batch", type=int, default=256)
    p.add_argument("--options", default="")
    p.add_argument("--diagnostics", action="store_true")
    p.add_argument("--forget-bias", type=float, default=None,
                   help="the runs' forget_bias (RunSpec field; default: the cell's init)")
    p = sub.add_parser("suite")
    p.add_argument("path")
    p = sub.add_parser("predict")
    p.add_argument("--cells", default="lstm,gru,rnn")
    p = sub.add_parser("ledger")
    p.add_argument("ledger", help="e.g. results/why_gates/ledger.sqlite")
    p.add_argument("--backend", default="cpu")
    p.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    commands = {"steps": cmd_steps, "cells": cmd_cells, "overhead": cmd_overhead,
                "solve": cmd_solve, "suite": cmd_suite, "predict": cmd_predict,
                "ledger": cmd_ledger}
    commands[args.command](args)


if __name__ == "__main__":
    main()
