"""The claims the suites test: each with an id, the statement, its source, the comparison that
decides it, and ``evaluate(frame) -> Verdict`` on a ledger frame.

Verdicts:
    SUPPORTED     the runs show what the claim says, by its rule
    REFUTED       the runs show the opposite, by its rule
    INCONCLUSIVE  not enough runs (fewer than ``MIN_SEEDS`` seeds at a point the rule needs),
                  overlapping intervals, or tasks that disagree
    NOT RUN       the (cell, task, gap) runs the rule needs are absent from the ledger; the
                  claim is never guessed

Shared definitions (the runs are the done runs the evaluation protocol selects, see
``ablate.report.select``; a task run with options other than its defaults is a task of its
own, named by its ``task_label``, e.g. "copy (n_recall=3)"; each is read at one hidden size,
the one with the most runs among those both cells share, ties to the larger):
    success at a gap   k of n runs (one per seed) solved, with its Wilson 95% interval
    reach              the longest gap solved by the headline rule (``tables.HEADLINE_RULE``:
                       ≥ 50% success there and at every shorter common gap); below the
                       shortest gap when the shortest is not solved
    A below B at g     A's interval at gap g lies entirely below B's (they do not overlap)
Comparisons between two cells use the gaps both were run at. A claim about "a cell" in
general (no task named) is decided on every task with the runs it needs, a claim about a
named task on each of its variants: SUPPORTED when at least one task supports it and none
refutes it, REFUTED in the mirror case, INCONCLUSIVE when tasks disagree or none decides;
each task's numbers are listed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import pandas as pd

from ablate.report import frames, select
from ablate.report.stats import Interval, below, wilson

SUPPORTED, REFUTED, INCONCLUSIVE, NOT_RUN = "SUPPORTED", "REFUTED", "INCONCLUSIVE", "NOT RUN"
VERDICTS = (SUPPORTED, REFUTED, INCONCLUSIVE, NOT_RUN)
MIN_SEEDS = 3  # fewer runs at a point the rule needs: INCONCLUSIVE
KEEPS_ERROR = 0.5  # "near constant": at least half the error signal left after the gap
LOSES_ERROR = 0.1  # "decays": at most a tenth left after the gap
GROWS = 2.0  # "only grows": ‖c‖ at the stream's last segment end ≥ 2× the first
BOUNDED = 1.25  # "does not grow": ≤ 1.25× the first
GREFF_VARIANTS = ("nig", "nfg", "nog", "niaf", "noaf", "cifg", "fgr", "lstm")  # lstm = NP
GREFF_VANILLA = "lstm_peephole"
# Training sequences LSTM needed on the adding problem in Hochreiter & Schmidhuber 1997
# (Table 7, by T = our gap): a failure within fewer cannot refute their result.
HS97_ADDING_SEQUENCES = {100: 74_000, 500: 209_000, 1000: 853_000}


@dataclass(frozen=True)
class Verdict:
    verdict: str  # one of VERDICTS
    numbers: dict = field(default_factory=dict)  # what the verdict rests on, by name
    explanation: str = ""


@dataclass(frozen=True)
class Claim:
    id: str
    statement: str
    source: str
    comparison: str  # the decision rule, in words
    rule: Callable[[Evidence], Verdict] = field(repr=False, compare=False)
    # the bundled suites (suites/<name>.toml) with the runs the rule needs
    suites: tuple[str, ...] = ()

    def evaluate(self, frame: pd.DataFrame, protocol: str = "best_lr") -> Verdict:
        """The verdict on a ledger frame (``store.load``) under ``protocol``."""
        return self.rule(Evidence(select.select(frame, protocol)))


# ---------------------------------------------------------------- evidence


class Point(NamedTuple):
    solved: int
    runs: int
    interval: Interval

    @property
    def rate(self) -> float:
        return self.solved / self.runs

    def __str__(self) -> str:
        return f"{self.solved}/{self.runs} [{self.interval.low:.2f}, {self.interval.high:.2f}]"


class Evidence:
    """The selected runs and the lookups the rules share."""

    def __init__(self, runs: pd.DataFrame) -> None:
        self.runs = runs
        self._rates: pd.DataFrame | None = None
        self._drift: pd.DataFrame | None = None

    def rows(self, cell: str, task: str, size: int | None = None) -> pd.DataFrame:
        runs = self.runs
        if runs.empty:
            return runs
        use = (runs["cell"] == cell) & (runs["task_label"] == task)
        if size is not None:
            use &= runs["n_hidden"] == size
        return runs.loc[use]

    def present(self, cell: str, task: str) -> bool:
        return not self.rows(cell, task).empty

    def tasks(self, name: str | None = None) -> list[str]:
        """The task labels with runs, in registry order: every one, or those of task ``name``
        (its default options and its variants)."""
        from ablate.report.style import order_tasks

        if self.runs.empty:
            return []
        labels = order_tasks(self.runs["task_label"])
        if name is None:
            return labels
        return [label for label in labels if label == name or label.startswith(f"{name} (")]

    def size(self, cells: Sequence[str], task: str) -> int | None:
        """The hidden size every cell was run at with the most runs (ties: the larger)."""
        counts = None
        for cell in cells:
            here = self.rows(cell, task)["n_hidden"].value_counts()
            counts = here if counts is None else counts.add(here).dropna()
        if counts is None or counts.empty:
            return None
        best = max(counts.items(), key=lambda item: (item[1], item[0]))
        return int(best[0])

    def points(self, cell: str, task: str, size: int) -> dict[int, Point]:
        """Success at every gap the cell was run at."""
        out = {}
        for gap, group in self.rows(cell, task, size).groupby("gap"):
            k, n = int(group["solved"].sum()), len(group)
            out[int(gap)] = Point(k, n, wilson(k, n))
        return out

    def sequences(self, cell: str, task: str, size: int, gap: int) -> int:
        """The fewest training sequences any of the cell's runs at ``gap`` could see: its
        budget (steps) × batch size."""
        rows = self.rows(cell, task, size)
        rows = rows.loc[rows["gap"] == gap]
        return int((rows["budget"].astype(int) * rows["batch_size"].astype(int)).min())

    def error_rates(self) -> pd.DataFrame:
        if self._rates is None:
            self._rates = frames.error_rates(self.runs)
        return self._rates

    def drift(self) -> pd.DataFrame:
        if self._drift is None:
            self._drift = frames.drift_summary(self.runs)
        return self._drift


def reach(points: dict[int, Point], gaps: Sequence[int]) -> float:
    """The longest of ``gaps`` solved with every shorter one; −inf when none."""
    longest = -math.inf
    for gap in sorted(gaps):
        if points[gap].rate < 0.5:
            break
        longest = gap
    return longest


def _gap_text(value: float, gaps: Sequence[int]) -> str:
    return f"< {min(gaps)}" if value == -math.inf else f"{int(value)}"


def _reach_value(value: float, gaps: Sequence[int]):
    """A reach for the numbers: the gap, or "< shortest" when none is solved."""
    return _gap_text(value, gaps) if value == -math.inf else int(value)


class _Compared(NamedTuple):
    """Several cells' success on one task over the gaps they all were run at."""

    size: int
    gaps: list[int]
    points: dict[str, dict[int, Point]]

    def reach(self, cell: str) -> float:
        return reach(self.points[cell], self.gaps)

    def reaches(self, task: str, cells: Sequence[str]) -> tuple[dict[str, float], dict]:
        """({cell: reach}, the numbers a verdict shows: each reach and the hidden size)."""
        found = {cell: self.reach(cell) for cell in cells}
        numbers = {f"{task}.{cell}.reach": _reach_value(r, self.gaps) for cell, r in found.items()}
        numbers[f"{task}.n_hidden"] = self.size
        return found, numbers


