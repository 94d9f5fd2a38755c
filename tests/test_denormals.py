"""Denormal floats: ``loss_and_grad`` flushes them during the call and only then, in every
thread that runs a batch chunk; the diagnostics' error flow keeps them (ablate.kernels.fpmode).

How a flush shows: the kernels' per-step ‖∂L/∂h_t‖² is summed in float32, so where every
element of ∂L/∂h_t is below ~1e-19 the squares are float32 denormals: kept, the norm is
tiny but positive; flushed, it is exactly 0."""

from __future__ import annotations

import platform

import numpy as np
import pytest

import ablate
from ablate import model
from ablate.kernels.fpmode import denormals_flushed

pytestmark = pytest.mark.skipif(
    platform.machine().lower() not in ("x86_64", "amd64"),
    reason="FTZ/DAZ are x86 MXCSR bits; elsewhere the mode functions do nothing",
)

SMALLEST_NORMAL = float(np.finfo(np.float32).tiny)  # 1.18e-38


def denormal_product() -> float:
    """1e-38 · 1e-2 in float32 by numpy in this thread: 1e-40 with IEEE denormals, 0 flushed."""
    return float(np.multiply(np.float32(1e-38), np.float32(1e-2)))


def decaying_problem(cell: str, seed: int):
    """A long sequence with the loss at its last step only: the error signal decays through
    the denormal range on its way back."""
    rng = np.random.default_rng(seed)
    T, B, I, H, O = int(rng.integers(250, 320)), int(rng.integers(3, 6)), 5, 8, 4
    params = ablate.init_params(cell, I, H, O, seed=seed, dtype=np.float32)
    x = rng.normal(size=(T, B, I)).astype(np.float32)
    target = rng.integers(0, O, size=(T, B))
    mask = np.zeros((T, B), np.float32)
    mask[-1] = 1.0
    return params, x, target, mask, H, O


def test_mode_switches_and_comes_back():
    assert denormal_product() > 0.0
    with denormals_flushed():
        assert denormal_product() == 0.0
    assert denormal_product() > 0.0
    with pytest.raises(RuntimeError), denormals_flushed():
        raise RuntimeError("the mode comes back when the block raises")
    assert denormal_product() > 0.0
    with denormals_flushed(enabled=False):
        assert denormal_product() > 0.0


@pytest.mark.parametrize("cell,seed", [("gru", 3), ("rnn", 4), ("lstm", 5), ("single_net", 6)])
def test_loss_and_grad_flushes_and_changes_nothing_else(cell, seed):
    params, x, target, mask, H, O = decaying_problem(cell, seed)
    flushed = model.loss_grad_flow(cell, params, x, target, mask, "xent", H, O)
    kept = model.loss_grad_flow(cell, params, x, target, mask, "xent", H, O,
                                flush_denormals=False)
    # where the kept squares are denormal, the flushed ones are 0
    tiny = (kept.dh_norm > 0) & (kept.dh_norm < 1e-20)
    assert tiny.any(), "the error signal never reached the denormal range: no test"
    assert np.all(flushed.dh_norm[tiny] == 0.0)
    assert np.all(flushed.dh_norm[kept.dh_norm >= 1e-18] > 0.0)
    # the loss and the gradient do not notice (their terms below 1e-38 are negligible)
    assert flushed.loss == kept.loss
    np.testing.assert_allclose(flushed.grad, kept.grad, rtol=1e-6, atol=1e-30)
    loss, grad = ablate.loss_and_grad(cell, params, x, target, mask, "xent", H, O)
    assert loss == flushed.loss and np.array_equal(grad, flushed.grad)


def test_every_thread_gets_its_mode_back():
    """After a chunked call (the pool's threads run chunks) no thread is left flushing."""
    params, x, target, mask, H, O = decaying_problem("gru", 7)
    x, target, mask = (np.concatenate([a] * 8, axis=1) for a in (x, target, mask))  # chunks
    ablate.loss_and_grad("gru", params, x, target, mask, "xent", H, O)
    assert denormal_product() > 0.0  # the calling thread
    seen = []
    model._in_parallel(lambda rows: seen.append(denormal_product()), x.shape[1])
    assert seen and min(seen) > 0.0  # the pool's threads, and the caller again


def test_diagnostics_keep_denormals():
    """The error flow is measured down to the last representable value."""
    from ablate import tasks
    from ablate.diagnostics import error_flow

    task = tasks.get("tv")
    params = ablate.init_params("rnn", task.n_in(200), 8, task.n_out(200), seed=2,
                                dtype=np.float32)
    flow = error_flow("rnn", params, task, 200, 8, n_rows=2)
    norms = np.asarray(flow["dh_norm"])
    assert np.any((norms > 0) & (norms < SMALLEST_NORMAL ** 0.5 / 100))
