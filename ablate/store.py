"""The results ledger: one SQLite file per suite, ``results/<suite>/ledger.sqlite`` (DESIGN.md §1).

The sweep driver is the only writer: it holds an exclusive ``flock`` on ``<path>.lock`` (the
file keeps the holder's pid and stays after close, since deleting a lock file races with the
next opener). Readers (``load``, the report) open read-only and never take that lock. Every
call commits one transaction in WAL mode, so a killed driver loses at most the call it was in;
rows it left 'running' go back to 'pending' on the next open.

Schema (format "ablate-ledger", format_version 1)::

    meta(name TEXT PRIMARY KEY, value TEXT NOT NULL)
        format = "ablate-ledger", format_version = "1", created_at (ISO 8601, UTC), and what
        the runner adds with set_meta (suite name, suite TOML text, protocol)
    runs(key TEXT PRIMARY KEY,          -- row_key(spec, kernel_version)
         spec_key TEXT NOT NULL,        -- RunSpec.key (indexed)
         kernel_version TEXT NOT NULL,  -- KERNEL_VERSION of the code the row is for
         run_id TEXT NOT NULL,          -- RunSpec.run_id, for people
         status TEXT NOT NULL,          -- 'pending' | 'running' | 'done' | 'failed'
         spec TEXT NOT NULL,            -- JSON of RunSpec.to_dict()
         result TEXT,                   -- JSON of RunResult.to_dict(); set when done
         error TEXT,                    -- the last failure's text; set when failed
         attempts INTEGER NOT NULL DEFAULT 0,  -- attempts that ended, done or failed
         updated_at REAL NOT NULL,      -- Unix time of the last change
         finished_at REAL)              -- Unix time the result was recorded

Rows are keyed by spec and kernel version: a change to the code that decides a run's numbers
makes every run pending again, and the old results stay readable (``load(all_versions=True)``).
The version hashes that code's syntax trees (``code_text``), so a comment or a docstring
edited in a kernel keeps every finished run; the trees are Python 3.11's (another Python
version may dump them differently and so re-run a ledger once).
"""

from __future__ import annotations

import ast
import fcntl
import hashlib
import json
import os
import sqlite3
import stat
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from ablate.results import RunResult, RunSpec, json_safe

if TYPE_CHECKING:
    import pandas

FORMAT, FORMAT_VERSION = "ablate-ledger", 1
STATUSES = ("pending", "running", "done", "failed")
_SQLITE_MAGIC = b"SQLite format 3\x00"
_PACKAGE = Path(__file__).resolve().parent
# What decides a run's numbers; the runner, this store and the report do not.
_KERNEL_SOURCES = ("cells/**/*.py", "kernels/**/*.py", "tasks/**/*.py", "train.py", "model.py",
                   "diagnostics.py", "decay.py", "results.py")
_SCHEMA = """
CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE runs (key TEXT PRIMARY KEY, spec_key TEXT NOT NULL, kernel_version TEXT NOT NULL,
    run_id TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'running', 'done', 'failed')),
    spec TEXT NOT NULL, result TEXT, error TEXT, attempts INTEGER NOT NULL DEFAULT 0,
    updated_at REAL NOT NULL, finished_at REAL);
CREATE INDEX runs_spec_key ON runs (spec_key);
"""


