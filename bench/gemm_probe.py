"""Probe: can a Numba loop nest beat OpenBLAS at the per-step recurrent product?

out [B, G] = h [B, H] Rᵀ with G = 4H (an lstm step), float32, one thread, CPU time of n
products in a compiled loop, best of 7 (``time.thread_time``: robust to other jobs):

  blas     ablate.kernels.products.blas_recurrent_product (OpenBLAS sgemm, R·hᵀ order)
  naive    out[b, :] += h[b, q] · Rᵀ[q, :] over q (the inner loop vectorises)
  blocked  4 rows × 32 columns accumulated in small arrays over q

    python bench/gemm_probe.py
"""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout
from cpu_time import best  # noqa: E402  (bench/ is the script's folder)
from numba import njit  # noqa: E402

from ablate.kernels.products import blas_recurrent_product  # noqa: E402
from ablate.model import _pin_blas_threads  # noqa: E402

_pin_blas_threads()
FL = {"error_model": "numpy", "nogil": True}




@njit(**FL)
def naive(h, RT, out):
    B, H = h.shape
    G = RT.shape[1]
    for b in range(B):
        for k in range(G):
            out[b, k] = 0
        for q in range(H):
            hv = h[b, q]
            for k in range(G):
                out[b, k] += hv * RT[q, k]

@njit(**FL)
def blocked(h, RT, out):
    """4 rows x 32 columns of out in registers, loop over q."""
    B, H = h.shape
    G = RT.shape[1]
    for b0 in range(0, B, 4):
        for k0 in range(0, G, 32):
            acc0 = np.zeros(32, np.float32)
            acc1 = np.zeros(32, np.float32)
            acc2 = np.zeros(32, np.float32)
            acc3 = np.zeros(32, np.float32)
            for q in range(H):
                h0, h1, h2, h3 = h[b0, q], h[b0 + 1, q], h[b0 + 2, q], h[b0 + 3, q]
                for kk in range(32):
                    r = RT[q, k0 + kk]
                    acc0[kk] += h0 * r
                    acc1[kk] += h1 * r
                    acc2[kk] += h2 * r
                    acc3[kk] += h3 * r
            for kk in range(32):
                out[b0, k0 + kk] = acc0[kk]
                out[b0 + 1, k0 + kk] = acc1[kk]
                out[b0 + 2, k0 + kk] = acc2[kk]
                out[b0 + 3, k0 + kk] = acc3[kk]

@njit(**FL)
def loop(fn, h, RT, out, n):
    for _ in range(n):
        fn(h, RT, out)

@njit(**FL)
def loop_blas(h, R, out, scratch, n):
    for _ in range(n):
        blas_recurrent_product(h, R, out, scratch)

for H, B in ((32, 32), (64, 32), (128, 32), (128, 16)):
    G = 4 * H
    rng = np.random.default_rng(0)
    h = rng.normal(size=(B, H)).astype(np.float32)
    R = rng.normal(size=(G, H)).astype(np.float32)
    RT = np.ascontiguousarray(R.T)
    out = np.zeros((B, G), np.float32)
    scratch = np.zeros((G, B), np.float32)
    n = max(10, int(2e8 / (2 * B * H * G)))
    flops = 2 * B * H * G * n
    res = {}
    res["blas"] = flops / best(loop_blas, h, R, out, scratch, n) / 1e9
    ref = out.copy()
    res["naive"] = flops / best(loop, naive, h, RT, out, n) / 1e9
    assert np.allclose(out, ref, rtol=1e-4, atol=1e-4)
    res["blocked"] = flops / best(loop, blocked, h, RT, out, n) / 1e9
    assert np.allclose(out, ref, rtol=1e-4, atol=1e-4)
    print(f"H={H} B={B}: " + "  ".join(f"{k} {v:.0f} GFLOP/s" for k, v in res.items()),
          flush=True)
