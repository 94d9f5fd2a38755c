"""Run a suite: skip what the ledger holds, pack runs into ensembles, schedule, record.

    suite = ablate.suite.load_suite("suites/why_gates.toml")
    summary = run_suite(suite, results_root="results", workers=2)

The driver (this process) is the only writer of ``results/<suite>/ledger.sqlite``. It
adds every run of the suite as 'pending', asks the ledger which are not done yet, packs
those that share shapes (``RunSpec.shape_key``) into ensembles of at most
``max_ensemble`` runs, and hands each ensemble to a worker: a local process pool (the
default, one single-threaded ensemble per core) or a Dask distributed cluster
(``scheduler="tcp://host:port"``). Each finished ensemble is recorded in one transaction,
so a kill at any moment loses at most the ensembles in flight, and running the same
command again resumes with exactly the runs that are missing. A model's numbers depend
only on its own spec (``ablate.train``), so how runs are packed, which worker trains
them and how often the sweep was interrupted does not change a single byte of a result
(timings aside).

Workers are separate processes, so a crash inside compiled code costs one ensemble, never
the driver: the ensembles in flight go back to the queue of a new pool (the summary lists
them), and one that was in flight at ``_MAX_POOL_BREAKS`` crashes is recorded as failed
(retried on the next resume). A local worker dies with the driver (Linux
``PR_SET_PDEATHSIG``): killing ``run_suite.py`` leaves no orphans computing results nobody
will record.

With ``backend="cuda"`` the local pool is one process (one CUDA context) that trains
``workers`` ensembles at once on threads, a CUDA stream each (``ablate.gpu_worker``;
default ``CUDA_ENSEMBLES``); a crash there sends its ensembles back to the queue the same way.
"""

from __future__ import annotations

import ctypes
import math
import multiprocessing
import os
import shutil
import signal
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

from ablate.gpu_worker import ThreadedWorker
from ablate.results import RunResult, RunSpec

__all__ = ["run_suite", "pack", "train_group", "SweepSummary", "BACKENDS", "usable_cores"]

BACKENDS = ("cpu", "cuda")
CUDA_MAX_ENSEMBLE = 128  # one launch trains them all; 128 × (H64, B32) still fits an H100
# Ensembles trained at once on the GPU, each on a thread and stream of one process: one
# shape group (6-15 models) leaves most of a GPU idle. Measured on an H200 (bench/gpu.py,
# groups of 6 lstm models, H64 B32 T100): 1, 2, 4 and 8 at once gave 1,122, 1,990, 2,995
# and 3,504 model-steps/s, so 8 (bench/RESULTS.md, 2026-12-04).
CUDA_ENSEMBLES = 8
MAX_ENSEMBLE = 16  # runs per ensemble call: big enough to amortise setup, small enough to balance


def usable_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def default_workers(backend: str, n_ensembles: int) -> int:
    """Local workers when --workers is not given: on the CPU a process per core, on the GPU
    CUDA_ENSEMBLES ensembles at once; never more than there are ensembles."""
    most = CUDA_ENSEMBLES if backend == "cuda" else usable_cores()
    return max(1, min(most, n_ensembles))


# ---------------------------------------------------------------- packing


def pack(specs: Sequence[RunSpec], max_ensemble: int = MAX_ENSEMBLE) -> list[list[RunSpec]]:
    """Runs grouped by shape, each group cut into near-equal ensembles of ≤ max_ensemble.

    Groups keep the order of first appearance, runs keep their order within a group; the
    biggest ensembles (by estimated cost) go first so the last ones to finish are small.
    """
    if max_ensemble < 1:
        raise ValueError(f"max_ensemble must be an integer >= 1, got {max_ensemble!r}")
    groups: dict[tuple, list[RunSpec]] = {}
    for spec in specs:
        groups.setdefault(spec.shape_key(), []).append(spec)
    packed = []
    for group in groups.values():
        n_parts = math.ceil(len(group) / max_ensemble)
        small, extra = divmod(len(group), n_parts)  # sizes differ by at most one
        start = 0
        for part in range(n_parts):
            size = small + (part < extra)
            packed.append(group[start : start + size])
            start += size
    return sorted(packed, key=_group_cost, reverse=True)


