"""The on-disk kernel cache across processes: variants compiled apart must not mix.

Two processes each compile one LSTM-family variant (same factory, different flags) into a
fresh cache; a third loads both from the cache. Numba's own scheme (numbered data files,
symbols named by a per-process counter) let the third process run one variant's machine
code for the other; its results must equal those of the processes that compiled them.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """
import json, sys
import numpy as np
import ablate
results = {}
for name in sys.argv[1:]:
    params = ablate.init_params(name, 3, 5, 2, seed=1, dtype=np.float64)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 4, 3))
    target = rng.integers(0, 2, (6, 4))
    mask = np.ones((6, 4))
    loss, grad = ablate.loss_and_grad(name, params, x, target, mask, "xent", 5, 2)
    results[name] = [loss, float(np.abs(grad).sum())]
print(json.dumps(results))
"""


def run(cache_dir: Path, *names: str) -> dict:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache_dir), "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, *names], env=env, capture_output=True, text=True,
        check=True, cwd=ROOT,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_variants_compiled_in_different_processes_stay_apart(tmp_path):
    first = run(tmp_path, "lstm")
    second = run(tmp_path, "nig")
    assert any(tmp_path.rglob("*.nbc")), "nothing was cached"
    both = run(tmp_path, "lstm", "nig")
    assert both["lstm"] == first["lstm"]
    assert both["nig"] == second["nig"]
    assert both["lstm"] != both["nig"]


def _dispatchers_reachable(roots) -> list:
    """Every njit dispatcher a root calls, through closures and module globals."""
    from numba.core.dispatcher import Dispatcher

    seen, stack = {}, list(roots)
    while stack:
        dispatcher = stack.pop()
        if id(dispatcher) in seen:
            continue
        seen[id(dispatcher)] = dispatcher
        func = dispatcher.py_func
        cells = [cell.cell_contents for cell in func.__closure__ or ()]
        named = [func.__globals__.get(name) for name in func.__code__.co_names]
        stack.extend(v for v in cells + named if isinstance(v, Dispatcher))
    return list(seen.values())


def test_no_two_compiled_functions_share_a_name():
    """A cached kernel carries its callees under their qualified names (plus a per-process
    counter and the argument types): two different functions with one qualified name and
    the same argument types could be linked one for the other when kernels cached by
    different processes are loaded together. The wide and narrow tile sweeps did exactly
    that (wrong weight gradients, heap corruption in sweep workers)."""
    import numpy as np

    from ablate import cells
    from ablate.kernels.jit import _closure_key
    from ablate.train import trainer

    roots = []
    for name in cells.names():
        for dtype in (np.float32, np.float64):
            roots.extend(cells.kernels(name, dtype))
            roots.extend(cells.drivers(name, dtype))
            roots.append(trainer(name, dtype))
    functions = _dispatchers_reachable(roots)
    by_name: dict[str, set] = {}
    for dispatcher in functions:
        if dispatcher.targetoptions.get("inline") == "always":
            continue  # inlined into its callers' IR: never a symbol of its own
        func = dispatcher.py_func
        # a function is its code and what its closure holds (a factory's variants share code)
        variant = (func.__code__, _closure_key(func))
        by_name.setdefault(f"{func.__module__}.{func.__qualname__}", set()).add(variant)
    shared = {name: len(variants) for name, variants in by_name.items() if len(variants) > 1}
    assert not shared, shared
    assert len(functions) > 100  # the walk reached the kernels' callees