def _compare(evidence: Evidence, cells: Sequence[str], task: str) -> _Compared | Verdict | None:
    """None: some cell was not run on the task (not run); a Verdict: cannot compare."""
    if not all(evidence.present(cell, task) for cell in cells):
        return None
    size = evidence.size(cells, task)
    if size is None:
        return Verdict(INCONCLUSIVE, {}, f"{task}: no hidden size common to {', '.join(cells)}")
    points = {cell: evidence.points(cell, task, size) for cell in cells}
    gaps = sorted(set.intersection(*(set(p) for p in points.values())))
    if not gaps:
        return Verdict(INCONCLUSIVE, {}, f"{task}: {', '.join(cells)} share no gap")
    for cell in cells:
        for gap in gaps:
            if points[cell][gap].runs < MIN_SEEDS:
                return Verdict(INCONCLUSIVE, {f"{task}.{cell}.runs@{gap}": points[cell][gap].runs},
                               f"{task}: {cell} has {points[cell][gap].runs} run(s) at gap {gap}, "
                               f"fewer than {MIN_SEEDS}")
    return _Compared(size, gaps, points)


def _per_task(evidence: Evidence, tasks: Sequence[str] | None,
              decide: Callable[[Evidence, str], Verdict | None], what: str) -> Verdict:
    """Decide on each task (None from ``decide``: not run there) and combine (module doc)."""
    found = {}
    labels = (evidence.tasks() if tasks is None
              else [label for name in tasks for label in evidence.tasks(name)])
    for task in labels:
        verdict = decide(evidence, task)
        if verdict is not None:
            found[task] = verdict
    if not found:
        if tasks:
            return Verdict(NOT_RUN, {}, f"no runs of {what} on {', '.join(tasks)} in the ledger")
        return Verdict(NOT_RUN, {}, f"no task with runs of {what} in the ledger")
    numbers = {}
    for verdict in found.values():
        numbers.update(verdict.numbers)
    kinds = {task: v.verdict for task, v in found.items()}
    supported = [t for t, v in kinds.items() if v == SUPPORTED]
    refuted = [t for t, v in kinds.items() if v == REFUTED]
    if supported and not refuted:
        overall = SUPPORTED
    elif refuted and not supported:
        overall = REFUTED
    else:
        overall = INCONCLUSIVE
    lines = [f"{v.explanation} ({v.verdict})" for v in found.values()]
    if supported and refuted:
        lines.insert(0, f"tasks disagree: supported on {', '.join(supported)}, "
                        f"refuted on {', '.join(refuted)}")
    elif len(set(kinds.values())) > 1:  # some tasks decided, others did not
        lines.insert(0, _tally(kinds))
    return Verdict(overall, numbers, "; ".join(lines))


