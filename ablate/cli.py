"""The command line: ``run_suite.py`` (installed as ``ablate``).

    run_suite.py suites/why_gates.toml [--workers N] [--backend cpu|cuda]
                 [--scheduler tcp://host:port] [--fresh] [--dry-run] [--results DIR]
    run_suite.py report results/why_gates
    run_suite.py export results/why_gates     # finished runs into a new shard (ablate.shards)
    run_suite.py status results/why_gates     # done / pending per task and gap, time to go

A user mistake (a suite typo, an unknown cell, a foreign file at the ledger path, a busy
ledger) prints one line ``error: …`` and exits with status 2; no traceback. Ctrl-C stops
the sweep, keeps every recorded run and exits with 130; the same command resumes.
Exit status 1 means some runs failed (their errors are in the ledger and are retried on
the next resume).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

USAGE_ERROR = 2
INTERRUPTED = 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run_suite.py",
        description="Run a suite of recurrent-cell trainings into a resumable ledger; "
        "'run_suite.py report DIR' writes the report of a results directory.",
    )
    parser.add_argument("suite", help="a suite file, e.g. suites/smoke.toml")
    parser.add_argument("--workers", type=int, default=None,
                        help="worker processes (default: one per core, at most one per "
                        "ensemble); cuda: ensembles trained at once on the GPU (default 8)")
    parser.add_argument("--backend", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--scheduler", default=None, metavar="ADDRESS",
                        help="a Dask distributed scheduler, e.g. tcp://10.0.0.5:8786")
    parser.add_argument("--fresh", action="store_true",
                        help="move the existing ledger aside and start a new one")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the grid size and an estimated time; run nothing")
    parser.add_argument("--results", default="results", metavar="DIR",
                        help="where results/<suite>/ goes (default: results)")
    parser.add_argument("--max-ensemble", type=int, default=None, metavar="N",
                        help="at most N runs per ensemble call (default 16; cuda: 128)")
    parser.add_argument("--no-report", action="store_true",
                        help="do not write the report at the end of the sweep")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "report":
        return _report_command(argv[1:])
    if argv and argv[0] == "export":
        return _export_command(argv[1:])
    if argv and argv[0] == "status":
        return _status_command(argv[1:])
    args = _parser().parse_args(argv)
    try:
        return _run_command(args)
    except KeyboardInterrupt:
        print("\ninterrupted: every finished run is in the ledger; run the same command "
              "to resume", file=sys.stderr)
        return INTERRUPTED


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return USAGE_ERROR


def _run_command(args: argparse.Namespace) -> int:
    from ablate.store import LedgerError
    from ablate.suite import SuiteError, load_suite
    from ablate.sweep import CUDA_MAX_ENSEMBLE, MAX_ENSEMBLE, check_backend, run_suite

    if args.workers is not None and args.workers < 1:
        return _fail(f"--workers must be an integer >= 1, got {args.workers}")
    max_ensemble = args.max_ensemble
    if max_ensemble is None:
        max_ensemble = CUDA_MAX_ENSEMBLE if args.backend == "cuda" else MAX_ENSEMBLE
    if max_ensemble < 1:
        return _fail(f"--max-ensemble must be an integer >= 1, got {max_ensemble}")
    try:
        suite = load_suite(args.suite)
        check_backend(args.backend)
        if args.dry_run:
            print(dry_run_text(suite, Path(args.results), args.workers, max_ensemble,
                               args.backend))
            return 0
        if not args.fresh:  # say before training what a kernel change makes train again
            ledger_path = Path(args.results) / suite.name / "ledger.sqlite"
            stale = _stale_line(suite, _finished_rows(ledger_path), args.backend)
            if stale:
                print(f"note: {stale}", file=sys.stderr)
        summary = run_suite(
            suite, args.results, workers=args.workers, backend=args.backend,
            scheduler=args.scheduler, fresh=args.fresh, max_ensemble=max_ensemble,
            progress=not args.quiet,
        )
    except (SuiteError, LedgerError, ValueError) as error:
        return _fail(str(error).splitlines()[0] if str(error) else type(error).__name__)
    print(
        f"{summary.suite}: {summary.done} runs recorded, {summary.skipped} already done, "
        f"{summary.failed} failed, {summary.diverged} diverged; "
        f"{summary.wall_seconds:.1f} s"
        + (" on the Dask cluster" if not summary.local
           else f" with {summary.workers} ensemble(s) at once on the GPU"
           if args.backend == "cuda" else f" on {summary.workers} workers")
        + (f" ({summary.overhead_fraction:.1%} of it outside training)"
           if summary.overhead_fraction is not None else "")
        + f"; ledger {summary.ledger}"
    )
    for failure in summary.failures:
        print(f"  failed: {failure}", file=sys.stderr)
    if summary.retried:
        print(f"  {len(summary.retried)} ensemble(s) trained again after their worker process "
              "died (a crash in compiled code or the OOM killer; see the messages above):",
              file=sys.stderr)
        for retried in summary.retried:
            print(f"  retried: {retried}", file=sys.stderr)
    if not args.no_report:
        _write_report(summary.ledger.parent)
    return 1 if summary.failed else 0


def dry_run_text(suite, results_root: Path, workers: int | None, max_ensemble: int,
                 backend: str = "cpu") -> str:
    """What --dry-run prints: the grid, what the ledger already holds, an estimated time."""
    from ablate.cost import estimate_suite_seconds, format_duration
    from ablate.store import kernel_version
    from ablate.sweep import default_workers, pack, usable_cores

    ledger_path = results_root / suite.name / "ledger.sqlite"
    version = kernel_version(backend)
    finished = _finished_rows(ledger_path)
    done_keys = {key for key, found in finished if found == version}
    todo = [spec for spec in suite.specs if spec.key not in done_keys]
    stale = _stale_line(suite, finished, backend)
    groups = pack(todo, max_ensemble) if todo else []
    workers = workers or default_workers(backend, len(groups))
    cells = sorted({spec.cell for spec in suite.specs})
    tasks = sorted({spec.task for spec in suite.specs})
    lines = [
        f"suite {suite.name}: {suite.description}".rstrip(": "),
        f"  {len(suite.specs)} runs: {len(cells)} cells × {len(tasks)} tasks "
        f"({', '.join(tasks)}) × their gaps × seeds × learning rates × sizes",
        f"  {len(suite.specs) - len(todo)} already done in {ledger_path} and its shards"
        if ledger_path.exists() or done_keys else f"  ledger: {ledger_path} (new)",
        *([f"  {stale}"] if stale else []),
        f"  to run: {len(todo)} runs in {len(groups)} ensembles on {workers} "
        + (f"GPU thread{'' if workers == 1 else 's'} (ensembles at once)" if backend == "cuda"
           else f"worker{'' if workers == 1 else 's'}"),
    ]
    if todo and backend == "cuda":
        lines.append("  estimated time: not modelled for the GPU (the cost model is fitted to "
                     f"the CPU: {format_duration(estimate_suite_seconds(todo, usable_cores()))} "
                     "on this machine's cores)")
    elif todo:
        seconds = estimate_suite_seconds(todo, workers)
        lines.append(
            f"  estimated time: at most {format_duration(seconds)} (every run to its full "
            "budget; runs that solve early stop sooner)"
        )
        lines.append(f"  where it goes (core time): {_cost_by_task(todo)}")
    lines += [f"  {note}" for note in _no_early_stop(suite.specs)]
    return "\n".join(lines)


def _no_early_stop(specs) -> list[str]:
    """One line per task whose validation batch is too small to ever stop a run early
    (fewer scored trials than ``fewest_to_stop``): its runs all train their budget."""
    from ablate import tasks
    from ablate.tasks.task import fewest_to_stop

    notes, seen, fewest = [], set(), fewest_to_stop()
    for spec in sorted(specs, key=lambda s: s.gap):
        what = (spec.task, spec.task_options, spec.eval_batch, spec.eval_seed)
        if what in seen:
            continue
        seen.add(what)
        task = tasks.get(spec.task, **spec.options)
        scored = task.scored(task.batch(spec.gap, spec.eval_batch, spec.eval_seed,
                                        "validation", 0))
        if scored < fewest:
            notes.append(f"no early stop on {spec.task}: its validation batch scores {scored} "
                         f"trials, and 99% at 95% confidence takes {fewest}, all "
                         "right; every run trains its whole budget (raise [evaluation] "
                         "validation_batch)")
    return notes


def _finished_rows(ledger_path: Path) -> list[tuple[str, str]]:
    """(spec_key, kernel_version) of every finished run in the ledger and its shards (the
    sweep imports the shards when it starts, so they count as the ledger's)."""
    from ablate.shards import shard_folder, shard_rows
    from ablate.store import read_done_rows

    rows = read_done_rows(ledger_path) if ledger_path.exists() else []
    rows += shard_rows(shard_folder(ledger_path))
    return [(row["spec_key"], row["kernel_version"]) for row in rows]


def _stale_line(suite, finished: list[tuple[str, str]], backend: str) -> str:
    """``store.stale_note`` for the suite's runs among ``finished`` ("" if none)."""
    from ablate.store import kernel_version, stale_note, stale_runs

    version = kernel_version(backend)
    return stale_note(stale_runs(finished, version, {spec.key for spec in suite.specs}),
                      version)


def _cost_by_task(specs) -> str:
    """Estimated core time of the runs per task, most first, with the longest gap's share:
    ``copy 9.3 h (gap 1000: 8.4 h), tv 3.8 h (gap 1000: 2.6 h)``."""
    from collections import defaultdict

    from ablate.cost import estimate_seconds, format_duration

    by_task: dict[str, dict[int, float]] = defaultdict(lambda: defaultdict(float))
    for spec in specs:
        by_task[spec.task][spec.gap] += estimate_seconds(spec)
    parts = []
    for task, gaps in sorted(by_task.items(), key=lambda item: -sum(item[1].values())):
        longest = max(gaps)
        share = (f" (gap {longest}: {format_duration(gaps[longest])})"
                 if len(gaps) > 1 else "")
        parts.append(f"{task} {format_duration(sum(gaps.values()))}{share}")
    return ", ".join(parts)


def _write_report(results_dir: Path) -> int:
    try:
        from ablate.report import build_report
    except ImportError:
        return 0
    path = build_report(results_dir)
    print(f"report: {path}")
    return 0


def _report_command(argv: list[str]) -> int:
    from ablate.store import LedgerError

    parser = argparse.ArgumentParser(
        prog="run_suite.py report",
        description="Write report.md, figures/ and tables/ of a results directory from its ledger.",
    )
    parser.add_argument("results_dir", help="e.g. results/why_gates")
    args = parser.parse_args(argv)
    results_dir = Path(args.results_dir)
    ledger_path = results_dir / "ledger.sqlite"
    if not ledger_path.is_file():
        from ablate.shards import ledger_from_shards, shard_folder

        try:
            rebuilt = ledger_from_shards(ledger_path)  # a checkout that holds only shards
        except (LedgerError, ValueError) as error:  # an unreadable shard, named
            return _fail(str(error))
        if not rebuilt:
            return _fail(f"{ledger_path} does not exist and {shard_folder(ledger_path)} "
                         "holds no shards; run the suite first")
        print(f"{ledger_path}: rebuilt from {rebuilt} runs in the shards")
    try:
        return _write_report(results_dir)
    except LedgerError as error:
        return _fail(str(error))


def _export_command(argv: list[str]) -> int:
    from ablate.shards import export_shard
    from ablate.store import LedgerError

    parser = argparse.ArgumentParser(
        prog="run_suite.py export",
        description="Write the finished runs of a results directory's ledger that no shard "
        "holds yet into a new shard, results_dir/shards/<time>.jsonl.gz (to commit or copy; "
        "a sweep imports shards when it starts).",
    )
    parser.add_argument("results_dir", help="e.g. results/why_gates")
    args = parser.parse_args(argv)
    ledger = Path(args.results_dir) / "ledger.sqlite"
    if not ledger.is_file():
        return _fail(f"{ledger} does not exist; run the suite first")
    try:
        path, count = export_shard(ledger)
    except (LedgerError, ValueError) as error:
        return _fail(str(error))
    print(f"{count} finished runs into {path}" if path else
          "every finished run is already in a shard; nothing written")
    return 0


def _status_command(argv: list[str]) -> int:
    from ablate.store import LedgerError

    parser = argparse.ArgumentParser(
        prog="run_suite.py status",
        description="Runs done and pending per task and gap of a results directory's ledger, "
        "and the time still to go (ablate.progress); works while the sweep runs.",
    )
    parser.add_argument("results_dir", help="e.g. results/why_gates")
    parser.add_argument("--workers", type=int, default=2, help="for the time to go (default 2)")
    parser.add_argument("--backend", default="cpu", help="whose runs: cpu (default) or cuda")
    args = parser.parse_args(argv)
    ledger = Path(args.results_dir) / "ledger.sqlite"
    if not ledger.is_file():
        return _fail(f"{ledger} does not exist; run the suite first")
    if args.workers < 1:
        return _fail(f"--workers must be an integer >= 1, got {args.workers}")
    from ablate.progress import progress_report

    try:
        print(progress_report(ledger, workers=args.workers, backend=args.backend))
    except (LedgerError, ValueError) as error:
        return _fail(str(error).splitlines()[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