def _group_cost(group: list[RunSpec]) -> float:
    """Relative work of an ensemble, to start the longest first: runs × budget × gap × H²
    (a step's time grows with the sequence length and, above H≈32, with H²)."""
    return sum(spec.budget * (spec.gap + 10) * (spec.n_hidden + 16) ** 2 for spec in group)


# ---------------------------------------------------------------- the worker side


def train_group(spec_dicts: list[dict], threads: int = 1, backend: str = "cpu") -> list[dict]:
    """Train one ensemble (RunSpec dicts in, RunResult dicts out); runs on a worker.

    Plain dicts cross the process boundary so a Dask worker needs nothing but ablate.
    """
    if backend == "cuda":
        from ablate.cuda.engine import train_ensemble
    else:
        from ablate.train import train_ensemble

    specs = [RunSpec.from_dict(data) for data in spec_dicts]
    trained = train_ensemble(specs, threads=threads)
    return [result.to_dict() for result in trained.results]


def _worker_init(threads: int) -> None:
    """Local pool worker: die with the driver; BLAS and chunk threads as assigned."""
    os.environ["ABLATE_NUM_THREADS"] = str(threads)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: an orphan finishes its ensemble and exits when the pipe closes
    if os.getppid() == 1:  # the driver died before prctl took effect
        os._exit(1)


# ---------------------------------------------------------------- the driver


@dataclass(frozen=True)
class Retried:
    """An ensemble's outcome in the stream when its worker died and it went back to the queue
    of a new pool: not a result, a note that it will be trained again, and why."""

    reason: str


@dataclass
class SweepSummary:
    suite: str
    ledger: Path
    total: int  # runs in the suite
    skipped: int  # already done in the ledger before this sweep
    done: int = 0  # recorded by this sweep
    failed: int = 0
    diverged: int = 0
    wall_seconds: float = 0.0
    busy_seconds: float = 0.0  # Σ over ensembles of the worker's time inside train_ensemble
    workers: int = 1  # local pool processes (a Dask cluster's size is not known here)
    local: bool = True
    failures: list[str] = field(default_factory=list)
    # ensembles whose worker died (a crash in compiled code, the OOM killer) and that were
    # trained again: their results count, but a crash is a bug to know about
    retried: list[str] = field(default_factory=list)

    @property
    def overhead_fraction(self) -> float | None:
        """1 − (busy worker time / (workers · wall)): what the runner costs beyond training;
        None on a Dask cluster, whose worker count may change during the sweep."""
        if not self.local or self.wall_seconds <= 0 or self.done == 0:
            return None
        return max(0.0, 1.0 - self.busy_seconds / (self.workers * self.wall_seconds))