def code_text(source: str) -> str:
    """What of a module's source can change a run's numbers: its syntax tree without
    docstrings, comments, blank lines or line numbers. Editing a comment or a docstring of a
    kernel does not make every finished run stale; editing one token of code does."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, include_attributes=False)


def source_hash(patterns: tuple[str, ...] = _KERNEL_SOURCES) -> str:
    """12 hex digits of the code (``code_text``) of the package's files matching ``patterns``
    (globs under ablate/), in path order."""
    files = {p.relative_to(_PACKAGE.parent).as_posix(): p
             for pattern in patterns for p in _PACKAGE.glob(pattern)}
    digest = hashlib.sha256()
    for rel in sorted(files):
        data = code_text(files[rel].read_text(encoding="utf-8")).encode()
        digest.update(f"{rel}\0{len(data)}\0".encode())  # framed: no two file sets collide
        digest.update(data)
    return digest.hexdigest()[:12]


KERNEL_VERSION: str = source_hash()  # of the CPU backend
_CUDA_SOURCES = ("cuda/**/*.py",)


def kernel_version(backend: str = "cpu") -> str:
    """The version a run trained on ``backend`` is recorded under: the CPU kernels' hash, or
    for "cuda" a hash that also covers the CUDA kernels (a run's numbers depend on both:
    the device trains and predicts the validation batch, the CPU kernels score the test
    batch and diagnose), prefixed "cuda-"."""
    if backend == "cpu":
        return KERNEL_VERSION
    if backend == "cuda":
        return "cuda-" + source_hash(_KERNEL_SOURCES + _CUDA_SOURCES)
    raise ValueError(f"unknown backend {backend!r}; allowed: cpu, cuda")


def stale_runs(finished, version: str, spec_keys=None) -> tuple[int, dict[str, int]]:
    """Runs finished only under other kernel versions than ``version``: (how many runs,
    {version: runs finished under it}; a run finished under two versions counts in both).

    ``finished``: (spec_key, kernel_version) of finished rows (a ledger's, its shards');
    ``spec_keys``: count only these runs (a suite's), default all. A sweep trains such runs
    again: the code that decides a run's numbers changed since they finished."""
    finished = list(finished)
    current = {key for key, found in finished if found == version}
    stale: dict[str, set[str]] = {}
    for key, found in finished:
        if found != version and key not in current and (spec_keys is None or key in spec_keys):
            stale.setdefault(found, set()).add(key)
    runs = len(set().union(*stale.values())) if stale else 0
    return runs, {found: len(keys) for found, keys in sorted(stale.items())}


def stale_note(stale: tuple[int, dict[str, int]], version: str) -> str:
    """One line on ``stale_runs``' result, "" when there are none."""
    runs, by_version = stale
    if not runs:
        return ""
    listed = ", ".join(f"{found}: {n}" for found, n in by_version.items())
    return (f"{runs} runs finished only under other kernel versions ({listed}) train again "
            f"under {version}: the code that decides a run's numbers changed since (a report "
            "still reads them)")


class LedgerError(Exception):
    """A ledger cannot be used; the message is one line naming the path and what to do."""


def row_key(spec: RunSpec, kernel_version: str | None = None) -> str:
    """The ledger key of ``spec`` under ``kernel_version`` (default ``KERNEL_VERSION``, read
    at call time so that a patched module constant counts)."""
    version = KERNEL_VERSION if kernel_version is None else kernel_version
    return hashlib.sha256(f"{spec.key}:{version}".encode()).hexdigest()[:20]


def _dumps(value: object) -> str:
    return json.dumps(value, sort_keys=True, allow_nan=False, separators=(",", ":"))


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= 300 else text[:297] + "..."


def _not_ledger(path: Path, why: str) -> LedgerError:
    return LedgerError(f"{path} is not an ablate ledger ({why}); "
                       "move it away or choose another results directory")


def _corrupt(path: Path, detail: str) -> LedgerError:
    return LedgerError(f"{path} is corrupt: {_one_line(detail)}; "
                       "move it away and run the suite again")


def _missing(path: Path) -> LedgerError:
    return LedgerError(f"{path} does not exist; run the suite first or check the path")


def _connect_ro(path: Path) -> sqlite3.Connection:
    # A read-only connection to a WAL database creates the -wal and -shm files when missing
    # and cannot remove them. They are missing only when no writer has the file open (a
    # writer keeps them until it closes; a killed one leaves them), and then the main file
    # holds every commit: "immutable" reads it creating and locking nothing. With a -wal
    # present we read through it like any reader and see a live writer's commits.
    flags = "mode=ro" if os.path.exists(f"{path}-wal") else "mode=ro&immutable=1"
    return sqlite3.connect(f"file:{quote(str(path.absolute()))}?{flags}", uri=True, timeout=10,
                           check_same_thread=False)


def _open_checked(path: Path) -> sqlite3.Connection:
    """A read-only connection to ``path`` once it passed every check, else LedgerError.

    Writes nothing: the file type and the 16-byte header are read with plain file I/O, so
    SQLite never opens a foreign file, and opens an SQLite file read-only."""
    try:
        mode = os.stat(path).st_mode
        if stat.S_ISDIR(mode):
            raise _not_ledger(path, "it is a directory")
        if not stat.S_ISREG(mode):
            raise _not_ledger(path, "it is not a regular file")
        with open(path, "rb") as file:
            head = file.read(len(_SQLITE_MAGIC))
    except FileNotFoundError:
        raise _missing(path) from None
    except OSError as error:
        raise LedgerError(f"{path} cannot be read ({error.strerror}); check its permissions"
                          ) from None
    if head != _SQLITE_MAGIC:
        raise _not_ledger(path, "an empty file" if not head else "not an SQLite database")
    db = None
    try:
        db = _connect_ro(path)
        tables = {name for (name,) in
                  db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "meta" not in tables:
            raise _not_ledger(path, "an SQLite database without a meta table")
        meta = dict(db.execute("SELECT name, value FROM meta"))
        if meta.get("format") != FORMAT:
            raise _not_ledger(path, f"its meta format is {meta.get('format')!r}")
        version = str(meta.get("format_version"))
        if not version.isdigit() or "runs" not in tables:
            raise _corrupt(path, f"format_version {version!r}, tables {sorted(tables)}")
        if int(version) > FORMAT_VERSION:
            raise LedgerError(f"{path} has ledger format version {version}, newer than this "
                              f"ablate reads ({FORMAT_VERSION}); upgrade ablate")
        problems = [row[0] for row in db.execute("PRAGMA quick_check")]
        if problems != ["ok"]:
            raise _corrupt(path, "; ".join(problems[:3]))
        return db
    except BaseException as error:
        if db is not None:
            db.close()
        if not isinstance(error, sqlite3.Error):
            raise
        if error.sqlite_errorname.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")):
            raise _corrupt(path, str(error)) from None
        raise LedgerError(f"{path} cannot be read by SQLite ({_one_line(str(error))}); "
                          "check the file and its permissions") from None


def _lock(path: Path) -> int:
    """The exclusive writer lock: flock on ``<path>.lock``, which then holds our pid."""
    lock_path = f"{path}.lock"
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise LedgerError(f"{path} cannot be locked ({lock_path}: {error.strerror}); "
                          "check the directory's permissions") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise LedgerError(f"{path} is in use by another process (pid {holder}); "
                          "wait for it to finish or stop it") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


# A forked child (a fork-started process pool) shares the lock's open file description and
# would keep the ledger "in use" after the driver dies. Closing the child's copy drops only its
# reference (flock ends when the last one closes). SQLite connections must not be used across
# fork, so the child's copy is parked, never used nor closed.
_open_ledgers: weakref.WeakSet[Ledger] = weakref.WeakSet()
_parked_in_child: list[sqlite3.Connection] = []


def _after_fork_in_child() -> None:
    for ledger in list(_open_ledgers):
        if ledger._lock_fd is not None:
            os.close(ledger._lock_fd)
        if ledger._db is not None:
            _parked_in_child.append(ledger._db)
        ledger._lock_fd = ledger._db = None


os.register_at_fork(after_in_child=_after_fork_in_child)


def _create(path: Path) -> None:
    # Built under another name and renamed into place, so that a crash never leaves a half-made
    # (or 0-byte, hence "foreign") ledger at the real path.
    temporary = path.with_name(f"{path.name}.creating-{os.getpid()}")
    now = datetime.now(UTC).isoformat(timespec="seconds")
    for suffix in ("-wal", "-journal"):  # SQLite would replay them into the new file
        if os.path.lexists(f"{path}{suffix}"):
            raise LedgerError(f"{path}{suffix} is left from a ledger no longer at {path}; move "
                              f"it next to that ledger (as <its name>{suffix}) or delete it")
    try:
        temporary.unlink(missing_ok=True)
        db = sqlite3.connect(temporary, isolation_level=None)
        try:
            db.executescript(f"BEGIN; {_SCHEMA} INSERT INTO meta VALUES ('format', '{FORMAT}'), "
                             f"('format_version', '{FORMAT_VERSION}'), ('created_at', '{now}');"
                             " COMMIT;")
            db.execute("PRAGMA journal_mode=WAL")  # persistent: kept in the file header
        finally:
            db.close()
        os.replace(temporary, path)
    except (OSError, sqlite3.Error) as error:
        temporary.unlink(missing_ok=True)
        raise LedgerError(f"{path} cannot be created ({_one_line(str(error))}); "
                          "check the disk and the directory's permissions") from None


# An attempt ended (done or failed): its outcome replaces the last one's.
_FINISHED = (", result = excluded.result, error = excluded.error, "
             "finished_at = excluded.finished_at, attempts = runs.attempts + 1")


class Ledger:
    """The writer's handle on one ledger (the schema is in the module docstring).

    ``synchronous=NORMAL``: in WAL mode a commit is with the operating system once its WAL
    write returns, so a killed process loses nothing committed, and the file is never
    corrupted. FULL adds an fsync per commit that protects only the last commits against
    power loss, and a lost result is simply trained again. ``interrupted`` counts the rows a
    killed driver had left 'running', now 'pending' again."""

    def __init__(self, path: str | os.PathLike, *, create: bool = True,
                 kernel_version: str | None = None) -> None:
        self.kernel_version = KERNEL_VERSION if kernel_version is None else kernel_version
        self._db: sqlite3.Connection | None = None
        self._lock_fd: int | None = None
        self._mutex = threading.RLock()  # the runner may call from a callback thread
        self.path = Path(path)
        existed = os.path.lexists(self.path)
        if existed:
            _open_checked(self.path).close()  # before a lock file appears next to it
        elif not create:
            raise _missing(self.path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise LedgerError(f"{self.path} cannot be created ({error.strerror}); "
                              "choose another results directory") from None
        self._lock_fd = _lock(self.path)
        _open_ledgers.add(self)
        try:
            if not os.path.lexists(self.path):
                _create(self.path)
            elif not existed:  # made by someone else between our look and our lock
                _open_checked(self.path).close()
            self._db = sqlite3.connect(self.path, isolation_level=None, timeout=10,
                                       check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            with self._write() as db:  # we hold the lock: nothing else is running
                self.interrupted = db.execute(
                    "UPDATE runs SET status = 'pending', updated_at = ? "
                    "WHERE status = 'running'", (time.time(),)).rowcount
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        with self._mutex:
            if self._db is not None:
                self._db.close()  # the last connection checkpoints and removes the -wal
            if self._lock_fd is not None:
                os.close(self._lock_fd)
            self._db = self._lock_fd = None
            _open_ledgers.discard(self)

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_mutex", None) is not None:
            self.close()

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            raise LedgerError(f"{self.path} is closed in this process; open a new Ledger")
        return self._db

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction; SQLite errors (disk full, ...) become LedgerErrors."""
        with self._mutex:
            db = self._connection()
            try:
                db.execute("BEGIN IMMEDIATE")
                yield db
                db.execute("COMMIT")
            except BaseException as error:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                if not isinstance(error, sqlite3.Error):
                    raise
                raise LedgerError(f"{self.path}: writing failed ({_one_line(str(error))}); "
                                  "fix the cause and run again (finished runs are kept)"
                                  ) from None

    def _read(self, sql: str, args: Sequence = ()) -> list[tuple]:
        with self._mutex:
            return self._connection().execute(sql, args).fetchall()

    def meta(self) -> dict[str, str]:
        return dict(self._read("SELECT name, value FROM meta"))

    def set_meta(self, **values: str) -> None:
        for name, value in values.items():
            if name in ("format", "format_version"):
                raise ValueError(f"meta {name!r} belongs to the ledger and cannot be set")
            if not isinstance(value, str):
                raise TypeError(f"meta {name!r} must be a string, got {type(value).__name__}")
        with self._write() as db:
            db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", values.items())

    def _row(self, spec: RunSpec, status: str, now: float) -> tuple:
        return (row_key(spec, self.kernel_version), spec.key, self.kernel_version, spec.run_id,
                status,
                _dumps(json_safe(spec.to_dict())), now)

    def add(self, specs: Sequence[RunSpec]) -> int:
        """Adds a 'pending' row for each spec that has none yet; returns how many it added."""
        now = time.time()
        with self._write() as db:
            return db.executemany(
                "INSERT OR IGNORE INTO runs (key, spec_key, kernel_version, run_id, status, "
                "spec, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [self._row(spec, "pending", now) for spec in specs]).rowcount

    def pending(self, specs: Sequence[RunSpec]) -> list[RunSpec]:
        """The specs, in the given order, not 'done' under this ledger's kernel version."""
        keys = [row_key(spec, self.kernel_version) for spec in specs]
        done: set[str] = set()
        for start in range(0, len(keys), 500):  # under SQLite's bound-parameter limit
            chunk = keys[start:start + 500]
            done.update(key for (key,) in self._read(
                "SELECT key FROM runs WHERE status = 'done' AND key IN "
                f"({','.join('?' * len(chunk))})", chunk))
        return [spec for spec, key in zip(specs, keys, strict=True) if key not in done]

    def _upsert(self, specs: Sequence[RunSpec], status: str, values: Sequence[tuple],
                on_conflict: str) -> None:
        # A missing row is created, so that marking works without add().
        now = time.time()
        with self._write() as db:
            db.executemany(
                "INSERT INTO runs (key, spec_key, kernel_version, run_id, status, spec, "
                "updated_at, result, error, attempts, finished_at) VALUES "
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET "
                "status = excluded.status, updated_at = excluded.updated_at" + on_conflict,
                [self._row(spec, status, now) + more
                 for spec, more in zip(specs, values, strict=True)])

    def mark_running(self, specs: Sequence[RunSpec]) -> None:
        self._upsert(specs, "running", [(None, None, 0, None)] * len(specs), "")

    def record(self, results: Sequence[RunResult]) -> None:
        """Stores the results as 'done' in one transaction (error cleared, attempts + 1)."""
        rows = [(_dumps(result.to_dict()), None, 1, time.time()) for result in results]
        self._upsert([result.spec for result in results], "done", rows, _FINISHED)

    def record_failure(self, specs: Sequence[RunSpec], message: str) -> None:
        """Marks the specs 'failed' with ``message`` kept whole (attempts + 1)."""
        self._upsert(specs, "failed", [(None, str(message), 1, None)] * len(specs), _FINISHED)

    def merge_done(self, rows: Sequence[dict]) -> int:
        """Insert finished rows (``ablate.shards`` format: key, spec_key, kernel_version,
        run_id, spec and result as JSON text, finished_at) where this ledger has no finished
        row of that key; returns how many it took."""
        now = time.time()
        with self._write() as db:
            return db.executemany(
                "INSERT INTO runs (key, spec_key, kernel_version, run_id, status, spec, result, "
                "attempts, updated_at, finished_at) VALUES (?, ?, ?, ?, 'done', ?, ?, 1, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET status = 'done', result = excluded.result, "
                "error = NULL, attempts = runs.attempts + 1, updated_at = excluded.updated_at, "
                "finished_at = excluded.finished_at WHERE runs.status != 'done'",
                [(row["key"], row["spec_key"], row["kernel_version"], row["run_id"],
                  row["spec"], row["result"], now, row["finished_at"]) for row in rows]
            ).rowcount

    def counts(self) -> dict[str, int]:
        """Rows per status under this ledger's kernel version; 'diverged' among the done."""
        out = dict.fromkeys((*STATUSES, "diverged"), 0)
        out.update(self._read("SELECT status, COUNT(*) FROM runs WHERE kernel_version = ? "
                              "GROUP BY status", (self.kernel_version,)))
        out["diverged"] = self._read(
            "SELECT COUNT(*) FROM runs WHERE kernel_version = ? AND status = 'done' "
            "AND json_extract(result, '$.diverged')", (self.kernel_version,))[0][0]
        return out

    def results(self) -> list[RunResult]:
        """Every 'done' row (of any kernel version), ordered by finish time."""
        rows = self._read("SELECT result FROM runs WHERE status = 'done' "
                          "ORDER BY finished_at, rowid")
        return [RunResult.from_dict(json.loads(text)) for (text,) in rows]


_SPEC_COLUMNS = ("cell", "task", "gap", "seed", "lr", "n_hidden", "batch_size", "budget",
                 "eval_every", "clip", "dtype", "eval_batch", "test_batch", "eval_seed",
                 "task_options", "forget_bias", "solve_patience")
_RESULT_COLUMNS = ("solved", "score", "metric", "chance", "test_loss", "steps", "steps_to_solve",
                   "stop_reason", "diverged", "diverged_at")
_TIMING_COLUMNS = ("wall_seconds", "compile_seconds", "train_seconds", "steps_per_second",
                   "backend", "commit")
COLUMNS = ("key", "spec_key", "kernel_version", "status", "run_id", *_SPEC_COLUMNS,
           *_RESULT_COLUMNS, "final_val_metric", "best_val_metric", "final_val_loss",
           *_TIMING_COLUMNS, "error", "attempts", "finished_at", "result")


def _frame_row(key, spec_key, kernel_version, status, run_id, spec_text, result_text, error,
               attempts, finished_at) -> dict:
    spec = json.loads(spec_text)
    result = json.loads(result_text) if result_text is not None else None
    row = dict(key=key, spec_key=spec_key, kernel_version=kernel_version, status=status,
               run_id=run_id)
    row.update({name: spec.get(name) for name in _SPEC_COLUMNS})
    row["solve_patience"] = spec.get("solve_patience", 1)  # 1 where the spec leaves it out
    row["task_options"] = _dumps(spec.get("task_options") or {})
    row.update({name: (result or {}).get(name) for name in (*_RESULT_COLUMNS, *_TIMING_COLUMNS)})
    curve = (result or {}).get("curve") or {}
    val_metric = curve.get("val_metric") or [None]
    known = [value for value in val_metric if value is not None]
    row.update(final_val_metric=val_metric[-1], best_val_metric=max(known, default=None),
               final_val_loss=(curve.get("val_loss") or [None])[-1], error=error,
               attempts=attempts, finished_at=finished_at, result=result)
    return row


def load(path: str | os.PathLike, *, all_versions: bool = False) -> pandas.DataFrame:
    """The ledger at ``path`` as a DataFrame, one row per run. Read-only and lock-free: works
    while a runner writes, and sees every row it committed. LedgerError when the file is
    missing, foreign or corrupt; the file is left as it was.

    Columns, in order:
      key, spec_key, kernel_version, status, run_id: the row's identity and state;
      cell, task, gap, seed, lr, n_hidden, batch_size, budget, eval_every, clip, dtype,
      eval_batch, test_batch, eval_seed: the RunSpec fields; task_options as canonical JSON;
      forget_bias (None: the cell's default), solve_patience (1 where the spec leaves it out);
      solved (bool; None when not done), score, metric, chance, test_loss, steps,
      steps_to_solve, stop_reason, diverged, diverged_at: from the RunResult, NaN or None when
      not done (a non-finite metric was stored as None, so it reads NaN);
      final_val_metric, final_val_loss (the curve's last entries), best_val_metric (its max,
      None entries ignored);
      wall_seconds, compile_seconds, train_seconds, steps_per_second, backend, commit;
      error (the last failure's text), attempts, finished_at (Unix time);
      result: the full RunResult.to_dict() (curves, diagnostics), None when not done.

    By default each spec_key keeps one row: the done row finished last, whatever its kernel
    version, or where none is done the row changed last. ``all_versions=True`` keeps every
    row. Sorted by task, cell, gap, n_hidden, lr, seed.
    """
    import pandas  # here: the writer does not need it

    path = Path(path)
    db = _open_checked(path)
    try:
        rows = db.execute("SELECT key, spec_key, kernel_version, status, run_id, spec, result, "
                          "error, attempts, finished_at, updated_at FROM runs").fetchall()
    except sqlite3.DatabaseError as error:
        raise _corrupt(path, str(error)) from None
    finally:
        db.close()
    if not all_versions:
        chosen: dict[str, tuple] = {}
        for row in rows:  # done beats not done; then the later finish, or the later change
            rank = (row[3] == "done", row[9] or 0.0, row[10])
            if row[1] not in chosen or rank > chosen[row[1]][0]:
                chosen[row[1]] = (rank, row)
        rows = [row for _, row in chosen.values()]
    frame = pandas.DataFrame([_frame_row(*row[:10]) for row in rows], columns=list(COLUMNS))
    return frame.sort_values(["task", "cell", "gap", "n_hidden", "lr", "seed"],
                             kind="mergesort", ignore_index=True)


def read_done_rows(path: str | os.PathLike) -> list[dict]:
    """The finished rows of the ledger at ``path`` (every kernel version) as dicts of key,
    spec_key, kernel_version, run_id, spec, result (JSON text), finished_at; read-only and
    lock-free like ``load``, ordered by finish time."""
    path = Path(path)
    db = _open_checked(path)
    try:
        rows = db.execute("SELECT key, spec_key, kernel_version, run_id, spec, result, "
                          "finished_at FROM runs WHERE status = 'done' "
                          "ORDER BY finished_at, rowid").fetchall()
    except sqlite3.DatabaseError as error:
        raise _corrupt(path, str(error)) from None
    finally:
        db.close()
    names = ("key", "spec_key", "kernel_version", "run_id", "spec", "result", "finished_at")
    return [dict(zip(names, row, strict=True)) for row in rows]


def read_meta(path: str | os.PathLike) -> dict[str, str]:
    """The ledger's meta table (format, created_at, and what the runner stored: suite,
    suite_text, protocol, description). Read-only and lock-free, with load()'s checks."""
    path = Path(path)
    db = _open_checked(path)
    try:
        return dict(db.execute("SELECT name, value FROM meta").fetchall())
    except sqlite3.DatabaseError as error:
        raise _corrupt(path, str(error)) from None
    finally:
        db.close()