def _tally(kinds: dict[str, str]) -> str:
    """Which task decided what, e.g. "SUPPORTED on adding; INCONCLUSIVE on copy, tv"."""
    order = (SUPPORTED, REFUTED, INCONCLUSIVE)
    parts = [f"{kind} on {', '.join(t for t, k in kinds.items() if k == kind)}"
             for kind in order if kind in kinds.values()]
    return "per task: " + "; ".join(parts)


# ---------------------------------------------------------------- rules


def shorter_reach(a: str, b: str, task: str, evidence: Evidence) -> Verdict | None:
    """"A fails at a shorter gap than B" on one task (None: not run).

    SUPPORTED     reach(B) > reach(A) and A below B at reach(B)
    REFUTED       reach(A) ≥ reach(B) while B fails some tested gap (B's limit is inside the
                  range and A gets at least as far)
    INCONCLUSIVE  B solves no gap; both solve every gap (the limits lie beyond the range);
                  or the intervals overlap at reach(B)
    """
    compared = _compare(evidence, (a, b), task)
    if not isinstance(compared, _Compared):
        return compared
    gaps, pa, pb = compared.gaps, compared.points[a], compared.points[b]
    reach_a, reach_b = compared.reach(a), compared.reach(b)
    numbers = {f"{task}.{a}.reach": _reach_value(reach_a, compared.gaps),
               f"{task}.{b}.reach": _reach_value(reach_b, compared.gaps),
               f"{task}.n_hidden": compared.size}
    text_a, text_b = _gap_text(reach_a, gaps), _gap_text(reach_b, gaps)
    if reach_b == -math.inf:
        return Verdict(INCONCLUSIVE, numbers,
                       f"{task}: {b} solves no gap tested ({', '.join(map(str, gaps))})")
    if reach_a < reach_b:
        g = int(reach_b)
        numbers[f"{task}.{a}@{g}"], numbers[f"{task}.{b}@{g}"] = str(pa[g]), str(pb[g])
        detail = (f"{task}: {a} reaches {text_a}, {b} reaches {text_b}; at gap {g} {a} "
                  f"{pa[g]} vs {b} {pb[g]}")
        if below(pa[g].interval, pb[g].interval):
            return Verdict(SUPPORTED, numbers, detail + ", separated")
        return Verdict(INCONCLUSIVE, numbers, detail + ", intervals overlap")
    if reach_b == gaps[-1]:
        return Verdict(INCONCLUSIVE, numbers,
                       f"{task}: both solve every gap up to {gaps[-1]}; their limits lie "
                       "beyond the tested gaps")
    return Verdict(REFUTED, numbers,
                   f"{task}: {a} reaches {text_a}, at least as far as {b} ({text_b})")


def comparable(a: str, b: str, task: str, evidence: Evidence) -> Verdict | None:
    """"A is comparable to B" on one task (None: not run).

    SUPPORTED     the same reach (some gap solved), and neither below the other at any gap
    REFUTED       one below the other at some gap
    INCONCLUSIVE  otherwise (different reach with overlapping intervals; neither solves any gap)
    """
    compared = _compare(evidence, (a, b), task)
    if not isinstance(compared, _Compared):
        return compared
    pa, pb = compared.points[a], compared.points[b]
    reach_a, reach_b = compared.reach(a), compared.reach(b)
    numbers = {f"{task}.{a}.reach": _reach_value(reach_a, compared.gaps),
               f"{task}.{b}.reach": _reach_value(reach_b, compared.gaps),
               f"{task}.n_hidden": compared.size}
    for gap in compared.gaps:
        for low, high in ((a, b), (b, a)):
            p_low = compared.points[low][gap]
            p_high = compared.points[high][gap]
            if below(p_low.interval, p_high.interval):
                numbers[f"{task}.{low}@{gap}"] = str(p_low)
                numbers[f"{task}.{high}@{gap}"] = str(p_high)
                return Verdict(REFUTED, numbers, f"{task}: at gap {gap} {low} {p_low} lies "
                                                 f"below {high} {p_high}")
    gaps = compared.gaps
    summary = (f"{task}: {a} reaches {_gap_text(reach_a, gaps)}, {b} "
               f"{_gap_text(reach_b, gaps)}; intervals overlap at every gap "
               f"({', '.join(f'{g}: {pa[g]} vs {pb[g]}' for g in gaps)})")
    if reach_a == reach_b and reach_a != -math.inf:
        return Verdict(SUPPORTED, numbers, summary)
    return Verdict(INCONCLUSIVE, numbers, summary + (
        "; neither solves any gap" if reach_a == reach_b else ""))


