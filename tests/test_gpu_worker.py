"""The CUDA backend's worker (ablate.gpu_worker): one real child process that runs calls at
once on threads, sends back results and exceptions, and fails what was in flight with
BrokenProcessPool when it dies. No GPU needed: the calls here are plain Python."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import wait
from concurrent.futures.process import BrokenProcessPool

import pytest

from ablate.gpu_worker import ThreadedWorker

_BARRIERS: dict[int, threading.Barrier] = {}
_BARRIERS_LOCK = threading.Lock()


def _nothing_to_set_up() -> None:
    pass


def meet(parties: int) -> int:
    """Return once ``parties`` calls are inside at the same time (in the child): only
    calls that truly run at once get past the barrier."""
    with _BARRIERS_LOCK:
        barrier = _BARRIERS.setdefault(parties, threading.Barrier(parties))
    barrier.wait(timeout=20)
    return threading.get_ident()


def fail(kind: str) -> None:
    if kind == "value":
        raise ValueError("gap must be >= 1, got -3")
    raise Unpicklable("a lock inside\nsecond line")


class Unpicklable(Exception):
    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.lock = threading.Lock()  # pickling fails on the lock


def sleep_then_pid(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


@pytest.fixture
def worker():
    made = []

    def make(ensembles: int) -> ThreadedWorker:
        made.append(ThreadedWorker(ensembles, multiprocessing.get_context("spawn"),
                                   _nothing_to_set_up, ()))
        return made[-1]

    yield make
    for one in made:
        one.kill()


def test_calls_run_at_once_on_threads_of_one_process(worker):
    pool = worker(3)
    futures = [pool.submit(meet, 3) for _ in range(3)]
    done, _ = wait(futures, timeout=60)
    assert len(done) == 3
    assert len({future.result() for future in futures}) == 3  # three threads
    pids = {pool.submit(sleep_then_pid, 0).result(timeout=60) for _ in range(2)}
    assert pids == {pool.process.pid} != {os.getpid()}


def test_exceptions_come_back_with_their_type_and_text(worker):
    pool = worker(2)
    with pytest.raises(ValueError, match="gap must be >= 1, got -3"):
        pool.submit(fail, "value").result(timeout=60)
    with pytest.raises(RuntimeError, match=r"^Unpicklable: a lock inside$"):
        pool.submit(fail, "unpicklable").result(timeout=60)
    assert pool.submit(sleep_then_pid, 0).result(timeout=60) == pool.process.pid  # still up


def test_a_dead_worker_fails_what_was_in_flight_and_what_comes_after(worker):
    pool = worker(2)
    slow = [pool.submit(sleep_then_pid, 30) for _ in range(2)]
    time.sleep(1.0)  # both are running
    os.kill(pool.process.pid, signal.SIGKILL)
    for future in slow:
        with pytest.raises(BrokenProcessPool, match=r"died \(exit code -9\)"):
            future.result(timeout=30)
    with pytest.raises(BrokenProcessPool, match=r"died \(exit code -9\)"):
        pool.submit(sleep_then_pid, 0)  # refused at once, as ProcessPoolExecutor does
