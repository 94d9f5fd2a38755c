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