def flat_success(cell: str, task: str, evidence: Evidence, short: int = 10,
                 long: int = 1000) -> Verdict | None:
    """"The cell's success does not depend on the gap from ``short`` to ``long``" on one task.

    The end points are the tested gaps nearest ``short`` and ``long`` (each within a factor
    of 2; missing: not run).
    SUPPORTED     ≥ 50% success at every tested gap in between, and none below the short end
    REFUTED       some gap in between lies below the short end (a significant drop)
    INCONCLUSIVE  otherwise, or fewer than MIN_SEEDS runs at some gap
    """
    if not evidence.present(cell, task):
        return None
    size = evidence.size((cell,), task)
    points = evidence.points(cell, task, size)
    lo = _nearest(points, short)
    hi = _nearest(points, long)
    if lo is None or hi is None:
        return None
    gaps = [g for g in sorted(points) if lo <= g <= hi]
    numbers = {f"{task}.{cell}@{g}": str(points[g]) for g in gaps}
    numbers[f"{task}.n_hidden"] = size
    few = [g for g in gaps if points[g].runs < MIN_SEEDS]
    if few:
        return Verdict(INCONCLUSIVE, numbers, f"{task}: fewer than {MIN_SEEDS} runs at gap "
                                              f"{few[0]}")
    start = points[lo]
    drops = [g for g in gaps if below(points[g].interval, start.interval)]
    listing = ", ".join(f"{g}: {points[g]}" for g in gaps)
    if drops:
        return Verdict(REFUTED, numbers, f"{task}: success drops from {start} at gap {lo} to "
                                         f"{points[drops[0]]} at gap {drops[0]} ({listing})")
    if all(points[g].rate >= 0.5 for g in gaps):
        return Verdict(SUPPORTED, numbers, f"{task}: ≥ 50% at every gap from {lo} to {hi}, "
                                           f"no interval below gap {lo}'s ({listing})")
    return Verdict(INCONCLUSIVE, numbers, f"{task}: below 50% somewhere but no significant "
                                          f"drop ({listing})")


def _nearest(points: dict[int, Point], target: int) -> int | None:
    near = [g for g in points if target / 2 <= g <= target * 2]
    return min(near, key=lambda g: abs(math.log(g / target))) if near else None


def learned_gap(evidence: Evidence, cell: str, task: str, gaps) -> tuple[int | None, object]:
    """(the longest of ``gaps`` that ``cell`` solves on ``task``, its reach for the numbers):
    reach by the headline rule at the cell's most-run hidden size; None where it solves none
    of them. Where the error-carousel claim and the error-flow figure read the flow."""
    points = evidence.points(cell, task, evidence.size([cell], task))
    cell_reach = reach(points, list(points))
    learned = [int(g) for g in gaps if g <= cell_reach]
    return (max(learned) if learned else None), _reach_value(cell_reach, list(points))


def error_carousel(task: str, evidence: Evidence, gated: str = "lstm",
                   plain: str = "rnn") -> Verdict | None:
    """"Error flow through the gated cell state stays near constant; the plain RNN's decays
    exponentially" on one task, from the trained ("final") diagnostics.

    Per run: the fitted decay rate of ln‖∂L/∂c_t‖ (gated) or ln‖∂L/∂h_t‖ (plain) per step of
    distance (``stats.decay_fit``) and F = exp(rate · gap), the error left after the gap;
    at the longest gap the gated cell solves (its reach, the headline rule) where both cells
    have ≥ MIN_SEEDS runs with error flow. The carousel is the seeds' account of why the
    LSTM learns long gaps, so it is measured where the LSTM learned: at a gap it failed, its
    trained gates need not keep anything, and the flow there says nothing about the claim.
    SUPPORTED     every gated run keeps F ≥ 1/2 and every plain run F ≤ 1/10
    REFUTED       every gated run F < 1/2, or every plain run F > 1/10
    INCONCLUSIVE  otherwise (seeds disagree), too few runs with error flow, or the gated cell
                  solves no gap
    """
    if not (evidence.present(gated, task) and evidence.present(plain, task)):
        return None
    rates = evidence.error_rates()
    if rates.empty:
        return Verdict(INCONCLUSIVE, {}, f"{task}: no error-flow diagnostics stored")
    here = rates.loc[rates["task_label"] == task]
    want = {gated: "c", plain: "h"}
    final = {cell: here.loc[(here["cell"] == cell) & (here["moment"] == "final")
                            & (here["quantity"] == quantity)]
             for cell, quantity in want.items()}
    counts = [final[cell].groupby("gap").size() for cell in want]
    both = counts[0].index.intersection(counts[1].index)
    usable = [g for g in both if counts[0][g] >= MIN_SEEDS and counts[1][g] >= MIN_SEEDS]
    if not usable:
        return Verdict(INCONCLUSIVE, {}, f"{task}: fewer than {MIN_SEEDS} runs of {gated} and "
                                         f"{plain} with trained error flow at a common gap")
    gap, gated_reach = learned_gap(evidence, gated, task, usable)
    reach_number = {f"{task}.{gated}.reach": gated_reach}
    if gap is None:
        return Verdict(INCONCLUSIVE, reach_number,
                       f"{task}: {gated} solves no gap with {MIN_SEEDS}+ runs of error flow "
                       f"(reach {gated_reach}); the carousel is measured where {gated} "
                       "learned the task")
    numbers = {f"{task}.gap": gap, **reach_number}
    left = {}
    for cell, quantity in want.items():
        at = final[cell].loc[final[cell]["gap"] == gap]
        left[cell] = at["left_after_gap"].to_numpy()
        start = here.loc[(here["cell"] == cell) & (here["moment"] == "init")
                         & (here["quantity"] == quantity) & (here["gap"] == gap)]
        numbers[f"{task}.{cell}.d{quantity}_rate_trained"] = round(float(at["rate"].median()), 5)
        if not start.empty:
            numbers[f"{task}.{cell}.d{quantity}_rate_init"] = round(
                float(start["rate"].median()), 5)
        numbers[f"{task}.{cell}.d{quantity}_left_after_gap"] = float(
            f"{float(pd.Series(left[cell]).median()):.3g}")
        numbers[f"{task}.{cell}.fit_r2"] = round(float(at["r2"].median()), 3)
    detail = (f"{task}, gap {gap}: error left after the gap (median over seeds) "
              f"{gated} ‖∂L/∂c‖ {numbers[f'{task}.{gated}.dc_left_after_gap']}, "
              f"{plain} ‖∂L/∂h‖ {numbers[f'{task}.{plain}.dh_left_after_gap']}; rates per step "
              f"{numbers[f'{task}.{gated}.dc_rate_trained']} and "
              f"{numbers[f'{task}.{plain}.dh_rate_trained']}")
    keeps, loses = left[gated] >= KEEPS_ERROR, left[plain] <= LOSES_ERROR
    if keeps.all() and loses.all():
        return Verdict(SUPPORTED, numbers, detail)
    if not keeps.any() or not loses.any():
        return Verdict(REFUTED, numbers, detail)
    return Verdict(INCONCLUSIVE, numbers, detail + "; seeds disagree")


