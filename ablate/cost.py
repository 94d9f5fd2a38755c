"""How long a run and a suite take on one core of the 2-core development machine: estimates.

    from ablate.cost import estimate_seconds, estimate_suite_seconds
    estimate_seconds(RunSpec("lstm", "tv", gap=100, budget=3000))   # one run, seconds
    estimate_suite_seconds(specs, workers=2)                        # a whole suite, seconds

Both are upper-bound estimates of wall time on that machine (AMD EPYC znver5 VM, 2 cores,
23 GB, Python 3.11.7, numba 0.68.1, numpy 2.4.6, float32) with one thread per worker
(``ABLATE_NUM_THREADS=1``), a warm kernel cache and the full budget (a run that meets its
criterion early stops sooner; a run that fails takes all of it). The model and its constants
come from ``bench/suite_costs.py`` (data in ``bench/suite_data/*.jsonl``, tables in
bench/SUITES.md); they hold for a quiet machine and are exceeded when other processes share
the cores.

One run (``estimate_seconds``)::

    seconds = RUN_SECONDS                                         setup, batches, Python
            + budget · step(cell, H, B, T_train) · STEP_MARGIN    the compiled training steps
            + (n_evals · eval_batch + test_batch) · T_eval · fwd  validation and test
            + [diagnostics] DIAG_SEQUENCES · T_eval · diag        ablate.diagnostics, twice

- ``step``: ms per Adam step of the cell's family (lstm family, gru, simple rnn-like), a
  least-squares fit ln ms = c0 + a·ln T + b·ln B + g1·ln H + g2·(ln H)² over the grid
  T ∈ {32, 112, 1012}, H ∈ {16, 32, 64, 128}, B ∈ {16, 32, 64} (``suite_costs.py steps``,
  quiet machine, load 0.5–1), times the cell's factor against its family (``suite_costs.py
  cells``: every cell at T=112, B=32, H=32 and 128, the larger ratio kept). The largest
  residual of the fit on the grid is 1.25× (lstm), hence ``STEP_MARGIN``. float64 steps
  took 2.6–3.3× float32 (lstm, gru, rnn at H=32, T=112): ``FLOAT64_FACTOR``.
- ``fwd`` and ``diag``: µs per sequence-step (one sequence, one time step) of the
  evaluation forward pass and of the diagnostics at H = 32, scaled with H as the family's
  step; the largest values seen in ``suite_costs.py overhead`` (budget 100, eval every 50,
  tv/copy/adding/continual at gaps 10–1000), measured when the evaluation predicted the
  whole validation or test batch in one call (lstm: up to 2.5 µs against 0.7–0.9 for a
  training step at B = 32). It now predicts 64 sequences at a time (ablate.train.EVAL_ROWS),
  1.5–3× cheaper at T 112–1012 (bench/SUITES.md); the constants are kept as the bound.
- ``n_evals = ceil(budget / eval_every) + 1`` (step 0 included).
- ``T_train``/``T_eval``: the task's sequence lengths on the "train" and "validation"
  streams (``continual`` evaluates on streams eval_episodes/n_episodes times longer).

A suite (``estimate_suite_seconds``): the runs packed into ensembles as ``ablate.sweep``
packs them (same shape, at most 16 runs), each ensemble given in the sweep's order to the
worker that frees up first and trained there on one core; each worker pays
``LOAD_SECONDS`` per distinct cell to load its kernels from the disk cache. Workers are
assumed to scale perfectly (one core each); that was not measured on the shared machine.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable
from functools import lru_cache

from ablate.results import RunSpec

__all__ = [
    "format_duration",
    "estimate_seconds",
    "estimate_suite_seconds",
    "step_ms",
    "sequence_lengths",
    "CELL_FACTORS",
]

# ln(ms per step) = c0 + a ln T + b ln B + g1 ln H + g2 (ln H)^2, one core, float32.
# Fitted to `ABLATE_NUM_THREADS=1 python bench/suite_costs.py steps` (36 points per family).
FAMILY_FIT = {
    "lstm": (-9.1164, 1.0885, 0.9701, -0.3413, 0.2301),
    "gru": (-9.6609, 1.0655, 0.9195, -0.0542, 0.1924),
    "rnn": (-9.3278, 1.0324, 0.9011, -0.5210, 0.2378),
}
STEP_MARGIN = 1.25  # the largest measured/fitted ratio on the grid
FLOAT64_FACTOR = 3.3  # float64 / float32 step, largest of lstm 3.26, gru 2.63, rnn 2.68

# (family, factor): the cell's step over its family's fit, the larger of H = 32 and
# H = 128 at T = 112, B = 32 (`python bench/suite_costs.py cells`); the family's own cell
# is kept at 1.0 (the fit is that cell).
CELL_FACTORS = {
    "lstm": ("lstm", 1.0),
    "lstm_peephole": ("lstm", 1.05),
    "nig": ("lstm", 0.75),
    "nfg": ("lstm", 0.75),
    "nog": ("lstm", 0.75),
    "niaf": ("lstm", 1.0),
    "noaf": ("lstm", 1.0),
    "cifg": ("lstm", 0.75),
    "fgr": ("lstm", 2.8),
    "single_net": ("lstm", 0.75),
    "net_readout": ("lstm", 1.2),
    "sigmoid_input": ("lstm", 1.0),
    "sigmoid_readout": ("lstm", 1.0),
    "use_gate": ("lstm", 1.3),
    "lstm97": ("lstm", 0.75),
    "rnn": ("rnn", 1.0),
    "irnn": ("rnn", 1.0),
    "gru": ("gru", 1.0),
    "mingru": ("rnn", 0.6),
    "minlstm": ("rnn", 0.8),
}
UNKNOWN_CELL = ("lstm", 3.0)
MIN_HIDDEN = 4  # a cell registered after this table: assume an expensive one

# µs per sequence-step at H = 32 (scaled with H like the family's step), largest seen.
FWD_US = {"lstm": 2.5, "gru": 1.2, "rnn": 0.25}  # evaluation: validation and test batches
DIAG_US = {"lstm": 2.5, "gru": 2.0, "rnn": 2.0}  # ablate.diagnostics (numpy-heavy for rnn)
RUN_SECONDS = 0.1  # per run: setup, batch generation, Python between intervals
LOAD_SECONDS = 3.5  # per worker and cell: kernels from the warm disk cache (1.7–3.4 s seen)
# A cold cache (after any edit to the package's compiled code) compiles instead: 6–14 s per
# cell for lstm, gru, rnn (first call of `suite_costs.py steps`), not included here.


def _diag_sequences() -> int:
    """Sequences ablate.diagnostics runs per run (at initialisation and at the end)."""
    from ablate import diagnostics as d

    per_call = d.DRIFT_ROWS * d.DRIFT_SEGMENTS + d.GATE_ROWS + 3 * d.ERROR_FLOW_ROWS
    return 2 * per_call


def _family(cell: str) -> tuple[str, float]:
    return CELL_FACTORS.get(cell, UNKNOWN_CELL)


def step_ms(cell: str, n_hidden: int, batch_size: int, length: int, dtype: str = "float32"
            ) -> float:
    """Fitted ms per training step (one core), without the margin."""
    family, factor = _family(cell)
    c0, a, b, _, _ = FAMILY_FIT[family]
    ms = math.exp(c0 + a * math.log(length) + b * math.log(batch_size)
                  + _hidden_term(family, n_hidden))
    return ms * factor * (FLOAT64_FACTOR if dtype == "float64" else 1.0)


def _hidden_term(family: str, n_hidden: int) -> float:
    """g1·ln H + g2·(ln H)² of the fit; its minimum lies at H ≈ 2–3, so H is taken as at
    least MIN_HIDDEN (smaller models are costed as H = 4: monotone, and never measured)."""
    _, _, _, g1, g2 = FAMILY_FIT[family]
    ln_h = math.log(max(n_hidden, MIN_HIDDEN))
    return g1 * ln_h + g2 * ln_h * ln_h


def _h_scale(cell: str, n_hidden: int) -> float:
    """How much more a sequence-step costs at n_hidden than at H = 32 (the family fit)."""
    family, _ = _family(cell)
    return math.exp(_hidden_term(family, n_hidden) - _hidden_term(family, 32))


@lru_cache(maxsize=4096)
def _lengths(task: str, options: tuple, gap: int) -> tuple[int, int]:
    from ablate import tasks

    generator = tasks.get(task, **dict(options))
    train = generator.batch(gap, 1, 0, "train", 0).x.shape[0]
    evaluation = generator.batch(gap, 1, 0, "validation", 0).x.shape[0]
    return int(train), int(evaluation)


def sequence_lengths(spec: RunSpec) -> tuple[int, int]:
    """(T of a training sequence, T of a validation/test sequence) of the spec's task."""
    return _lengths(spec.task, spec.task_options, spec.gap)


