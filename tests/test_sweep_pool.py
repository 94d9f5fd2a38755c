"""The sweep's pool loop (ablate.sweep._local_results) when a pool breaks, driven by a
scripted stand-in for ProcessPoolExecutor, so that each way a pool can break is hit every
time rather than by the luck of a race: a future failing with BrokenProcessPool, a submit
refused because a worker died since the last one, and a pool dead before it took any work.
(tests/test_sweep.py kills a real worker; these pin down what the loop does with it.)"""

from __future__ import annotations

from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool

import pytest

from ablate import sweep
from ablate.results import RunSpec

GROUPS = [[RunSpec("lstm", "copy", gap=gap)] for gap in (3, 4, 5)]


class ScriptedPool:
    """Each pool made takes the next script: per submit, "ok" (a finished future with the
    gap as its result), "fail" (a future failed with BrokenProcessPool, as when the worker
    running it died) or "refuse" (submit raises, as after a worker died); past its script's
    end, "ok"."""

    scripts: list[list[str]] = []
    made: list[ScriptedPool] = []

    def __init__(self, workers, **_options) -> None:
        self.script = list(ScriptedPool.scripts.pop(0)) if ScriptedPool.scripts else []
        self.submitted: list[int] = []
        ScriptedPool.made.append(self)

    def submit(self, fn, dicts, threads, backend) -> Future:
        action = self.script.pop(0) if self.script else "ok"
        if action == "refuse":
            raise BrokenProcessPool("A child process terminated abruptly")
        self.submitted.append(dicts[0]["gap"])
        future: Future = Future()
        if action == "fail":
            future.set_exception(BrokenProcessPool("A child process terminated abruptly"))
        else:
            future.set_result(([dicts[0]["gap"]], 1.0))
        return future

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        pass


@pytest.fixture
def pools(monkeypatch):
    ScriptedPool.scripts, ScriptedPool.made = [], []
    monkeypatch.setattr(sweep, "ProcessPoolExecutor", ScriptedPool)
    return ScriptedPool


def outcomes(workers: int = 2) -> list[tuple[int, str]]:
    """(gap, what the stream said) in the order the stream said it."""
    said = []
    for group, outcome, _busy in sweep._local_results(GROUPS, workers, threads=1):
        gap = group[0].gap
        if isinstance(outcome, list):
            assert outcome == [gap]
            said.append((gap, "trained"))
        elif isinstance(outcome, sweep.Retried):
            said.append((gap, "retried"))
        else:
            assert isinstance(outcome, BrokenProcessPool), outcome
            said.append((gap, "failed"))
    return said


def test_a_submit_refused_after_a_worker_died_goes_to_the_next_pool_unretried(pools):
    """The race CI met: a worker died after the first ensemble was taken, and the next
    submit raised BrokenProcessPool instead of the driver crashing with it."""
    pools.scripts = [["ok", "refuse"]]
    said = outcomes()
    assert sorted(said) == [(3, "trained"), (4, "trained"), (5, "trained")]
    assert [pool.submitted for pool in pools.made] == [[3], [4, 5]]


def test_a_future_broken_in_flight_is_retried_once_and_said_so(pools):
    pools.scripts = [["ok", "fail"]]
    said = outcomes()
    assert said.count((4, "retried")) == 1
    assert sorted(set(said) - {(4, "retried")}) == [(3, "trained"), (4, "trained"),
                                                      (5, "trained")]
    assert len(said) == 4


def test_pools_dead_at_birth_fail_each_ensemble_after_two_breaks_and_end(pools):
    """A pool that refuses its very first submit took no work: counting that against the
    ensemble is what stops the loop making dead pools forever."""
    pools.scripts = [["refuse"]] * (2 * len(GROUPS))
    said = outcomes()
    assert said == [(3, "retried"), (3, "failed"), (4, "retried"), (4, "failed"),
                    (5, "retried"), (5, "failed")]
    assert all(pool.submitted == [] for pool in pools.made)


def test_a_pool_that_keeps_breaking_in_flight_fails_those_ensembles(pools):
    pools.scripts = [["fail", "fail"], ["fail", "fail"]]
    said = outcomes()
    for gap in (3, 4):  # in flight in both broken pools: said once each, in this order
        assert [what for g, what in said if g == gap] == ["retried", "failed"]
    assert said[4:] == [(5, "trained")] and len(pools.made) == 3