def grows(cell: str, task: str, evidence: Evidence) -> Verdict:
    """"The cell's memory only grows": trained ‖c‖ over the no-reset stream of the state-drift
    diagnostic, growth = last / first segment-end norm, over the cell's runs on the task.
    SUPPORTED every run grows ≥ GROWS×; REFUTED every run ≤ BOUNDED×; else INCONCLUSIVE."""
    drift = evidence.drift()
    runs = drift.loc[(drift["cell"] == cell) & (drift["task_label"] == task)
                     & (drift["moment"] == "final")] if not drift.empty else drift
    growth = runs["growth"].dropna().to_numpy() if not runs.empty else []
    numbers = {f"{task}.{cell}.c_growth_median": round(float(pd.Series(growth).median()), 3)
               if len(growth) else None, f"{task}.{cell}.c_growth_runs": len(growth)}
    if len(growth) < MIN_SEEDS:
        return Verdict(INCONCLUSIVE, numbers, f"{task}: {len(growth)} run(s) of {cell} with a "
                                              f"trained state-drift measurement")
    text = (f"{task}: {cell}'s ‖c‖ at the end of the stream is {min(growth):.3g}–"
            f"{max(growth):.3g}× its first value over {len(growth)} runs")
    if (growth >= GROWS).all():
        return Verdict(SUPPORTED, numbers, text)
    if (growth <= BOUNDED).all():
        return Verdict(REFUTED, numbers, text)
    return Verdict(INCONCLUSIVE, numbers, text)


def _both(first: Verdict, second: Verdict) -> Verdict:
    """A claim that is the conjunction of two parts."""
    numbers = {**first.numbers, **second.numbers}
    text = f"{first.explanation} ({first.verdict}); {second.explanation} ({second.verdict})"
    kinds = (first.verdict, second.verdict)
    if REFUTED in kinds:
        return Verdict(REFUTED, numbers, text)
    if kinds == (SUPPORTED, SUPPORTED):
        return Verdict(SUPPORTED, numbers, text)
    return Verdict(INCONCLUSIVE, numbers, text)


def sigmoid_only_adds(evidence: Evidence, cell: str = "sigmoid_input", task: str = "continual",
                      reference: str = "lstm") -> Verdict:
    if not (evidence.present(cell, task) and evidence.present(reference, task)):
        return Verdict(NOT_RUN, {}, f"needs {cell} and {reference} on {task}")
    return _both(grows(cell, task, evidence), shorter_reach(cell, reference, task, evidence))


def solved_at(cell: str, task: str, gaps: Sequence[int], evidence: Evidence,
              source_sequences: dict[int, int] | None = None) -> Verdict:
    """"The cell solves the task at each of ``gaps``": per gap, the success interval.
    SUPPORTED     every gap's interval lies entirely above 1/2 (most seeds solve, significantly)
    REFUTED       some gap's interval lies entirely below 1/2, its runs trained on at least
                  the sequences the source needed there (``source_sequences`` [gap]; every
                  run's budget × batch size)
    NOT RUN       some gap was not run (and none refutes)
    INCONCLUSIVE  otherwise: an interval contains 1/2, fewer than MIN_SEEDS runs, or a gap
                  failed within fewer training sequences than the source needed there (a
                  shorter training than the source's cannot refute its result)"""
    if not evidence.present(cell, task):
        return Verdict(NOT_RUN, {}, f"no runs of {cell} on {task} in the ledger")
    size = evidence.size((cell,), task)
    points = evidence.points(cell, task, size)
    numbers = {f"{task}.{cell}@{g}": str(points[g]) for g in gaps if g in points}
    numbers[f"{task}.n_hidden"] = size
    missing = [g for g in gaps if g not in points]
    listing = ", ".join(f"{g}: {points[g]}" for g in gaps if g in points)
    failed = [g for g in gaps if g in points and points[g].interval.high < 0.5]
    trained = {g: evidence.sequences(cell, task, size, g) for g in failed}
    needed = source_sequences or {}
    short = [g for g in failed if trained[g] < needed.get(g, 0)]
    for g in short:
        numbers[f"{task}.{cell}@{g}.sequences"] = trained[g]
        numbers[f"{task}.source@{g}.sequences"] = needed[g]
    refuting = [g for g in failed if g not in short]
    if refuting:
        return Verdict(REFUTED, numbers, f"{task}: {cell} fails at gap {refuting[0]} ({listing})")
    too_short = "; ".join(
        f"{cell} fails at gap {g} within {trained[g]:,} training sequences, fewer than the "
        f"{needed[g]:,} the source trained on there" for g in short)
    if missing:
        return Verdict(NOT_RUN, numbers, f"{task}: {cell} not run at gap(s) "
                                         f"{', '.join(map(str, missing))}"
                                         + (f"; {too_short}" if short else ""))
    if short:
        return Verdict(INCONCLUSIVE, numbers, f"{task}: {too_short} ({listing})")
    few = [g for g in gaps if points[g].runs < MIN_SEEDS]
    if few:
        return Verdict(INCONCLUSIVE, numbers, f"{task}: fewer than {MIN_SEEDS} runs at gap "
                                              f"{few[0]} ({listing})")
    if all(points[g].interval.low > 0.5 for g in gaps):
        return Verdict(SUPPORTED, numbers, f"{task}: {cell} {listing}")
    return Verdict(INCONCLUSIVE, numbers, f"{task}: an interval contains 50% ({listing})")