def estimate_seconds(spec: RunSpec, *, diagnostics: bool = True) -> float:
    """Upper-bound wall seconds of one run on one core: full budget, evaluations, test and
    (by default) diagnostics; kernels already loaded (see ``LOAD_SECONDS``)."""
    if not isinstance(spec, RunSpec):
        raise ValueError(f"estimate_seconds needs a RunSpec, got {type(spec).__name__}")
    t_train, t_eval = sequence_lengths(spec)
    family, _ = _family(spec.cell)
    precision = FLOAT64_FACTOR if spec.dtype == "float64" else 1.0
    training = spec.budget * step_ms(
        spec.cell, spec.n_hidden, spec.batch_size, t_train, spec.dtype) * 1e-3 * STEP_MARGIN
    scale = _h_scale(spec.cell, spec.n_hidden) * precision * 1e-6
    n_evals = math.ceil(spec.budget / spec.eval_every) + 1
    evaluation = (n_evals * spec.eval_batch + spec.test_batch) * t_eval * FWD_US[family] * scale
    seconds = RUN_SECONDS + training + evaluation
    if diagnostics:
        seconds += _diag_sequences() * t_eval * DIAG_US[family] * scale
    return seconds


def estimate_suite_seconds(
    specs: Iterable[RunSpec], workers: int, *, diagnostics: bool = True
) -> float:
    """Upper-bound wall seconds of training every spec on ``workers`` one-core workers.

    Simulates ``ablate.sweep``: runs packed into ensembles by ``sweep.pack`` (same shape, at
    most ``sweep.MAX_ENSEMBLE`` runs, biggest first), each ensemble handed to the worker
    that frees up first and trained run after run on its one core.
    """
    from ablate.sweep import pack

    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    specs = list(specs)
    if not specs:
        return 0.0
    loads = [0.0] * workers
    heapq.heapify(loads)
    for ensemble in pack(specs):
        seconds = sum(estimate_seconds(spec, diagnostics=diagnostics) for spec in ensemble)
        heapq.heappush(loads, heapq.heappop(loads) + seconds)
    # every worker may need every cell's kernels: an upper bound on the loading
    n_cells = len({(spec.cell, spec.dtype) for spec in specs})
    return max(loads) + LOAD_SECONDS * n_cells


def format_duration(seconds: float) -> str:
    """A duration for people: "37 s", "14 min", "12.9 h"."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
