"""Several ensembles at once on one GPU (under the CUDA simulator): each keeps to its own
stream, trains to the same bytes as when alone, waits for memory held by other threads
instead of failing, and a sweep with several in flight records what one at a time does,
even when its worker process is killed."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("numba.cuda")

from ablate.results import RunSpec  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ON_GPU = os.environ.get("ABLATE_TEST_GPU") == "1"
TASK = "adding"  # three steps a sequence: the simulator runs every thread in Python
TIMINGS = ("wall_seconds", "compile_seconds", "train_seconds", "steps_per_second", "ensemble")


def group(cell: str, gap: int) -> list[RunSpec]:
    """A tiny shape group: two seeds, two learning rates, a budget one of them stops at."""
    base = dict(gap=gap, n_hidden=3, batch_size=4, budget=2, eval_every=1, eval_batch=8,
                test_batch=8, clip=0.5)
    return [RunSpec(cell, TASK, seed=0, lr=1e-2, **base),
            RunSpec(cell, TASK, seed=1, lr=3e-3, **base).replace(budget=1)]


def without_timings(result) -> dict:
    return {k: v for k, v in result.to_dict().items() if k not in TIMINGS}


# ---------------------------------------------------------------- streams


@pytest.mark.skipif(ON_GPU, reason="records the simulator's calls")
def test_every_copy_and_launch_names_the_ensembles_own_stream(monkeypatch):
    """Anything on the legacy default stream (stream 0) would wait for every other
    ensemble's kernels, so not one copy, allocation or launch may leave its stream out."""
    from numba import cuda
    from numba.cuda.simulator.cudadrv import devicearray
    from numba.cuda.simulator.kernel import FakeCUDAKernel

    from ablate.cuda.engine import train_ensemble

    made, used = [], []
    make_stream = cuda.stream

    def stream():
        made.append(make_stream())
        return made[-1]

    def recording(function, position):
        def call(*args, **kwargs):
            used.append((function.__name__, kwargs.get("stream", (args[position:] or [0])[0])))
            return function(*args, **kwargs)
        return call

    monkeypatch.setattr(cuda, "stream", stream)
    monkeypatch.setattr(cuda, "to_device", recording(cuda.to_device, 1))
    monkeypatch.setattr(cuda, "device_array", recording(cuda.device_array, 99))
    for name in ("copy_to_host", "copy_to_device"):
        method = getattr(devicearray.FakeCUDAArray, name)
        monkeypatch.setattr(devicearray.FakeCUDAArray, name, recording(method, 2))
    configure = FakeCUDAKernel.__getitem__

    def launch(kernel, configuration):
        used.append(("launch", configuration[2] if len(configuration) > 2 else 0))
        return configure(kernel, configuration)

    monkeypatch.setattr(FakeCUDAKernel, "__getitem__", launch)
    train_ensemble(group("lstm", 2), diagnostics=False)
    kinds = {name for name, _ in used}
    assert {"to_device", "device_array", "copy_to_host", "copy_to_device", "launch"} <= kinds
    assert len(made) == 1
    strays = [(name, s) for name, s in used if s is not made[0]]
    assert not strays, strays


def test_ensembles_on_threads_train_to_the_same_bytes_as_one_at_a_time():
    """Two shape groups of different cells trained at once on two threads (under the
    simulator their launches interleave; on a GPU their kernels overlap) equal each trained
    alone: no state is shared between ensembles."""
    from ablate.cuda.engine import train_ensemble

    groups = [group("lstm", 2), group("gru", 3)]
    alone = [train_ensemble(specs, diagnostics=False) for specs in groups]
    with ThreadPoolExecutor(2) as pool:
        together = list(pool.map(lambda specs: train_ensemble(specs, diagnostics=False),
                                 groups))
    for a, b in zip(alone, together, strict=True):
        assert [without_timings(r) for r in a.results] == [without_timings(r) for r in b.results]
        for pa, pb in zip(a.params, b.params, strict=True):
            np.testing.assert_array_equal(pa, pb)


# ---------------------------------------------------------------- memory


class FakeMemory:
    """A GPU of ``total`` bytes whose free memory is what the ensembles hold short of it."""

    def __init__(self, total: int) -> None:
        self.total = total

    def get_memory_info(self):
        from ablate.cuda import memory

        with memory._LOCK:
            taken = sum(claim.total for claim in memory._HELD.values())
        return self.total - taken, self.total


def ensemble(M: int):
    from ablate.cuda.device import DeviceEnsemble

    return DeviceEnsemble("lstm", np.float32, M, 5, 3, 2, 3, 2, 4)


def sizes() -> tuple[int, int]:
    """(bytes, batch bytes) of a 4-model ensemble."""
    first = ensemble(4)
    try:
        return first.bytes_needed(), first.batch_bytes()
    finally:
        first.close()


def test_an_ensemble_waits_for_memory_another_thread_will_free(monkeypatch):
    from numba import cuda

    from ablate.cuda import memory

    needed, batches = sizes()
    # room for one: the second fits only once the first closes
    monkeypatch.setattr(cuda, "current_context", lambda: FakeMemory(needed + batches + 100))
    monkeypatch.setattr(memory, "_WAIT_SECONDS", 0.05)
    first = ensemble(4)
    order = []

    def second():
        order.append("asked")
        made = ensemble(4)
        order.append("admitted")
        made.close()

    thread = threading.Thread(target=second)
    thread.start()
    time.sleep(0.5)
    assert order == ["asked"]  # waiting, not failed
    order.append("closed")
    first.close()
    thread.join(10)
    assert order == ["asked", "closed", "admitted"]
    assert memory.held() == 0


