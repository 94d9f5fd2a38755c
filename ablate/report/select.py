"""The ledger's rows as the report counts them: prepared, done, and chosen by the protocol.

Only rows with status "done" are results; "failed" rows are listed as failures, never as
unsolved runs, and "pending"/"running" rows are counted and otherwise ignored. Where a run
(``spec_key``) has several done rows (re-run under a newer kernel version), the most recently
finished one counts.

Tasks are told apart by their options: ``task_label`` is the task name when the run used the
task's default options (whether written out or not) and ``name (key=value, ...)`` for the
options that differ from the defaults. The claims take each label as a task of its own.

Protocols (the suite's ``[evaluation] protocol``):
    best_lr  per (cell, task_label, n_hidden, gap), the learning rate whose seeds have the best
             mean ``best_val_metric`` (the best validation metric along the run's curve; a run
             without one counts as −∞), ties to the smaller learning rate; only that rate's
             runs are reported, with their test results (``solved``, ``score``,
             ``steps_to_solve``). The choice never looks at the test batch.
    pooled   every done run counts.
"""

from __future__ import annotations

import json
import math
from functools import cache

import numpy as np
import pandas as pd

PROTOCOLS = ("best_lr", "pooled")
GROUP = ["cell", "task_label", "n_hidden", "gap"]  # one point of the success curves

_NUMERIC = ("gap", "seed", "lr", "n_hidden", "budget", "steps", "steps_to_solve", "score",
            "metric", "chance", "best_val_metric", "final_val_metric", "diverged_at",
            "wall_seconds", "train_seconds", "compile_seconds", "attempts")


@cache
def _default_options(task: str) -> tuple:
    from ablate import tasks

    try:
        return tuple(sorted(tasks.get(task).options.items()))
    except ValueError:  # a task this checkout does not know: take its options at face value
        return ()


def task_label(task: str, options) -> str:
    """``task`` for its default options, ``task (key=value, ...)`` for the ones that differ."""
    if isinstance(options, str):
        options = json.loads(options) if options.strip() else {}
    elif options is None or (isinstance(options, float) and math.isnan(options)):
        options = {}
    defaults = dict(_default_options(task))
    differing = {key: value for key, value in dict(options).items()
                 if key not in defaults or defaults[key] != value}
    if not differing:
        return task
    return f"{task} ({', '.join(f'{key}={value}' for key, value in sorted(differing.items()))})"


def _as_dict(value):
    if isinstance(value, dict):
        return value
    if isinstance(value, str) and value:
        return json.loads(value)
    return None


def prepare(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``store.load``'s frame with ``result`` as dicts, ``task_label``, numeric
    columns as floats, ``solved``/``diverged`` as booleans, and one done row per run."""
    frame = frame.copy()
    if frame.empty:
        frame["task_label"] = pd.Series(dtype=object)
        return frame
    if "result" in frame:
        frame["result"] = frame["result"].map(_as_dict)
    options = frame["task_options"] if "task_options" in frame else [None] * len(frame)
    frame["task_label"] = [task_label(task, opts)
                           for task, opts in zip(frame["task"], options, strict=True)]
    for name in _NUMERIC:
        if name in frame:
            frame[name] = pd.to_numeric(frame[name], errors="coerce")
    for name in ("solved", "diverged"):
        if name in frame:
            frame[name] = frame[name].map(lambda v: bool(v) if v is not None and v == v else False)
    if "status" in frame and "spec_key" in frame:
        done = frame["status"] == "done"
        order = frame.loc[done].sort_values("finished_at") if "finished_at" in frame else (
            frame.loc[done])
        stale = order.index[order.duplicated("spec_key", keep="last")]
        frame = frame.drop(index=stale)
    return frame.reset_index(drop=True)


def done_runs(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows with status "done"."""
    if frame.empty or "status" not in frame:
        return frame.iloc[0:0]
    return frame.loc[frame["status"] == "done"].reset_index(drop=True)


def learning_rates(done: pd.DataFrame) -> pd.DataFrame:
    """Per (cell, task_label, n_hidden, gap, lr): seeds, mean best validation metric, and
    ``chosen`` (the best_lr protocol's pick for the group)."""
    columns = GROUP + ["lr", "seeds", "mean_best_val_metric", "chosen"]
    if done.empty:
        return pd.DataFrame(columns=columns)
    scored = done.assign(
        _val=done["best_val_metric"].astype(float).fillna(-np.inf)
        if "best_val_metric" in done else -np.inf
    )
    table = (
        scored.groupby(GROUP + ["lr"], sort=True)
        .agg(seeds=("seed", "nunique"), mean_best_val_metric=("_val", "mean"))
        .reset_index()
    )
    # best mean first, then the smaller learning rate
    ranked = table.sort_values(GROUP + ["mean_best_val_metric", "lr"],
                               ascending=[True] * len(GROUP) + [False, True])
    best = ranked.drop_duplicates(GROUP, keep="first")
    table["chosen"] = False
    table.loc[best.index, "chosen"] = True
    table["mean_best_val_metric"] = table["mean_best_val_metric"].replace(-np.inf, np.nan)
    return table[columns].reset_index(drop=True)


def select(frame: pd.DataFrame, protocol: str = "best_lr") -> pd.DataFrame:
    """The done runs the report counts under ``protocol`` (see the module docstring)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; allowed: {', '.join(PROTOCOLS)}")
    if "task_label" not in frame:
        frame = prepare(frame)
    done = done_runs(frame)
    if protocol == "pooled" or done.empty:
        return done
    chosen = learning_rates(done)
    chosen = chosen.loc[chosen["chosen"], GROUP + ["lr"]]
    return done.merge(chosen, on=GROUP + ["lr"], how="inner")
