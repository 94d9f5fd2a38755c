"""report.md: the question, the headline table, the claims and their verdicts, the figures and
tables, the run counts and failures, the suite, provenance and the rules used.

Everything here is text assembled from tables the other modules computed; nothing is
measured or decided in this file.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime

import pandas as pd

from ablate.cost import format_duration
from ablate.report import claims as claims_module
from ablate.report import tables
from ablate.report.figures import Figure
from ablate.report.style import order_cells, order_tasks

QUESTION = "Why does the LSTM need its gates?"
MAX_FAILURE_ROWS = 30
PROTOCOL_TEXT = {
    "best_lr": "for each (cell, task, gap, hidden size) the learning rate whose seeds have the "
               "best mean best-validation metric (ties: the smaller rate) is chosen on the "
               "validation batch, and only that rate's runs are reported, with their test "
               "results",
    "pooled": "every finished run counts, whatever its learning rate",
}
TABLE_TEXT = {
    "success": "success rate per (cell, task, hidden size, gap) with Wilson 95% intervals "
               "over seeds, median steps to solve (solved runs), median score, diverged runs, "
               "runs that met the criterion on validation, lowest and highest test metric",
    "headline": "the longest gap each cell solves on each task (rule above)",
    "best_lr": "every learning rate tried per (cell, task, hidden size, gap): seeds, mean best "
               "validation metric, and the one the best_lr protocol chose",
    "claims": "every claim with its verdict, explanation and numbers (JSON)",
    "failures": "runs that failed (crashed or were given up), with the error's last line",
    "diverged": "finished runs whose loss or gradient turned non-finite",
    "training": "how each task's runs were trained: budget, batch, sequences seen, learning "
                "rates, seeds, evaluation sizes, forget-gate bias",
}


def _cell(text) -> str:
    """A value safe inside a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(header: Sequence[str], rows: Sequence[Sequence]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return lines


def _numbers_text(numbers: dict, most: int | None = None) -> str:
    items = [f"{key} = {value}" for key, value in numbers.items()]
    if most is not None and len(items) > most:
        items = items[:most] + [f"… ({len(numbers) - most} more below)"]
    return "; ".join(items) if items else "—"


def counts(frame: pd.DataFrame) -> dict[str, int]:
    """Rows of the ledger by status, and diverged among the done."""
    status = frame["status"].value_counts() if not frame.empty else pd.Series(dtype=int)
    done = frame.loc[frame["status"] == "done"] if not frame.empty else frame
    return {
        "rows": len(frame),
        "done": int(status.get("done", 0)),
        "failed": int(status.get("failed", 0)),
        "waiting": int(status.get("pending", 0) + status.get("running", 0)),
        "diverged": int(done["diverged"].sum()) if not done.empty else 0,
    }


def _headline(headline: pd.DataFrame) -> list[str]:
    if headline.empty:
        return ["No finished runs, so no cell has solved anything yet."]
    several = headline.groupby("task_label")["n_hidden"].nunique().max() > 1
    columns = []
    for task in order_tasks(headline["task_label"]):
        sizes = sorted(headline.loc[headline["task_label"] == task, "n_hidden"].unique())
        columns += [(task, int(h)) for h in sizes]
    header = ["cell"] + [f"{task} (H = {h})" if several else task for task, h in columns]
    rows = []
    for cell in order_cells(headline["cell"]):
        row = [f"`{cell}`"]
        for task, size in columns:
            found = headline.loc[(headline["cell"] == cell) & (headline["task_label"] == task)
                                 & (headline["n_hidden"] == size)]
            row.append(tables.headline_text(found.iloc[0]) if not found.empty else "not run")
        rows.append(row)
    tested = []
    for task, size in columns:
        found = headline.loc[(headline["task_label"] == task) & (headline["n_hidden"] == size)]
        gaps = sorted({int(g) for text in found["gaps_tested"] for g in text.split()})
        tested.append(f"{task}{f' (H = {size})' if several else ''}: "
                      f"{', '.join(map(str, gaps))}")
    return [
        *_table(header, rows),
        "",
        f"Rule: {tables.HEADLINE_RULE}. `≥ g`: solved at every gap tested, so the limit lies "
        "beyond the range; `< g`: not solved at the shortest gap tested. Gaps tested: "
        + "; ".join(tested) + ".",
    ]


def _edge(success: pd.DataFrame) -> list[str]:
    """Where validation said solved and test did not (tables.edge_of_criterion)."""
    edge = tables.edge_of_criterion(success)
    if edge.empty:
        return []
    points = [f"`{r.cell}` on {r.task_label} at gap {int(r.gap)} (validation {r.validated}/"
              f"{r.runs}, test {r.solved}/{r.runs}, test metric {r.test_metric_min:.3f}–"
              f"{r.test_metric_max:.3f})" for r in edge.itertuples()]
    return [
        "**Solved on validation, not on test.** Where most runs of a point stopped as "
        "solved on validation but fewer than half pass the criterion on test, the table "
        "above counts the point as not solved (the rule reads the test batch only): "
        + "; ".join(points) + ". Runs of code before 2026-12-04 stopped at the first "
        "evaluation whose validation batch met the criterion, at its edge, and the test "
        "batch fell either side of it; since then a run stops only once validation shows "
        "the criterion at 95% confidence (suites/README.md, \"Stopping at the criterion's "
        "edge\").",
        "",
    ]


def _training(frame: pd.DataFrame) -> list[str]:
    table = tables.training(frame)
    if table.empty:
        return ["The ledger holds no runs."]
    return [
        *_table(list(table.columns), table.values.tolist()),
        "",
        "A run stops at its budget or, earlier, once its validation batch meets the task's "
        "criterion at 95% confidence (the Wilson lower bound over the sequences scored, at as "
        "many evaluations in a row as the table says; runs of code before 2026-12-04 stopped "
        "at the criterion itself). \"Solved\" is decided on the test batch by the criterion "
        "itself. Every \"fails at gap g\" below means: not solved within this budget; a longer "
        "training might still solve it.",
    ]


def _runs_it(row) -> str:
    """Where a NOT RUN claim's runs come from: the bundled suites that have them."""
    if not row.suites:
        return "no bundled suite runs it"
    return "run by " + ", ".join(f"`suites/{name}.toml`" for name in row.suites)


def _claims(verdicts: pd.DataFrame) -> list[str]:
    tally = Counter(verdicts["verdict"])
    lines = [
        "Each claim is decided by the rule stated with it, on the runs the protocol reports. "
        + ", ".join(f"{tally.get(v, 0)} {v}" for v in claims_module.VERDICTS) + ".",
        "",
        *_table(["claim", "source", "verdict", "numbers"],
                [[f"[{row.id}](#{row.id})", row.source, f"**{row.verdict}**",
                  _runs_it(row) if row.verdict == claims_module.NOT_RUN
                  else _numbers_text(row.numbers, most=4)] for row in verdicts.itertuples()]),
        "",
    ]
    for row in verdicts.itertuples():
        lines += [
            f"### {row.id}",
            "",
            f"- **Claim** ({row.source}): {row.statement}",
            f"- **Decided by**: {row.comparison}",
            f"- **Verdict: {row.verdict}** — {row.explanation}"
            + (f"; {_runs_it(row)}" if row.verdict == claims_module.NOT_RUN else ""),
            f"- **Numbers**: {_numbers_text(row.numbers)}",
            "",
        ]
    return lines


def _figures(figures: Sequence[Figure], root) -> list[str]:
    if not figures:
        return ["No figures: nothing has finished."]
    lines = []
    for figure in figures:
        png, csv = figure.png.relative_to(root).as_posix(), figure.csv.relative_to(root).as_posix()
        lines += [f"### {figure.title}", "", f"![{figure.title}]({png})", "",
                  f"{figure.caption} Data: [{csv}]({csv}).", ""]
    return lines


def _failures(failures: pd.DataFrame) -> list[str]:
    if failures.empty:
        return ["No run failed."]
    shown = failures.head(MAX_FAILURE_ROWS)
    lines = [
        f"{len(failures)} run(s) failed. They are not counted as unsolved: they have no "
        "result, and a re-run of the suite tries them again.",
        "",
        *_table(["run", "attempts", "error (last line)"],
                [[f"`{r.run_id}`", r.attempts, r.error] for r in shown.itertuples()]),
    ]
    if len(failures) > MAX_FAILURE_ROWS:
        lines.append(f"\n… and {len(failures) - MAX_FAILURE_ROWS} more in "
                     "[tables/failures.csv](tables/failures.csv).")
    return lines


def _provenance(done: pd.DataFrame) -> list[str]:
    if done.empty:
        return ["No finished runs."]
    versions: Counter = Counter()
    for result in done["result"]:
        if isinstance(result, dict):
            found = result.get("versions") or {}
            versions[", ".join(f"{k} {v}" for k, v in sorted(found.items()))] += 1
    lines = []
    for name, values in (
        ("versions", versions),
        ("commit", Counter(done["commit"].fillna("unknown"))),
        ("backend", Counter(done["backend"].fillna("unknown"))),
        ("kernel version", Counter(done["kernel_version"].fillna("unknown"))),
    ):
        listed = "; ".join(f"{value or 'unknown'} ({n} runs)" for value, n in values.most_common())
        lines.append(f"- {name}: {listed}")
    seconds = float(done["train_seconds"].sum())
    lines.append(f"- training time inside the compiled steps: {format_duration(seconds)} over "
                 f"{len(done)} runs")
    return lines


def _rules(protocol: str) -> list[str]:
    return [
        f"- Protocol `{protocol}`: {PROTOCOL_TEXT.get(protocol, protocol)}. Only finished "
        "(status done) runs count; failed runs are listed above and never counted as unsolved.",
        "- A run is solved when it passes its task's criterion on the test batch (every task: "
        "at least 99% right; see ablate/tasks).",
        "- Success intervals: Wilson score 95% intervals over seeds. With 3 seeds 0/3 and 3/3 "
        "still overlap ([0, 0.56] and [0.44, 1]); 4 seeds per point is the fewest that can "
        "separate total failure from total success.",
        f"- Longest solved gap: {tables.HEADLINE_RULE}.",
        "- Claims: SUPPORTED / REFUTED by each claim's stated rule; INCONCLUSIVE when intervals "
        f"overlap, fewer than {claims_module.MIN_SEEDS} seeds are at a point the rule needs, or "
        "tasks disagree; NOT RUN when the runs it needs are absent from the ledger. A claim "
        "decided on several tasks is SUPPORTED when at least one task supports it and none "
        "refutes it (REFUTED in the mirror case; a task whose intervals overlap decides "
        "nothing), INCONCLUSIVE when tasks disagree or none decides. Claims take "
        "a task run with other than its default options as a task of its own (e.g. copy "
        "(n_recall=3)) and read one hidden size (the one with most runs common to the cells "
        "compared).",
        "- Error-flow decay rate: least-squares slope of ln‖∂L/∂state_t‖ against distance from "
        "the loss over distances ≥ 1 up to the first where the norm is exactly 0 (past it the "
        "signal along that path is gone; what returns further back comes through other paths); "
        "−∞ when it is 0 within a step of the loss; exp(rate · gap) is the fraction of the "
        "error signal left after the gap.",
    ]


def render(*, meta: dict, frame: pd.DataFrame, done: pd.DataFrame, runs: pd.DataFrame,
           protocol: str,
           success: pd.DataFrame, headline: pd.DataFrame, failures: pd.DataFrame,
           verdicts: pd.DataFrame, figures: Sequence[Figure], table_files: dict, root,
           ledger_name: str, notes: Sequence[str] = ()) -> str:
    suite = meta.get("suite") or root.name
    n = counts(frame)
    built = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"# {QUESTION} — suite `{suite}`",
        "",
        f"{meta.get('description') or ''}".strip(),
        "",
        f"This report answers the question with measurements: small recurrent networks — the "
        "LSTM, each of its ablations, the GRU and the plain RNN — trained on synthetic memory "
        "tasks whose gap (the time between what must be remembered and when it is needed) is "
        f"swept, and where each stops working. Built {built} from `{ledger_name}` only.",
        "",
        *[f"> {note}" for note in notes],
        "",
        "## Runs",
        "",
        *_table(["in the ledger", "done", "failed", "pending or running", "diverged (of done)",
                 f"reported ({protocol})"],
                [[n["rows"], n["done"], n["failed"], n["waiting"], n["diverged"], len(runs)]]),
        "",
    ]
    lines += ["## Training", "", *_training(frame), ""]
    if n["done"] == 0:
        lines += ["**Nothing has run yet**: the ledger holds no finished run, so there is "
                  "nothing to measure. Run the suite, then build the report again.", ""]
    lines += ["## The longest gap each cell solves", "", *_headline(headline), "",
              *_edge(success), "## Claims", "", *_claims(verdicts), "## Figures", "",
              *_figures(figures, root),
              "## Tables", ""]
    for name, path in table_files.items():
        rel = path.relative_to(root).as_posix()
        lines.append(f"- [{rel}]({rel}): {TABLE_TEXT.get(name, name)}")
    lines += ["", "## Failed runs", "", *_failures(failures), "",
              "## Diverged runs", "",
              f"{n['diverged']} finished run(s) diverged (a non-finite loss or gradient stopped "
              "them); they count as unsolved. See [tables/diverged.csv](tables/diverged.csv).",
              "", "## Suite", "", f"`{suite}`: {meta.get('description') or 'no description'}",
              ""]
    if meta.get("suite_text"):
        lines += ["```toml", meta["suite_text"].rstrip(), "```", ""]
    lines += ["## Provenance", "", *_provenance(done),
              "", "## Rules used", "", *_rules(protocol), ""]
    return "\n".join(lines)