def greff_hurts_most(task: str, evidence: Evidence, worst=("nfg", "noaf")) -> Verdict | None:
    """Greff et al. 2017's worst variants on one task, against vanilla (``lstm_peephole``) and
    the other variants run there (of nig, nog, niaf, cifg, fgr, lstm = no peepholes).

    X hurts  X below vanilla at some common gap.
    SUPPORTED  every X in ``worst`` hurts, and no other variant reaches less far than any X
    REFUTED    some X reaches at least as far as vanilla while vanilla fails some tested gap
               (X does not hurt), or another variant lies below some X at a gap (it hurts more)
    INCONCLUSIVE otherwise
    """
    needed = (GREFF_VANILLA, *worst)
    if not all(evidence.present(cell, task) for cell in needed):
        return None
    others = [c for c in GREFF_VARIANTS if c not in worst and evidence.present(c, task)]
    compared = _compare(evidence, (*needed, *others), task)
    if not isinstance(compared, _Compared):
        return compared
    gaps, points = compared.gaps, compared.points
    reaches, numbers = compared.reaches(task, list(points))
    vanilla = points[GREFF_VANILLA]
    hurt = {}
    for cell in worst:
        at = [g for g in gaps if below(points[cell][g].interval, vanilla[g].interval)]
        hurt[cell] = at[0] if at else None
        if at:
            numbers[f"{task}.{cell}@{at[0]}"] = str(points[cell][at[0]])
            numbers[f"{task}.{GREFF_VANILLA}@{at[0]}"] = str(vanilla[at[0]])
    reach_text = ", ".join(f"{c} {_gap_text(r, gaps)}" for c, r in reaches.items())
    for cell in worst:
        if (reaches[cell] >= reaches[GREFF_VANILLA] > -math.inf
                and reaches[GREFF_VANILLA] < gaps[-1]):
            return Verdict(REFUTED, numbers, f"{task}: {cell} reaches as far as vanilla "
                                             f"({reach_text})")
        for other in others:
            at = [g for g in gaps if below(points[other][g].interval, points[cell][g].interval)]
            if at:
                numbers[f"{task}.{other}@{at[0]}"] = str(points[other][at[0]])
                numbers[f"{task}.{cell}@{at[0]}"] = str(points[cell][at[0]])
                return Verdict(REFUTED, numbers, f"{task}: {other} {points[other][at[0]]} lies "
                               f"below {cell} {points[cell][at[0]]} at gap {at[0]} ({reach_text})")
    worst_reach = max(reaches[cell] for cell in worst)
    if all(hurt.values()) and all(reaches[o] >= worst_reach for o in others):
        return Verdict(SUPPORTED, numbers, f"{task}: {' and '.join(worst)} lie below vanilla "
                       f"(at gaps {', '.join(str(hurt[c]) for c in worst)}), no other variant "
                       f"reaches less far ({reach_text})")
    return Verdict(INCONCLUSIVE, numbers, f"{task}: not every one of {', '.join(worst)} lies "
                   f"below vanilla, or another variant reaches less far ({reach_text})")