def test_an_ensemble_that_cannot_fit_even_later_fails_at_once(monkeypatch):
    from numba import cuda

    needed, batches = sizes()
    monkeypatch.setattr(cuda, "current_context", lambda: FakeMemory(needed + batches + 100))
    first = ensemble(4)
    try:
        # twice the memory even once the first is gone
        with pytest.raises(ValueError, match=r"ensemble of 8 models needs .* --max-ensemble"):
            ensemble(8)
    finally:
        first.close()


def test_an_ensemble_never_waits_for_its_own_threads(monkeypatch):
    """The ensemble in the way belongs to the asking thread, which cannot close it while it
    waits: one clear error at once, not a hang (run on a thread, so a hang fails)."""
    from numba import cuda

    needed, batches = sizes()
    monkeypatch.setattr(cuda, "current_context", lambda: FakeMemory(needed + batches + 100))
    outcome = []

    def both_on_one_thread():
        first = ensemble(4)
        try:
            ensemble(4)
        except ValueError as error:
            outcome.append(str(error))
        finally:
            first.close()

    thread = threading.Thread(target=both_on_one_thread, daemon=True)
    thread.start()
    thread.join(20)
    assert not thread.is_alive(), "the second ensemble waited for its own thread's first"
    assert len(outcome) == 1 and "an ensemble of 4 models needs" in outcome[0]


def test_a_collected_ensemble_gives_its_memory_back():
    import gc

    from ablate.cuda import memory

    before = memory.held()
    made = ensemble(2)
    assert memory.held() == before + 1
    del made
    gc.collect()
    assert memory.held() == before


# ---------------------------------------------------------------- the sweep

SUITE = """
cells = ["lstm", "gru"]
seeds = 2
learning_rates = [1e-2]
hidden_sizes = [3]
[training]
budget = 2
batch_size = 4
eval_every = 2
[evaluation]
validation_batch = 8
test_batch = 8
[tasks.adding]
gaps = [1, 2]
"""


def comparable(ledger: Path) -> dict:
    from ablate.store import load

    frame = load(ledger, all_versions=True)
    assert (frame["status"] == "done").all()
    return {row.spec_key: {k: v for k, v in row.result.items() if k not in TIMINGS}
            for row in frame.itertuples()}


@pytest.fixture(scope="module")
def one_at_a_time(tmp_path_factory):
    from ablate.suite import load_suite
    from ablate.sweep import run_suite

    directory = tmp_path_factory.mktemp("one")
    (directory / "kc.toml").write_text(SUITE)
    summary = run_suite(load_suite(directory / "kc.toml"), directory / "results",
                        backend="cuda", workers=1, progress=False)
    assert (summary.done, summary.failed) == (8, 0)
    return comparable(summary.ledger)


def test_a_sweep_with_ensembles_at_once_records_what_one_at_a_time_does(tmp_path,
                                                                         one_at_a_time):
    from ablate.suite import load_suite
    from ablate.sweep import run_suite

    (tmp_path / "kc.toml").write_text(SUITE)
    summary = run_suite(load_suite(tmp_path / "kc.toml"), tmp_path / "results",
                        backend="cuda", progress=False)
    assert summary.workers == 4 and (summary.done, summary.failed) == (8, 0)
    assert differences(comparable(summary.ledger), one_at_a_time) == {}


def differences(got: dict, expected: dict) -> dict:
    """{run: {field: (got, expected)}} of the fields that differ: a short failure message."""
    assert got.keys() == expected.keys()
    found = {}
    for key, want in expected.items():
        fields = {name: (got[key].get(name), value) for name, value in want.items()
                  if got[key].get(name) != value}
        fields.update({name: (value, None) for name, value in got[key].items()
                       if name not in want})
        if fields:
            found[key] = fields
    return found


@pytest.mark.skipif(ON_GPU, reason="kills the worker; on a GPU that is a real crash to avoid")
def test_a_killed_cuda_worker_is_retried_and_nothing_is_lost(tmp_path, one_at_a_time):
    """SIGKILL the GPU worker process while its ensembles train: they train again in a new
    one, every run lands once with the same bytes, and the driver says so."""
    sys.path.insert(0, str(ROOT / "tests"))
    from test_sweep import _kill_a_worker

    (tmp_path / "kc.toml").write_text(SUITE)
    ledger = tmp_path / "results" / "kc" / "ledger.sqlite"
    driver = subprocess.Popen(
        [sys.executable, str(ROOT / "run_suite.py"), str(tmp_path / "kc.toml"), "--backend",
         "cuda", "--workers", "2", "--max-ensemble", "1", "--results", str(tmp_path / "results"),
         "--no-report", "--quiet"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = _kill_a_worker(driver, ledger, after_done=1, seconds=300)
    out, err = driver.communicate(timeout=600)
    assert killed is not None, "no worker was there to kill"
    assert driver.returncode == 0, err
    assert "trained again after their worker process died" in err
    assert "the CUDA worker process died (exit code -9)" in err
    assert "8 runs recorded" in out and "0 failed" in out
    assert comparable(ledger) == one_at_a_time
