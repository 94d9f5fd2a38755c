"""Train an ensemble on the GPU: the CUDA twin of ``ablate.train.train_ensemble``.

The protocol is the CPU engine's (same batches, same evaluation, same early stop and
divergence rules, same RunResult), only the training steps run on the device: per interval
of ``eval_every`` steps the batches of every running model are drawn on a pool of CPU
threads and uploaded (in parts of at most ``UPLOAD_BYTES``), and each step is three
launches for the whole ensemble (``DeviceEnsemble.step``). Between intervals the device
runs every model over the validation batch (``ablate.cuda.evaluation``) and the outputs
and parameters come back to the host, where the pool scores them and decides who stops:
the loss and metric are computed by exactly the code the CPU backend uses. The test batch
at a run's end and the diagnostics (error flow, gates, drift) run on the CPU kernels.

The per-run bookkeeping is ``ablate.train``'s own (``EnsembleSetup``, ``RunState``): after
each interval every model's ``RunState.finish_interval`` gets the steps the device took.
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
from ablate.train import EnsembleSetup, RunState, Trained, ensemble_specs


def train_ensemble(
    specs: Sequence[RunSpec], *, diagnostics: bool = True, threads: int | None = None,
    tile_rows: int | None = None, block_threads: int | None = None, rows_per_thread: int = 1,
    resident: bool = False, parts: int = 1, clusters: bool = False,
) -> Trained:
    """Train runs that share shapes together on the GPU; their results and final parameters.

    ``threads``: CPU threads that evaluate and diagnose the models between intervals
    (default: ABLATE_NUM_THREADS, else the usable cores); each model's numbers do not depend
    on it. ``tile_rows``, ``block_threads`` and ``rows_per_thread`` override the device
    tiling (``ablate.cuda.device.default_tiling``), ``resident`` holds R in registers
    (``ablate.cuda.resident``, cells with R), ``parts`` spreads each batch tile over that
    many blocks (``ablate.cuda.tiles``: one model over several SMs), ``clusters`` makes
    those blocks a thread-block cluster (``ablate.cuda.cluster``: sm_90, parts ≤ 8); no
    result depends on them beyond float32 rounding (on parts and clusters not even that).
    """
    _cuda.require()
    from ablate.cuda.device import DeviceEnsemble

    started = time.perf_counter()
    specs = ensemble_specs(specs)
    setup = EnsembleSetup(specs[0])
    compile_started = time.perf_counter()
    setup.compile(diagnostics)  # the CPU kernels evaluate and diagnose
    runs = [RunState(spec, setup) for spec in specs]
    spec = specs[0]
    T, B = setup.interval_batches(spec.seed, 0, 1)[0].shape[1:3]  # a training batch's shape
    upload = steps_per_upload(len(runs), T, B, setup.n_in, setup.n_out, setup.loss, setup.dtype)
    device = DeviceEnsemble(spec.cell, setup.dtype, len(runs), T, B, setup.n_in, spec.n_hidden,
                            setup.n_out, min(spec.eval_every, upload), tile_rows, block_threads,
                            rows_per_thread, resident, parts, clusters)
    eval_threads = max(1, min(threads or n_threads(), len(runs)))
    pool = ThreadPoolExecutor(eval_threads, thread_name_prefix="ablate-eval")
    evaluation = None
    try:
        evaluation = device_evaluation(device, setup)
        device.set_params(np.stack([run.params for run in runs]))
        _warm_up(device, setup)
        compile_seconds = time.perf_counter() - compile_started
        # step 0: diagnostics at initialisation and the first curve point
        list(pool.map(lambda run: run.advance(diagnostics), runs))
        _train(device, evaluation, setup, runs, pool, diagnostics)
    finally:
        pool.shutdown()
        if evaluation is not None:
            evaluation.close()
        device.close()  # its memory, for the next ensemble (the sweep's worker runs several)

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


def device_evaluation(device, setup: EnsembleSetup):
    """The validation batch on the device (``ablate.cuda.evaluation``), or None where its
    sequences differ in length from the training batches' (continual scores more episodes
    than it trains on), which the device's work vectors are not sized for: the CPU kernels
    score those."""
    from ablate.cuda.evaluation import DeviceEvaluation

    if setup.validation.x.shape[0] != device.T:
        return None
    return DeviceEvaluation(device, setup.validation.x, setup.validation.mask)


def _train(device, evaluation, setup: EnsembleSetup, runs: list[RunState],
           pool: ThreadPoolExecutor, diagnostics: bool) -> None:
    """Intervals until every run has stopped: the device trains and predicts the validation
    batch (``evaluation``; None: the CPU kernels score it), the pool scores and diagnoses."""
    running = [k for k, run in enumerate(runs) if run.stop_reason is None]
    while running:
        n_steps = {k: min(runs[k].spec.eval_every, runs[k].spec.budget - runs[k].step)
                   for k in running}
        interval_started = time.perf_counter()
        taken, losses, grad_norms = _run_interval(device, setup, runs, n_steps, pool)
        seconds = (time.perf_counter() - interval_started) / len(running)
        predicted = evaluation.predict(running) if evaluation is not None else None
        params = device.fetch_params()
        finish = partial(_finish_model, runs, params, taken, losses, grad_norms, n_steps,
                         seconds, diagnostics, evaluation, predicted)
        list(pool.map(finish, running))  # scores, test batch, diagnostics: CPU, nogil
        running = [k for k in running if runs[k].stop_reason is None]


def _run_interval(device, setup: EnsembleSetup, runs: list[RunState], n_steps: dict[int, int],
                  pool: ThreadPoolExecutor) -> tuple:
    """Train n_steps[k] steps of each running model k, uploading at most ``device.interval``
    steps of batches at a time. Returns per model the steps taken (fewer where it diverged)
    and their losses and gradient norms."""
    taken = dict.fromkeys(n_steps, 0)
    losses: dict[int, list] = {k: [] for k in n_steps}
    grad_norms: dict[int, list] = {k: [] for k in n_steps}
    for offset in range(0, max(n_steps.values()), device.interval):
        part = {k: min(device.interval, n - offset) for k, n in n_steps.items()
                if n > offset and taken[k] == offset}  # diverged models stay out
        if not part:
            break
        _load(device, setup, runs, part, offset, pool)
        for s in range(max(part.values())):
            device.step(s, setup.loss_code)
        part_losses, part_norms, part_taken = device.fetch_progress()  # params once, later
        for k in part:
            done = int(part_taken[k])
            taken[k] += done
            losses[k].extend(part_losses[k, :done])
            grad_norms[k].extend(part_norms[k, :done])
    return taken, losses, grad_norms


# Host memory for one upload of training batches: longer intervals go up in parts, so
# 128 models at T = 1000 do not need 16 GB of batches at once.
UPLOAD_BYTES = 512 * 2**20


def steps_per_upload(n_models: int, T: int, B: int, n_in: int, n_out: int, loss: str,
                     dtype) -> int:
    """Training steps of every model whose batches fit UPLOAD_BYTES (at least one)."""
    itemsize = np.dtype(dtype).itemsize
    per_step = T * B * ((n_in + 1 + (n_out if loss == "mse" else 0)) * itemsize + 8)
    return max(1, UPLOAD_BYTES // (per_step * n_models))


def _load(device, setup: EnsembleSetup, runs: list[RunState], n_steps: dict[int, int], offset: int,
          pool: ThreadPoolExecutor) -> None:
    """Upload n_steps[k] batches of each model k, from its step run.step + offset, drawn on
    the pool's threads; the models not in n_steps get limit 0 (their kernels return at
    once)."""
    M, S = len(runs), device.interval
    T, B, I, O = device.T, device.B, device.n_in, device.O
    x = np.zeros((M, S, T, B, I), setup.dtype)
    mask = np.zeros((M, S, T, B), setup.dtype)
    target_class = np.zeros((M, S, T, B), np.int64)
    target_value = np.zeros((M, S, T, B, O if setup.loss == "mse" else 0), setup.dtype)
    limit = np.zeros(M, np.int64)

    def draw(k: int) -> None:
        n = n_steps[k]
        run = runs[k]
        xs, classes, values, masks = setup.interval_batches(run.spec.seed, run.step + offset, n)
        x[k, :n], mask[k, :n] = xs, masks
        if setup.loss == "mse":
            target_value[k, :n] = values
        else:
            target_class[k, :n] = classes
        limit[k] = n

    list(pool.map(draw, n_steps))
    device.load_interval(
        x, target_class, target_value, mask, limit,
        first_step=[run.step + offset + 1 for run in runs],
        lr=[run.spec.lr for run in runs], clip=[run.spec.clip for run in runs],
    )


def _finish_model(runs: list[RunState], params: np.ndarray, taken: dict, losses: dict,
                  grad_norms: dict, n_steps: dict[int, int], seconds: float, diagnostics: bool,
                  evaluation, predicted: np.ndarray | None, k: int) -> None:
    """Model k's parameters back from the device, its validation outputs scored, then the
    interval's bookkeeping."""
    runs[k].params = params[k].copy()
    validation = None
    if predicted is not None:
        validation = runs[k].setup.score(evaluation.outputs_of(predicted, k), "validation")
    runs[k].finish_interval(taken[k], n_steps[k], np.asarray(losses[k]),
                            np.asarray(grad_norms[k]), seconds, diagnostics, validation)


def _warm_up(device, setup: EnsembleSetup) -> None:
    """Compile the three kernels (a zero-step interval launches nothing, so run one step
    with every model's limit at 0: the kernels compile and return at once)."""
    M, T, B, I = device.M, device.T, device.B, device.n_in
    O = device.O if setup.loss == "mse" else 0
    device.load_interval(
        np.zeros((M, 1, T, B, I)), np.zeros((M, 1, T, B), np.int64),
        np.zeros((M, 1, T, B, O)), np.zeros((M, 1, T, B)), np.zeros(M, np.int64),
        np.ones(M, np.int64), np.zeros(M), np.zeros(M))
    device.step(0, setup.loss_code)
