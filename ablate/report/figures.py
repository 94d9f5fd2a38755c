"""The report's figures: PNGs drawn with matplotlib (Agg) and seaborn, each with the table it
was drawn from written beside it as ``<name>.csv``.

    success_vs_gap    success rate against gap per cell, Wilson 95% bands, one panel per task
    success_heatmap   cell × gap success rate with k/n in every square, one panel per task
    learning_curves   median validation metric against training step per cell, per task × gap
    error_flow_<task> ‖∂L/∂h_t‖ and ‖∂L/∂c_t‖ against distance from the loss, at init and
                      trained, one panel per cell
    error_decay       the fitted decay rate per step of the memory's error signal, per run
    keep_gate         the mean keep (forget) gate value over the gap, per run, at init and trained
    retention         ∏ keep over the gap for the best unit, against gap
    state_drift       ‖c_t‖ along a long stream run without reset

A cell has the same colour and marker in every figure (``ablate.report.style``). Gaps span
decades, so gap axes are logarithmic; so are error norms. A figure with no data is skipped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot: files only, never a window

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator  # noqa: E402

from ablate.report import frames  # noqa: E402
from ablate.report.style import (  # noqa: E402
    MAX_LINES,
    cell_groups,
    colour,
    marker,
    order_cells,
    order_tasks,
    text_colour,
)

DPI = 110
PANEL = (5.0, 3.6)  # inches per panel
RC = {"axes.titlesize": 11, "axes.labelsize": 10, "xtick.labelsize": 9, "ytick.labelsize": 9,
      "legend.fontsize": 9, "figure.titlesize": 13, "axes.titleweight": "bold"}
MAX_CURVE_GAPS = 5  # learning-curve columns per task: this many gaps, spread over the range
RETENTION_FLOOR = 1e-6  # ∏ keep below this is drawn at it (log axis)
FLOW_WINDOW_GAPS, FLOW_WINDOW_EXTRA = 3, 20  # error flow drawn to 3·gap + 20 steps
NORM_RANGE = 1e-30  # error-flow y axes show at most this many decades below the largest
# a cell whose largest error norm is more than this above the median cell's (an exploding
# gradient: noaf reaches 1e19) gets a y axis of its own, so it does not squeeze the others
OWN_SCALE_ABOVE = 1e6


@dataclass(frozen=True)
class Figure:
    name: str
    title: str
    caption: str
    png: Path
    csv: Path


# ---------------------------------------------------------------- helpers


def _panels(frame: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """(title, rows) per task label, split by hidden size when a task has several."""
    out = []
    for task in order_tasks(frame["task_label"]):
        rows = frame.loc[frame["task_label"] == task]
        sizes = sorted(rows["n_hidden"].dropna().unique())
        if len(sizes) <= 1:
            out.append((task, rows))
        else:
            out += [(f"{task}, H = {int(h)}", rows.loc[rows["n_hidden"] == h]) for h in sizes]
    return out


def _group_panels(frame: pd.DataFrame) -> tuple[list[tuple[str, pd.DataFrame]], int]:
    """Panels for line figures: one row per cell group (``style.cell_groups``), one column
    per task panel; and the number of columns."""
    tasks = _panels(frame)
    out = []
    for group, cells in cell_groups(frame["cell"]):
        for title, rows in tasks:
            mine = rows.loc[rows["cell"].isin(cells)]
            if not mine.empty:
                out.append((f"{title}: {group}", mine))
    return out, len(tasks)


def _line_layout(frame: pd.DataFrame) -> tuple[list[tuple[str, pd.DataFrame]], int]:
    """Task panels, or task × cell-group panels when more cells than one panel can carry."""
    if frame["cell"].nunique() > MAX_LINES + 1:
        return _group_panels(frame)
    panels = _panels(frame)
    return panels, min(3, len(panels))


def _grid(n: int, columns: int = 3, panel=PANEL, **kwargs):
    columns = max(1, min(columns, n))
    rows = math.ceil(n / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(panel[0] * columns, panel[1] * rows),
                             squeeze=False, **kwargs)
    flat = axes.ravel()
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _gap_axis(ax, gaps) -> None:
    """Log gap axis with a labelled tick at every tested gap."""
    gaps = sorted({int(g) for g in gaps})
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(gaps))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlim(gaps[0] / 1.4, gaps[-1] * 1.4)
    ax.set_xlabel("gap (time steps, log scale)")


def _band(ax, x, low, high, cell: str) -> None:
    """An interval band in the cell's colour; a bar where there is a single point."""
    x, low, high = (np.asarray(v, float) for v in (x, low, high))
    if len(x) > 1:
        ax.fill_between(x, low, high, color=colour(cell), alpha=0.13, linewidth=0)
    elif len(x) == 1:
        ax.vlines(x, low, high, color=colour(cell), alpha=0.5, linewidth=6)