def greff_harmless(task: str, evidence: Evidence, harmless=("cifg", "lstm")) -> Verdict | None:
    """Greff et al. 2017's harmless changes on one task, against vanilla (``lstm_peephole``):
    CIFG (``cifg``) and no peepholes (``lstm``).

    SUPPORTED     each reaches at least as far as vanilla (which solves some gap) and lies
                  below it at no gap
    REFUTED       one lies below vanilla at some gap
    INCONCLUSIVE  otherwise
    """
    needed = (GREFF_VANILLA, *harmless)
    if not all(evidence.present(cell, task) for cell in needed):
        return None
    compared = _compare(evidence, needed, task)
    if not isinstance(compared, _Compared):
        return compared
    gaps, points = compared.gaps, compared.points
    reaches, numbers = compared.reaches(task, needed)
    reach_text = ", ".join(f"{c} {_gap_text(r, gaps)}" for c, r in reaches.items())
    vanilla = points[GREFF_VANILLA]
    for cell in harmless:
        at = [g for g in gaps if below(points[cell][g].interval, vanilla[g].interval)]
        if at:
            numbers[f"{task}.{cell}@{at[0]}"] = str(points[cell][at[0]])
            numbers[f"{task}.{GREFF_VANILLA}@{at[0]}"] = str(vanilla[at[0]])
            return Verdict(REFUTED, numbers, f"{task}: {cell} {points[cell][at[0]]} lies below "
                           f"vanilla {vanilla[at[0]]} at gap {at[0]} ({reach_text})")
    if reaches[GREFF_VANILLA] == -math.inf:
        return Verdict(INCONCLUSIVE, numbers, f"{task}: vanilla solves no gap ({reach_text})")
    if all(reaches[c] >= reaches[GREFF_VANILLA] for c in harmless):
        return Verdict(SUPPORTED, numbers, f"{task}: both reach as far as vanilla, neither lies "
                                           f"below it at any gap ({reach_text})")
    return Verdict(INCONCLUSIVE, numbers, f"{task}: one reaches less far than vanilla but "
                                          f"the intervals overlap ({reach_text})")


# ---------------------------------------------------------------- the registry


def _general(decide, what: str, tasks: Sequence[str] | None = None):
    return lambda evidence: _per_task(evidence, tasks, decide, what)


def _pair(rule, a: str, b: str):
    return lambda evidence, task: rule(a, b, task, evidence)


_SHORTER = ("A fails at a shorter gap than B, per task: SUPPORTED when B's reach is longer and "
            "A's success interval at B's reach lies entirely below B's; REFUTED when A reaches "
            "at least as far as B while B fails some tested gap; INCONCLUSIVE when the "
            "intervals overlap, B solves nothing, both solve every gap, or fewer than 3 seeds")

