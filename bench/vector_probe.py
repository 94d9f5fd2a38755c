"""The per-step recurrent product: register tiles (ablate.kernels.tiled_product) against OpenBLAS.

out [B, G] = h [B, H] · Rᵀ (G = 4H, an lstm step forward) and dL/dh = d [B, G] · R (its
backward), float32, one thread. CPU time (``time.thread_time``) of n products in one compiled
loop, best of 7, both routes in the same process; GFLOP/s printed. The tiled route includes
nothing of the packing, which a kernel does once per sequence (R is fixed over a step).

    python bench/vector_probe.py
"""

import sys
from pathlib import Path

import numpy as np
from numba import njit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout
from cpu_time import best  # noqa: E402  (bench/ is the script's folder)

from ablate.kernels.products import blas_recurrent_product  # noqa: E402
from ablate.kernels.tiled_product import (  # noqa: E402
    AVAILABLE,
    pack_panels,
    padded_width,
    tiled_product,
)
from ablate.model import _pin_blas_threads  # noqa: E402

_pin_blas_threads()
FLAGS = {"error_model": "numpy", "nogil": True}


@njit(**FLAGS)
def forward_blas(h, R, out, scratch, n):
    for _ in range(n):
        blas_recurrent_product(h, R, out, scratch)


@njit(**FLAGS)
def backward_blas(d, R, out, n):
    for _ in range(n):
        np.dot(d, R, out)


@njit(**FLAGS)
def tiled(a, panels, out, n):
    for _ in range(n):
        tiled_product(a, panels, out)


def main() -> None:
    print(f"register tiles {'used' if AVAILABLE else 'NOT used (no AVX-512)'} by the kernels here")
    for H, B in ((32, 32), (64, 32), (128, 32), (128, 16), (256, 32)):
        G = 4 * H
        rng = np.random.default_rng(0)
        h = rng.normal(size=(B, H)).astype(np.float32)
        d = rng.normal(size=(B, G)).astype(np.float32)
        R = rng.normal(size=(G, H)).astype(np.float32)
        n = max(10, int(2e8 / (2 * B * H * G)))
        gflop = 2 * B * H * G * n / 1e9
        out_f = np.zeros((B, G), np.float32)
        out_b = np.zeros((B, H), np.float32)
        blas_f = gflop / best(forward_blas, h, R, out_f, np.zeros((G, B), np.float32), n)
        blas_b = gflop / best(backward_blas, d, R, out_b, n)
        tiles_f_out = np.zeros((B, padded_width(G, h)), np.float32)
        tiles_b_out = np.zeros((B, padded_width(H, h)), np.float32)
        tiles_f = gflop / best(tiled, h, pack_panels(R.T), tiles_f_out, n)
        tiles_b = gflop / best(tiled, d, pack_panels(R), tiles_b_out, n)
        assert np.allclose(tiles_f_out[:, :G], out_f, rtol=1e-4, atol=1e-3)
        assert np.allclose(tiles_b_out[:, :H], out_b, rtol=1e-4, atol=1e-3)
        print(f"H={H:3d} B={B:2d}  forward h·Rᵀ: blas {blas_f:4.0f} tiles {tiles_f:4.0f} "
              f"({tiles_f / blas_f:.1f}x)   backward d·R: blas {blas_b:4.0f} tiles {tiles_b:4.0f} "
              f"({tiles_b / blas_b:.1f}x)  GFLOP/s", flush=True)


if __name__ == "__main__":
    main()