def _median_with_band(ax, line: pd.DataFrame, x: str, cell: str, markersize: float,
                      floor: float | None = None) -> None:
    """One cell's median over seeds (columns median, low, high against ``x``) as a line in
    its colour and marker, its min-to-max as a band; values below ``floor`` drawn at it."""
    line = line.sort_values(x)
    median, low, high = (line[c].clip(lower=floor) for c in ("median", "low", "high"))
    ax.plot(line[x], median, color=colour(cell), marker=marker(cell), markersize=markersize,
            linewidth=1.5)
    _band(ax, line[x], low, high, cell)


def _cell_handles(cells, with_marker: bool = True) -> list[Line2D]:
    return [Line2D([], [], color=colour(c), marker=marker(c) if with_marker else None,
                   linewidth=1.8, label=c) for c in cells]


def _legend(fig, handles, title="cell", extra=()) -> None:
    fig.legend(handles=[*handles, *extra], title=title, loc="center left",
               bbox_to_anchor=(1.0, 0.5), frameon=False)


def _save(fig, out: Path, name: str, title: str, caption: str, data: pd.DataFrame,
          tight: bool = True) -> Figure:
    out.mkdir(parents=True, exist_ok=True)
    png, csv = out / f"{name}.png", out / f"{name}.csv"
    fig.suptitle(title)
    if tight:  # (a constrained-layout figure lays itself out)
        fig.tight_layout()
    fig.savefig(png, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    data.to_csv(csv, index=False)
    return Figure(name, title, caption, png, csv)


def _representative_gap(rows: pd.DataFrame) -> int:
    """The gap at which the most cells have data; ties to the longest."""
    cells_at = rows.groupby("gap")["cell"].nunique()
    return int(max(cells_at.items(), key=lambda item: (item[1], item[0]))[0])


def _learned_gap(runs: pd.DataFrame, task: str, flow_rows: pd.DataFrame) -> tuple[int, bool]:
    """(gap, True): the longest gap with error flow that lstm solves on ``task``, by the
    error-carousel claim's own rule (``claims.learned_gap``). Else (the representative gap,
    False): lstm not run there, or solving no such gap."""
    from ablate.report import claims

    evidence = claims.Evidence(runs)
    with_flow = set(flow_rows.loc[flow_rows["cell"] == "lstm", "gap"].astype(int))
    if evidence.present("lstm", task) and with_flow:
        gap, _ = claims.learned_gap(evidence, "lstm", task, with_flow)
        if gap is not None:
            return gap, True
    return _representative_gap(flow_rows), False


def _style():
    return plt.rc_context({**sns.axes_style("whitegrid"), **RC})


# ---------------------------------------------------------------- success


def success_vs_gap(success: pd.DataFrame, out: Path, protocol: str) -> Figure | None:
    if success.empty:
        return None
    panels, columns = _group_panels(success)
    cells = order_cells(success["cell"])
    with _style():
        fig, axes = _grid(len(panels), columns=columns, panel=(4.6, 3.3))
        for ax, (title, rows) in zip(axes, panels, strict=True):
            here = order_cells(rows["cell"])
            for k, cell in enumerate(here):
                points = rows.loc[rows["cell"] == cell].sort_values("gap")
                # spread the cells a little along the log axis (±0.04 decade) so that equal
                # curves stay visible; the tick marks the gap itself
                shift = 10 ** (0.08 * (k / max(1, len(here) - 1) - 0.5)) if len(here) > 1 else 1
                x = points["gap"].to_numpy(float) * shift
                _band(ax, x, points["wilson_low"], points["wilson_high"], cell)
                ax.plot(x, points["success_rate"], color=colour(cell), marker=marker(cell),
                        markersize=5, linewidth=1.8 if cell != "lstm" else 2.4)
            ax.axhline(0.5, color="0.5", linestyle=":", linewidth=1)
            _gap_axis(ax, rows["gap"])
            ax.set_ylim(-0.03, 1.03)
            if ax.get_subplotspec().is_first_col():
                ax.set_ylabel("success rate\n(fraction of seeds solved)")
            ax.set_title(title)
        threshold = Line2D([], [], color="0.5", linestyle=":", label="50%: solves the gap")
        _legend(fig, _cell_handles(cells), extra=[threshold])
        caption = ("Fraction of seeds whose run passes the task's criterion on the test batch; "
                   "bands: Wilson 95% intervals over seeds. One column per task, one row per "
                   "group of cells, with lstm (black) in every row as the reference. Cells are "
                   "offset slightly along the gap axis so that equal curves stay visible. "
                   f"Protocol: {protocol}.")
        return _save(fig, out, "success_vs_gap", "Success rate against gap", caption, success)


def success_heatmap(success: pd.DataFrame, out: Path, protocol: str) -> Figure | None:
    if success.empty:
        return None
    panels = _panels(success)
    n_cells = max(rows["cell"].nunique() for _, rows in panels)
    n_gaps = max(rows["gap"].nunique() for _, rows in panels)
    panel = (2.2 + 0.75 * n_gaps, 1.0 + 0.36 * n_cells)
    with _style():
        columns = min(3, math.ceil(math.sqrt(len(panels))))
        fig, axes = _grid(len(panels), columns=columns, panel=panel, layout="constrained")
        for ax, (title, rows) in zip(axes, panels, strict=True):
            cells = order_cells(rows["cell"])
            rate = rows.pivot_table(index="cell", columns="gap", values="success_rate")
            rate = rate.reindex(index=cells)
            counts = rows.assign(text=[f"{int(k)}/{int(n)}" for k, n in
                                       zip(rows["solved"], rows["runs"], strict=True)])
            text = counts.pivot_table(index="cell", columns="gap", values="text",
                                      aggfunc="first").reindex(index=cells, columns=rate.columns)
            sns.heatmap(rate, ax=ax, vmin=0, vmax=1, cmap="viridis", annot=text.fillna(""),
                        fmt="", cbar=False, linewidths=0.5, linecolor="white",
                        annot_kws={"fontsize": 8})
            ax.set_facecolor("0.85")  # a gap a cell was not run at
            ax.set_xlabel("gap (time steps)")
            ax.set_ylabel("")
            ax.set_title(title)
            ax.tick_params(axis="y", rotation=0)
            ax.tick_params(axis="x", rotation=0)
        bar = fig.colorbar(plt.cm.ScalarMappable(norm=plt.Normalize(0, 1), cmap="viridis"),
                           ax=list(axes), shrink=0.6, aspect=30)
        bar.set_label("success rate (fraction of seeds solved)")
        caption = ("Success rate of every cell at every gap; each square shows solved/runs. "
                   f"Grey: not run. Protocol: {protocol}.")
        return _save(fig, out, "success_heatmap", "Success rate by cell and gap", caption,
                     success, tight=False)


# ---------------------------------------------------------------- learning curves


def _spread(gaps: list[int], most: int) -> list[int]:
    if len(gaps) <= most:
        return gaps
    picks = np.unique(np.round(np.linspace(0, len(gaps) - 1, most)).astype(int))
    return [gaps[k] for k in picks]


def _median_curve(points: pd.DataFrame) -> pd.DataFrame:
    """Median over runs of val_metric at each step; a run that stopped early (solved or
    diverged) keeps its last value to the end, as a finished model would."""
    table = points.pivot_table(index="step", columns="run_id", values="val_metric",
                               aggfunc="first").sort_index().ffill()
    return pd.DataFrame({"step": table.index, "median_val_metric": table.median(axis=1).values,
                         "q25": table.quantile(0.25, axis=1).values,
                         "q75": table.quantile(0.75, axis=1).values,
                         "runs": table.notna().sum(axis=1).values})


def learning_curves(runs: pd.DataFrame, out: Path) -> Figure | None:
    curves = frames.curves(runs)
    if curves.empty:
        return None
    task_rows = []  # one row of panels per task, one panel per gap
    for title, rows in _panels(curves):
        gaps = _spread(sorted(int(g) for g in rows["gap"].unique()), MAX_CURVE_GAPS)
        task_rows.append([(f"{title}, gap {gap}", rows.loc[rows["gap"] == gap]) for gap in gaps])
    columns = max(len(row) for row in task_rows)
    medians = []
    cells = order_cells(curves["cell"])
    with _style():
        fig, grid = plt.subplots(len(task_rows), columns, squeeze=False, sharey=True,
                                 figsize=(4.3 * columns, 3.2 * len(task_rows)))
        panels, axes = [], []
        for panel_row, ax_row in zip(task_rows, grid, strict=True):
            panels += panel_row
            axes += list(ax_row[: len(panel_row)])
            for ax in ax_row[len(panel_row):]:
                ax.set_visible(False)
        for ax, (title, rows) in zip(axes, panels, strict=True):
            for cell in order_cells(rows["cell"]):
                median = _median_curve(rows.loc[rows["cell"] == cell])
                ax.plot(median["step"], median["median_val_metric"], color=colour(cell),
                        linewidth=1.6)
                medians.append(median.assign(panel=title, cell=cell))
            ax.axhline(0.99, color="0.3", linestyle=":", linewidth=1)
            chance = rows["chance"].median()
            if np.isfinite(chance):
                ax.axhline(chance, color="0.6", linestyle="--", linewidth=1)
            ax.set_ylim(-0.02, 1.02)
            ax.set_xlabel("training step (Adam updates)")
            if ax.get_subplotspec().is_first_col():
                ax.set_ylabel("validation metric\n(fraction right)")
            ax.set_title(title)
        extra = [Line2D([], [], color="0.3", linestyle=":", label="solved (99%)"),
                 Line2D([], [], color="0.6", linestyle="--", label="chance")]
        _legend(fig, _cell_handles(cells, with_marker=False), extra=extra)
        data = pd.concat(medians, ignore_index=True)[
            ["panel", "cell", "step", "median_val_metric", "q25", "q75", "runs"]]
        caption = ("Median over seeds (of the reported runs) of the validation metric during "
                   "training; a run that stopped early keeps its last value. Up to "
                   f"{MAX_CURVE_GAPS} gaps per task, spread over the tested range.")
        return _save(fig, out, "learning_curves", "Learning curves", caption, data)


# ---------------------------------------------------------------- error flow


def error_flow(runs: pd.DataFrame, out: Path) -> list[Figure]:
    flow = frames.error_flow(runs)
    if flow.empty:
        return []
    rates = frames.error_rates(runs)
    figures = []
    for task in order_tasks(flow["task_label"]):
        rows = flow.loc[flow["task_label"] == task]
        gap, learned = _learned_gap(runs, task, rows)
        rows = rows.loc[rows["gap"] == gap]
        sizes = rows["n_hidden"].value_counts()
        size = int(max(sizes.items(), key=lambda item: (item[1], item[0]))[0])
        rows = rows.loc[rows["n_hidden"] == size]
        # a continual stream is many gaps long: drawn to the whole stream, the gap's own
        # steps would be a sliver at the left edge (the fitted rates use every distance)
        window = FLOW_WINDOW_GAPS * gap + FLOW_WINDOW_EXTRA
        clipped = rows["distance"].max() > window
        rows = rows.loc[rows["distance"] <= window]
        norm = rows["norm"].astype(float)
        rows = rows.assign(norm=norm.where(np.isfinite(norm)))
        # the median over runs at each d counts an exact 0 (underflow) as the smallest value,
        # so a curve ends where most runs reach 0; a mean of the logs would skip those runs
        # and jump up to the survivors' level
        data = (rows.groupby(["cell", "moment", "quantity", "distance"])["norm"]
                .agg(median_norm="median", runs="count").reset_index())
        data.insert(0, "task", task)
        data.insert(1, "gap", gap)
        data.insert(2, "n_hidden", size)
        cells = order_cells(data["cell"])
        ranges, own_scale = _flow_ranges(data, cells)
        styles = {("h", "final"): ("#0067A5", "-"), ("h", "init"): ("#0067A5", "--"),
                  ("c", "final"): ("#F38400", "-"), ("c", "init"): ("#F38400", "--")}
        with _style():
            fig, axes = _grid(len(cells), columns=4, panel=(3.9, 3.0), sharex=True)
            notes = {}
            for ax, cell in zip(axes, cells, strict=True):
                mine = data.loc[data["cell"] == cell]
                floor, top = ranges[cell]
                for (quantity, moment), (line_colour, line) in styles.items():
                    curve = mine.loc[(mine["quantity"] == quantity) & (mine["moment"] == moment)]
                    if curve.empty:
                        continue
                    # below the floor a curve ends (underflow, or decades past readability)
                    norm = curve["median_norm"].where(curve["median_norm"] >= floor)
                    ax.plot(curve["distance"], norm, color=line_colour, linestyle=line,
                            linewidth=1.5)
                ax.set_yscale("log")
                ax.set_ylim(floor / 2, top * 2)
                trained = rates.loc[(rates["cell"] == cell) & (rates["task_label"] == task)
                                    & (rates["gap"] == gap) & (rates["moment"] == "final")]
                memory = "c" if (trained["quantity"] == "c").any() else "h"
                mine_rates = trained.loc[trained["quantity"] == memory]
                # the median run's rate and what it leaves (one run, so the two agree)
                middle = _median_run(mine_rates["rate"])
                rate, left = ((mine_rates["rate"].iloc[middle],
                               mine_rates["left_after_gap"].iloc[middle])
                              if middle is not None else (math.nan, math.nan))
                # runs where no error reaches the state (frames.error_rates: rate −inf), e.g.
                # a memory read saturated at tanh(c) = ±1: they have no curve to draw, so
                # the panel's curve is the other runs' and the note counts them
                n_runs = len(mine_rates)
                n_zero = int(np.isneginf(mine_rates["rate"]).sum())
                some = f" in {n_zero} of {n_runs} runs" if 0 < n_zero < n_runs else ""
                if np.isfinite(rate):
                    note = f"trained ∂{memory}: {rate:+.2g}/step, {left:.2g} left"
                    note += f"; 0{some}" if n_zero else ""
                elif n_zero:  # the median run keeps no error at all
                    note = f"trained ∂{memory} = 0 next to the loss{some}"
                else:
                    note = ""
                notes[cell] = note
                ax.set_title(f"{cell}\n{note}", color=text_colour(cell), fontsize=9.5)
                ax.set_xlabel("distance from the loss (steps)")
                ax.xaxis.set_tick_params(labelbottom=True)
                if cell in own_scale:
                    ax.set_ylabel("error norm (log scale, own y axis)", fontweight="bold")
                elif ax.get_subplotspec().is_first_col():
                    ax.set_ylabel("error norm (log scale)")
            labels = ["‖∂L/∂h_t‖ trained", "‖∂L/∂h_t‖ at init", "‖∂L/∂c_t‖ trained",
                      "‖∂L/∂c_t‖ at init"]
            handles = [Line2D([], [], color=c, linestyle=s, label=label)
                       for (c, s), label in zip(styles.values(), labels, strict=True)]
            _legend(fig, handles, title="error signal")
            data["panel_note"] = data["cell"].map(notes)  # each panel's title line, as drawn
            data["y_floor"] = data["cell"].map({cell: ranges[cell][0] for cell in cells})
            data["y_top"] = data["cell"].map({cell: ranges[cell][1] for cell in cells})
            data["own_y_axis"] = data["cell"].isin(own_scale)
            name = f"error_flow_{_slug(task)}"
            where = "the longest gap lstm solves" if learned else "lstm solves no gap here"
            title = (f"Error flow on {task}, gap {gap} ({where}): gradient norm against "
                     "distance from the loss")
            caption = (f"As the first error-flow figure, on {task} (gap {gap}, H = {size})."
                       if figures else
                       f"‖∂L/∂h_t‖ and ‖∂L/∂c_t‖ for a loss at one step (the last step whose "
                       f"target depends on the memory), against how many steps before it t is; "
                       f"median over the runs at gap {gap} (H = {size}; an exact 0 counts), at "
                       "initialisation (dashed) and after training (solid). A flat line is a "
                       "constant error carousel; a straight falling line on this log axis is "
                       "exponential decay. Each title gives, for the trained memory signal (∂c, or "
                       "∂h for cells without a cell state), the fitted decay rate per step and "
                       "the fraction of the signal left after the gap (of the median run). A "
                       f"curve ends where it falls below {NORM_RANGE:g} of its axis' largest "
                       "norm. The gap is the longest lstm solves, where the error-carousel "
                       "claim is measured (on a task lstm solves at no gap: the gap most cells "
                       "were run at); the error-decay figure gives the rates at every gap.")
            if own_scale:
                caption += (f" {', '.join(own_scale)}: an error norm more than "
                            f"{OWN_SCALE_ABOVE:g} times the median cell's largest (an exploding "
                            "gradient), drawn on a y axis of its own so that the other panels "
                            "keep theirs.")
            if clipped:
                caption += (f" The sequences here are longer than {window} steps; the figure "
                            f"draws distances up to {window} ({FLOW_WINDOW_GAPS} gaps + "
                            f"{FLOW_WINDOW_EXTRA}), the fitted rates use every distance.")
            figures.append(_save(fig, out, name, title, caption, data))
    return figures


def _flow_ranges(data: pd.DataFrame, cells: list[str]) -> tuple[dict, list[str]]:
    """({cell: (floor, top)} of the error-flow y axes, the cells drawn on an axis of their own).

    The panels share one range, from the largest median norm down to NORM_RANGE of it (or the
    smallest positive norm, if higher), but for a cell whose largest norm is more than
    OWN_SCALE_ABOVE times the median cell's: its range is its own, by the same rule.
    """
    def span(rows: pd.DataFrame) -> tuple[float, float]:
        top = float(rows["median_norm"].max())
        if not top > 0:  # no error reaches any step: an empty decade range
            return NORM_RANGE, 1.0
        positive = rows.loc[rows["median_norm"] > 0, "median_norm"]
        lowest = float(positive.min()) if len(positive) else top * NORM_RANGE
        return max(lowest, top * NORM_RANGE), top

    tops = data.groupby("cell")["median_norm"].max()
    typical = float(tops.median())
    own = [cell for cell in cells
           if typical > 0 and tops.get(cell, 0.0) > typical * OWN_SCALE_ABOVE]
    shared = span(data.loc[~data["cell"].isin(own)]) if len(own) < len(cells) else None
    ranges = {cell: span(data.loc[data["cell"] == cell]) if cell in own else shared
              for cell in cells}
    return ranges, own


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in text).strip("_")


