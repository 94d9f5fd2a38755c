"""What ablate.cuda.simulator changes under Numba's CUDA simulator, checked where it matters:
the switch interval, barriers without the simulator's poller, one shared array per call
site for every thread of a launch, and no host code that reads ``cuda`` in a module whose
globals a simulated launch rebinds."""

from __future__ import annotations

import ast
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("numba.cuda")

from numba import cuda, float64  # noqa: E402  (module globals: a launch rebinds ``cuda``)

ROOT = Path(__file__).resolve().parent.parent
ON_GPU = os.environ.get("ABLATE_TEST_GPU") == "1"
pytestmark = pytest.mark.skipif(ON_GPU, reason="the simulator's own behaviour")


def test_the_simulator_hands_the_gil_over_sooner():
    """Under the simulator a block's threads share the GIL; at Python's 5 ms switch interval
    one that waits for another spends its turns idle (ablate.cuda.simulator)."""
    import ablate.cuda.device  # noqa: F401  (sets it on import)
    from ablate.cuda import simulator

    assert simulator.active()
    assert sys.getswitchinterval() <= simulator.SWITCH_INTERVAL_S


THREADS = 32


def block_sum(out):
    """out[0] = Σ_tid (tid + 1) through a shared array, as the Adam kernel sums squares."""
    partial = cuda.shared.array(THREADS, float64)
    tid = cuda.threadIdx.x
    partial[tid] = tid + 1
    cuda.syncthreads()
    if tid == 0:
        total = 0.0
        for k in range(THREADS):
            total += partial[k]
        out[0] = total


def test_every_thread_of_a_block_gets_the_one_shared_array(monkeypatch):
    """A simulated thread switched out between the simulator's lookup of a shared array and
    its store kept an array of its own: here np.empty sleeps in that window, so without
    ``shared_arrays_made_once`` thread 0 sums the others' unwritten slots."""
    import ablate.cuda.device  # noqa: F401  (installs it on import)

    kernel = cuda.jit(block_sum)
    make = np.empty

    def slow(*args, **kwargs):
        time.sleep(0.002)  # a switch to another simulated thread, for certain
        return make(*args, **kwargs)

    out = np.zeros(1)
    monkeypatch.setattr(np, "empty", slow)
    kernel[1, THREADS](out)
    monkeypatch.setattr(np, "empty", make)
    assert out[0] == THREADS * (THREADS + 1) / 2


ROUNDS = 40


def neighbour_chain(out, stop_at):
    """Each round thread t adds its neighbour's last value to its own, between two barriers;
    thread t returns after stop_at[t] rounds (a thread that has returned no longer holds a
    barrier, as under the simulator's poller)."""
    values = cuda.shared.array(THREADS, float64)
    tid = cuda.threadIdx.x
    values[tid] = tid
    cuda.syncthreads()
    for r in range(ROUNDS):
        if r == stop_at[tid]:
            return
        seen = values[(tid + 1) % THREADS]
        cuda.syncthreads()
        values[tid] += seen
        out[r, tid] = values[tid]
        cuda.syncthreads()


def neighbour_chain_on_the_host(stop_at) -> np.ndarray:
    values = np.arange(THREADS, dtype=float)
    out = np.zeros((ROUNDS, THREADS))
    for r in range(ROUNDS):
        live = stop_at > r
        seen = np.roll(values, -1)
        values = np.where(live, values + seen, values)
        out[r] = np.where(live, values, 0.0)
    return out


def test_barriers_without_the_poller_order_every_round():
    """Every round's reads see the last round's writes and no thread runs ahead: the values
    equal the host's, with threads returning at different rounds meanwhile."""
    from numba.cuda.simulator import kernel as simulated

    import ablate.cuda.device  # noqa: F401  (installs it on import)

    assert getattr(simulated.BlockManager.run, "without_polling", False)
    stop_at = np.full(THREADS, ROUNDS, dtype=np.int64)
    stop_at[[3, 17]] = [5, 22]
    out = np.zeros((ROUNDS, THREADS))
    cuda.jit(neighbour_chain)[1, THREADS](out, stop_at)
    np.testing.assert_array_equal(out, neighbour_chain_on_the_host(stop_at))


def fails_in_one_thread(out):
    tid = cuda.threadIdx.x
    for r in range(ROUNDS):
        cuda.syncthreads()
        if tid == 5 and r == 3:
            out[THREADS + 100] = 1.0  # out of bounds: an IndexError in thread 5 alone
        out[tid] = r


def test_an_error_in_one_thread_stops_the_block_and_names_the_thread():
    """The others, waiting at the barrier, stop instead of waiting for ever, and the launch
    raises thread 5's error with its indices, as the simulator's poller did."""
    import ablate.cuda.device  # noqa: F401

    out = np.zeros(THREADS)
    with pytest.raises(IndexError, match=r"tid=\[5, 0, 0\]"):
        cuda.jit(fails_in_one_thread)[2, THREADS](out)
    assert out.max() <= 3


def _compiled(tree: ast.Module) -> list[ast.FunctionDef]:
    """The functions decorated with cuda.jit (kernels or device functions) in a module."""
    return [node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)
            and any("cuda.jit" in ast.unparse(d) for d in node.decorator_list)]


def _kernel_modules() -> dict[str, tuple[ast.Module, list[ast.FunctionDef]]]:
    """ablate/cuda's modules that define anything with cuda.jit, with their syntax trees and
    those functions: a simulated launch rebinds their ``cuda`` to a stand-in while it runs."""
    found = {}
    for path in sorted((ROOT / "ablate" / "cuda").glob("*.py")):
        tree = ast.parse(path.read_text())
        if functions := _compiled(tree):
            found[path.name] = tree, functions
    return found


def test_no_host_code_reads_cuda_where_a_launch_rebinds_it():
    """While a simulated kernel runs, ``cuda`` in its module (and in its device functions')
    is the simulator's stand-in, which has no device_array or to_device: host code there
    on another thread would fail. So outside the compiled functions those modules may only
    build kernels (``cuda.jit``, under ``simulator.turn()``); allocations and copies live in
    ablate.cuda.device."""
    modules = _kernel_modules()
    assert set(modules) >= {"adam.py", "evaluation.py", "lstm_family.py", "simple_family.py",
                            "readout.py"}
    strays = []
    for name, (tree, functions) in modules.items():
        compiled = {id(inner) for function in functions for inner in ast.walk(function)}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id == "cuda" and id(node) not in compiled
                    and node.attr != "jit"):
                strays.append(f"{name}:{node.lineno} cuda.{node.attr}")
    assert not strays, strays


def test_the_kernels_index_through_a_plain_function_under_the_simulator():
    """ablate.cuda.index.at is the device function on a GPU; under the simulator the plain
    one, since each simulated device-function call costs a swap of the module's globals
    (the CUDA tests ran 4× slower, and CI neared its 20 minutes). Same values, and a
    negative index still fails instead of wrapping."""
    from ablate.cuda import index

    assert index.at is index.unsigned
    data = np.arange(5.0)
    assert data[index.at(np.int64(3))] == 3.0
    with pytest.raises((IndexError, OverflowError)):
        data[index.at(np.int64(-1))]
