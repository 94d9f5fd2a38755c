"""The README's account of the reference runs is the committed reports' own: the table of
the longest gap each cell solves, the claims' tally and each suite's number of runs.

The README is written by hand from the reports under results/; when a reference suite is
run again and its report rewritten, these tests fail until the README says what the new
report says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
RESULTS = ROOT / "results"
REFERENCE_SUITES = ("why_gates", "gers2000", "greff", "hochreiter97")
VERDICTS = ("SUPPORTED", "REFUTED", "INCONCLUSIVE")


def readme() -> str:
    return README.read_text(encoding="utf-8")


def report(suite: str) -> str:
    return (RESULTS / suite / "report.md").read_text(encoding="utf-8")


def table_after(text: str, heading: str) -> list[list[str]]:
    """The cells of the first Markdown table after ``heading`` (header and rule left out)."""
    start = text.index(heading)
    lines = text[start:].splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[first + 2:]:  # past the header and the |---| rule
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def longest_gaps(rows: list[list[str]]) -> dict[str, list[str]]:
    return {row[0].strip("`"): row[1:] for row in rows}


def test_table_after_reads_a_table() -> None:
    text = ("# x\n\n## here\n\ntext\n\n| a | b |\n|---|---|\n"
            "| `lstm` | 10 |\n| `rnn` | < 10 |\n\nafter\n| `gru` | 30 |\n")
    assert longest_gaps(table_after(text, "## here")) == {"lstm": ["10"], "rnn": ["< 10"]}


def test_readme_longest_gaps_are_the_why_gates_reports() -> None:
    """Cell by cell, task by task (the README names copy's option in words, so the columns
    are compared in order, and their number checked)."""
    ours = longest_gaps(table_after(readme(), "## What the reference run found"))
    theirs = longest_gaps(table_after(report("why_gates"), "## The longest gap each cell solves"))
    assert ours == theirs


def claims_tally(text: str) -> dict[str, int]:
    return {verdict: int(count) for count, verdict in
            re.findall(r"(\d+) (SUPPORTED|REFUTED|INCONCLUSIVE)\b", text)}


def test_readme_claims_tally_is_the_why_gates_reports() -> None:
    (line,) = [line for line in report("why_gates").splitlines()
               if re.search(r"\d+ SUPPORTED, \d+ REFUTED, \d+ INCONCLUSIVE", line)]
    stated = re.search(r"What the\s+claims came to \(([^)]*)\)", readme())
    assert stated, "the README no longer states what why_gates' claims came to"
    assert claims_tally(stated.group(1)) == claims_tally(line)
    assert set(claims_tally(line)) == set(VERDICTS)


def runs_in_ledger(suite: str) -> int:
    (row,) = table_after(report(suite), "## Runs")
    return int(row[0])


@pytest.mark.parametrize("suite", REFERENCE_SUITES)
def test_readme_counts_each_reference_suites_runs(suite: str) -> None:
    """The first "N runs" after the README's link to the suite's report is its ledger's."""
    text = " ".join(readme().split())
    link = f"[`results/{suite}/report.md`](results/{suite}/report.md)"
    assert link in text, f"the README no longer links {suite}'s report"
    counted = re.search(r"\b(\d+) runs\b", text[text.index(link):])
    assert counted and int(counted.group(1)) == runs_in_ledger(suite)
