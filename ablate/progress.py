"""Where a sweep stands: runs done and pending per (task, gap) and the time still to go.

    python run_suite.py status results/why_gates [--workers 2] [--backend cpu]

Reads the ledger only (while a sweep writes it, too). For the rows of the current kernel
version: per (task, gap) the runs done (and solved) and their measured core time — each
run's share of its ensemble's wall time on its worker's cores — beside ``ablate.cost``'s
estimate for them, and the runs pending with their estimate. The time to go is the
pending estimate scaled by the measured/estimated ratio of the runs done so far: it
inherits their mix of early solves and full budgets, and of the machine's other load.
"""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict

from ablate.cost import estimate_seconds, format_duration
from ablate.results import RunSpec
from ablate.store import kernel_version, load, stale_note, stale_runs

_SPEC_FIELDS = ("cell", "task", "gap", "seed", "lr", "n_hidden", "batch_size", "budget",
                "eval_every", "clip", "dtype", "eval_batch", "test_batch", "eval_seed",
                "solve_patience")


def _spec(row) -> RunSpec:
    fields = {name: getattr(row, name) for name in _SPEC_FIELDS}
    fields["task_options"] = json.loads(row.task_options)
    if row.forget_bias is not None and not math.isnan(row.forget_bias):
        fields["forget_bias"] = row.forget_bias
    return RunSpec.from_dict(fields)


def _core_seconds(row) -> float:
    """A done run's core time: its ensemble's wall × the worker's threads / the runs."""
    ensemble = row.result.get("ensemble") or {}
    threads = max(ensemble.get("threads") or 1, 1)
    return row.wall_seconds * threads / max(ensemble.get("size") or 1, 1)


def progress_report(ledger_path: str | os.PathLike, *, workers: int = 2,
                    backend: str = "cpu") -> str:
    """The status table and the projection (see the module docstring) as markdown."""
    every = load(ledger_path, all_versions=True)
    frame = every[every["kernel_version"] == kernel_version(backend)]
    finished = every[every["status"] == "done"]
    finished_keys = zip(finished["spec_key"], finished["kernel_version"], strict=True)
    stale = stale_note(stale_runs(finished_keys, kernel_version(backend)),
                       kernel_version(backend))
    # (task, gap) -> [done, solved, measured s, estimated s (done), pending, estimated s]
    rows: dict[tuple, list] = defaultdict(lambda: [0, 0, 0.0, 0.0, 0, 0.0])
    for row in frame.itertuples():
        cell = rows[(row.task, int(row.gap))]
        estimate = estimate_seconds(_spec(row))
        if row.status == "done":
            cell[0] += 1
            cell[1] += bool(row.solved)
            cell[2] += _core_seconds(row)
            cell[3] += estimate
        else:
            cell[4] += 1
            cell[5] += estimate
    lines = ["| task | gap | done (solved) | core time, measured | estimated | ratio | "
             "pending | estimated |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for (task, gap), (n, solved, measured, est, n_pending, est_pending) in sorted(
            rows.items()):
        ratio = f"{measured / est:.2f}" if est else "—"
        lines.append(f"| {task} | {gap} | {n} ({solved}) | {format_duration(measured)} | "
                     f"{format_duration(est)} | {ratio} | {n_pending} | "
                     f"{format_duration(est_pending)} |")
    done = sum(v[0] for v in rows.values())
    pending_runs = sum(v[4] for v in rows.values())
    measured = sum(v[2] for v in rows.values())
    est = sum(v[3] for v in rows.values())
    pending = sum(v[5] for v in rows.values())
    lines.append("")
    lines.append(f"{done} runs done, {pending_runs} pending (kernel version "
                 f"{kernel_version(backend)})")
    if stale:
        lines.append(stale)
    if est and pending_runs:
        ratio = measured / est
        lines.append(f"done so far: {format_duration(measured)} of core time against "
                     f"{format_duration(est)} estimated ({ratio:.2f}×); to go: "
                     f"{format_duration(pending)} estimated, about "
                     f"{format_duration(pending * ratio / workers)} on {workers} workers at "
                     "that ratio")
    elif pending_runs:
        lines.append(f"to go: {format_duration(pending / workers)} estimated on {workers} "
                     "workers (no finished run to calibrate against yet)")
    return "\n".join(lines)
