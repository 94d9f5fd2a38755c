"""Tests of ablate.shards: finished runs exported to gzip JSON Lines and imported back.
Real ledgers in tmp_path; the sweep test trains a tiny real suite."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import pytest
from pandas.testing import assert_frame_equal
from test_store import SPECS, make_result

from ablate.shards import export_shard, import_shards, shard_folder, shard_keys
from ablate.store import Ledger, load

ROOT = Path(__file__).resolve().parent.parent


def finished_ledger(path: Path, done: list) -> Path:
    with Ledger(path) as ledger:
        ledger.add(SPECS)
        ledger.record([make_result(spec, metric=0.5 + 0.1 * k) for k, spec in enumerate(done)])
    return path


def done_frame(path: Path):
    frame = load(path)
    frame = frame[frame["status"] == "done"].drop(columns=["attempts", "finished_at"])
    return frame.reset_index(drop=True)


def test_export_writes_the_finished_rows_once(tmp_path):
    ledger = finished_ledger(tmp_path / "a" / "ledger.sqlite", SPECS[:2])
    shard, count = export_shard(ledger)
    assert count == 2 and shard.parent == shard_folder(ledger) and shard.name.endswith(".gz")
    assert export_shard(ledger) == (None, 0)  # nothing new
    with Ledger(ledger) as open_ledger:
        open_ledger.record([make_result(SPECS[3])])
    second, count = export_shard(ledger)
    assert count == 1 and second != shard
    assert len(shard_keys(shard_folder(ledger))) == 3
    with gzip.open(second, "rt") as lines:
        assert len(lines.readlines()) == 1


def test_import_rebuilds_the_finished_runs_in_a_new_ledger(tmp_path):
    source = finished_ledger(tmp_path / "a" / "ledger.sqlite", SPECS[:3])
    export_shard(source)
    target = tmp_path / "b" / "ledger.sqlite"
    with Ledger(target) as ledger:
        assert import_shards(ledger, shard_folder(source)) == 3
        assert import_shards(ledger, shard_folder(source)) == 0  # idempotent
        assert ledger.pending(SPECS) == [SPECS[3]]
    expected, got = done_frame(source), done_frame(target)
    assert list(got["key"]) == list(expected["key"])
    # (the source also holds a pending row, so pandas types some of its columns wider)
    assert_frame_equal(got.drop(columns=["result"]), expected.drop(columns=["result"]),
                       check_dtype=False)
    assert list(got["result"]) == list(expected["result"])


def test_import_keeps_a_finished_row_and_finishes_a_pending_one(tmp_path):
    source = finished_ledger(tmp_path / "a" / "ledger.sqlite", SPECS[:2])
    export_shard(source)
    target = tmp_path / "b" / "ledger.sqlite"
    with Ledger(target) as ledger:
        ledger.add(SPECS)  # all pending
        ledger.record([make_result(SPECS[0], metric=0.123)])  # finished here already
        assert import_shards(ledger, shard_folder(source)) == 1  # only SPECS[1]
    frame = load(target).set_index("seed")
    assert frame.loc[0, "metric"] == 0.123 and frame.loc[1, "metric"] == pytest.approx(0.6)
    assert frame.loc[1, "status"] == "done" and frame.loc[2, "status"] == "pending"


def test_a_corrupt_shard_is_named_and_left_alone(tmp_path):
    folder = tmp_path / "shards"
    folder.mkdir()
    bad = folder / "20260101T000000Z.jsonl.gz"
    bad.write_bytes(b"not gzip at all")
    with Ledger(tmp_path / "ledger.sqlite") as ledger, pytest.raises(ValueError) as caught:
        import_shards(ledger, folder)
    assert str(bad) in str(caught.value) and "\n" not in str(caught.value)
    assert bad.read_bytes() == b"not gzip at all"


def test_a_sweep_resumes_from_shards_alone(tmp_path):
    """Run a tiny suite, export, delete the ledger (a fresh checkout has only the shards):
    the same command trains nothing and the report's runs are the same."""
    suite = tmp_path / "ks.toml"
    suite.write_text('cells = ["rnn"]\nseeds = 2\nlearning_rates = [1e-2]\nhidden_sizes = [4]\n'
                     '[training]\nbudget = 4\nbatch_size = 4\neval_every = 2\n'
                     '[evaluation]\nvalidation_batch = 8\ntest_batch = 8\n'
                     '[tasks.tv]\ngaps = [2]\n')
    results = tmp_path / "results"
    command = [sys.executable, str(ROOT / "run_suite.py"), str(suite), "--results", str(results),
               "--quiet", "--no-report", "--workers", "1"]
    first = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert first.returncode == 0, first.stderr
    exported = subprocess.run([sys.executable, str(ROOT / "run_suite.py"), "export",
                               str(results / "ks")], capture_output=True, text=True, cwd=ROOT,
                              timeout=120)
    assert exported.returncode == 0 and "2 finished runs into" in exported.stdout
    before = done_frame(results / "ks" / "ledger.sqlite")
    for path in (results / "ks").glob("ledger.sqlite*"):
        path.unlink()
    dry = subprocess.run(command + ["--dry-run"], capture_output=True, text=True, cwd=ROOT,
                         timeout=120)
    assert dry.returncode == 0 and "2 already done in" in dry.stdout, dry.stdout + dry.stderr
    assert "to run: 0 runs" in dry.stdout
    again = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert again.returncode == 0 and "0 runs recorded, 2 already done" in again.stdout
    after = done_frame(results / "ks" / "ledger.sqlite")
    assert list(after["result"]) == list(before["result"])


def test_report_rebuilds_a_missing_ledger_from_the_shards_and_their_meta(tmp_path):
    """A committed reference keeps its shards, not its ledger: `run_suite.py report` on the
    folder rebuilds the ledger (runs and suite meta) and writes the same report tables."""
    source = finished_ledger(tmp_path / "a" / "ledger.sqlite", SPECS)
    with Ledger(source) as ledger:
        ledger.set_meta(suite="tiny", protocol="best_lr", description="a tiny suite",
                        suite_text="# tiny\n")
    export_shard(source)
    checkout = tmp_path / "checkout" / "tiny"
    checkout.mkdir(parents=True)
    for path in shard_folder(source).iterdir():
        (checkout / "shards").mkdir(exist_ok=True)
        (checkout / "shards" / path.name).write_bytes(path.read_bytes())
    report = [sys.executable, str(ROOT / "run_suite.py"), "report"]
    for folder in (source.parent, checkout):
        done = subprocess.run(report + [str(folder)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    assert f"rebuilt from {len(SPECS)} runs" in done.stdout
    rebuilt = checkout / "ledger.sqlite"
    assert list(done_frame(rebuilt)["key"]) == list(done_frame(source)["key"])
    with Ledger(rebuilt) as ledger:
        assert ledger.meta()["description"] == "a tiny suite"
    for table in (source.parent / "tables").iterdir():
        assert (checkout / "tables" / table.name).read_text() == table.read_text(), table.name
    # no ledger and no shards: one clear error, nothing created
    empty = tmp_path / "empty"
    empty.mkdir()
    done = subprocess.run(report + [str(empty)], capture_output=True, text=True)
    assert done.returncode == 2 and "holds no shards; run the suite first" in done.stderr
    assert not (empty / "ledger.sqlite").exists()
