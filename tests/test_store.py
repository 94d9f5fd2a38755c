"""Tests of ablate.store: the SQLite results ledger. Real files in tmp_path, real subprocesses
for the lock and for a driver killed mid-run; nothing is trained (results are hand-filled)."""

from __future__ import annotations

import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ablate import store
from ablate.results import RunResult, RunSpec
from ablate.store import Ledger, LedgerError, load, row_key

ROOT = Path(__file__).resolve().parent.parent
SPECS = [RunSpec("lstm", "tv", gap=5, seed=seed) for seed in range(4)]


def make_result(spec: RunSpec, **changes) -> RunResult:
    fields = dict(
        spec=spec, steps=100, stop_reason="solved", metric=1.0, test_loss=0.01, chance=0.5,
        score=1.0, solved=True, steps_to_solve=100, diverged=False, diverged_at=None,
        curve={"step": [0, 50, 100], "train_loss": [0.7, 0.3, 0.01], "grad_norm": [1.0, 0.5, 0.1],
               "val_loss": [0.69, 0.2, 0.02], "val_metric": [0.5, 0.9, 1.0]},
        wall_seconds=2.0, compile_seconds=0.5, train_seconds=1.5, steps_per_second=66.7,
        diagnostics={"init": {"dh_norm": [1.0, 0.5]}}, versions={"ablate": "test"},
        commit="0123abc")
    fields.update(changes)
    return RunResult(**fields)


def one_line_error(call, path: Path) -> str:
    with pytest.raises(LedgerError) as caught:
        call()
    message = str(caught.value)
    assert str(path) in message and "\n" not in message, message
    return message


def run_python(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)


# ---------------------------------------------------------------- records


def test_round_trip_record_results_load(tmp_path):
    path = tmp_path / "results" / "smoke" / "ledger.sqlite"  # parent directories are made
    good = make_result(SPECS[0])
    # a diverged run: NaN metrics are stored as None and read back as None (NaN in the frame)
    bad = make_result(SPECS[1].replace(task_options={"n_classes": 4}, solve_patience=3),
                      stop_reason="diverged",
                      metric=math.nan, score=math.inf, solved=False, steps_to_solve=None,
                      diverged=True, diverged_at=37, curve={"val_metric": [0.5, None],
                                                            "val_loss": [0.7, None]})
    with Ledger(path) as ledger:
        assert ledger.add([SPECS[0], bad.spec, *SPECS[2:]]) == 4
        ledger.record([good, bad])
        assert [r.to_dict() for r in ledger.results()] == [good.to_dict(), bad.to_dict()]
        assert ledger.results()[1].metric is None
        assert ledger.counts() == {"pending": 2, "running": 0, "done": 2, "failed": 0,
                                   "diverged": 1}
    frame = load(path)
    assert list(frame.columns) == list(store.COLUMNS) and list(frame["seed"]) == [0, 1, 2, 3]
    frame = frame.set_index("seed")
    assert frame.loc[0, "status"] == "done" and frame.loc[0, "solved"] is True
    assert frame.loc[0, "key"] == row_key(SPECS[0]) and frame.loc[0, "spec_key"] == SPECS[0].key
    assert frame.loc[0, "run_id"] == SPECS[0].run_id and frame.loc[0, "commit"] == "0123abc"
    assert frame.loc[0, "final_val_metric"] == 1.0 and frame.loc[0, "final_val_loss"] == 0.02
    assert frame.loc[0, "result"] == good.to_dict() and frame.loc[0, "attempts"] == 1
    assert frame.loc[1, "task_options"] == '{"n_classes":4}'
    assert frame.loc[1, "solve_patience"] == 3 and frame.loc[0, "solve_patience"] == 1
    assert frame.loc[0, "task_options"] == "{}"
    assert math.isnan(frame.loc[1, "metric"]) and math.isnan(frame.loc[1, "score"])
    assert frame.loc[1, "diverged"] and frame.loc[1, "diverged_at"] == 37
    assert frame.loc[1, "best_val_metric"] == 0.5 and math.isnan(frame.loc[1, "final_val_metric"])
    assert frame.loc[2, "status"] == "pending" and frame.loc[2, "solved"] is None
    assert frame.loc[2, "result"] is None and math.isnan(frame.loc[2, "score"])


