"""Train an ensemble on the GPU: the CUDA twin of ``ablate.train.train_ensemble``.

The protocol is the CPU engine's (same batches, same evaluation, same early stop and
divergence rules, same RunResult), only the training steps run on the device: per interval
of ``eval_every`` steps the batches of every running model are uploaded at once, and each
step is three launches for the whole ensemble (``DeviceEnsemble.step``). Between intervals
the parameters come back to the host, where the CPU kernels score the validation batch
and decide who stops — the metric is therefore computed by exactly the code the CPU
backend uses. Diagnostics (error flow, gates, drift) likewise run on the CPU kernels.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import numpy as np

from ablate import cuda as _cuda
from ablate.model import n_threads
from ablate.results import RunSpec
from ablate.train import _SHAPE_FIELDS, Trained, _as_specs, _Run, _Setup


def train_ensemble(
    specs: Sequence[RunSpec], *, diagnostics: bool = True, threads: int | None = None,
    tile_rows: int | None = None, block_threads: int | None = None,
) -> Trained:
    """Train runs that share shapes together on the GPU; their results and final parameters.

    ``threads``: CPU threads that evaluate and diagnose the models between intervals
    (default: ABLATE_NUM_THREADS, else the usable cores); each model's numbers do not depend
    on it. ``tile_rows`` and ``block_threads`` override the device tiling
    (``ablate.cuda.device.default_tiling``).
    """
    _cuda.require()
    from ablate.cuda.device import DeviceEnsemble

    started = time.perf_counter()
    specs = _as_specs(specs)
    for other in specs[1:]:
        if other.shape_key() != specs[0].shape_key():
            field = next(name for name in _SHAPE_FIELDS
                         if getattr(other, name) != getattr(specs[0], name))
            raise ValueError(f"an ensemble's runs must share {', '.join(_SHAPE_FIELDS)}; "
                             f"{field} differs — use ablate.train.train to group them")
    setup = _Setup(specs[0])
    compile_started = time.perf_counter()
    setup.compile(diagnostics)  # the CPU kernels evaluate and diagnose
    runs = [_Run(spec, setup) for spec in specs]
    spec = specs[0]
    T, B = setup.interval_batches(spec.seed, 0, 1)[0].shape[1:3]  # a training batch's shape
    device = DeviceEnsemble(spec.cell, setup.dtype, len(runs), T, B, setup.n_in, spec.n_hidden,
                            setup.n_out, spec.eval_every, tile_rows, block_threads)
    device.set_params(np.stack([run.params for run in runs]))
    _warm_up(device, setup)
    compile_seconds = time.perf_counter() - compile_started

    eval_threads = max(1, min(threads or n_threads(), len(runs)))
    pool = ThreadPoolExecutor(eval_threads, thread_name_prefix="ablate-eval")
    try:
        # step 0: diagnostics at initialisation and the first curve point
        list(pool.map(lambda run: run.advance(diagnostics), runs))
        _train(device, setup, runs, pool, diagnostics)
    finally:
        pool.shutdown()

    wall = time.perf_counter() - started
    total_steps = sum(run.step for run in runs)
    ensemble = {
        "size": len(runs),
        "threads": eval_threads,  # CPU threads evaluating between intervals
        "backend": "cuda",
        "model_steps": total_steps,
        "model_steps_per_second": total_steps / max(wall - compile_seconds, 1e-9),
    }
    results = [dataclasses.replace(run.result(wall, compile_seconds, ensemble), backend="cuda")
               for run in runs]
    return Trained(results, [run.params for run in runs])


def _train(device, setup: _Setup, runs: list[_Run], pool: ThreadPoolExecutor,
           diagnostics: bool) -> None:
    """Intervals until every run has stopped: the device trains, the pool evaluates."""
    running = [k for k, run in enumerate(runs) if run.stop_reason is None]
    while running:
        n_steps = {k: min(runs[k].spec.eval_every, runs[k].spec.budget - runs[k].step)
                   for k in running}
        _load(device, setup, runs, n_steps)
        interval_started = time.perf_counter()
        for s in range(max(n_steps.values())):
            device.step(s, setup.loss_code)
        fetched = device.fetch()  # params, losses, grad_norms, steps taken: [M, ...] each
        seconds = (time.perf_counter() - interval_started) / len(running)
        finish = partial(_finish_model, runs, fetched, n_steps, seconds, diagnostics)
        list(pool.map(finish, running))  # evaluation and diagnostics: CPU kernels, nogil
        running = [k for k in running if runs[k].stop_reason is None]


def _load(device, setup: _Setup, runs: list[_Run], n_steps: dict[int, int]) -> None:
    """Upload the interval's batches of the running models; the others get limit 0."""
    M, S = len(runs), device.interval
    T, B, I, O = device.T, device.B, device.n_in, device.O
    x = np.zeros((M, S, T, B, I), setup.dtype)
    mask = np.zeros((M, S, T, B), setup.dtype)
    target_class = np.zeros((M, S, T, B), np.int64)
    target_value = np.zeros((M, S, T, B, O if setup.loss == "mse" else 0), setup.dtype)
    limit = np.zeros(M, np.int64)
    for k, n in n_steps.items():
        run = runs[k]
        xs, classes, values, masks = setup.interval_batches(run.spec.seed, run.step, n)
        x[k, :n], mask[k, :n] = xs, masks
        if setup.loss == "mse":
            target_value[k, :n] = values
        else:
            target_class[k, :n] = classes
        limit[k] = n
    device.load_interval(
        x, target_class, target_value, mask, limit,
        first_step=[run.step + 1 for run in runs],
        lr=[run.spec.lr for run in runs], clip=[run.spec.clip for run in runs],
    )


def _finish_model(runs: list[_Run], fetched: tuple, n_steps: dict[int, int], seconds: float,
                  diagnostics: bool, k: int) -> None:
    """Model k's parameters back from the device, then the interval's bookkeeping."""
    params, losses, grad_norms, taken = fetched
    runs[k].params = params[k].copy()
    _finish_interval(runs[k], int(taken[k]), n_steps[k], losses[k], grad_norms[k], seconds,
                     diagnostics)


def _finish_interval(run: _Run, done: int, n_steps: int, losses, grad_norms, seconds: float,
                     diagnostics: bool) -> None:
    """The CPU engine's bookkeeping after an interval (``_Run.advance``), for device steps."""
    spec = run.spec
    run.train_seconds += seconds
    if done < n_steps:
        run.diverged_at = run.step + done + 1
        run.stop_reason = "diverged"
    run.step += done
    run.record(float(np.mean(losses[:done])) if done else np.nan,
               float(np.mean(grad_norms[:done])) if done else np.nan)
    if run.stop_reason is None and run.step >= spec.budget:
        run.stop_reason = "budget"
    if run.stop_reason is not None:
        run.final = run.setup.evaluate(run.params, "test")
        if diagnostics:
            run.diagnostics["final"] = run.diagnose()


def _warm_up(device, setup: _Setup) -> None:
    """Compile the three kernels (a zero-step interval launches nothing, so run one step
    with every model's limit at 0: the kernels compile and return at once)."""
    M, T, B, I = device.M, device.T, device.B, device.n_in
    O = device.O if setup.loss == "mse" else 0
    device.load_interval(
        np.zeros((M, 1, T, B, I)), np.zeros((M, 1, T, B), np.int64),
        np.zeros((M, 1, T, B, O)), np.zeros((M, 1, T, B)), np.zeros(M, np.int64),
        np.ones(M, np.int64), np.zeros(M), np.zeros(M))
    device.step(0, setup.loss_code)
