"""The report of a results directory, built from its ledger alone (DESIGN.md §1, issue 6).

    from ablate.report import build_report
    build_report("results/why_gates")   # -> results/why_gates/report.md

writes, under the results directory:
    report.md          the question, the headline table, the claims with verdicts and numbers,
                       the figures, run counts and failures, the suite, provenance, the rules
    figures/<name>.png every figure, and figures/<name>.csv the data it was drawn from
    tables/<name>.csv  success, headline, best_lr, claims, failures, diverged

Files already in figures/ and tables/ with those extensions are replaced (a figure whose data
is gone does not linger). One concept per module: ``stats`` (Wilson, decay fits), ``select``
(the protocol), ``frames`` (curves and diagnostics unpacked), ``tables``, ``figures``
(``style``: colours), ``claims`` (the registry), ``markdown``.
"""

from __future__ import annotations

import json
from pathlib import Path

from ablate.report import claims, figures, markdown, select, tables

__all__ = ["build_report", "claims", "select", "tables", "figures"]


def _clear(directory: Path, pattern: str) -> None:
    if directory.is_dir():
        for path in directory.glob(pattern):
            if path.is_file():
                path.unlink()


def build_report(results_dir: str | Path, ledger: str | Path | None = None) -> Path:
    """Write report.md, figures/*.png (+ .csv) and tables/*.csv under ``results_dir`` from the
    ledger (default ``results_dir/ledger.sqlite``); returns the path of report.md."""
    from ablate.store import load, read_meta

    root = Path(results_dir)
    ledger = Path(ledger) if ledger is not None else root / "ledger.sqlite"
    frame = select.prepare(load(ledger))
    meta = read_meta(ledger)
    notes = []
    protocol = meta.get("protocol") or "best_lr"
    if protocol not in select.PROTOCOLS:
        notes.append(f"The ledger names protocol {protocol!r}, which this report does not "
                     "know; best_lr is used instead.")
        protocol = "best_lr"
    done = select.done_runs(frame)
    runs = select.select(frame, protocol)
    success = tables.success(runs, protocol)
    headline = tables.headline(success)
    failures = tables.failures(frame)
    verdicts = claims.evaluate_all(frame, protocol)

    table_dir, figure_dir = root / "tables", root / "figures"
    _clear(table_dir, "*.csv")
    _clear(figure_dir, "*.png")
    _clear(figure_dir, "*.csv")
    table_dir.mkdir(parents=True, exist_ok=True)
    claims_csv = verdicts.assign(
        numbers=verdicts["numbers"].map(lambda numbers: json.dumps(numbers, ensure_ascii=False)),
        suites=verdicts["suites"].map(" ".join))
    written = {}
    for name, table in (("success", success), ("headline", headline),
                        ("best_lr", select.learning_rates(done)), ("claims", claims_csv),
                        ("failures", failures), ("diverged", tables.diverged(done)),
                        ("training", tables.training(frame))):
        written[name] = table_dir / f"{name}.csv"
        table.to_csv(written[name], index=False)
    drawn = figures.render_all(runs, success, figure_dir, protocol)
    text = markdown.render(meta=meta, frame=frame, done=done, runs=runs, protocol=protocol,
                           success=success, headline=headline, failures=failures,
                           verdicts=verdicts, figures=drawn, table_files=written, root=root,
                           ledger_name=ledger.name, notes=notes)
    report = root / "report.md"
    report.write_text(text, encoding="utf-8")
    return report
