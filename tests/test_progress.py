"""Tests of ablate.progress and ``run_suite.py status`` on hand-filled ledgers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from test_store import SPECS, make_result

from ablate.cost import estimate_seconds
from ablate.progress import progress_report
from ablate.store import Ledger

ROOT = Path(__file__).resolve().parent.parent


def test_counts_measured_time_and_projection(tmp_path):
    path = tmp_path / "kt" / "ledger.sqlite"
    with Ledger(path) as ledger:
        ledger.add(SPECS)
        # two runs of one ensemble of 2 on one thread: each counts half its 6 s wall
        ensemble = {"size": 2, "threads": 1}
        ledger.record([make_result(SPECS[0], wall_seconds=6.0, ensemble=ensemble),
                       make_result(SPECS[1], wall_seconds=6.0, ensemble=ensemble,
                                   solved=False)])
    text = progress_report(path, workers=2)
    assert "| tv | 5 | 2 (1) | 6 s |" in text and "2 runs done, 2 pending" in text
    estimate = estimate_seconds(SPECS[0])
    ratio = 6.0 / (2 * estimate)
    assert f"({ratio:.2f}×)" in text
    assert "on 2 workers at that ratio" in text


def test_status_command(tmp_path):
    path = tmp_path / "kt" / "ledger.sqlite"
    with Ledger(path) as ledger:
        ledger.add(SPECS)
    run = [sys.executable, str(ROOT / "run_suite.py"), "status"]
    fresh = subprocess.run(run + [str(path.parent)], capture_output=True, text=True, cwd=ROOT,
                           timeout=120)
    assert fresh.returncode == 0 and "0 runs done, 4 pending" in fresh.stdout
    assert "no finished run to calibrate against yet" in fresh.stdout
    missing = subprocess.run(run + [str(tmp_path / "nope")], capture_output=True, text=True,
                             cwd=ROOT, timeout=120)
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def test_runs_finished_under_other_kernel_versions_are_named(tmp_path, monkeypatch):
    """After a change to the code that decides a run's numbers, status says which finished
    runs a sweep would train again, instead of only counting 0 done."""
    from ablate import store

    path = tmp_path / "kt" / "ledger.sqlite"
    old = store.KERNEL_VERSION
    with Ledger(path) as ledger:
        ledger.add(SPECS)
        ledger.record([make_result(spec) for spec in SPECS[:3]])
    assert "other kernel versions" not in progress_report(path)
    monkeypatch.setattr(store, "KERNEL_VERSION", "0" * 12)  # the kernels changed since
    text = progress_report(path)
    assert "0 runs done, 0 pending (kernel version 000000000000)" in text
    assert (f"3 runs finished only under other kernel versions ({old}: 3) train again under "
            "000000000000") in text