def _offsets(n: int, width: float = 0.5) -> np.ndarray:
    return np.linspace(-width / 2, width / 2, n) if n > 1 else np.zeros(1)


def _median_run(values: pd.Series) -> int | None:
    """Position of the median run in ``values`` (the lower of the middle two for an even
    count; None when empty): a value some run has, never a point halfway between a finite
    rate and −∞."""
    if not len(values):
        return None
    return int(np.argsort(values.to_numpy(), kind="stable")[(len(values) - 1) // 2])


def _per_cell_strip(ax, data: pd.DataFrame, value: str, cells: list[str]) -> None:
    """Per cell: init runs hollow at the left, trained runs filled at the right, each with
    its median run marked."""
    rng = np.random.default_rng(0)  # the same jitter every time the report is built
    for k, cell in enumerate(cells):
        for moment, dx, face in (("init", -0.18, "white"), ("final", 0.18, colour(cell))):
            values = data.loc[(data["cell"] == cell) & (data["moment"] == moment), value]
            values = values.dropna()
            if values.empty:
                continue
            x = k + dx + rng.uniform(-0.07, 0.07, len(values))
            ax.scatter(x, values, s=22, marker=marker(cell), facecolor=face,
                       edgecolor=colour(cell), linewidth=1.0, zorder=3)
            middle = values.iloc[_median_run(values)]
            ax.plot([k + dx - 0.13, k + dx + 0.13], [middle] * 2, color="0.2",
                    linewidth=1.8, zorder=4)
    ax.set_xticks(range(len(cells)))
    ax.set_xticklabels(cells, rotation=40, ha="right")
    for label in ax.get_xticklabels():
        label.set_color(text_colour(label.get_text()))
    ax.set_xlim(-0.6, len(cells) - 0.4)
    ax.grid(False, axis="x")


def _strip_layout(n_cells: int) -> dict:
    """Panel size for per-cell strips: wide enough for every cell, one column when many."""
    return {"columns": 2 if n_cells <= 10 else 1, "panel": (max(5.0, 0.55 * n_cells + 1.5), 3.8)}


def _moment_handles() -> list[Line2D]:
    return [Line2D([], [], marker="o", linestyle="", markerfacecolor="white",
                   markeredgecolor="0.2", label="at init"),
            Line2D([], [], marker="o", linestyle="", markerfacecolor="0.2",
                   markeredgecolor="0.2", label="trained"),
            Line2D([], [], color="0.2", linewidth=1.8, label="median run")]


def error_decay(runs: pd.DataFrame, out: Path) -> Figure | None:
    rates = frames.error_rates(runs)
    if rates.empty:
        return None
    # the memory's own signal: c where the cell has one, else h
    has_c = set(rates.loc[rates["quantity"] == "c", "cell"])
    memory = rates.loc[rates.apply(lambda r: r["quantity"] == ("c" if r["cell"] in has_c
                                                               else "h"), axis=1)]
    # a rate of −inf (no error reaches the state next to the loss) is drawn on a floor line
    # below the finite rates, labelled, so those runs are seen rather than dropped
    finite = memory.loc[np.isfinite(memory["rate"]), "rate"]
    lowest = float(finite.min()) if len(finite) else -1.0
    floor = min(lowest, 0.0) - 0.15 * max(1.0, abs(lowest))
    shown = memory.assign(rate=memory["rate"].where(np.isfinite(memory["rate"]), floor))
    panels = _panels(shown)
    with _style():
        fig, axes = _grid(len(panels), **_strip_layout(memory["cell"].nunique()))
        for ax, (title, rows) in zip(axes, panels, strict=True):
            _per_cell_strip(ax, rows, "rate", order_cells(rows["cell"]))
            ax.axhline(0, color="0.4", linewidth=1)
            if (rows["rate"] == floor).any():
                ax.axhline(floor, color="0.4", linewidth=0.8, linestyle=":")
                ax.annotate("no error reaches it", (0.99, floor), ha="right", va="bottom",
                            xycoords=("axes fraction", "data"), fontsize=8, color="0.3")
                # the floor is a place, not a value: its tick reads −∞, and no finite tick
                # sits between it and the lowest finite rate
                low, high = ax.get_ylim()
                ticks = [t for t in ax.get_yticks() if floor + 0.5 * (lowest - floor) <= t <= high]
                ax.set_yticks([floor, *ticks])
                ax.set_yticklabels(["−∞", *(f"{t:g}" for t in ticks)])
                ax.set_ylim(min(low, floor - 0.05 * (high - floor)), high)
            ax.set_ylabel("fitted decay rate of ln‖∂L/∂state‖\n(per time step; 0 = constant)")
            ax.set_title(f"{title} (all gaps)")
        _legend(fig, _moment_handles(), title="runs")
        caption = ("Least-squares slope of ln‖∂L/∂c_t‖ (cells with a cell state) or ln‖∂L/∂h_t‖ "
                   "(the others) against distance from the loss, per run, over distances ≥ 1 "
                   "up to the first where it is exactly 0: 0 keeps the error signal constant, "
                   "−0.69 halves it every step. Runs whose signal is exactly 0 within a step "
                   "of the loss (nothing reaches the state along it: rate −∞) sit on the "
                   "dotted floor line.")
        data = memory[["task_label", "cell", "n_hidden", "gap", "lr", "seed", "moment",
                       "quantity", "rate", "r2", "left_after_gap"]]
        return _save(fig, out, "error_decay", "How fast the error signal decays, per run",
                     caption, data)


# ---------------------------------------------------------------- gates and state


def keep_gate(runs: pd.DataFrame, out: Path) -> Figure | None:
    gates = frames.gates(runs)
    if gates.empty:
        return None
    panels = _panels(gates)
    with _style():
        fig, axes = _grid(len(panels), **_strip_layout(gates["cell"].nunique()))
        for ax, (title, rows) in zip(axes, panels, strict=True):
            _per_cell_strip(ax, rows, "keep_gap_mean", order_cells(rows["cell"]))
            ax.set_ylim(-0.03, 1.03)
            ax.set_ylabel("mean keep-gate value over the gap\n(1 = keeps everything)")
            ax.set_title(f"{title} (all gaps)")
        _legend(fig, _moment_handles(), title="runs")
        caption = ("Mean value of the gate that decides how much memory survives a step (f for "
                   "the LSTM family, z for gru; 1 for nfg), over the steps between the cue and "
                   "the step that needs it, averaged over units and test sequences; one point "
                   "per run. The ledger stores this summary per run, so the distribution shown "
                   "is over runs (seeds and gaps), not over units.")
        data = gates[["task_label", "cell", "n_hidden", "gap", "lr", "seed", "moment",
                      "keep_gate", "keep_gap_mean", "retention_mean", "retention_best_unit"]]
        return _save(fig, out, "keep_gate", "Keep (forget) gate over the gap", caption, data)


def retention(runs: pd.DataFrame, out: Path) -> Figure | None:
    gates = frames.gates(runs)
    trained = gates.loc[gates["moment"] == "final"] if not gates.empty else gates
    if trained.empty or trained["retention_best_unit"].notna().sum() == 0:
        return None
    data = (trained.groupby(["task_label", "n_hidden", "cell", "gap"])["retention_best_unit"]
            .agg(median="median", low="min", high="max", runs="count").reset_index())
    panels, columns = _line_layout(data)
    cells = order_cells(data["cell"])
    with _style():
        fig, axes = _grid(len(panels), columns=columns)
        for ax, (title, rows) in zip(axes, panels, strict=True):
            for cell in order_cells(rows["cell"]):
                _median_with_band(ax, rows.loc[rows["cell"] == cell], "gap", cell, 5,
                                  floor=RETENTION_FLOOR)
            _gap_axis(ax, rows["gap"])
            ax.set_yscale("log")
            # at least two decades, so the axis keeps plain 10^k labels
            smallest = rows["low"].clip(lower=RETENTION_FLOOR).min()
            ax.set_ylim(max(RETENTION_FLOOR / 2, min(1e-2, smallest / 3)), 1.5)
            if ax.get_subplotspec().is_first_col():
                ax.set_ylabel("∏ keep over the gap, best unit\n(log scale; 1 = nothing lost)")
            ax.set_title(title)
        _legend(fig, _cell_handles(cells))
        caption = ("How much of what was written at the cue survives the gap in the unit that "
                   "keeps it best (the product of its keep-gate values over the gap, ignoring "
                   "new writes), trained models; line: median over seeds, band: min to max. "
                   f"Values below {RETENTION_FLOOR:g} are drawn at {RETENTION_FLOOR:g}.")
        return _save(fig, out, "retention", "What survives the gap (trained)", caption, data)


def state_drift(runs: pd.DataFrame, out: Path) -> Figure | None:
    drift = frames.drift(runs)
    if drift.empty:
        return None
    drift = drift.loc[(drift["state"] == "c") & (drift["moment"] == "final")]
    if drift.empty:
        return None
    pieces = []
    for _, rows in _panels(drift):
        gap = _representative_gap(rows)
        pieces.append(rows.loc[rows["gap"] == gap])
    chosen = pd.concat(pieces)
    data = (chosen.groupby(["task_label", "n_hidden", "gap", "cell", "segment", "stream_step"])
            ["norm"].agg(median="median", low="min", high="max", runs="count").reset_index())
    panels, columns = _line_layout(data)
    cells = order_cells(data["cell"])
    with _style():
        fig, axes = _grid(len(panels), columns=columns)
        for ax, (title, rows) in zip(axes, panels, strict=True):
            for cell in order_cells(rows["cell"]):
                _median_with_band(ax, rows.loc[rows["cell"] == cell], "stream_step", cell, 3.5)
            positive = rows.loc[rows["low"] > 0, "low"]
            log = bool(len(positive)) and rows["high"].max() / positive.min() > 30
            if log:
                ax.set_yscale("log")
            else:
                ax.set_ylim(bottom=0)
            if ax.get_subplotspec().is_first_col():
                row_log = log
                ax.set_ylabel("‖c_t‖ at each sequence end" + (" (log scale)" if log else ""))
            elif log != row_log:  # this panel's scale differs from the row's label
                ax.set_ylabel("‖c_t‖" + (" (log scale)" if log else " (linear scale)"))
            ax.set_xlabel("time step of the stream (no state reset)")
            ax.set_title(f"{title} (gap {int(rows['gap'].iloc[0])})")
        _legend(fig, _cell_handles(cells))
        caption = ("Euclidean norm of the cell state c_t at the end of each of the test "
                   "sequences run back to back without resetting the state (a stream many "
                   "times longer than any training sequence), trained models, mean over "
                   "streams; line: median over seeds, band: min to max. A memory that can "
                   "only add grows without bound; one that forgets stays level.")
        return _save(fig, out, "state_drift", "Cell-state norm over a long stream (trained)",
                     caption, data)


def render_all(runs: pd.DataFrame, success: pd.DataFrame, out: Path,
               protocol: str) -> list[Figure]:
    """Every figure that has data, in the report's order."""
    figures = [success_vs_gap(success, out, protocol), success_heatmap(success, out, protocol),
               learning_curves(runs, out)]
    figures += error_flow(runs, out)
    figures += [error_decay(runs, out), keep_gate(runs, out), retention(runs, out),
                state_drift(runs, out)]
    return [figure for figure in figures if figure is not None]
