"""Constructed results and ledgers for the report tests (no training): RunResults shaped like
``ablate.train`` makes them, with learning curves and diagnostics dicts as
``ablate.diagnostics`` produces them, written to real ledgers with ``ablate.store.Ledger``.

No tests here; ``test_report*.py`` import these builders.
"""

from __future__ import annotations

import math
import zlib
from pathlib import Path

import numpy as np

from ablate import cells
from ablate.results import RunResult, RunSpec
from ablate.store import Ledger

N_SEGMENTS = 20  # ablate.diagnostics.DRIFT_SEGMENTS
GATED = {"lstm", "lstm_peephole", "nig", "nfg", "nog", "niaf", "noaf", "cifg", "fgr",
         "net_readout", "sigmoid_input", "sigmoid_readout", "use_gate", "lstm97", "gru",
         "mingru", "minlstm"}
KEEP = {"gru": "z", "mingru": "1 − z", "minlstm": "f / (f + i)", "nfg": "none (f = 1)",
        "lstm97": "none (f = 1)", "cifg": "f = 1 − i"}
VERSIONS = {"ablate": "0.1.0", "numba": "0.62.0", "numpy": "2.2.0", "python": "3.11.2"}


def _flow(depth: int, rate: float, start: float) -> list[float]:
    """A norm at distance 0..depth−1 decaying at ``rate`` per step, with a little wiggle."""
    distance = np.arange(depth)
    return (start * np.exp(rate * distance) * (1 + 0.05 * np.sin(distance))).tolist()


def diagnostics(cell: str, gap: int, *, trained: bool, dc_rate: float, dh_rate: float,
                growth: float, keep: float) -> dict:
    """One moment's {"error_flow", "gates", "state_drift"} as ablate.diagnostics.diagnose."""
    has_c = cells.get(cell).has_cell_state
    depth = gap + 12
    error_flow = {
        "loss_step": "the last masked step of each sequence",
        "rows": 16,
        "distance": list(range(depth)),
        "dh_norm": _flow(depth, dh_rate, 0.8),
        "dc_norm": _flow(depth, dc_rate, 0.5) if has_c else None,
        "dh_decay_rate": dh_rate,
        "dc_decay_rate": dc_rate if has_c else None,
    }
    gates = None
    if cell in GATED:
        keep_value = 1.0 if cell in ("nfg", "lstm97") else keep
        gates = {
            "keep_gate": KEEP.get(cell, "f"),
            "write_gate": "none (i = 1)" if cell == "nig" else "i",
            "rows": 64,
            "keep_gap_mean": keep_value,
            "retention_mean": keep_value ** gap * 0.8,
            "retention_best_unit": min(1.0, keep_value ** (gap * 0.5)),
            "write_cue_mean": 0.7 if trained else 0.5,
            "write_other_mean": 0.2 if trained else 0.5,
            "write_selectivity_best_unit": 0.8 if trained else 0.05,
        }
    segment = gap + 12
    first = 1.5 if has_c else 2.0
    ends = first * growth ** (np.arange(N_SEGMENTS) / (N_SEGMENTS - 1))
    state_drift = {
        "state": "c" if has_c else "h",
        "measured": f"mean over 32 streams of ‖state_t‖₂ over units at the end of each of "
                    f"{N_SEGMENTS} test sequences of {segment} steps run back to back without "
                    "reset",
        "segment_steps": segment,
        "norm_at_segment_end": ends.tolist(),
        "growth": float(ends[-1] / ends[0]),
        "max_abs": float(ends[-1]),
        "metric_first_segment": 0.95 if trained else 0.5,
        "metric_last_segment": 0.9 if trained and growth < 2 else 0.5,
    }
    return {"error_flow": error_flow, "gates": gates, "state_drift": state_drift}