def test_pending_skips_done_runs_of_this_kernel_version_only(tmp_path, monkeypatch):
    path = tmp_path / "ledger.sqlite"
    with Ledger(path) as ledger:
        ledger.add(SPECS)
        assert ledger.add(SPECS + SPECS[:1]) == 0  # idempotent, duplicates included
        ledger.record([make_result(SPECS[1]), make_result(SPECS[3])])
        assert ledger.pending(SPECS[::-1]) == [SPECS[2], SPECS[0]]  # in the order given
        assert ledger.pending([]) == []
        old_version = store.KERNEL_VERSION
        monkeypatch.setattr(store, "KERNEL_VERSION", "0" * 12)  # the kernels changed
        ledger.kernel_version = "0" * 12  # as a runner started after the change has it
        assert ledger.pending(SPECS) == SPECS
        assert ledger.add(SPECS) == 4 and ledger.counts()["pending"] == 4
        ledger.record([make_result(SPECS[3], metric=0.75)])
    frame = load(path).set_index("seed")
    # done under the new kernels, done only under the old ones, never done: newest first
    assert frame.loc[3, "kernel_version"] == "0" * 12 and frame.loc[3, "metric"] == 0.75
    assert frame.loc[1, "kernel_version"] == old_version and frame.loc[1, "status"] == "done"
    assert frame.loc[0, "status"] == "pending"
    assert len(load(path, all_versions=True)) == 8
    assert row_key(SPECS[0]) == row_key(SPECS[0], "0" * 12) != row_key(SPECS[0], old_version)


def test_stale_runs_counts_each_run_once_and_only_where_no_current_row_finished():
    finished = [("a", "v1"), ("a", "v2"), ("b", "v1"), ("b", "v3"), ("c", "v2"), ("d", "v3")]
    assert store.stale_runs(finished, "v3") == (2, {"v1": 1, "v2": 2})  # a, c; b and d are v3
    assert store.stale_runs(finished, "v3", {"a", "b"}) == (1, {"v1": 1, "v2": 1})
    assert store.stale_runs(iter(finished), "v9")[0] == 4  # any iterable, read once
    assert store.stale_note(store.stale_runs(finished, "v2"), "v2") == (
        "2 runs finished only under other kernel versions (v1: 1, v3: 2) train again under v2: "
        "the code that decides a run's numbers changed since (a report still reads them)")
    assert store.stale_note((0, {}), "v2") == ""


def test_kernel_versions_per_backend():
    assert store.kernel_version("cpu") == store.KERNEL_VERSION
    cuda = store.kernel_version("cuda")
    assert cuda.startswith("cuda-") and cuda[5:] != store.KERNEL_VERSION
    with pytest.raises(ValueError, match="allowed: cpu, cuda"):
        store.kernel_version("tpu")


def test_failures_count_attempts_and_stay_pending(tmp_path):
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        ledger.record_failure(SPECS[:1], "MemoryError: out of memory\n(traceback)")  # not added
        ledger.record_failure(SPECS[:1], "MemoryError again")
        assert ledger.pending(SPECS[:1]) == SPECS[:1] and ledger.counts()["failed"] == 1
        ledger.record([make_result(SPECS[0])])
        ledger.set_meta(suite="smoke", protocol="best-val")
        meta = ledger.meta()
        with pytest.raises(ValueError, match="format"):
            ledger.set_meta(format="mine")
    assert meta["format"] == "ablate-ledger" and meta["format_version"] == "1"
    assert meta["suite"] == "smoke" and meta["created_at"][:2] == "20"
    row = load(tmp_path / "ledger.sqlite").iloc[0]
    assert row["status"] == "done" and row["attempts"] == 3 and row["error"] is None


def test_stale_running_rows_go_back_to_pending_and_wal_is_on(tmp_path):
    path = tmp_path / "ledger.sqlite"
    with Ledger(path) as ledger:
        ledger.add(SPECS)
        ledger.mark_running(SPECS[:3])
        assert ledger.counts()["running"] == 3 and ledger.interrupted == 0
        with sqlite3.connect(path) as other:
            assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with Ledger(path) as ledger:
        assert ledger.interrupted == 3
        assert ledger.counts()["running"] == 0 and ledger.pending(SPECS) == SPECS
    assert store.KERNEL_VERSION.isalnum() and len(store.KERNEL_VERSION) == 12
    int(store.KERNEL_VERSION, 16)


