"""kernels/vector_width.py: 512-bit loops where the CPU has AVX-512, and the same bytes.

Each check runs in a fresh interpreter: Numba's CPU features are fixed once its CPU target
exists, so only a new process shows what importing ablate does to them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import llvmlite.binding as llvm
import pytest

ROOT = Path(__file__).resolve().parent.parent
AVX512 = bool(llvm.get_host_cpu_features().get("avx512f", False))
ENV = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_CPU")}

FEATURES = """
import json, sys
{before}
import ablate
from numba.core import config
from numba.core.registry import cpu_target
print(json.dumps([config.CPU_FEATURES or "", cpu_target.target_context.codegen()._tm_features]))
"""


def _run(script: str, **env) -> str:
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=dict(ENV, PYTHONPATH=str(ROOT), **env), timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


@pytest.mark.skipif(not AVX512, reason="no AVX-512: nothing to widen")
def test_importing_ablate_lifts_the_256_bit_preference():
    requested, used = json.loads(_run(FEATURES.format(before="")))
    assert requested.endswith(",-prefer-256-bit") and used == requested
    assert "+avx512f" in used


@pytest.mark.parametrize("setting, before", [
    ({"NUMBA_CPU_NAME": "generic"}, ""),
    ({"NUMBA_CPU_FEATURES": "+avx2,+fma"}, ""),
    ({}, "import numba\nnumba.njit(lambda: 1)()  # Numba code compiled before ablate"),
])
def test_a_chosen_target_or_an_earlier_compile_is_left_alone(setting, before):
    requested, used = json.loads(_run(FEATURES.format(before=before), **setting))
    assert "-prefer-256-bit" not in used
    assert requested == setting.get("NUMBA_CPU_FEATURES", "")


GRADIENTS = """
import sys
import numpy as np
from ablate import model
out = []
for name in ("lstm", "gru", "noaf"):
    rng = np.random.default_rng(11)
    p = model.init_params(name, 5, 19, 4, seed=2).astype(np.float32)
    p = (p + rng.normal(0, 0.3, p.size)).astype(np.float32)
    x = rng.normal(size=(13, 7, 5)).astype(np.float32)
    target = rng.integers(0, 4, (13, 7))
    mask = (rng.random((13, 7)) < 0.5).astype(np.float32)
    r = model.loss_grad_flow(name, p, x, target, mask, "xent", 19, 4)
    out += [np.float32(r.loss).tobytes(), r.grad.tobytes(), r.dh_norm.tobytes()]
print(b"".join(out).hex())
"""


@pytest.mark.skipif(not AVX512, reason="no AVX-512: nothing to widen")
def test_512_bit_loops_give_the_bytes_of_256_bit_loops():
    """float32 loss, gradients and error-flow norms of lstm, gru and noaf: bit for bit the
    same at either width (a process given the host's plain features keeps 256 bits)."""
    wide = _run(GRADIENTS)
    narrow = _run(GRADIENTS, NUMBA_CPU_FEATURES=llvm.get_host_cpu_features().flatten())
    assert len(wide) > 1000 and wide == narrow
