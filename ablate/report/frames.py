"""Long tables unpacked from each run's stored result (``RunResult.to_dict()``): learning
curves, error flow, gate statistics and cell-state drift, one row per measured point.

Every frame starts with the run's identifying columns (``ID``) so it can be grouped like the
success tables. Diagnostics are stored at two moments, "init" (before the first step) and
"final" (after training); a run trained without diagnostics, or one whose parameters were
non-finite ({"skipped": ...}), contributes no rows.
"""

from __future__ import annotations

import math

import pandas as pd

from ablate.report.stats import attenuation, decay_fit

ID = ["run_id", "cell", "task_label", "n_hidden", "gap", "lr", "seed"]
MOMENTS = ("init", "final")
MOMENT_NAMES = {"init": "at init", "final": "trained"}
GATE_FIELDS = ("keep_gap_mean", "retention_mean", "retention_best_unit", "write_cue_mean",
               "write_other_mean", "write_selectivity_best_unit")


def _ids(row) -> dict:
    return {name: row.get(name) for name in ID}


def _result(row) -> dict:
    result = row.get("result") if hasattr(row, "get") else None
    return result if isinstance(result, dict) else {}


def _diagnostics(row, moment: str) -> dict | None:
    diagnostics = _result(row).get("diagnostics") or {}
    found = diagnostics.get(moment)
    if not isinstance(found, dict) or "skipped" in found:
        return None
    return found


def _number(value) -> float:
    return math.nan if value is None else float(value)


def _frame(rows: list[dict], columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=columns) if rows else pd.DataFrame(columns=columns)


def curves(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per evaluation: step, val_metric, val_loss, train_loss, grad_norm, chance."""
    fields = ["step", "val_metric", "val_loss", "train_loss", "grad_norm"]
    rows = []
    for _, row in runs.iterrows():
        curve = _result(row).get("curve") or {}
        steps = curve.get("step") or []
        ids = _ids(row)
        for k, step in enumerate(steps):
            point = dict(ids, chance=_number(row.get("chance")))
            for name in fields:
                values = curve.get(name) or []
                point[name] = _number(values[k]) if k < len(values) else math.nan
            point["step"] = int(step)
            rows.append(point)
    return _frame(rows, ID + ["chance"] + fields)


class _Columns:
    """Column lists that grow a block at a time: cheaper than one dict per row."""

    def __init__(self, columns: list[str]) -> None:
        self.columns = {name: [] for name in columns}

    def add(self, n: int, **values) -> None:
        for name, value in values.items():
            self.columns[name].extend(value if isinstance(value, list) else [value] * n)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.columns)


def _sections(row, part: str):
    """(moment, section) for each moment whose stored diagnostics have ``part``."""
    for moment in MOMENTS:
        found = (_diagnostics(row, moment) or {}).get(part)
        if found:
            yield moment, found


def _flows(row):
    """(moment, quantity, distance list, norm list) of one run's stored error flow."""
    for moment, flow in _sections(row, "error_flow"):
        for quantity in ("h", "c"):
            norms = flow.get(f"d{quantity}_norm")
            if norms is not None:
                yield moment, quantity, list(flow["distance"]), [_number(v) for v in norms]


def _cut_at_loss(distance, norm) -> bool:
    """At least two finite norms at distance ≥ 1, and one of the first two exactly 0: the
    signal along this path is gone within a step of the loss (``decay_fit`` has nothing to
    fit)."""
    values = [v for d, v in sorted(zip(distance, norm, strict=True))
              if d >= 1 and v is not None and math.isfinite(v)]
    return len(values) >= 2 and 0 in values[:2]


def error_flow(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, moment, quantity, distance): the mean error norm there.

    quantity "h": ‖∂L/∂h_t‖; "c": ‖∂L/∂c_t‖ (cells with a cell state only).
    """
    out = _Columns(ID + ["moment", "quantity", "distance", "norm"])
    for _, row in runs.iterrows():
        ids = _ids(row)
        for moment, quantity, distance, norm in _flows(row):
            out.add(len(distance), **ids, moment=moment, quantity=quantity, distance=distance,
                    norm=norm)
    return out.frame()


def error_rates(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, moment, quantity): the fitted decay rate per step (``decay_fit``
    on the stored curve), its r², and ``left_after_gap`` = exp(rate · gap). A curve that is
    exactly 0 within a step of the loss (no error reaches that state along its path, e.g. a
    memory read saturated at tanh(c) = ±1) has rate −inf and nothing left, rather than no
    row: dropping it would let the runs that keep the least error drop out of every
    comparison."""
    rows = []
    for _, row in runs.iterrows():
        for moment, quantity, distance, norm in _flows(row):
            fit = decay_fit(distance, norm)
            if fit is not None:
                rows.append(dict(_ids(row), moment=moment, quantity=quantity, rate=fit.rate,
                                 r2=fit.r2, points=fit.points,
                                 left_after_gap=attenuation(fit.rate, float(row["gap"]))))
            elif _cut_at_loss(distance, norm):
                rows.append(dict(_ids(row), moment=moment, quantity=quantity,
                                 rate=-math.inf, r2=math.nan, points=0, left_after_gap=0.0))
    return _frame(rows, ID + ["moment", "quantity", "rate", "r2", "points", "left_after_gap"])


def gates(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, moment) for cells with keep/write gates: the gate statistics of
    ``ablate.diagnostics.gate_stats`` (mean keep value over the gap, retention, ...)."""
    rows = []
    for _, row in runs.iterrows():
        for moment, stats in _sections(row, "gates"):
            rows.append(dict(_ids(row), moment=moment, keep_gate=stats.get("keep_gate"),
                             **{name: _number(stats.get(name)) for name in GATE_FIELDS}))
    return _frame(rows, ID + ["moment", "keep_gate", *GATE_FIELDS])


def drift(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, moment, segment): ‖state‖ at the end of each test sequence of a
    stream run without reset; ``stream_step`` counts steps from the stream's start."""
    rows = []
    for _, row in runs.iterrows():
        for moment, found in _sections(row, "state_drift"):
            length = int(found.get("segment_steps") or 1)
            for segment, norm in enumerate(found.get("norm_at_segment_end") or []):
                rows.append(dict(_ids(row), moment=moment, state=found.get("state"),
                                 segment=segment + 1, stream_step=(segment + 1) * length,
                                 norm=_number(norm)))
    return _frame(rows, ID + ["moment", "state", "segment", "stream_step", "norm"])


def drift_summary(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, moment): growth (last / first segment-end norm), the largest |state|,
    and the task metric on the first and on the last segment of the stream."""
    rows = []
    for _, row in runs.iterrows():
        for moment, found in _sections(row, "state_drift"):
            rows.append(dict(_ids(row), moment=moment, state=found.get("state"),
                             growth=_number(found.get("growth")),
                             max_abs=_number(found.get("max_abs")),
                             metric_first_segment=_number(found.get("metric_first_segment")),
                             metric_last_segment=_number(found.get("metric_last_segment"))))
    return _frame(rows, ID + ["moment", "state", "growth", "max_abs", "metric_first_segment",
                              "metric_last_segment"])