def test_kernel_version_ignores_docstrings_and_comments_not_code():
    """Every kernel source file, re-written with its comments and docstrings changed, keeps
    its code text; any changed token of code changes it."""
    from pathlib import Path

    import ablate

    package = Path(ablate.__file__).parent
    for path in [package / "train.py", package / "kernels" / "adam.py",
                 package / "cells" / "lstm_family.py"]:
        source = path.read_text()
        noted = "# a comment on top\n" + source.replace("\n\n", "\n\n# note\n\n", 1)
        noted = noted.replace('"""', '"""Edited. ', 1)  # the module docstring
        assert store.code_text(noted) == store.code_text(source), path
        head, tail = source.rsplit(" + ", 1)  # the last "+" of the file: in code
        for code in (head + " - " + tail, source + "\n_extra = 1\n"):
            assert store.code_text(code) != store.code_text(source), path
    assert store.code_text("def f():\n    'doc'\n") == store.code_text("def f():\n    pass\n")


# ---------------------------------------------------------------- one writer


BUSY_PROBE = """
import sys
from ablate.store import Ledger, LedgerError
try:
    Ledger(sys.argv[1]).close()
except LedgerError as error:
    print(error)
    sys.exit(3)
"""


def test_a_second_writer_is_refused_in_process_and_in_a_subprocess(tmp_path):
    path = tmp_path / "ledger.sqlite"
    first = Ledger(path)
    message = one_line_error(lambda: Ledger(path), path)
    assert f"in use by another process (pid {os.getpid()})" in message
    probe = run_python(BUSY_PROBE, str(path))
    assert probe.returncode == 3, probe.stderr
    assert f"{path} is in use by another process (pid {os.getpid()})" in probe.stdout
    assert "Traceback" not in probe.stderr
    first.close()
    Ledger(path).close()
    probe = run_python(BUSY_PROBE, str(path))
    assert probe.returncode == 0, probe.stdout + probe.stderr


def test_a_forked_child_does_not_keep_the_ledger_locked(tmp_path):
    path = tmp_path / "ledger.sqlite"
    ledger = Ledger(path)
    started, ready = os.pipe()
    child = os.fork()
    if child == 0:  # a fork-started pool worker outliving the driver's handle
        os.write(ready, b"x")  # the fork hooks have run by now
        time.sleep(30)
        os._exit(0)
    try:
        assert os.read(started, 1) == b"x"
        ledger.close()
        Ledger(path).close()
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
        os.close(started)
        os.close(ready)


KILLED_DRIVER = """
import sys, time
sys.path.insert(0, "tests")
from test_store import SPECS, make_result
from ablate.store import Ledger
ledger = Ledger(sys.argv[1])
ledger.add(SPECS)
for spec in SPECS[:3]:
    ledger.record([make_result(spec)])  # one committed transaction each
ledger.mark_running(SPECS[3:])
print("ready", flush=True)
time.sleep(60)
"""


