"""The runner: packing, resume, SIGKILL at random points, a busy ledger, Dask, the CLI.

Real processes throughout: ``run_suite.py`` runs as a subprocess, is SIGKILLed while it
trains, and is resumed; a real ``distributed.LocalCluster`` on loopback loses a worker in
the middle of a task. "Identical" compares every field of every result except the
timings (wall, compile, train seconds, steps/s, ensemble throughput).
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest

from ablate.results import RunSpec
from ablate.store import load
from ablate.suite import load_suite
from ablate.sweep import pack, run_suite

ROOT = Path(__file__).resolve().parent.parent
RUN_SUITE = [sys.executable, str(ROOT / "run_suite.py")]
TIMING_FIELDS = ("wall_seconds", "compile_seconds", "train_seconds", "steps_per_second", "ensemble")

SUITE = """
description = "runner tests: 3 cells x 2 gaps x 2 seeds x 2 learning rates"
cells = ["lstm", "rnn", "gru"]
seeds = 2
learning_rates = [0.01, 0.003]
hidden_sizes = [8]

[training]
budget = 40
batch_size = 8
eval_every = 20

[evaluation]
validation_batch = 32
test_batch = 64

[tasks.tv]
gaps = [5, 8]
"""


def write_suite(directory: Path, name: str = "kt", text: str = SUITE) -> Path:
    path = directory / f"{name}.toml"
    path.write_text(text)
    return path


def run_cli(*args, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([*RUN_SUITE, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, **kwargs)


def comparable(frame) -> dict[str, dict]:
    """spec_key -> the result without its timings."""
    out = {}
    for row in frame.itertuples():
        assert row.status == "done", (row.run_id, row.status, row.error)
        result = {k: v for k, v in row.result.items() if k not in TIMING_FIELDS}
        out[row.spec_key] = json.loads(json.dumps(result, sort_keys=True))
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, dict]:
    """The uninterrupted sweep (in this process's pool, default packing)."""
    directory = tmp_path_factory.mktemp("reference")
    suite = load_suite(write_suite(directory))
    summary = run_suite(suite, directory / "results", workers=2, progress=False)
    assert summary.done == len(suite.specs) == 24 and summary.failed == 0
    frame = load(directory / "results" / "kt" / "ledger.sqlite")
    assert len(frame) == 24
    return comparable(frame)


# ---------------------------------------------------------------- packing


def test_pack_groups_by_shape_and_splits_evenly():
    specs = [RunSpec("lstm", "tv", gap=g, seed=s, lr=lr, n_hidden=8)
             for g in (5, 8) for s in range(5) for lr in (0.01, 0.003)]
    packed = pack(specs, max_ensemble=4)
    assert sorted(len(g) for g in packed) == [3, 3, 3, 3, 4, 4]  # 10 runs -> 4+3+3 per gap
    for group in packed:
        assert len({spec.shape_key() for spec in group}) == 1
    flat = [spec for group in packed for spec in group]
    assert sorted(flat, key=lambda s: s.key) == sorted(specs, key=lambda s: s.key)
    assert len(pack(specs, max_ensemble=100)) == 2
    with pytest.raises(ValueError, match="max_ensemble"):
        pack(specs, max_ensemble=0)


# ---------------------------------------------------------------- resume


def test_rerun_skips_finished_runs_and_packing_changes_nothing(tmp_path, reference):
    suite = load_suite(write_suite(tmp_path))
    first = run_suite(suite, tmp_path / "results", workers=1, max_ensemble=3, progress=False)
    assert (first.done, first.skipped, first.failed) == (24, 0, 0)
    again = run_suite(suite, tmp_path / "results", workers=2, progress=False)
    assert (again.done, again.skipped) == (0, 24)
    frame = load(tmp_path / "results" / "kt" / "ledger.sqlite")
    assert comparable(frame) == reference  # one worker, ensembles of 3: the same bytes


def test_sigkill_at_random_points_then_resume_equals_uninterrupted(tmp_path, reference):
    """Kill the driver (SIGKILL) right after a random number of runs landed, 4 times."""
    suite_path = write_suite(tmp_path)
    ledger = tmp_path / "results" / "kt" / "ledger.sqlite"
    command = [*RUN_SUITE, suite_path, "--results", tmp_path / "results", "--workers", "2",
               "--max-ensemble", "2", "--no-report", "--quiet"]
    rng = random.Random(int.from_bytes(os.urandom(4), "little"))
    seen, orphans = [], []
    for _ in range(4):
        before = _done_count(ledger)
        if before >= 18:
            break
        # The whole sweep takes about a second once started (less on a fast machine), two
        # runs landing at a time: stop at most 12 so that six ensembles are still to come.
        threshold = rng.randint(min(before + 1, 12), 12)
        process = subprocess.Popen([str(c) for c in command], cwd=ROOT,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 240
        while _done_count(ledger) < threshold and process.poll() is None:
            assert time.monotonic() < deadline, "the sweep made no progress"
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.02))  # land anywhere: mid-ensemble or mid-commit
        workers = _children(process.pid)
        process.send_signal(signal.SIGKILL)
        process.wait()
        seen.append(_done_count(ledger))
        orphans.extend(workers)
    assert any(0 < n < 24 for n in seen), seen  # at least one kill was mid-sweep
    finished = subprocess.run([str(c) for c in command], cwd=ROOT, capture_output=True,
                              text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    frame = load(ledger, all_versions=True)
    assert len(frame) == 24 and frame["spec_key"].is_unique  # every run exactly once
    assert comparable(frame) == reference
    assert orphans and not [pid for pid in orphans if _alive(pid)], \
        "pool workers outlived their killed driver"


def test_a_dead_pool_worker_is_retried_and_said_so(tmp_path, reference):
    """A worker killed mid-sweep (as a crash in compiled code or the OOM killer would) breaks
    the pool: its ensembles train again in a new pool, every run lands exactly once with
    the same bytes, and the driver says which ensembles were retried and why."""
    suite_path = write_suite(tmp_path)
    ledger = tmp_path / "results" / "kt" / "ledger.sqlite"
    driver = subprocess.Popen(
        [*RUN_SUITE, str(suite_path), "--results", str(tmp_path / "results"), "--workers", "2",
         "--max-ensemble", "1", "--no-report", "--quiet"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    killed = _kill_a_worker(driver, ledger, after_done=2, seconds=240)  # the pool is training
    out, err = driver.communicate(timeout=300)
    assert killed is not None, "no pool worker was there to kill"
    assert driver.returncode == 0, err
    assert "ensemble(s) trained again after their worker process died" in err
    assert "retried: " in err and "BrokenProcessPool" in err
    assert "24 runs recorded" in out and "0 failed" in out
    frame = load(ledger, all_versions=True)
    assert len(frame) == 24 and frame["spec_key"].is_unique
    assert comparable(frame) == reference


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _done_count(ledger: Path) -> int:
    """Finished runs, read straight from SQLite (cheap enough to poll every 10 ms)."""
    if not ledger.exists():
        return 0
    try:
        with closing(sqlite3.connect(f"file:{ledger}?mode=ro", uri=True, timeout=1)) as db:
            return db.execute("SELECT count(*) FROM runs WHERE status = 'done'").fetchone()[0]
    except sqlite3.Error:  # the driver is creating it right now
        return 0


def _kill_a_worker(driver: subprocess.Popen, ledger: Path, after_done: int,
                   seconds: float) -> int | None:
    """SIGKILL one worker process of the running ``driver`` once its ledger has
    ``after_done`` finished runs; the killed pid, or None if none was there in time."""
    deadline = time.monotonic() + seconds
    while driver.poll() is None and time.monotonic() < deadline:
        if _done_count(ledger) >= after_done:
            workers = [pid for pid in _children(driver.pid) if "spawn_main" in _command(pid)]
            if workers:
                os.kill(workers[0], signal.SIGKILL)
                return workers[0]
        time.sleep(0.005)
    return None


def _children(pid: int) -> list[int]:
    """Live processes whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _parent(int(entry.name)) == pid:
            found.append(int(entry.name))
    return found


def _parent(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])  # field 4, after "pid (comm) state"


def _alive(pid: int, wait: float = 5.0) -> bool:
    """Whether pid is still a running (non-zombie) process after up to ``wait`` seconds."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return False
        if state == "Z":
            return False
        time.sleep(0.05)
    return True


# ---------------------------------------------------------------- the command line


def test_second_process_on_the_same_ledger_is_refused(tmp_path):
    suite_path = write_suite(tmp_path, text=SUITE.replace("budget = 40", "budget = 2000"))
    command = [*RUN_SUITE, suite_path, "--results", tmp_path / "results", "--quiet",
               "--no-report", "--workers", "1"]
    first = subprocess.Popen([str(c) for c in command], cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        ledger = tmp_path / "results" / "kt" / "ledger.sqlite"
        deadline = time.monotonic() + 120
        while not ledger.exists():
            assert time.monotonic() < deadline and first.poll() is None
            time.sleep(0.05)
        time.sleep(0.5)
        second = subprocess.run([str(c) for c in command], cwd=ROOT, capture_output=True,
                                text=True, timeout=120)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert second.returncode == 2
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and "in use by another process" in lines[0], second.stderr
    assert str(ledger) in lines[0]


@pytest.mark.parametrize(
    "text, fragment",
    [
        (SUITE.replace('"rnn"', '"rnnn"'), "cells[1]"),
        (SUITE.replace("gaps = [5, 8]", "gaps = [5, -8]"), "tasks.tv.gaps[1]"),
        (SUITE.replace("budget = 40", "budgets = 40"), "budgets"),
        (SUITE.replace("[tasks.tv]", "[tasks.tvv]"), "tvv"),
    ],
)
def test_cli_malformed_suite_is_one_line_and_exit_2(tmp_path, text, fragment):
    result = run_cli(write_suite(tmp_path, text=text), "--results", tmp_path, "--dry-run")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], lines
    assert not (tmp_path / "kt").exists()


def test_cli_bad_options(tmp_path):
    suite_path = write_suite(tmp_path)
    for args, fragment in (
        (["--workers", "0"], "--workers"),
        (["--backend", "tpu"], "allowed: cpu, cuda"),
        (["--max-ensemble", "0"], "--max-ensemble"),
    ):
        result = run_cli(suite_path, "--results", tmp_path, *args)
        assert result.returncode == 2 and fragment in result.stderr, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1
    missing = run_cli(tmp_path / "nope.toml")
    assert missing.returncode == 2 and "nope.toml" in missing.stderr


def test_cli_foreign_ledger_is_refused_and_untouched(tmp_path):
    suite_path = write_suite(tmp_path)
    ledger = tmp_path / "results" / "kt" / "ledger.sqlite"
    ledger.parent.mkdir(parents=True)
    ledger.write_bytes(b"my thesis notes, not a database\n" * 10)
    result = run_cli(suite_path, "--results", tmp_path / "results", "--quiet")
    assert result.returncode == 2 and str(ledger) in result.stderr
    assert ledger.read_bytes() == b"my thesis notes, not a database\n" * 10


def test_dry_run_counts_and_estimates(tmp_path, reference):
    suite_path = write_suite(tmp_path)
    result = run_cli(suite_path, "--results", tmp_path / "results", "--dry-run", "--workers", "2")
    assert result.returncode == 0, result.stderr
    assert "24 runs" in result.stdout and "estimated time" in result.stdout
    assert "(new)" in result.stdout and not (tmp_path / "results" / "kt").exists()
    assert re.search(r"where it goes \(core time\): tv \d+ s \(gap 8: \d+ s\)", result.stdout)
    run_suite(load_suite(suite_path), tmp_path / "results", progress=False)
    again = run_cli(suite_path, "--results", tmp_path / "results", "--dry-run")
    assert "24 already done" in again.stdout and "to run: 0 runs" in again.stdout


def test_dry_run_says_where_a_validation_batch_is_too_small_to_stop_early(tmp_path):
    """tiny validates tv on 64 sequences: 99% at 95% confidence takes 381, all right, so no
    run of it can stop early; the bundled science suites' batches can."""
    from ablate.cli import dry_run_text

    tiny = dry_run_text(load_suite(ROOT / "suites" / "tiny.toml"), tmp_path, 2, 16)
    assert ("no early stop on tv: its validation batch scores 64 trials, and 99% at 95% "
            "confidence takes 381") in tiny
    for name in ("smoke", "why_gates", "hochreiter97"):
        text = dry_run_text(load_suite(ROOT / "suites" / f"{name}.toml"), tmp_path, 2, 16)
        assert "no early stop" not in text, name


def test_fresh_moves_the_old_ledger_aside(tmp_path):
    text = SUITE.replace('["lstm", "rnn", "gru"]', '["rnn"]').replace("gaps = [5, 8]", "gaps = [5]")
    suite = load_suite(write_suite(tmp_path, text=text))
    run_suite(suite, tmp_path / "r", progress=False)
    summary = run_suite(suite, tmp_path / "r", fresh=True, progress=False)
    assert summary.done == 4 and summary.skipped == 0
    kept = sorted(p.name for p in (tmp_path / "r" / "kt").glob("ledger.*.sqlite"))
    assert len(kept) == 1 and len(load(tmp_path / "r" / "kt" / kept[0])) == 4


def test_the_progress_bar_counts_estimated_work_and_runs(tmp_path, capsys):
    """The bar advances by each run's estimated cost (ablate.cost), so its time left is the
    work left at the measured rate; the run counts ride along."""
    from ablate.sweep import _work

    text = SUITE.replace('["lstm", "rnn", "gru"]', '["rnn"]')  # gaps 5 and 8: unequal costs
    suite = load_suite(write_suite(tmp_path, text=text))
    run_suite(suite, tmp_path / "r", progress=True)
    shown = capsys.readouterr().err.replace("\r", "\n").splitlines()
    final = [line for line in shown if "of the estimated work" in line][-1]
    assert "100% of the estimated work" in final
    assert f"runs {len(suite.specs)}/{len(suite.specs)}: done {len(suite.specs)}, failed 0" in final
    gap5 = [spec for spec in suite.specs if spec.gap == 5]
    assert 0 < _work(gap5) < _work(suite.specs) - _work(gap5)  # the longer gap weighs more


# ---------------------------------------------------------------- Dask


def test_dask_cluster_with_a_killed_worker_equals_the_local_pool(tmp_path, reference):
    distributed = pytest.importorskip("distributed")
    suite_path = write_suite(tmp_path)
    ledger = tmp_path / "results" / "kt" / "ledger.sqlite"
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address=None, silence_logs=50,
    ) as cluster, distributed.Client(cluster) as client:
        driver = subprocess.Popen(
            [*RUN_SUITE, str(suite_path), "--results", str(tmp_path / "results"),
             "--scheduler", cluster.scheduler_address, "--max-ensemble", "1", "--quiet",
             "--no-report"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        killed = None
        deadline = time.monotonic() + 240
        while killed is None and driver.poll() is None and time.monotonic() < deadline:
            if _done_count(ledger) >= 2:  # tasks are flowing: kill a worker holding one
                busy = [address for address, keys in client.processing().items() if keys]
                if busy:
                    pids = client.run(os.getpid)
                    killed = busy[0]
                    os.kill(pids[killed], signal.SIGKILL)
            time.sleep(0.05)
        out, err = driver.communicate(timeout=300)
    assert killed is not None, "no worker was busy to kill"
    assert driver.returncode == 0, err
    frame = load(ledger)
    assert len(frame) == 24
    assert comparable(frame) == reference


def test_progress_bar_ends_at_its_total(tmp_path, capsys):
    """The bar adds each group's estimate; summed in another order than the total they can
    pass it by an ulp, and tqdm then warned "clamping frac" and showed "-00:00 to go" (seen
    on the smoke suite, whose 36 runs reproduce it)."""
    import warnings

    from tqdm import TqdmWarning

    with warnings.catch_warnings():
        warnings.simplefilter("error", TqdmWarning)
        summary = run_suite(load_suite(ROOT / "suites" / "smoke.toml"), tmp_path / "results",
                            workers=2, progress=True)
    assert summary.done == summary.total == 36
    final = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()[-1]
    assert "100% of the estimated work" in final and "-00:00" not in final
