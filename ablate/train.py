"""Train ensembles of runs: Adam, clipping, evaluation, early stop, divergence, diagnostics.

A sweep is thousands of small independent trainings. Runs that share shapes (cell, task,
gap, sizes; see ``RunSpec.shape_key``) train together as one ensemble::

    from ablate.results import RunSpec
    from ablate.train import train
    specs = [RunSpec("lstm", "tv", gap=10, seed=s, lr=lr) for s in range(4) for lr in (3e-3, 1e-2)]
    results = train(specs)              # list[RunResult], in the order of specs

How it runs (CPU): each model's training is a sequence of intervals of ``eval_every``
steps. One interval is one compiled call, ``train_steps``, that runs every step of it —
forward, backward through time, global-norm clipping, Adam — with no Python in between
and the GIL released. Python only works per interval: it draws the interval's training
batches (``task.batch`` with the run's seed and the step as the index), evaluates on the
fixed validation batch and decides whether to stop. Worker threads, one per core, take
(model, next interval) jobs from one queue, so the cores stay busy as models stop at
different times. Each model's arithmetic depends only on its own spec, so a model trained
in an ensemble gives the same bytes as trained alone (on the same machine and library).

Why threads and not ``prange``: on the 2-core development machine (16 lstm, H64, B32, T100,
20 steps per model, same data, measured back to back) Python threads over models calling
this nogil interval kernel ran 165 model-steps/s on 1 thread and 135–160 on 2 (the machine
was shared), a ``@kernel(parallel={"prange": True})`` loop over the same kernel 96 and 120,
and its compile took 21 s more per cell. Threads also balance dynamically (a queue of
intervals) as models stop early, where prange's static chunks would idle.

Per run and step t ≥ 1 (the batch of step t is ``task.batch(gap, B, seed, "train", t−1)``),
with denormal floats flushed to zero (``ablate.kernels.fpmode``: an error signal decaying
over a long gap made a step up to 10× slower on x86):
    g = ∂L/∂θ;  ‖g‖ = sqrt(Σ g²)                      (non-finite L or ‖g‖: diverged, stop)
    g ← g · min(1, clip / ‖g‖)                          (clip > 0)
    θ ← Adam(θ, g, lr, t)                               (ablate.kernels.adam.adam_step)
Every ``eval_every`` steps (and at step 0 and at the budget) the validation batch
(``eval_seed``, stream "validation", index 0) is scored; the criterion ``task.solved`` met
there at 95% confidence (``Task.surely_solved``: the Wilson lower bound of the validation
metric at least 99%) ``solve_patience`` evaluations in a row (default 1: at the first)
stops the run ("solved"; its steps to solve are the first evaluation of that streak). At
the end the test batch (stream "test", index 0) gives the final metric. ``ablate.diagnostics``
measures error flow, gates and state drift at initialisation and at the end.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from ablate import cells, tasks
from ablate.kernels.adam import adam_step
from ablate.kernels.driver import LOSS_CODES
from ablate.kernels.fpmode import flush_denormals, restore_fp_mode
from ablate.kernels.jit import kernel
from ablate.model import _keep_freed_memory, _pin_blas_threads, init_params, n_threads, serial
from ablate.results import RunResult, RunSpec

__all__ = ["train", "train_ensemble", "Trained", "trainer", "clip_by_global_norm", "global_norm"]


# ---------------------------------------------------------------- compiled


@kernel
def global_norm(grad):
    """‖grad‖₂ over the flat vector, accumulated in float64."""
    total = 0.0
    for k in range(grad.size):
        value = np.float64(grad[k])
        total += value * value
    return np.sqrt(total)


@kernel
def clip_by_global_norm(grad, clip):
    """Scale grad [P] in place so that ‖grad‖ ≤ clip (clip > 0; 0 leaves it); the norm before."""
    norm = global_norm(grad)
    if clip > 0.0 and norm > clip:
        factor = clip / norm
        for k in range(grad.size):
            grad[k] = grad[k] * factor
    return norm


def _make_trainer(chunk_loss_grad):
    @kernel
    def train_steps(
        params, m, v, grad, first_step, lr, clip, x, target_class, target_value, mask,
        loss_code, n_hidden, n_out, losses, grad_norms,
    ):
        """Adam steps first_step, first_step+1, … on the batches x [S,T,B,I] in place.

        target_class int64 [S,T,B] (xent) or target_value [S,T,B,O] (mse), the other with
        zero-size trailing axes; mask [S,T,B]. Writes each step's loss and gradient norm
        (before clipping) into losses [S], grad_norms [S]. Returns the number of steps
        taken: S, or the index of the first step whose loss or gradient was not finite
        (that step's update is not applied).
        """
        n_steps = x.shape[0]
        fp_mode = flush_denormals()  # decaying error signals: see ablate.kernels.fpmode
        for s in range(n_steps):
            weight = 0.0
            for t in range(mask.shape[1]):
                for b in range(mask.shape[2]):
                    weight += mask[s, t, b]
            scale = 1.0 / weight if weight > 0.0 else 0.0
            grad[:] = 0.0
            loss, _, _ = chunk_loss_grad(
                params, x[s], target_class[s], target_value[s], mask[s], loss_code,
                n_hidden, n_out, scale, grad, False,  # no error-flow norms
            )
            norm = clip_by_global_norm(grad, clip)
            losses[s] = loss
            grad_norms[s] = norm
            if not (np.isfinite(loss) and np.isfinite(norm)):
                restore_fp_mode(fp_mode)
                return s
            adam_step(params, grad, m, v, first_step + s, lr)
        restore_fp_mode(fp_mode)
        return n_steps

    return train_steps


_TRAINERS: dict = {}


def trainer(cell: str, dtype) -> object:
    """The compiled ``train_steps`` kernel of one cell and precision (built once)."""
    key = (cell, np.dtype(dtype).name)
    if key not in _TRAINERS:
        chunk_loss_grad, _ = cells.drivers(cell, dtype)
        _TRAINERS[key] = _make_trainer(chunk_loss_grad)
    return _TRAINERS[key]


# ---------------------------------------------------------------- public


class Trained(NamedTuple):
    results: list[RunResult]  # in the order of the specs
    params: list[np.ndarray]  # each run's final parameters [P]


def train(
    specs: RunSpec | Sequence[RunSpec], *, diagnostics: bool = True, threads: int | None = None
) -> list[RunResult]:
    """Train every spec; specs that share shapes train together. Results in input order."""
    specs = as_specs(specs)
    results: list[RunResult | None] = [None] * len(specs)
    groups: dict[tuple, list[int]] = {}
    for index, spec in enumerate(specs):
        groups.setdefault(spec.shape_key(), []).append(index)
    for indices in groups.values():
        trained = train_ensemble([specs[k] for k in indices], diagnostics=diagnostics,
                                 threads=threads)
        for k, result in zip(indices, trained.results, strict=True):
            results[k] = result
    return results


def train_ensemble(
    specs: Sequence[RunSpec], *, diagnostics: bool = True, threads: int | None = None
) -> Trained:
    """Train runs that share shapes together; their results and final parameters.

    ``threads``: worker threads (default: ABLATE_NUM_THREADS, else the usable cores),
    never more than the runs. ``diagnostics``: measure error flow, gates and state drift
    at initialisation and at the end (``ablate.diagnostics``); off, the results carry None.
    """
    started = time.perf_counter()
    specs = ensemble_specs(specs)
    if threads is None:
        threads = n_threads()
    if not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    threads = min(threads, len(specs))

    setup = EnsembleSetup(specs[0])
    compile_started = time.perf_counter()
    setup.compile(diagnostics)
    compile_seconds = time.perf_counter() - compile_started
    runs = [RunState(spec, setup) for spec in specs]

    _pin_blas_threads()  # compiled np.dot must not fork BLAS threads under our workers
    _keep_freed_memory()  # per-step work arrays stay in the heap: no page faults per step
    queue = deque(runs)
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work() -> None:
        while True:
            with lock:
                if errors or not queue:
                    return
                run = queue.popleft()
            try:
                finished = run.advance(diagnostics)
            except BaseException as error:  # surface it in the calling thread
                with lock:
                    errors.append(error)
                return
            if not finished:
                with lock:
                    queue.append(run)

    workers = [threading.Thread(target=work, name=f"ablate-train-{k}") for k in range(threads - 1)]
    for worker in workers:
        worker.start()
    work()  # the calling thread is a worker too
    for worker in workers:
        worker.join()
    if errors:
        raise errors[0]

    wall = time.perf_counter() - started
    total_steps = sum(run.step for run in runs)
    train_wall = max(wall - compile_seconds, 1e-9)
    ensemble = {
        "size": len(runs),
        "threads": threads,
        "model_steps": total_steps,
        "model_steps_per_second": total_steps / train_wall,
    }
    results = [run.result(wall, compile_seconds, ensemble) for run in runs]
    return Trained(results, [run.params for run in runs])


# ------------------------------------------------ the engine's parts (shared with ablate.cuda)

# What the runs of one ensemble share (RunSpec.shape_key).
SHAPE_FIELDS = (
    "cell", "task", "task_options", "gap", "n_hidden", "batch_size", "eval_every", "dtype",
    "eval_batch", "test_batch", "eval_seed",
)


def ensemble_specs(specs) -> list[RunSpec]:
    """The specs as a list, checked to share SHAPE_FIELDS; else one error naming the first
    field that differs."""
    specs = as_specs(specs)
    for spec in specs[1:]:
        if spec.shape_key() != specs[0].shape_key():
            field = next(
                name for name in SHAPE_FIELDS if getattr(spec, name) != getattr(specs[0], name)
            )
            raise ValueError(
                f"an ensemble's runs must share {', '.join(SHAPE_FIELDS)}; "
                f"{field} differs ({getattr(specs[0], field)!r} and {getattr(spec, field)!r}) "
                "— use ablate.train.train to group them"
            )
    return specs


def as_specs(specs) -> list[RunSpec]:
    """A RunSpec or a sequence of them as a non-empty list, else one clear error."""
    if isinstance(specs, RunSpec):
        specs = [specs]
    specs = list(specs)
    if not specs:
        raise ValueError("no runs to train: pass at least one RunSpec")
    for spec in specs:
        if not isinstance(spec, RunSpec):
            raise ValueError(f"runs must be RunSpec instances, got {type(spec).__name__}")
    return specs


class EnsembleSetup:
    """What the runs of one ensemble share: task, sizes, kernels, validation and test data."""

    def __init__(self, spec: RunSpec) -> None:
        self.spec = spec
        self.task = tasks.get(spec.task, **spec.options)
        self.dtype = np.dtype(spec.dtype)
        self.n_in = self.task.n_in(spec.gap)
        self.n_out = self.task.n_out(spec.gap)
        self.loss = self.task.loss
        self.loss_code = LOSS_CODES[self.loss]
        self.train_steps = trainer(spec.cell, self.dtype)
        _, self.predict = cells.drivers(spec.cell, self.dtype)
        self.validation = self.task.batch(
            spec.gap, spec.eval_batch, spec.eval_seed, "validation", 0
        )
        self.test = self.task.batch(spec.gap, spec.test_batch, spec.eval_seed, "test", 0)
        self.validation_scored = self.task.scored(self.validation)  # trials, for the early stop
        self.validation_x = _row_chunks(self.validation.x, self.dtype)
        self.test_x = _row_chunks(self.test.x, self.dtype)
        self.chance = float(self.task.chance(spec.gap))

    def compile(self, diagnostics: bool) -> None:
        """Compile (or load from the disk cache) every kernel the runs call."""
        spec = self.spec
        params = init_params(spec.cell, self.n_in, spec.n_hidden, self.n_out, 0, self.dtype)
        batch = self.interval_batches(spec.seed, 0, 1)
        scratch = np.zeros_like(params)
        self.train_steps(
            params, scratch.copy(), scratch.copy(), scratch, 1, spec.lr, spec.clip,
            batch[0][:0], batch[1][:0], batch[2][:0], batch[3][:0], self.loss_code,
            spec.n_hidden, self.n_out, np.zeros(0), np.zeros(0),
        )
        one_sequence = np.ascontiguousarray(self.validation_x[0][1][:, :1])
        self.predict(params, one_sequence, spec.n_hidden, self.n_out)
        if diagnostics:
            from ablate import diagnostics as diag

            diag.warm_up(spec.cell, params, self.task, spec.gap, spec.n_hidden)

    def interval_batches(self, seed: int, first_index: int, n_steps: int) -> tuple:
        """x [S,T,B,I], target_class [S,T,B], target_value [S,T,B,O], mask [S,T,B]."""
        spec = self.spec
        batches = [
            self.task.batch(spec.gap, spec.batch_size, seed, "train", first_index + s)
            for s in range(n_steps)
        ]
        x = np.stack([b.x for b in batches]).astype(self.dtype, copy=False)
        mask = np.stack([b.mask for b in batches]).astype(self.dtype, copy=False)
        S, T, B, _ = x.shape
        if self.loss == "xent":
            target_class = np.stack([np.where(b.mask > 0, b.target, 0) for b in batches])
            target_class = target_class.astype(np.int64, copy=False)
            target_value = np.zeros((S, 0, 0, 0), self.dtype)
        else:
            target_class = np.zeros((S, 0, 0), np.int64)
            target_value = np.stack([b.target for b in batches]).astype(self.dtype, copy=False)
        return x, target_class, target_value, mask

    def evaluate(self, params: np.ndarray, which: str) -> tuple[float, float]:
        """(loss, metric) of params on the validation or the test batch."""
        batch, chunks = (self.validation, self.validation_x) if which == "validation" else (
            self.test, self.test_x)
        T, B = batch.mask.shape
        y = np.empty((T, B, self.n_out), self.dtype)
        for rows, x in chunks:  # one chunk's states at a time (see EVAL_ROWS)
            y[:, rows] = self.predict(params, x, self.spec.n_hidden, self.n_out)[0]
        return self.score(y, which)

    def score(self, y: np.ndarray, which: str) -> tuple[float, float]:
        """(loss, metric) of outputs y [T, N, O] on the validation or the test batch (any
        engine's: ablate.cuda.evaluation brings them from the GPU)."""
        batch = self.validation if which == "validation" else self.test
        return masked_loss(y, batch.target, batch.mask, self.loss), float(
            self.task.metric(y, batch))


# Sequences per prediction call in evaluation. The forward keeps every step's states
# (h, c and the gates, [T, rows, H] each), so a whole 1024-sequence test batch at
# T = 32 episodes × 1000 steps needs > 20 GB; 64 rows keep them in cache-friendly sizes.
EVAL_ROWS = 64


def _row_chunks(x: np.ndarray, dtype) -> list[tuple[slice, np.ndarray]]:
    """[(rows, x[:, rows] contiguous in dtype)] in chunks of EVAL_ROWS sequences."""
    B = x.shape[1]
    return [(slice(start, min(start + EVAL_ROWS, B)),
             np.ascontiguousarray(x[:, start:start + EVAL_ROWS], dtype=dtype))
            for start in range(0, B, EVAL_ROWS)]


def masked_loss(y: np.ndarray, target: np.ndarray, mask: np.ndarray, loss: str) -> float:
    """Σ mask·ℓ / Σ mask in float64, ℓ as the cells' loss (see ablate.kernels.readout)."""
    steps, rows = np.nonzero(mask)
    weight = mask[steps, rows].astype(np.float64)
    out = y[steps, rows].astype(np.float64)  # [N,O]
    with np.errstate(all="ignore"):
        if loss == "xent":
            top = out.max(axis=1, keepdims=True)
            logsumexp = np.log(np.exp(out - top).sum(axis=1)) + top[:, 0]
            per_step = logsumexp - out[np.arange(len(out)), target[steps, rows]]
        else:
            per_step = ((out - target[steps, rows]) ** 2).mean(axis=1)
        value = float((weight * per_step).sum() / weight.sum())
    return value


class RunState:
    """One model of an ensemble: parameters, Adam moments, curve and stop state.

    ``advance`` runs its next interval on the CPU kernels; an engine that trains elsewhere
    (``ablate.cuda.engine``) calls ``finish_interval`` with the steps it took instead.
    """

    def __init__(self, spec: RunSpec, setup: EnsembleSetup) -> None:
        self.spec, self.setup = spec, setup
        self.params = init_params(
            spec.cell, setup.n_in, spec.n_hidden, setup.n_out, spec.seed, setup.dtype,
            spec.forget_bias,
        )
        self.m = np.zeros_like(self.params)
        self.v = np.zeros_like(self.params)
        self.grad = np.zeros_like(self.params)
        self.step = 0  # Adam steps taken
        self.curve: dict[str, list] = {
            "step": [], "train_loss": [], "grad_norm": [], "val_loss": [], "val_metric": []
        }
        self.stop_reason: str | None = None
        self.steps_to_solve: int | None = None
        self.solved_streak = 0  # evaluations in a row, up to now, that met the criterion
        self.diverged_at: int | None = None
        self.train_seconds = 0.0
        self.diagnostics: dict | None = None
        self.final: tuple[float, float] | None = None

    def advance(self, diagnostics: bool) -> bool:
        """Run the next interval (or the step-0 evaluation); True once the run is over."""
        spec, setup = self.spec, self.setup
        if not self.curve["step"]:  # at initialisation
            if diagnostics:
                self.diagnostics = {"init": self.diagnose()}
            self.record(np.nan, np.nan)
            return self.conclude(diagnostics)
        n_steps = min(spec.eval_every, spec.budget - self.step)
        x, target_class, target_value, mask = setup.interval_batches(
            spec.seed, self.step, n_steps
        )
        losses = np.full(n_steps, np.nan)
        grad_norms = np.full(n_steps, np.nan)
        started = time.perf_counter()
        done = setup.train_steps(
            self.params, self.m, self.v, self.grad, self.step + 1, spec.lr, spec.clip,
            x, target_class, target_value, mask, setup.loss_code, spec.n_hidden,
            setup.n_out, losses, grad_norms,
        )
        seconds = time.perf_counter() - started
        return self.finish_interval(done, n_steps, losses, grad_norms, seconds, diagnostics)

    def finish_interval(self, done: int, n_steps: int, losses, grad_norms, seconds: float,
                        diagnostics: bool, validation: tuple[float, float] | None = None
                        ) -> bool:
        """The bookkeeping after an interval of n_steps of which ``done`` were taken (fewer:
        the next one diverged): losses and gradient norms [≥ done], the seconds it took,
        and the (loss, metric) on the validation batch where the engine scored it already
        (else the CPU kernels do). True once the run is over."""
        self.train_seconds += seconds
        if done < n_steps:
            self.diverged_at = self.step + done + 1
            self.stop_reason = "diverged"
        self.step += done
        self.record(
            float(np.mean(losses[:done])) if done else np.nan,
            float(np.mean(grad_norms[:done])) if done else np.nan,
            validation,
        )
        return self.conclude(diagnostics)

    def conclude(self, diagnostics: bool) -> bool:
        """Stop at the budget; once stopped, score the test batch and diagnose. True if over."""
        if self.stop_reason is None and self.step >= self.spec.budget:
            self.stop_reason = "budget"
        if self.stop_reason is None:
            return False
        self.final = self.setup.evaluate(self.params, "test")
        if diagnostics:
            self.diagnostics["final"] = self.diagnose()
        return True

    def record(self, train_loss: float, grad_norm: float,
               validation: tuple[float, float] | None = None) -> None:
        """Append a curve point at the current step (``validation``: its (loss, metric),
        else scored here); decide solved / diverged."""
        val_loss, val_metric = validation or self.setup.evaluate(self.params, "validation")
        for name, value in (
            ("step", self.step), ("train_loss", train_loss), ("grad_norm", grad_norm),
            ("val_loss", val_loss), ("val_metric", val_metric),
        ):
            self.curve[name].append(value)
        if self.stop_reason is not None:
            return
        if not np.isfinite(val_loss):
            self.stop_reason, self.diverged_at = "diverged", self.step
            return
        # Solved once spec.solve_patience evaluations in a row met the criterion at 95%
        # confidence (Task.surely_solved: a bare 99% on validation is a coin toss on the
        # test); the run's steps to solve are the first of them (the step it had learned
        # the task by).
        surely = self.setup.task.surely_solved(val_metric, self.setup.validation_scored)
        self.solved_streak = self.solved_streak + 1 if surely else 0
        if self.solved_streak >= self.spec.solve_patience:
            first = self.curve["step"][-self.spec.solve_patience]
            self.stop_reason, self.steps_to_solve = "solved", first

    def diagnose(self) -> dict:
        from ablate import diagnostics

        spec, setup = self.spec, self.setup
        with serial():  # the same bytes whatever the number of cores (see model.serial)
            return diagnostics.diagnose(
                spec.cell, self.params, setup.task, spec.gap, spec.n_hidden, seed=spec.eval_seed
            )

    def result(self, wall: float, compile_seconds: float, ensemble: dict) -> RunResult:
        test_loss, metric = self.final
        chance = self.setup.chance
        score = (metric - chance) / (1.0 - chance) if chance < 1.0 else None
        return RunResult(
            spec=self.spec,
            curve=self.curve,
            steps=self.step,
            stop_reason=self.stop_reason,
            metric=metric,
            test_loss=test_loss,
            chance=chance,
            score=score,
            solved=bool(self.setup.task.solved(metric)),
            steps_to_solve=self.steps_to_solve,
            diverged=self.stop_reason == "diverged",
            diverged_at=self.diverged_at,
            wall_seconds=wall,
            compile_seconds=compile_seconds,
            train_seconds=self.train_seconds,
            steps_per_second=self.step / self.train_seconds if self.train_seconds > 0 else None,
            diagnostics=self.diagnostics,
            ensemble=ensemble,
        )
