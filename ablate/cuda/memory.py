"""GPU memory for ensembles trained at once in one process (the sweep's CUDA worker).

An ensemble asks for its bytes before it allocates (``admitted``) and gives them back when it
closes or is collected (``release``). The check and the allocation happen under one lock,
so two ensembles starting together cannot both count the same free memory. An ensemble
that does not fit the free memory now:

- waits, when it would fit once the ensembles of *other* threads have finished (they are
  training and will close);
- fails at once with one line naming ``--max-ensemble`` when it would not fit even then, or
  when the only ensembles in its way are its own thread's (waiting for them would never
  end).

Free memory as the driver reports it does not yet include the interval batches the others
will upload (``DeviceEnsemble.load_interval`` allocates them at their first interval), so
those count as taken.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from numba import cuda

_LOCK = threading.Condition()
_HELD: dict[int, Claim] = {}
_WAIT_SECONDS = 1.0  # re-read the free memory this often while waiting


@dataclass(frozen=True)
class Claim:
    total: int  # every byte of the ensemble
    batches: int  # of which its interval upload (allocated later)
    thread: int  # threading.get_ident() of its owner


@contextmanager
def admitted(key: int, needed: int, batches: int, n_models: int) -> Iterator[None]:
    """Wait until ``needed`` bytes fit, then hold them under ``key`` while the body
    allocates them (under the lock); an error in the body gives them back."""
    me = threading.get_ident()
    with _LOCK:
        while True:
            free, _ = cuda.current_context().get_memory_info()
            others = list(_HELD.values())
            available = free - sum(claim.batches for claim in others)
            if needed <= available:
                break
            theirs = sum(claim.total for claim in others if claim.thread != me)
            if needed > available + theirs:
                mine = sum(claim.total for claim in others if claim.thread == me)
                raise ValueError(_too_large(needed, free + mine + theirs, n_models))
            _LOCK.wait(_WAIT_SECONDS)
        _HELD[key] = Claim(needed, batches, me)
        try:
            yield
        except BaseException:
            del _HELD[key]
            raise


def release(key: int) -> None:
    """Give back what ``key`` held (nothing if it held nothing) and wake the waiting."""
    with _LOCK:
        if _HELD.pop(key, None) is not None:
            _LOCK.notify_all()


def free_pending() -> None:
    """Free now the device arrays Numba holds for a later batch of frees (it frees them
    when an allocation would fail, or after ten), so the free memory others wait for shows."""
    with _LOCK:
        pending = getattr(cuda.current_context(), "deallocations", None)  # none: the simulator
        if pending is not None:
            pending.clear()


def held() -> int:
    """Ensembles now holding memory in this process."""
    with _LOCK:
        return len(_HELD)


def _too_large(needed: int, free: int, n_models: int) -> str:
    fit = max(1, int(n_models * free / needed))
    return (f"an ensemble of {n_models} models needs {needed / 2**30:.1f} GiB of GPU memory, "
            f"{free / 2**30:.1f} GiB are free; use --max-ensemble {fit} or fewer")