def test_a_killed_driver_leaves_every_committed_row(tmp_path):
    path = tmp_path / "ledger.sqlite"
    driver = subprocess.Popen([sys.executable, "-c", KILLED_DRIVER, str(path)], cwd=ROOT,
                              text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = driver.stdout.readline()
        assert line == "ready\n", line or driver.stderr.read()  # "": it exited, read why
        # a reader while the driver lives: no lock taken, every commit visible
        assert list(load(path)["status"]) == ["done"] * 3 + ["running"]
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.communicate(timeout=30)
    assert driver.returncode == -signal.SIGKILL
    assert list(load(path)["status"]) == ["done"] * 3 + ["running"]  # from the WAL it left
    with Ledger(path) as ledger:
        assert ledger.interrupted == 1
        assert [r.spec for r in ledger.results()] == SPECS[:3]
        assert ledger.pending(SPECS) == SPECS[3:]
    assert sorted(os.listdir(tmp_path)) == ["ledger.sqlite", "ledger.sqlite.lock"]


def test_load_reads_while_a_writer_holds_the_lock(tmp_path):
    path = tmp_path / "ledger.sqlite"
    with Ledger(path) as ledger:
        ledger.add(SPECS)
        ledger.record([make_result(SPECS[0])])
        assert list(load(path)["status"]) == ["done", "pending", "pending", "pending"]
        ledger.record([make_result(SPECS[1])])  # the writer goes on after the reader
        assert load(path)["status"].tolist().count("done") == 2
    empty = tmp_path / "empty.sqlite"
    Ledger(empty).close()
    assert list(load(empty).columns) == list(store.COLUMNS) and load(empty).empty


# ---------------------------------------------------------------- files that are not ledgers


def finished_ledger(path: Path) -> bytes:
    """A closed ledger of 40 done runs (about 30 pages), its bytes."""
    specs = [spec.replace(gap=gap) for spec in SPECS for gap in range(1, 11)]
    with Ledger(path) as ledger:
        ledger.add(specs)
        ledger.record([make_result(spec) for spec in specs])
    return path.read_bytes()


def write_foreign(kind: str, path: Path) -> None:
    if kind == "random bytes":
        path.write_bytes(os.urandom(5000))
    elif kind == "text":
        path.write_text("cell,task,gap\nlstm,tv,5\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "other sqlite":
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE meta (name TEXT, value TEXT)")
            db.execute("INSERT INTO meta VALUES ('format', 'someone-else')")
        db.close()
    elif kind == "corrupted ledger":  # the middle third overwritten: broken page pointers
        data = finished_ledger(path)
        third = len(data) // 3
        path.write_bytes(data[:third] + b"\xff" * third + data[2 * third:])
    elif kind == "truncated ledger":
        path.write_bytes(finished_ledger(path)[:40960])
    elif kind == "newer format":
        Ledger(path).close()
        with sqlite3.connect(path) as db:
            db.execute("UPDATE meta SET value = '2' WHERE name = 'format_version'")
        db.close()


@pytest.mark.parametrize("kind, says", [
    ("random bytes", "is not an ablate ledger (not an SQLite database)"),
    ("text", "is not an ablate ledger (not an SQLite database)"),
    ("empty", "is not an ablate ledger (an empty file)"),
    ("other sqlite", "is not an ablate ledger (its meta format is 'someone-else')"),
    ("corrupted ledger", "is corrupt: "),
    ("truncated ledger", "is corrupt: "),
    ("newer format", "has ledger format version 2, newer than this ablate reads (1)"),
])
def test_foreign_and_corrupt_files_are_refused_and_left_untouched(tmp_path, kind, says):
    path = tmp_path / "ledger.sqlite"
    write_foreign(kind, path)
    before, listing = path.read_bytes(), sorted(os.listdir(tmp_path))
    for call in (lambda: Ledger(path), lambda: Ledger(path, create=False), lambda: load(path)):
        assert says in one_line_error(call, path)
        assert path.read_bytes() == before and sorted(os.listdir(tmp_path)) == listing


def test_a_directory_or_a_missing_file_is_refused(tmp_path):
    folder = tmp_path / "ledger.sqlite"
    folder.mkdir()
    assert "is a directory" in one_line_error(lambda: Ledger(folder), folder)
    assert "is a directory" in one_line_error(lambda: load(folder), folder)
    missing = tmp_path / "none" / "ledger.sqlite"
    assert "does not exist" in one_line_error(lambda: load(missing), missing)
    assert "does not exist" in one_line_error(lambda: Ledger(missing, create=False), missing)
    assert sorted(os.listdir(tmp_path)) == ["ledger.sqlite"] and not os.listdir(folder)
    # a WAL left by a ledger that was moved away without it would be replayed into a new one
    orphan = tmp_path / "moved" / "ledger.sqlite"
    orphan.parent.mkdir()
    Path(f"{orphan}-wal").write_bytes(b"old frames")
    assert "-wal is left from a ledger" in one_line_error(lambda: Ledger(orphan), orphan)
    assert not orphan.exists()
