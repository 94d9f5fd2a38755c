"""One worker process that trains several ensembles at once, each on its own thread: the
sweep's pool for the CUDA backend.

Why threads in one process: a GPU runs kernels of one process's streams side by side, but
time-slices between processes (one CUDA context each). A sweep trains one shape group
(one cell and gap, its seeds × learning rates) per ensemble; at 8 rows a thread such a
group of 6 models fills 6 of an H100's 132 SMs, and while its models are scored on the CPU
between intervals the GPU waits. With several ensembles in flight in one process, each on
its own stream (``DeviceEnsemble``), the groups share the GPU, and one group's scoring
overlaps the others' training. Their device memory is shared out by ``ablate.cuda.memory``.

To the sweep it looks like a one-process ``ProcessPoolExecutor``: ``submit`` returns a
Future per ensemble, and raises ``BrokenProcessPool`` once the process is dead; when the
process dies (a crash in a kernel, the OOM killer) every Future still in flight fails with
``BrokenProcessPool``, and the sweep trains those ensembles again in a new worker, as it
does for a broken pool.
"""

from __future__ import annotations

import itertools
import pickle
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from functools import partial

_POLL_SECONDS = 0.2  # how soon a dead worker is noticed


class ThreadedWorker:
    """A child process running up to ``ensembles`` calls at once, on threads."""

    def __init__(self, ensembles: int, mp_context, initializer: Callable, initargs: tuple
                 ) -> None:
        self._inbox = mp_context.Queue()
        self._outbox = mp_context.Queue()
        self._futures: dict[int, Future] = {}
        self._keys = itertools.count()
        self._lock = threading.Lock()
        self._closing = False
        self.process = mp_context.Process(
            target=_serve, args=(self._inbox, self._outbox, ensembles, initializer, initargs),
            name="ablate-gpu-worker", daemon=True)
        self.process.start()
        self._listener = threading.Thread(target=self._listen, name="ablate-gpu-results",
                                          daemon=True)
        self._listener.start()

    def submit(self, fn: Callable, *args) -> Future:
        future: Future = Future()
        with self._lock:
            if not self.process.is_alive() and not self._closing:
                # as ProcessPoolExecutor.submit does: the call never started
                raise BrokenProcessPool(self._death())
            key = next(self._keys)
            self._futures[key] = future
        self._inbox.put((key, fn, args))
        return future

    def kill(self) -> None:
        """Stop now: the ensembles in flight are lost (the sweep is stopping or broken)."""
        self._closing = True
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)
        with self._lock:
            for future in self._futures.values():
                future.cancel()
            self._futures.clear()

    def _listen(self) -> None:
        """Hand each reply to its Future; when the process has died, fail the rest."""
        while True:
            try:
                key, ok, payload = self._outbox.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                if self._closing:
                    return
                if not self.process.is_alive():
                    self._break()
                    return
                continue
            with self._lock:
                future = self._futures.pop(key, None)
            if future is not None and not future.cancelled():
                if ok:
                    future.set_result(payload)
                else:
                    future.set_exception(payload)

    def _break(self) -> None:
        with self._lock:
            futures, self._futures = list(self._futures.values()), {}
        for future in futures:
            if not future.cancelled():
                future.set_exception(BrokenProcessPool(self._death()))

    def _death(self) -> str:
        return (f"the CUDA worker process died (exit code {self.process.exitcode}) "
                "while it trained these ensembles")


def _serve(inbox, outbox, ensembles: int, initializer: Callable, initargs: tuple) -> None:
    """The child: run each call that arrives on a thread of its own, at most ``ensembles``
    at once (the driver sends no more than that), and send back what it returned or
    raised; None ends it."""
    initializer(*initargs)
    with ThreadPoolExecutor(ensembles, thread_name_prefix="ablate-ensemble") as pool:
        while (task := inbox.get()) is not None:
            key, fn, args = task
            pool.submit(fn, *args).add_done_callback(partial(_reply, outbox, key))


def _reply(outbox, key: int, future: Future) -> None:
    error = future.exception()
    if error is None:
        outbox.put((key, True, future.result()))
    else:
        outbox.put((key, False, _picklable(error)))


def _picklable(error: BaseException) -> BaseException:
    """The exception itself if it survives pickling (the queue pickles it on a thread of its
    own, where a failure would be lost and the driver would wait forever), else a
    RuntimeError with its first line."""
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:
        text = f"{type(error).__name__}: {error}".splitlines()[0]
        return RuntimeError(text)
    return error