def run_suite(
    suite,
    results_root: str | Path = "results",
    *,
    workers: int | None = None,
    backend: str = "cpu",
    scheduler: str | None = None,
    fresh: bool = False,
    max_ensemble: int = MAX_ENSEMBLE,
    progress: bool = True,
    on_result: Callable[[RunResult], None] | None = None,
) -> SweepSummary:
    """Run every run of ``suite`` the ledger does not hold yet; see the module docstring.

    ``fresh``: move an existing ledger aside (``ledger.<time>.sqlite``, nothing is deleted)
    and start a new one.
    """
    from ablate.shards import import_shards
    from ablate.store import Ledger, kernel_version

    check_backend(backend)
    ledger_path = Path(results_root) / suite.name / "ledger.sqlite"
    if fresh and ledger_path.exists():
        Ledger(ledger_path).close()  # refuses a ledger in use or a foreign file; folds the WAL in
        _move_aside(ledger_path)
    started = time.perf_counter()
    with Ledger(ledger_path, kernel_version=kernel_version(backend)) as ledger:
        import_shards(ledger)  # finished runs carried as shards (a checkout, another machine)
        ledger.set_meta(suite=suite.name, suite_text=suite.text, protocol=suite.protocol,
                        description=suite.description)
        ledger.add(suite.specs)
        todo = ledger.pending(suite.specs)
        summary = SweepSummary(suite.name, ledger_path, len(suite.specs),
                               len(suite.specs) - len(todo))
        if not todo:
            return summary
        groups = pack(todo, max_ensemble)
        if scheduler is None:
            cores = usable_cores()
            summary.workers = workers or default_workers(backend, len(groups))
            if backend == "cuda":  # ensembles at once in one process (ablate.gpu_worker)
                threads = cores  # each scores its models between intervals, at other times
            else:
                threads = max(1, cores // summary.workers)
            stream = _local_results(groups, summary.workers, threads, backend)
        else:
            stream = _dask_results(groups, scheduler, backend)
            summary.local = False
        bar = _progress_bar(summary, suite.specs, todo) if progress else None
        try:
            for group, outcome, busy in stream:
                if isinstance(outcome, Retried):
                    summary.retried.append(_group_line(group, outcome.reason))
                    continue
                if isinstance(outcome, BaseException):
                    message = _one_line(outcome)
                    ledger.record_failure(group, message)
                    summary.failed += len(group)
                    summary.failures.append(_group_line(group, message))
                else:
                    results = [RunResult.from_dict(data) for data in outcome]
                    ledger.record(results)
                    summary.done += len(results)
                    summary.diverged += sum(result.diverged for result in results)
                    summary.busy_seconds += busy
                    if on_result is not None:
                        for result in results:
                            on_result(result)
                if bar is not None:
                    bar.set_postfix_str(_progress_text(summary), refresh=False)
                    # draws the counts with the new position; never past the total, which
                    # a sum of the groups' estimates in another order can pass by an ulp
                    # (tqdm then warns "clamping frac" and shows "-00:00 to go")
                    bar.update(min(_work(group), bar.total - bar.n))
        finally:
            stream.close()
            if bar is not None:
                bar.close()
            summary.wall_seconds = time.perf_counter() - started
    return summary


def _one_line(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}".splitlines()[0]


def _group_line(group: list[RunSpec], text: str) -> str:
    """An ensemble in the summary: its first run, how many others, and what happened."""
    return f"{group[0].run_id} (+{len(group) - 1}): {text}"


def check_backend(backend: str) -> None:
    """ValueError with one line unless ``backend`` is known and can run on this machine."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; allowed: {', '.join(BACKENDS)}")
    if backend == "cuda":
        from ablate.cuda import CudaUnavailable, require

        try:
            require()
        except CudaUnavailable as error:
            raise ValueError(str(error)) from None


def _move_aside(path: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.stem}.{stamp}{path.suffix}")
    shutil.move(path, target)
    for suffix in ("-wal", "-shm"):
        side = Path(f"{path}{suffix}")
        if side.exists():
            shutil.move(side, Path(f"{target}{suffix}"))
    return target


def _timed_group(spec_dicts: list[dict], threads: int, backend: str = "cpu"
                 ) -> tuple[list[dict], float]:
    started = time.perf_counter()
    results = train_group(spec_dicts, threads, backend)
    return results, time.perf_counter() - started


def _local_results(
    groups: list[list[RunSpec]], workers: int, threads: int, backend: str = "cpu"
) -> Iterator[tuple[list[RunSpec], object, float]]:
    """(group, result dicts or the exception, busy seconds) as ensembles finish.

    At most ``workers`` ensembles are in flight, so when a worker dies (a crash in compiled
    code, the OOM killer) and breaks the pool, the ensembles it may have held are known:
    they go back to the queue of a new pool (each yielded once with a ``Retried`` note), and
    one that was in flight in ``_MAX_POOL_BREAKS`` broken pools is reported failed instead
    of being retried forever. A pool that broke since the last submit refuses the next one:
    that ensemble never started and waits for the next pool, unless the pool had taken no
    work at all (dead at birth), which counts as a break against it.
    """
    context = multiprocessing.get_context("spawn")  # never fork a process that has threads
    queue = deque(groups)
    breaks: dict[int, int] = {}
    while queue:
        if backend == "cuda":  # one process, one CUDA context: workers are its threads
            pool = ThreadedWorker(workers, context, _worker_init, (threads,))
        else:
            pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_init,
                                       initargs=(threads,))
        running: dict[Future, list[RunSpec]] = {}
        refused: list[list[RunSpec]] = []  # by a pool that died before it took any work
        try:
            broken = None
            while (queue or running) and broken is None:
                while queue and len(running) < workers and broken is None:
                    group = queue.popleft()
                    dicts = [spec.to_dict() for spec in group]
                    try:
                        running[pool.submit(_timed_group, dicts, threads, backend)] = group
                    except BrokenProcessPool as error:  # a worker died since the last submit
                        broken = error
                        if running:  # never started: back to the queue, not held against it
                            queue.appendleft(group)
                        else:  # a pool dead at birth is held against it, or it loops forever
                            refused.append(group)
                if not running:
                    break
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    group = running.pop(future)
                    try:
                        results, busy = future.result()
                    except BrokenProcessPool as error:
                        broken = error
                        running[future] = group  # back with the others in flight
                    except Exception as error:  # raised inside training: these runs only
                        yield group, error, 0.0
                    else:
                        yield group, results, busy
            for group in [*running.values(), *refused]:  # only after a break
                breaks[id(group)] = breaks.get(id(group), 0) + 1
                if breaks[id(group)] >= _MAX_POOL_BREAKS:
                    yield group, broken, 0.0
                else:
                    queue.appendleft(group)
                    yield group, Retried(_one_line(broken)), 0.0
        finally:
            _terminate(pool)


_MAX_POOL_BREAKS = 2


def _terminate(pool: ProcessPoolExecutor | ThreadedWorker) -> None:
    """Stop a pool now, killing ensembles in flight (the driver is stopping or broken)."""
    if isinstance(pool, ThreadedWorker):
        pool.kill()
        return
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.kill()


def _dask_results(
    groups: list[list[RunSpec]], scheduler: str, backend: str = "cpu"
) -> Iterator[tuple[list[RunSpec], object, float]]:
    """The same stream from a Dask distributed cluster at ``scheduler``.

    Dask reschedules a task whose worker died (up to ``distributed.scheduler.allowed-
    failures`` times); ``retries`` adds retries for exceptions raised by the task.
    """
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise ValueError(
            "--scheduler needs Dask distributed: pip install 'ablate[dist]'"
        ) from None
    try:
        client = Client(scheduler, timeout="20s")
    except OSError as error:
        raise ValueError(f"cannot reach the Dask scheduler at {scheduler}: {error}") from None
    try:
        futures = {}
        for group in groups:
            future = client.submit(_timed_group, [s.to_dict() for s in group], 1, backend,
                                   pure=False, retries=2)
            futures[future] = group
        for future in as_completed(futures):
            group = futures[future]
            try:
                results, busy = future.result()
            except Exception as error:
                yield group, error, 0.0
            else:
                yield group, results, busy
    finally:
        client.close()


def _work(specs: Sequence[RunSpec]) -> float:
    """The runs' estimated core-seconds (``ablate.cost``): what the progress bar counts."""
    from ablate.cost import estimate_seconds

    return sum(estimate_seconds(spec) for spec in specs)


def _progress_text(summary: SweepSummary) -> str:
    finished = summary.done + summary.skipped + summary.failed
    return (f"runs {finished}/{summary.total}: done {summary.done + summary.skipped}, "
            f"failed {summary.failed}, diverged {summary.diverged}")


def _progress_bar(summary: SweepSummary, specs: Sequence[RunSpec], todo: Sequence[RunSpec]):
    """A bar over the estimated work, not the run count: a suite's runs differ in cost by
    1000× (gap 10 against gap 1000), and its longest run first, so a bar counting runs would
    extrapolate the first hours' rate to every run (why_gates: "110 h" at 4%, against 10.7 h).
    With the model's estimate as each run's weight, the time left is the work left at the
    rate measured so far, whatever constant factor the model is off by."""
    from tqdm import tqdm

    total = _work(specs)
    bar = tqdm(total=total, initial=total - _work(todo), smoothing=0, desc=summary.suite,
               dynamic_ncols=True,
               bar_format="{desc}: {percentage:3.0f}% of the estimated work |{bar}| "
                          "{elapsed} so far, {remaining} to go{postfix}")
    bar.set_postfix_str(_progress_text(summary))
    return bar