CLAIMS: tuple[Claim, ...] = (
    Claim(
        "seed-q1-single-net",
        "One network computing the new memory (single_net) stops working at a shorter gap "
        "than the gated lstm.",
        "seed Q1",
        f"A = single_net, B = lstm, every task with both. {_SHORTER}.",
        _general(_pair(shorter_reach, "single_net", "lstm"), "single_net and lstm"),
        suites=("why_gates", "zoo"),
    ),
    Claim(
        "seed-q2-net-readout",
        "Reading the memory through a network (net_readout) instead of the output gate costs "
        "gap length.",
        "seed Q2",
        f"A = net_readout, B = lstm, every task with both. {_SHORTER}.",
        _general(_pair(shorter_reach, "net_readout", "lstm"), "net_readout and lstm"),
        suites=("why_gates", "zoo"),
    ),
    Claim(
        "seed-answer-error-flow",
        "Error flow through the gated cell state stays near constant with distance, while the "
        "plain rnn's decays exponentially.",
        "seed answer",
        "Trained diagnostics, per task at the longest gap lstm solves (headline rule) with ≥ 3 "
        "runs of each: the fitted exponential decay rate of ‖∂L/∂c_t‖ (lstm) and ‖∂L/∂h_t‖ "
        "(rnn) per step of distance, and F = exp(rate · gap), the error left after the gap. "
        "SUPPORTED when every lstm run keeps F ≥ 1/2 and every rnn run F ≤ 1/10; REFUTED when "
        "no lstm run keeps 1/2 or no rnn run drops to 1/10; INCONCLUSIVE when seeds disagree "
        "or lstm solves no gap (the carousel explains learning, so it is measured where lstm "
        "learned).",
        _general(lambda evidence, task: error_carousel(task, evidence), "lstm and rnn"),
        suites=("why_gates", "hochreiter97", "zoo"),
    ),
    Claim(
        "seed-sigmoid-only-adds",
        "A sigmoid input (sigmoid_input) can only add to the memory: its cell state only grows, "
        "and it fails where forgetting is required.",
        "seed text (\"sigmoid alone will only add memory\")",
        "Both parts on continual: (1) the trained ‖c‖ over a stream of 20 test sequences without "
        "reset grows ≥ 2× from the first to the last sequence in every sigmoid_input run "
        "(REFUTED: ≤ 1.25× in every run); (2) sigmoid_input fails at a shorter gap than lstm "
        f"({_SHORTER}). SUPPORTED when both parts are, REFUTED when either is.",
        sigmoid_only_adds,
        suites=("why_gates", "zoo"),
    ),
    Claim(
        "gap-insensitive",
        "The lstm's success is insensitive to gap length: flat from gap 10 to 1000.",
        "seed text (\"insensitive to gap length\")",
        "Per task, over the tested gaps from the one nearest 10 to the one nearest 1000 (each "
        "within a factor 2): SUPPORTED when lstm solves ≥ 50% at every gap and no gap's interval "
        "lies below the shortest gap's; REFUTED when some gap's interval lies below it; "
        "INCONCLUSIVE otherwise or with fewer than 3 seeds.",
        _general(lambda evidence, task: flat_success("lstm", task, evidence),
                 "lstm at gaps near 10 and 1000"),
        suites=("why_gates", "zoo"),
    ),
    Claim(
        "gru-comparable",
        "The GRU performs comparably to the LSTM.",
        "Chung et al. 2014",
        "Per task, at the gaps both were run: SUPPORTED when gru and lstm reach the same "
        "longest gap and neither's interval lies below the other's at any gap; REFUTED when "
        "one lies below the other at some gap; INCONCLUSIVE otherwise. A suite's forget_bias "
        "shifts the lstm's forget gate only, not the gru's update gate: where it is set, the "
        "two start unequally (the Training table gives each cell's initialisation).",
        _general(_pair(comparable, "gru", "lstm"), "gru and lstm"),
        suites=("why_gates", "zoo"),
    ),
    Claim(
        "peepholes-timing",
        "Peephole connections help precise timing: lstm without peepholes fails at a shorter "
        "timing gap than lstm_peephole.",
        "Gers & Schmidhuber 2000",
        f"A = lstm, B = lstm_peephole, on timing. {_SHORTER}.",
        _general(_pair(shorter_reach, "lstm", "lstm_peephole"), "lstm and lstm_peephole",
                 ("timing",)),
        suites=("gers2000", "zoo"),
    ),
    Claim(
        "greff-forget-output-activation",
        "Removing the forget gate (nfg) or the output activation (noaf) hurts most.",
        "Greff et al. 2017",
        "Per task, against vanilla = lstm_peephole and the other variants run (nig, nog, niaf, "
        "cifg, fgr, lstm): SUPPORTED when nfg and noaf each lie below vanilla at some gap and "
        "no other variant reaches less far than either; REFUTED when nfg or noaf reaches as far "
        "as vanilla (vanilla failing some tested gap), or another variant lies below one of "
        "them at a gap; INCONCLUSIVE otherwise.",
        _general(lambda evidence, task: greff_hurts_most(task, evidence),
                 "nfg, noaf and lstm_peephole"),
        suites=("greff", "why_gates", "zoo"),
    ),
    Claim(
        "greff-cifg-no-peepholes",
        "Coupling the input and forget gates (cifg) and removing peepholes (lstm) do not hurt.",
        "Greff et al. 2017",
        "Per task, against vanilla = lstm_peephole: SUPPORTED when cifg and lstm each reach "
        "at least as far as vanilla (which solves some gap) and lie below it at no gap; REFUTED "
        "when either lies below vanilla at some gap; INCONCLUSIVE otherwise.",
        _general(lambda evidence, task: greff_harmless(task, evidence),
                 "cifg, lstm and lstm_peephole"),
        suites=("greff", "zoo"),
    ),
    Claim(
        "gers2000-nfg-continual",
        "Without a forget gate (nfg) the LSTM fails on continual input streams.",
        "Gers, Schmidhuber & Cummins 2000",
        f"A = nfg, B = lstm, on continual. {_SHORTER}.",
        _general(_pair(shorter_reach, "nfg", "lstm"), "nfg and lstm", ("continual",)),
        suites=("gers2000", "why_gates", "zoo"),
    ),
    Claim(
        "hs97-adding",
        "The 1997 LSTM (lstm97) solves the adding problem at T = 100, 500 and 1000.",
        "Hochreiter & Schmidhuber 1997",
        "adding (1997 variant) at gaps 100, 500, 1000: SUPPORTED when every gap's success "
        "interval lies entirely above 50%; REFUTED when one lies entirely below 50% and its "
        "runs trained on at least the sequences the paper reports at that T (74,000, 209,000, "
        "853,000); NOT RUN when a gap is missing; INCONCLUSIVE otherwise (a failure within "
        "fewer sequences than the paper's cannot refute it).",
        lambda evidence: solved_at("lstm97", "adding", (100, 500, 1000), evidence,
                                   HS97_ADDING_SEQUENCES),
        suites=("hochreiter97",),
    ),
    Claim(
        "hs97-adding-lstm",
        "The modern lstm (with forget gate) also solves the adding problem at T = 100, 500 "
        "and 1000.",
        "Hochreiter & Schmidhuber 1997 (their result, with today's cell)",
        "As hs97-adding, for lstm.",
        lambda evidence: solved_at("lstm", "adding", (100, 500, 1000), evidence,
                                   HS97_ADDING_SEQUENCES),
        suites=("hochreiter97",),
    ),
)


def get(claim_id: str) -> Claim:
    for claim in CLAIMS:
        if claim.id == claim_id:
            return claim
    raise ValueError(f"unknown claim {claim_id!r}; known: {', '.join(c.id for c in CLAIMS)}")


def evaluate_all(frame: pd.DataFrame, protocol: str = "best_lr") -> pd.DataFrame:
    """Every claim's verdict: id, statement, source, comparison, verdict, explanation, numbers,
    and the bundled suites that run it."""
    evidence = Evidence(select.select(frame, protocol))
    rows = []
    for claim in CLAIMS:
        verdict = claim.rule(evidence)
        rows.append(dict(id=claim.id, statement=claim.statement, source=claim.source,
                         comparison=claim.comparison, verdict=verdict.verdict,
                         explanation=verdict.explanation, numbers=verdict.numbers,
                         suites=claim.suites))
    return pd.DataFrame(rows, columns=["id", "statement", "source", "comparison", "verdict",
                                       "explanation", "numbers", "suites"])
