"""Finished runs as portable shards beside the ledger: to commit, to copy, to merge.

A ledger is one SQLite file that grows with every run and cannot be merged by git. Shards
are its finished runs as gzip-compressed JSON Lines, written once and never changed::

    results/<suite>/shards/<UTC time>.jsonl.gz     one line per finished run:
        {"key", "spec_key", "kernel_version", "run_id", "spec", "result", "finished_at"}
        (spec and result exactly as the ledger stores them: JSON text)

    results/<suite>/shards/suite.json               the ledger's meta (suite name, suite
                                                    text, protocol, description), rewritten
                                                    by every export

``export_shard`` writes the finished rows that no shard of the folder holds yet into a new
shard (nothing when there are none). ``import_shards`` puts every shard row that the
ledger does not hold as finished into it; ``ablate.sweep.run_suite`` does so when it starts,
so a results folder that holds only shards (a fresh checkout, another machine's results)
resumes where they end, and shards from several machines merge into one ledger.
``ledger_from_shards`` builds a missing ledger from the shards and their meta alone, so
``run_suite.py report`` rebuilds a committed report (whose ledger is too large to commit)
without training anything.

    python run_suite.py export results/why_gates      # after (or during) a sweep
"""

from __future__ import annotations

import gzip
import json
import os
import time
from pathlib import Path

from ablate.store import Ledger, read_done_rows, read_meta

SHARD_FIELDS = ("key", "spec_key", "kernel_version", "run_id", "spec", "result", "finished_at")
META_FILE = "suite.json"


def shard_folder(ledger_path: str | os.PathLike) -> Path:
    """Where a ledger's shards live: ``shards/`` beside it."""
    return Path(ledger_path).parent / "shards"


def shard_keys(folder: str | os.PathLike) -> set[str]:
    """The row keys every shard in ``folder`` holds."""
    return {row["key"] for row in shard_rows(folder)}


def shard_rows(folder: str | os.PathLike):
    """Every row of every shard in ``folder`` (none when it does not exist), shard by shard
    in name order; ValueError naming a shard that cannot be read."""
    yield from _rows(Path(folder))


def export_shard(ledger_path: str | os.PathLike) -> tuple[Path | None, int]:
    """(the new shard, its rows): the ledger's finished rows that no shard holds yet.

    Reads the ledger read-only, so it runs beside a sweep that is writing. The shard is
    written to a temporary name and renamed, so a reader never sees half of one.
    """
    folder = shard_folder(ledger_path)
    known = shard_keys(folder)
    rows = [row for row in read_done_rows(ledger_path) if row["key"] not in known]
    if rows or known:  # the meta, refreshed even when no row is new
        folder.mkdir(parents=True, exist_ok=True)
        meta = {name: value for name, value in read_meta(ledger_path).items()
                if name not in ("format", "format_version")}
        (folder / META_FILE).write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n",
                                        encoding="utf-8")
    if not rows:
        return None, 0
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = folder / f"{stamp}.jsonl.gz"
    serial = 1
    while path.exists():
        serial += 1
        path = folder / f"{stamp}-{serial}.jsonl.gz"
    partial = path.with_name(path.name + ".partial")
    with gzip.open(partial, "wt", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps({name: row[name] for name in SHARD_FIELDS}) + "\n")
    partial.rename(path)
    return path, len(rows)


def import_shards(ledger: Ledger, folder: str | os.PathLike | None = None) -> int:
    """Put every shard row the ledger does not hold as finished into it; how many."""
    folder = shard_folder(ledger.path) if folder is None else Path(folder)
    return ledger.merge_done(list(shard_rows(folder)))


def ledger_from_shards(ledger_path: str | os.PathLike) -> int:
    """Create the missing ledger at ``ledger_path`` from the shards beside it and their meta;
    how many runs it holds (0: no shards, and no ledger is created)."""
    folder = shard_folder(ledger_path)
    rows = list(shard_rows(folder))  # read (and checked) before the ledger file is created
    if not rows:
        return 0
    with Ledger(ledger_path) as ledger:
        count = ledger.merge_done(rows)
        meta_path = folder / META_FILE
        if meta_path.is_file():
            ledger.set_meta(**json.loads(meta_path.read_text(encoding="utf-8")))
    return count


def _rows(folder: Path):
    if not folder.is_dir():
        return
    for path in sorted(folder.glob("*.jsonl.gz")):
        try:
            with gzip.open(path, "rt", encoding="utf-8") as lines:
                for number, line in enumerate(lines, 1):
                    row = json.loads(line)
                    missing = [name for name in SHARD_FIELDS if name not in row]
                    if missing:
                        raise ValueError(f"line {number} lacks {', '.join(missing)}")
                    yield row
        except (OSError, EOFError, ValueError) as error:
            raise ValueError(f"{path} is not a readable ablate shard ({error}); move it out "
                             "of the shards folder and run again") from None
