"""The cells' other product route (OpenBLAS, where the CPU lacks AVX-512) on this machine.

``kernels/products.py`` picks the register tiles on an AVX-512 host and OpenBLAS elsewhere,
so on any one machine the gradient checks against PyTorch exercise one route only. Here a
subprocess compiles for a generic x86-64 target (NUMBA_CPU_NAME=generic: no tiles) and its
float64 loss and gradients must equal this process's to 1e-11 relative. The cells chosen
reach every per-step product: R (lstm, gru), R_gates (fgr), P_c (single_net), P_h
(net_readout), W_u (use_gate).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ablate import model
from ablate.kernels.tiled_product import AVAILABLE

ROOT = Path(__file__).resolve().parent.parent
CELLS = ("lstm", "gru", "fgr", "single_net", "net_readout", "use_gate")
T, B, I, H, O = 9, 5, 3, 7, 4

SCRIPT = f"""
import json, sys
import numpy as np
from ablate import model
from ablate.kernels.tiled_product import AVAILABLE
out = {{"tiled": AVAILABLE}}
for name in sys.argv[1:]:
    p, x, target, mask = (np.asarray(v) for v in json.loads(sys.stdin.readline()))
    r = model.loss_grad_flow(name, p, x, target.astype(np.int64), mask, "xent", {H}, {O})
    out[name] = [float(r.loss), r.grad.tolist()]
print(json.dumps(out))
"""


def _problem(name, seed):
    rng = np.random.default_rng(seed)
    p = model.init_params(name, I, H, O, seed=seed, dtype=np.float64)
    p = p + rng.normal(0, 0.2, p.size)
    x = rng.normal(size=(T, B, I))
    target = rng.integers(0, O, (T, B))
    mask = (rng.random((T, B)) < 0.5).astype(np.float64)
    return p, x, target, mask


@pytest.mark.skipif(not AVAILABLE, reason="this machine takes the OpenBLAS route itself")
@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86-64 target")
def test_generic_target_equals_this_route():
    problems = {name: _problem(name, seed) for seed, name in enumerate(CELLS)}
    env = dict(os.environ, NUMBA_CPU_NAME="generic", PYTHONPATH=str(ROOT))
    stdin = "".join(json.dumps([a.tolist() for a in problems[n]]) + "\n" for n in CELLS)
    done = subprocess.run([sys.executable, "-c", SCRIPT, *CELLS], input=stdin, env=env,
                          capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    other = json.loads(done.stdout.splitlines()[-1])
    assert other["tiled"] is False  # the subprocess took the OpenBLAS route
    for name in CELLS:
        p, x, target, mask = problems[name]
        here = model.loss_grad_flow(name, p, x, target, mask, "xent", H, O)
        loss, grad = other[name]
        np.testing.assert_allclose(loss, here.loss, rtol=1e-11)
        np.testing.assert_allclose(np.array(grad), here.grad, rtol=1e-11, atol=1e-13)
