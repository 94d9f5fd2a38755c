"""What a run is and what it measured: ``RunSpec`` in, ``RunResult`` out (DESIGN.md §5).

A ``RunSpec`` is one fully specified training run: frozen, hashable, checked on
construction (a bad value raises one ValueError naming the field and what is allowed); its
``run_id`` is readable (``lstm-copy-gap200-h32-lr0.01-s3``) and its ``key`` is a hash of
every field. A ``RunResult`` is the record the ledger stores: the spec, the learning curve,
the final test metric and score, early stop and divergence, the diagnostics, timings,
versions and commit. Both round-trip through plain JSON types::

    RunResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result

Non-finite floats are stored as None, so the dict is strict JSON.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import numbers
import platform
import subprocess
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

DTYPES = ("float32", "float64")
STOP_REASONS = ("solved", "budget", "diverged")


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


@dataclass(frozen=True)
class RunSpec:
    """One training run. Runs that differ only in ``seed``, ``lr``, ``clip`` and ``budget``
    share shapes and can train together in one ensemble (see ``shape_key``)."""

    cell: str  # a name from ablate.cells.names()
    task: str  # a name from ablate.tasks.names()
    gap: int  # the task's memory lag knob (DESIGN.md §4)
    seed: int = 0  # parameter init and the training batches (stream "train")
    lr: float = 1e-2  # Adam learning rate
    n_hidden: int = 32  # H
    batch_size: int = 32  # training sequences per step
    budget: int = 2000  # the most Adam steps
    eval_every: int = 50  # steps between validation evaluations (and early-stop checks)
    clip: float = 1.0  # global gradient-norm threshold; 0 turns clipping off
    dtype: str = "float32"
    task_options: tuple = ()  # (key, value) pairs, sorted; a dict is accepted and converted
    # validation sequences (one fixed batch); 512 so that a task with one answer a sequence
    # can stop early: that needs 99% at 95% confidence, 381+ answers (Task.surely_solved)
    eval_batch: int = 512
    test_batch: int = 1024  # test sequences (one fixed batch) for the final metric
    eval_seed: int = 0  # seed of the validation and test batches, shared by every run
    # the forget-gate bias shift at init (see ablate.init_params); None: the cell's default.
    # Only for cells with a forget gate. Left out of to_dict (and so of key) while None.
    forget_bias: float | None = None
    # evaluations in a row whose validation metric must meet the criterion before the run
    # stops as solved; 1 stops at the first. Left out of to_dict (and so of key) while 1.
    solve_patience: int = 1

    def __post_init__(self) -> None:
        from ablate import cells, tasks  # here: results must import without numba compiling

        options = self.task_options
        if isinstance(options, dict):
            options = tuple(sorted(options.items()))
        elif isinstance(options, list | tuple):
            try:
                options = tuple(sorted((str(k), v) for k, v in options))
            except (TypeError, ValueError):
                raise ValueError(
                    f"task_options must be a dict or (key, value) pairs, got {self.task_options!r}"
                ) from None
        else:
            raise ValueError(f"task_options must be a dict, got {self.task_options!r}")
        object.__setattr__(self, "task_options", options)
        if not isinstance(self.cell, str):
            raise ValueError(f"cell must be a cell name, got {self.cell!r}")
        cells.get(self.cell)  # ValueError naming the known cells
        if not isinstance(self.task, str):
            raise ValueError(f"task must be a task name, got {self.task!r}")
        task = tasks.get(self.task, **dict(options))  # ValueError on a name or an option
        task.check_gap(self.gap)  # ValueError: gap must be an integer >= 1
        for name, minimum in (
            ("seed", 0),
            ("n_hidden", 1),
            ("batch_size", 1),
            ("budget", 1),
            ("eval_every", 1),
            ("eval_batch", 1),
            ("test_batch", 1),
            ("eval_seed", 0),
            ("solve_patience", 1),
        ):
            value = getattr(self, name)
            if not _is_int(value) or value < minimum:
                raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
            object.__setattr__(self, name, int(value))
        if not _is_real(self.lr) or not math.isfinite(self.lr) or self.lr <= 0:
            raise ValueError(f"lr must be a finite number > 0, got {self.lr!r}")
        if not _is_real(self.clip) or not math.isfinite(self.clip) or self.clip < 0:
            raise ValueError(
                f"clip must be a finite number >= 0 (0: no clipping), got {self.clip!r}"
            )
        object.__setattr__(self, "lr", float(self.lr))
        object.__setattr__(self, "clip", float(self.clip))
        object.__setattr__(self, "gap", int(self.gap))
        if self.forget_bias is not None:
            from ablate.model import check_forget_bias

            object.__setattr__(self, "forget_bias", check_forget_bias(self.cell, self.forget_bias))
        dtype = self.dtype.name if isinstance(self.dtype, np.dtype) else self.dtype
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        object.__setattr__(self, "dtype", dtype)

    @property
    def options(self) -> dict:
        """The task options as a dict."""
        return dict(self.task_options)

    @property
    def run_id(self) -> str:
        """A readable name, e.g. ``lstm-copy-gap200-h32-lr0.01-s3``."""
        bias = "" if self.forget_bias is None else f"-fb{self.forget_bias:g}"
        patience = "" if self.solve_patience == 1 else f"-sp{self.solve_patience}"
        return (f"{self.cell}-{self.task}-gap{self.gap}-h{self.n_hidden}-lr{self.lr:g}{bias}"
                f"{patience}-s{self.seed}")

    @property
    def key(self) -> str:
        """A hash of every field: two specs with the same key are the same run."""
        text = json.dumps(json_safe(self.to_dict()), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def shape_key(self) -> tuple:
        """What runs of one ensemble must share (everything but seed, lr, clip, budget)."""
        return (
            self.cell, self.task, self.task_options, self.gap, self.n_hidden, self.batch_size,
            self.eval_every, self.dtype, self.eval_batch, self.test_batch, self.eval_seed,
        )

    def replace(self, **changes: Any) -> RunSpec:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["task_options"] = self.options
        # specs from before these fields keep their key
        if out["forget_bias"] is None:
            del out["forget_bias"]
        if out["solve_patience"] == 1:
            del out["solve_patience"]
        return out

    @classmethod
    def from_dict(cls, data: dict) -> RunSpec:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown RunSpec field {unknown[0]!r}; fields: {', '.join(names)}")
        return cls(**data)


@dataclass
class RunResult:
    """What one run measured (DESIGN.md §5). Steps count Adam updates, from 1."""

    spec: RunSpec
    # learning curve, one entry per evaluation (step 0 = at initialisation):
    # {"step", "train_loss" (mean over the interval), "grad_norm" (mean before clipping),
    #  "val_loss", "val_metric"}, each a list
    curve: dict
    steps: int  # Adam steps taken
    # "solved" (criterion met on validation, spec.solve_patience times in a row), "budget"
    # or "diverged"
    stop_reason: str
    metric: float | None  # the task metric on the test batch, at the end
    test_loss: float | None
    chance: float | None  # the task's chance level in units of the metric
    score: float | None  # (metric − chance) / (1 − chance): 0 at chance, 1 perfect
    solved: bool  # the task criterion on the test batch
    # the step of the first evaluation whose validation met the criterion at 95% confidence
    # (Task.surely_solved; with spec.solve_patience > 1: the first of the streak that
    # stopped the run); None where no evaluation did, though the test may still pass
    steps_to_solve: int | None
    diverged: bool  # a loss or gradient turned non-finite; training stopped there
    diverged_at: int | None  # the step whose loss or gradient was non-finite
    wall_seconds: float  # the whole ensemble call, start to end (shared by its runs)
    compile_seconds: float  # compiling or loading the kernels (shared)
    train_seconds: float  # this run's time inside the compiled training steps
    steps_per_second: float | None  # steps / train_seconds
    diagnostics: dict | None = None  # {"init": ..., "final": ...}; see ablate.diagnostics
    ensemble: dict = field(default_factory=dict)  # size, threads, model_steps_per_second
    versions: dict = field(default_factory=lambda: versions())
    commit: str | None = field(default_factory=lambda: git_commit())
    backend: str = "cpu"

    def __post_init__(self) -> None:
        if self.stop_reason not in STOP_REASONS:
            raise ValueError(f"stop_reason must be one of {STOP_REASONS}, got {self.stop_reason!r}")
        self.curve = json_safe(self.curve)
        self.diagnostics = json_safe(self.diagnostics)
        self.ensemble = json_safe(self.ensemble)
        for name in ("metric", "test_loss", "chance", "score", "steps_per_second"):
            setattr(self, name, json_safe(getattr(self, name)))

    @property
    def run_id(self) -> str:
        return self.spec.run_id

    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["spec"] = self.spec.to_dict()
        return json_safe(out)

    @classmethod
    def from_dict(cls, data: dict) -> RunResult:
        data = dict(data)
        data["spec"] = RunSpec.from_dict(data["spec"])
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown RunResult field {unknown[0]!r}")
        return cls(**data)


def json_safe(value: Any) -> Any:
    """Plain JSON types: numpy scalars and arrays unwrapped, non-finite floats as None."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return [json_safe(v) for v in value.tolist()]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if _is_int(value):
        return int(value)
    if _is_real(value):
        value = float(value)
        return value if math.isfinite(value) else None
    return value


@cache
def versions() -> dict:
    """Versions of what produced a result: ablate, numba, numpy, python."""
    import numba

    import ablate

    return {
        "ablate": ablate.__version__,
        "numba": numba.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


@cache
def git_commit() -> str | None:
    """``git rev-parse HEAD`` of the checkout holding the package, or None outside one."""
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None
