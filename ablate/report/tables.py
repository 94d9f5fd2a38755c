"""The report's tables, each a DataFrame written as ``tables/<name>.csv``.

success      per (cell, task_label, n_hidden, gap): runs, solved, success rate with its
             Wilson 95% interval over seeds, median steps to solve (solved runs only),
             median chance-normalised score, diverged runs, the learning rate reported
             (best_lr) or "pooled"; validated: the runs whose validation batch met the
             criterion (and so stopped early), and the lowest and highest test metric.
best_lr      per (cell, task_label, n_hidden, gap, lr): seeds, mean best validation metric,
             and whether the best_lr protocol chose it.
headline     per (cell, task_label, n_hidden): the longest gap solved, by the rule below.
failures     the failed runs: what failed and why (they are not counted as unsolved).
diverged     the done runs whose loss or gradient turned non-finite.

Headline rule (``HEADLINE_RULE``): a cell *solves* a gap when at least half of its counted
runs there are solved (success rate ≥ 50%); its longest solved gap is the longest tested gap
that it solves together with every shorter tested gap. No gap: it fails at the shortest.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ablate.report.select import GROUP
from ablate.report.stats import wilson
from ablate.report.style import order_cells, order_tasks

SOLVES_AT = 0.5
HEADLINE_RULE = (
    "a cell solves a gap when at least 50% of its runs there (one per seed) pass the task's "
    "criterion on the test batch; its longest solved gap is the longest tested gap solved "
    "together with every shorter tested gap"
)


def success(runs: pd.DataFrame, protocol: str = "best_lr") -> pd.DataFrame:
    """Success rate per (cell, task_label, n_hidden, gap) of the selected done runs."""
    columns = GROUP + ["lr", "runs", "solved", "success_rate", "wilson_low", "wilson_high",
                       "median_steps_to_solve", "median_score", "diverged", "validated",
                       "test_metric_min", "test_metric_max"]
    if runs.empty:
        return pd.DataFrame(columns=columns)
    rows = []
    for keys, group in runs.groupby(GROUP, sort=True):
        n, k = len(group), int(group["solved"].sum())
        interval = wilson(k, n)
        solved_steps = group.loc[group["solved"], "steps_to_solve"].dropna()
        lrs = sorted(group["lr"].unique())
        rows.append(dict(
            zip(GROUP, keys, strict=True),
            lr=f"{lrs[0]:g}" if protocol == "best_lr" and len(lrs) == 1 else "pooled",
            runs=n, solved=k, success_rate=k / n,
            wilson_low=interval.low, wilson_high=interval.high,
            median_steps_to_solve=float(solved_steps.median()) if len(solved_steps) else np.nan,
            median_score=float(group["score"].median()) if group["score"].notna().any()
            else np.nan,
            diverged=int(group["diverged"].sum()),
            validated=int(group["steps_to_solve"].notna().sum()),
            test_metric_min=float(group["metric"].min()),
            test_metric_max=float(group["metric"].max()),
        ))
    return pd.DataFrame(rows, columns=columns)


def edge_of_criterion(success_table: pd.DataFrame) -> pd.DataFrame:
    """The points a cell solves on validation (≥ 50% of its runs met the criterion there
    and stopped) but not on test (< 50% pass): runs that stopped at the first evaluation
    crossing the bare criterion (the stop rule before ``Task.surely_solved``) sit at its
    edge, and the larger test batch falls either side."""
    if success_table.empty:
        return success_table
    validated = success_table["validated"] >= SOLVES_AT * success_table["runs"]
    failed = success_table["success_rate"] < SOLVES_AT
    return success_table.loc[validated & failed].reset_index(drop=True)


def longest_solved(points: pd.DataFrame) -> float:
    """The headline rule on one curve's rows (gap, success_rate): NaN when the shortest
    tested gap is not solved."""
    longest = np.nan
    for gap, rate in points.sort_values("gap")[["gap", "success_rate"]].itertuples(index=False):
        if rate < SOLVES_AT:
            break
        longest = gap
    return longest


def headline(success_table: pd.DataFrame) -> pd.DataFrame:
    """The longest gap each cell solves on each task (``HEADLINE_RULE``)."""
    key = ["cell", "task_label", "n_hidden"]
    columns = key + ["gaps_tested", "shortest_gap", "longest_gap_tested", "longest_solved_gap",
                     "solved_every_gap"]
    if success_table.empty:
        return pd.DataFrame(columns=columns)
    rows = []
    for keys, points in success_table.groupby(key, sort=True):
        gaps = sorted(int(g) for g in points["gap"])
        longest = longest_solved(points)
        rows.append(dict(zip(key, keys, strict=True), gaps_tested=" ".join(map(str, gaps)),
                         shortest_gap=gaps[0], longest_gap_tested=gaps[-1],
                         longest_solved_gap=longest,
                         solved_every_gap=bool(longest == gaps[-1])))
    return pd.DataFrame(rows, columns=columns)


def headline_text(row) -> str:
    """A headline cell for people: "≥ 1000" (every tested gap solved), "300", "< 10"."""
    if np.isnan(row["longest_solved_gap"]):
        return f"< {int(row['shortest_gap'])}"
    if row["solved_every_gap"]:
        return f"≥ {int(row['longest_solved_gap'])}"
    return f"{int(row['longest_solved_gap'])}"


def failures(frame: pd.DataFrame) -> pd.DataFrame:
    """The failed rows: run id, spec fields, attempts and the error's last line."""
    columns = ["run_id", "cell", "task_label", "n_hidden", "gap", "lr", "seed", "attempts",
               "error"]
    if frame.empty or "status" not in frame:
        return pd.DataFrame(columns=columns)
    failed = frame.loc[frame["status"] == "failed"].copy()
    failed["error"] = failed["error"].map(_last_line)
    return failed.reindex(columns=columns).reset_index(drop=True)