def result(cell: str, task: str, gap: int, seed: int, *, solved: bool, lr: float = 1e-2,
           n_hidden: int = 8, val_peak: float | None = None, diverged: bool = False,
           dc_rate: float | None = None, dh_rate: float | None = None, growth: float = 1.1,
           keep: float = 0.97, with_diagnostics: bool = True, budget: int = 400,
           eval_every: int = 50, options: dict | None = None, chance: float = 0.5,
           forget_bias: float | None = None) -> RunResult:
    """A RunResult as ablate.train would record it; a solved run stops at its criterion."""
    spec = RunSpec(cell, task, gap, seed=seed, lr=lr, n_hidden=n_hidden, budget=budget,
                   eval_every=eval_every, eval_batch=64, test_batch=128,
                   task_options=options or {}, forget_bias=forget_bias)
    rng = np.random.default_rng(zlib.crc32(f"{cell} {task} {gap} {seed} {lr}".encode()))
    peak = val_peak if val_peak is not None else (0.995 if solved else chance + 0.2)
    solve_at = int(eval_every * rng.integers(2, budget // eval_every)) if solved else None
    last = solve_at if solved else budget
    if diverged:
        last = eval_every * 2
    steps = list(range(0, last + 1, eval_every))
    if steps[-1] != last:
        steps.append(last)
    progress = np.array(steps, float) / max(1, last)
    val_metric = (chance + (peak - chance) * progress**1.5).tolist()
    val_loss = (0.7 * (1 - progress) + 0.02).tolist()
    train_loss = [math.nan] + val_loss[1:]
    if diverged:  # a non-finite model counts every answer wrong (tasks.masked_accuracy)
        val_metric[-1] = 0.0
        val_loss[-1] = math.nan
        train_loss[-1] = math.nan
    curve = {"step": steps, "train_loss": train_loss,
             "grad_norm": [math.nan] + [0.5] * (len(steps) - 1),
             "val_loss": val_loss, "val_metric": val_metric}
    if dh_rate is None:
        dh_rate = -0.5 if cell in ("rnn", "irnn", "single_net") else -0.05
    if dc_rate is None:
        dc_rate = -0.3 if cell == "single_net" else -0.001
    diag = None
    if with_diagnostics and not diverged:
        diag = {
            "init": diagnostics(cell, gap, trained=False, dc_rate=-0.31, dh_rate=-0.4,
                                growth=1.0, keep=0.73),
            "final": diagnostics(cell, gap, trained=True, dc_rate=dc_rate, dh_rate=dh_rate,
                                 growth=growth, keep=keep),
        }
    elif with_diagnostics:
        diag = {"init": diagnostics(cell, gap, trained=False, dc_rate=-0.31, dh_rate=-0.4,
                                    growth=1.0, keep=0.73),
                "final": {"skipped": "non-finite parameters"}}
    metric = None if diverged else (0.995 if solved else chance + 0.15)
    return RunResult(
        spec=spec, curve=curve, steps=last,
        stop_reason="diverged" if diverged else ("solved" if solved else "budget"),
        metric=metric, test_loss=None if diverged else 0.05, chance=chance,
        score=None if metric is None else (metric - chance) / (1 - chance),
        solved=solved and not diverged, steps_to_solve=solve_at if solved else None,
        diverged=diverged, diverged_at=last if diverged else None,
        wall_seconds=12.0, compile_seconds=3.0, train_seconds=8.0,
        steps_per_second=last / 8.0, diagnostics=diag,
        ensemble={"size": 4, "threads": 2, "model_steps_per_second": 50.0},
        versions=VERSIONS, commit="0123456789abcdef0123456789abcdef01234567", backend="cpu",
    )


def sweep(cell: str, task: str, successes: dict[int, int], seeds: int = 5, **kwargs
          ) -> list[RunResult]:
    """Runs of one cell on one task: at each gap, the first ``successes[gap]`` seeds solve."""
    return [result(cell, task, gap, seed, solved=seed < k, **kwargs)
            for gap, k in successes.items() for seed in range(seeds)]


def ledger(path: Path, results: list[RunResult], *, failed: list[RunSpec] = (),
           pending: list[RunSpec] = (), protocol: str = "best_lr", suite: str = "constructed",
           error: str = "Traceback (most recent call last):\nMemoryError: out of memory"
           ) -> Path:
    """A real ledger at ``path`` holding ``results`` as done, ``failed`` and ``pending`` runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with Ledger(path) as store:
        store.set_meta(suite=suite, protocol=protocol, description=f"{suite}: constructed runs",
                       suite_text=f'description = "{suite}"\ncells = ["lstm"]\n')
        store.add([r.spec for r in results] + list(failed) + list(pending))
        if results:
            store.record(results)
        if failed:
            store.record_failure(list(failed), error)
    return path


def frame(tmp_path: Path, results: list[RunResult], **kwargs):
    """``store.load`` of a ledger holding ``results``."""
    from ablate.store import load

    return load(ledger(tmp_path / f"ledger-{len(list(tmp_path.iterdir()))}.sqlite", results,
                       **kwargs))