def diverged(runs: pd.DataFrame) -> pd.DataFrame:
    """The done runs (all of them, not only the selected) that diverged."""
    columns = ["run_id", "cell", "task_label", "n_hidden", "gap", "lr", "seed", "diverged_at",
               "steps"]
    if runs.empty:
        return pd.DataFrame(columns=columns)
    return runs.loc[runs["diverged"]].reindex(columns=columns).reset_index(drop=True)


def _last_line(text) -> str:
    if not isinstance(text, str) or not text.strip():
        return ""
    return text.strip().splitlines()[-1][:300]


def _joined(values) -> str:
    """Distinct values, sorted, as text ("3000" or "1e-3, 3e-3"); "—" for none."""
    found = sorted({v for v in values if v is not None and v == v})
    return ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in found) or "—"


def training(frame: pd.DataFrame) -> pd.DataFrame:
    """Per task: how every run of the ledger was trained (budget, batch, sequences seen,
    learning rates, seeds, evaluation sizes, forget-gate bias by cell, the stop rule's
    patience)."""
    rows = []
    if frame.empty:
        return pd.DataFrame(rows)
    for task in order_tasks(frame["task_label"]):
        part = frame.loc[frame["task_label"] == task]
        budgets = part["budget"].dropna().astype(int)
        batches = part["batch_size"].dropna().astype(int)
        biased = part.loc[part["forget_bias"].notna()] if "forget_bias" in part else part[:0]
        bias = "; ".join(
            f"{value:+g}: {', '.join(f'`{c}`' for c in order_cells(group['cell'].unique()))}"
            for value, group in biased.groupby("forget_bias")) or "each cell's own"
        rows.append({
            "task": task,
            "budget (steps)": _joined(budgets.tolist()),
            "batch": _joined(batches.tolist()),
            "sequences seen at most": _joined((budgets * batches).tolist()),
            "learning rates": _joined(part["lr"].tolist()),
            "seeds": part["seed"].nunique(),
            "hidden sizes": _joined(part["n_hidden"].dropna().astype(int).tolist()),
            "validation / test sequences": f"{_joined(part['eval_batch'].tolist())} / "
                                           f"{_joined(part['test_batch'].tolist())}",
            "forget-gate bias at init": bias,
            "evaluations in a row to stop as solved": _joined(
                part["solve_patience"].astype(int).tolist()),
        })
    return pd.DataFrame(rows)
