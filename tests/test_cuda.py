"""The CUDA backend against the CPU kernels, under Numba's CUDA simulator (no GPU needed).

conftest.py sets NUMBA_ENABLE_CUDASIM=1 for this process unless ABLATE_TEST_GPU=1, in which
case the same tests run on the real GPU. The simulator runs every thread as a Python thread,
so sizes are tiny; they are drawn at random (seeded), with ragged last tiles and odd block
sizes. The CPU kernels are themselves checked against PyTorch autograd (test_cells_torch).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("numba.cuda")

from ablate import cells, forward, init_params, loss_and_grad  # noqa: E402
from ablate.kernels.driver import LOSS_CODES  # noqa: E402
from ablate.results import RunSpec  # noqa: E402
from ablate.train import train_ensemble as cpu_train  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ON_GPU = os.environ.get("ABLATE_TEST_GPU") == "1"


def device_loss_and_grad(cell, params, x, target, mask, loss, H, O, tile_rows, threads,
                         dtype=np.float32, rows_per_thread=1, resident=False):
    """(loss per row [M,B], grad [M,P]) of one step on the device for M models at once."""
    from ablate.cuda.device import DeviceEnsemble

    M, T, B, n_in = x.shape
    ens = DeviceEnsemble(cell, dtype, M, T, B, n_in, H, O, 1, tile_rows, threads,
                         rows_per_thread, resident)
    ens.set_params(params)
    classes = target if loss == "xent" else np.zeros((M, T, B), np.int64)
    values = target if loss == "mse" else np.zeros((M, T, B, 0), dtype)
    ens.load_interval(x[:, None], classes[:, None], values[:, None], mask[:, None],
                      np.ones(M, np.int64), np.ones(M, np.int64), np.full(M, 1e-3), np.zeros(M))
    ens.loss_and_grad(0, LOSS_CODES[loss])
    return ens.loss_rows.copy_to_host(), ens.grad_tiles.copy_to_host().sum(axis=1)


def random_problem(cell, loss, rng, dtype, H=None):
    """Two models with perturbed parameters (peepholes and extras start at zero otherwise)
    on a random batch of random odd sizes (H units if given, else 2–4); a random mask with
    at least one scored step."""
    M = 2
    T, B, n_in, drawn_H, O = (int(rng.integers(2, 5)), int(rng.integers(2, 6)),
                              int(rng.integers(1, 4)), int(rng.integers(2, 5)),
                              int(rng.integers(2, 4)))
    H = H or drawn_H
    params = np.stack([init_params(cell, n_in, H, O, int(rng.integers(1000)), dtype)
                       for _ in range(M)])
    params += rng.normal(0, 0.3, params.shape).astype(dtype)
    x = rng.normal(size=(M, T, B, n_in)).astype(dtype)
    mask = (rng.random((M, T, B)) < 0.6).astype(dtype)
    mask[:, -1, 0] = 1
    if loss == "xent":
        target = rng.integers(0, O, (M, T, B))
    else:
        target = rng.normal(size=(M, T, B, O)).astype(dtype)
    return params, x, target, mask, H, O


def row_losses(cell, params, x, target, mask, loss, H, O):
    """Σ_t scale · mask · ℓ(y_tb) per row b, from the CPU forward's outputs y."""
    y = forward(cell, params, x, H, O).y.astype(np.float64)
    if loss == "xent":
        top = y.max(axis=2, keepdims=True)
        log_norm = np.log(np.exp(y - top).sum(axis=2)) + top[..., 0]
        per_step = log_norm - np.take_along_axis(y, target[..., None], axis=2)[..., 0]
    else:
        per_step = ((y - target) ** 2).mean(axis=2)
    return (mask * per_step).sum(axis=0) / mask.sum()


@pytest.mark.parametrize("cell", cells.names())
def test_gradients_equal_the_cpu_kernels(cell):
    rng = np.random.default_rng(sum(map(ord, cell)))
    for loss in ("xent", "mse"):
        params, x, target, mask, H, O = random_problem(cell, loss, rng, np.float32)
        B = x.shape[2]
        tile_rows = int(rng.integers(1, B + 1))  # the last tile is ragged when B % rows > 0
        threads = int(rng.choice([1, 5, 7, 32]))
        losses, grads = device_loss_and_grad(cell, params, x, target, mask, loss, H, O,
                                             tile_rows, threads)
        for k in range(len(params)):
            expected_loss, expected = loss_and_grad(cell, params[k], x[k], target[k], mask[k],
                                                    loss, H, O)
            scale = np.abs(expected).max()
            error = np.abs(grads[k] - expected).max() / scale
            assert error < 1e-4, (cell, loss, k, error, tile_rows, threads)
            assert scale > 0 and np.abs(grads[k]).max() > 0
            # the forward: each row's loss from the CPU forward's outputs at its scored steps
            rows = row_losses(cell, params[k], x[k], target[k], mask[k], loss, H, O)
            np.testing.assert_allclose(losses[k], rows, rtol=1e-4, atol=1e-6)
            assert abs(losses[k].sum() - expected_loss) < 1e-4 * abs(expected_loss)


@pytest.mark.parametrize("cell", cells.names())
def test_row_blocked_kernels_give_the_same_gradients(cell):
    """A thread computing one unit for several rows at once (rows_per_thread, ragged: the
    last group of a tile may be short, B may be below it) gives the CPU kernels' loss and
    gradients; W, R and W_out's gradients add their terms in the same order whatever the
    blocking, so they equal the unblocked kernels' to the bit."""
    from ablate.cuda.device import ROWS_PER_THREAD

    rng = np.random.default_rng(sum(map(ord, cell)) + 1)
    params, x, target, mask, H, O = random_problem(cell, "xent", rng, np.float32)
    B = x.shape[2]
    tile_rows = int(rng.integers(1, B + 1))
    rows_per_thread = int(rng.choice([v for v in ROWS_PER_THREAD if v > 1]))
    threads = int(rng.choice([1, 5, 32]))
    losses, grads = device_loss_and_grad(cell, params, x, target, mask, "xent", H, O,
                                         tile_rows, threads, rows_per_thread=rows_per_thread)
    _, unblocked = device_loss_and_grad(cell, params, x, target, mask, "xent", H, O,
                                        tile_rows, threads)
    for k in range(len(params)):
        expected_loss, expected = loss_and_grad(cell, params[k], x[k], target[k], mask[k],
                                                "xent", H, O)
        error = np.abs(grads[k] - expected).max() / np.abs(expected).max()
        assert error < 1e-4, (cell, k, error, tile_rows, rows_per_thread, threads)
        assert abs(losses[k].sum() - expected_loss) < 1e-4 * abs(expected_loss)
    spec = cells.get(cell)  # the flat vector: W [G, I], R [G, H] (none: min cells), …,
    G = len(spec.gates) * H  # W_out [O, H] and b_out [O] last
    W_and_R = slice(0, G * (x.shape[3] + (H if spec.recurrent else 0)))
    W_out = slice(params.shape[1] - O * H - O, params.shape[1] - O)
    for block in (W_and_R, W_out):
        np.testing.assert_array_equal(grads[:, block], unblocked[:, block])


WITH_R = ["lstm", "lstm_peephole", "nig", "nfg", "nog", "niaf", "noaf", "cifg", "fgr",
          "single_net", "net_readout", "sigmoid_input", "sigmoid_readout", "use_gate", "lstm97",
          "rnn", "irnn", "gru"]  # every cell but the min cells, which have no R
SPILLING_BESIDE_R = ("fgr", "net_readout", "use_gate")  # resident at one row a thread only


def test_the_cells_with_r_are_every_cell_but_the_min_cells():
    assert set(WITH_R) == set(cells.names()) - {"mingru", "minlstm"}
    assert all(cells.get(name).recurrent for name in WITH_R)


@pytest.mark.parametrize("cell", WITH_R)
def test_resident_weights_give_the_cpu_kernels_gradients(cell):
    """R held in registers (ablate.cuda.resident): at these sizes a row of R is split over
    2–16 lanes in the forward and a column over 8–16 in the backward, whose partial sums
    meet across lanes, and R's gradient is summed in registers over the time loop. The loss
    and every gradient equal the CPU kernels', for both losses, ragged tiles and every
    rows_per_thread the cell allows."""
    from ablate.cuda.device import ROWS_PER_THREAD, resident_layout

    rng = np.random.default_rng(sum(map(ord, cell)) + 2)
    for loss in ("xent", "mse"):
        params, x, target, mask, H, O = random_problem(cell, loss, rng, np.float32)
        B = x.shape[2]
        tile_rows = int(rng.integers(1, B + 1))
        threads = int(rng.choice([32, 64]))
        allowed = [1] if cell in SPILLING_BESIDE_R else list(ROWS_PER_THREAD)
        rows_per_thread = int(rng.choice(allowed))
        shape = resident_layout(cell, H, threads, tile_rows, np.float32, rows_per_thread)
        assert shape.SF > 1 and shape.SB > 1  # the lanes' partial sums are exercised
        losses, grads = device_loss_and_grad(cell, params, x, target, mask, loss, H, O,
                                             tile_rows, threads, np.float32, rows_per_thread,
                                             resident=True)
        for k in range(len(params)):
            expected_loss, expected = loss_and_grad(cell, params[k], x[k], target[k], mask[k],
                                                    loss, H, O)
            error = np.abs(grads[k] - expected).max() / np.abs(expected).max()
            assert error < 1e-4, (cell, loss, k, error, tile_rows, threads, rows_per_thread)
            assert abs(losses[k].sum() - expected_loss) < 1e-4 * abs(expected_loss)


@pytest.mark.parametrize("cell", ["lstm", "fgr", "gru"])
def test_resident_weights_in_float64_equal_the_cpu_kernels(cell):
    rng = np.random.default_rng(sum(map(ord, cell)) + 3)
    params, x, target, mask, H, O = random_problem(cell, "xent", rng, np.float64)
    _, grads = device_loss_and_grad(cell, params, x, target, mask, "xent", H, O, 2, 32,
                                    np.float64, resident=True)
    for k in range(len(params)):
        _, expected = loss_and_grad(cell, params[k], x[k], target[k], mask[k], "xent", H, O)
        assert np.abs(grads[k] - expected).max() < 1e-10 * np.abs(expected).max()


@pytest.mark.parametrize("cell, H, threads, tile_rows, dtype, rows, message", [
    ("minlstm", 4, 32, 2, np.float32, 1, r"hold a recurrent matrix R, which 'minlstm' has "
                                         r"not; cells with one: lstm, .*, rnn, irnn, gru$"),
    ("lstm", 128, 256, 4, np.float32, 1, r"R's 65536 weights \(G 512 × H 128\) are more "
                                         "than 256 threads hold at 64 each in float32"),
    ("lstm", 64, 256, 4, np.float64, 1, "16384 weights .* at 32 each in float64"),
    ("lstm", 64, 128, 4, np.float32, 1, "16384 weights .* than 128 threads hold"),
    ("lstm", 10, 32, 4, np.float32, 1, "a thread for each of the G = 40 gate rows; got 32"),
    ("gru", 96, 256, 4, np.float32, 1, r"R's 27648 weights \(G 288 × H 96\)"),
    ("nig", 72, 256, 4, np.float32, 1, "a thread would hold 108 weights of R .* than 64"),
    ("lstm", 64, 256, 40, np.float32, 1, "40 rows a tile need 52864 B of shared memory"),
    ("fgr", 8, 64, 4, np.float32, 2, "fgr's second recurrent matrix, .* spills"),
])
def test_a_layout_resident_weights_cannot_take_is_one_clear_error(cell, H, threads,
                                                                  tile_rows, dtype, rows,
                                                                  message):
    from ablate.cuda.device import DeviceEnsemble

    with pytest.raises(ValueError, match=message):
        DeviceEnsemble(cell, dtype, 1, 3, 40, 2, H, 2, 1, tile_rows, threads, rows,
                       resident=True)


def test_an_unknown_rows_per_thread_is_one_clear_error():
    from ablate.cuda.device import DeviceEnsemble

    with pytest.raises(ValueError, match=r"rows_per_thread must be one of \(1, 2, 4, 8\)"):
        DeviceEnsemble("lstm", np.float32, 1, 3, 4, 2, 3, 2, 1, rows_per_thread=3)


@pytest.mark.parametrize("cell", ["lstm", "fgr", "gru", "minlstm"])
def test_float64_gradients_equal_the_cpu_kernels(cell):
    rng = np.random.default_rng(7)
    params, x, target, mask, H, O = random_problem(cell, "xent", rng, np.float64)
    _, grads = device_loss_and_grad(cell, params, x, target, mask, "xent", H, O, 2, 5,
                                    np.float64)
    for k in range(len(params)):
        _, expected = loss_and_grad(cell, params[k], x[k], target[k], mask[k], "xent", H, O)
        assert np.abs(grads[k] - expected).max() <= 1e-9 * np.abs(expected).max()


def small_specs(cell, **changes):
    base = dict(gap=2, lr=1e-2, n_hidden=3, batch_size=5, budget=6, eval_every=3,
                eval_batch=8, test_batch=8, clip=0.5)
    base.update(changes)
    return [RunSpec(cell, "tv", seed=0, **base), RunSpec(cell, "tv", seed=1, **base).replace(
        budget=4, lr=3e-3)]


@pytest.mark.parametrize("cell, task, upload, tile_rows, rows_per_thread",
                         [("lstm", "tv", None, 2, 1), ("gru", "tv", 2, 2, 1),
                          ("minlstm", "adding", None, 2, 1), ("lstm", "tv", None, 5, 4),
                          ("gru", "tv", 2, 5, 2), ("fgr", "tv", None, 3, 2),
                          ("use_gate", "tv", None, 5, 8)])
def test_training_equals_the_cpu_engine(cell, task, upload, tile_rows, rows_per_thread,
                                        monkeypatch):
    """Same batches, Adam, clipping (active at clip 0.5), evaluation (from the device's
    outputs) and stopping: the same steps, curves and final parameters as the CPU engine,
    up to float32 rounding; also when
    an interval's batches go up in parts (upload = 2 steps of 3), and with a thread taking
    several rows at once (batch 5 in one tile: a short last group)."""
    from ablate.cuda import engine
    from ablate.cuda.engine import train_ensemble

    if upload is not None:
        monkeypatch.setattr(engine, "steps_per_upload", lambda *args: upload)
    specs = [spec.replace(task=task) for spec in small_specs(cell)]  # adding: an mse loss
    cpu = cpu_train(specs, diagnostics=False)
    gpu = train_ensemble(specs, diagnostics=False, tile_rows=tile_rows, block_threads=7,
                         rows_per_thread=rows_per_thread)
    for a, b in zip(cpu.results, gpu.results, strict=True):
        assert (a.steps, a.stop_reason) == (b.steps, b.stop_reason)
        assert b.spec == a.spec and b.backend == "cuda"
        np.testing.assert_allclose(a.curve["train_loss"][1:], b.curve["train_loss"][1:],
                                   rtol=1e-5)
        np.testing.assert_allclose(a.curve["grad_norm"][1:], b.curve["grad_norm"][1:],
                                   rtol=1e-4)
        # the validation batch scored from the device's outputs (ablate.cuda.evaluation)
        np.testing.assert_allclose(a.curve["val_loss"], b.curve["val_loss"], rtol=1e-4)
        np.testing.assert_allclose(a.curve["val_metric"], b.curve["val_metric"], atol=1e-12)
    for a, b in zip(cpu.params, gpu.params, strict=True):
        assert np.abs(a - b).max() < 1e-5 * np.abs(a).max()


@pytest.mark.parametrize("cell, rows_per_thread", [("lstm", 2), ("use_gate", 1), ("gru", 4),
                                                   ("irnn", 1)])
def test_training_with_resident_weights_equals_the_cpu_engine(cell, rows_per_thread):
    """R in registers through a whole training (Adam updates R between steps; each launch
    loads it again): the CPU engine's steps, curves and parameters up to float32 rounding."""
    trains_like_the_cpu_engine(small_specs(cell), tile_rows=3, block_threads=32,
                               rows_per_thread=rows_per_thread, resident=True)


def trains_like_the_cpu_engine(specs, **device_options):
    """Train ``specs`` on the device with ``device_options`` (train_ensemble's) and on the
    CPU: the same steps and stop reasons, curves and final parameters up to float32
    rounding."""
    from ablate.cuda.engine import train_ensemble

    cpu = cpu_train(specs, diagnostics=False)
    gpu = train_ensemble(specs, diagnostics=False, **device_options)
    for a, b in zip(cpu.results, gpu.results, strict=True):
        assert (a.steps, a.stop_reason) == (b.steps, b.stop_reason)
        np.testing.assert_allclose(a.curve["train_loss"][1:], b.curve["train_loss"][1:],
                                   rtol=1e-5)
        np.testing.assert_allclose(a.curve["val_loss"], b.curve["val_loss"], rtol=1e-4)
    for a, b in zip(cpu.params, gpu.params, strict=True):
        assert np.abs(a - b).max() < 1e-5 * np.abs(a).max()


def test_divergence_mid_interval_matches_the_cpu_engine(monkeypatch):
    """A non-finite batch at step 5 (the second interval's second step, in its first upload
    part) stops that model with diverged_at = 5 on both engines; the other trains on."""
    from ablate import train as train_module
    from ablate.cuda import engine

    original = train_module.EnsembleSetup.interval_batches

    def poisoned(self, seed, first_index, n_steps):
        x, classes, values, mask = original(self, seed, first_index, n_steps)
        for s in range(n_steps):
            if seed == 0 and first_index + s == 4:  # the batch of step 5
                x[s] = np.nan
        return x, classes, values, mask

    monkeypatch.setattr(train_module.EnsembleSetup, "interval_batches", poisoned)
    monkeypatch.setattr(engine, "steps_per_upload", lambda *args: 2)
    specs = small_specs("lstm", budget=9)
    cpu = cpu_train(specs, diagnostics=False)
    gpu = engine.train_ensemble(specs, diagnostics=False, tile_rows=3, block_threads=32)
    for a, b in zip(cpu.results, gpu.results, strict=True):
        assert (a.stop_reason, a.diverged_at, a.steps) == (b.stop_reason, b.diverged_at, b.steps)
        np.testing.assert_allclose(a.curve["train_loss"][1:], b.curve["train_loss"][1:],
                                   rtol=1e-5)
    assert (gpu.results[0].stop_reason, gpu.results[0].diverged_at) == ("diverged", 5)
    assert gpu.results[1].stop_reason == "budget"


def test_an_ensemble_of_different_shapes_is_the_cpu_engines_error():
    from ablate.cuda import engine

    spec = small_specs("gru")[0]
    with pytest.raises(ValueError, match=r"gap differs \(2 and 3\) — use ablate.train.train"):
        engine.train_ensemble([spec, spec.replace(gap=3)])


def test_an_ensemble_too_large_for_the_gpu_is_one_clear_error(monkeypatch):
    from numba import cuda

    from ablate.cuda.device import DeviceEnsemble

    class Context:
        def get_memory_info(self):
            return (2**30, 2**31)  # 1 GiB free

    monkeypatch.setattr(cuda, "current_context", Context)
    small = DeviceEnsemble("lstm", np.float32, 2, 5, 3, 2, 3, 2, 1)
    assert small.bytes_needed() < 2**20
    with pytest.raises(ValueError,
                       match=r"64 models needs \d+\.\d GiB .* use --max-ensemble \d+ or fewer"):
        DeviceEnsemble("lstm", np.float32, 64, 1000, 32, 10, 64, 9, 20)


def test_upload_parts_fit_the_budget():
    from ablate.cuda.engine import UPLOAD_BYTES, steps_per_upload

    steps = steps_per_upload(128, 1000, 32, 10, 9, "xent", np.float32)
    per_step = 128 * 1000 * 32 * (11 * 4 + 8)
    assert steps * per_step <= UPLOAD_BYTES < (steps + 1) * per_step
    assert steps_per_upload(10**6, 10**4, 512, 10, 9, "mse", np.float32) == 1


def three_adam_steps(cell, params, x, target, mask, H, O, threads):
    """A DeviceEnsemble of the models in params after three training steps (Adam at lr 1e-2,
    no clipping) on the same batch, tiles of 2 rows."""
    from ablate.cuda.device import DeviceEnsemble

    M, T, B, n_in = x.shape
    ens = DeviceEnsemble(cell, np.float32, M, T, B, n_in, H, O, 3, 2, threads)
    ens.set_params(params)
    ens.load_interval(np.repeat(x[:, None], 3, 1), np.repeat(target[:, None], 3, 1),
                      np.zeros((M, 3, T, B, 0), np.float32), np.repeat(mask[:, None], 3, 1),
                      [3, 3], [1, 1], [1e-2, 1e-2], [0.0, 0.0])
    for s in range(3):
        ens.step(s, LOSS_CODES["xent"])
    return ens


def test_a_diverging_model_stops_and_the_others_go_on():
    rng = np.random.default_rng(3)
    params, x, target, mask, H, O = random_problem("lstm", "xent", rng, np.float32)
    params[0, 0] = np.nan  # model 0's loss is not finite from the first step
    ens = three_adam_steps("lstm", params, x, target, mask, H, O, threads=5)
    after, losses, norms, taken = ens.fetch()
    assert list(taken) == [0, 3]
    assert not np.isfinite(losses[0, 0]) and np.isfinite(losses[1]).all()
    np.testing.assert_array_equal(after[0], params[0])  # no update from a non-finite step
    assert np.abs(after[1] - params[1]).max() > 0


@pytest.mark.parametrize("cell", ["lstm", "fgr", "single_net", "net_readout", "use_gate",
                                  "gru", "minlstm"])
def test_adam_keeps_the_transposed_matrices_in_step(cell):
    """The forward kernels read W, R (R_gates, P_c, P_h or W_u) and W_out from a transposed
    copy the Adam kernel rewrites at each update: after three steps it is the updated
    parameters' blocks, transposed (found by name in the cell's flat layout, not by the
    kernels' offsets)."""
    from ablate.cuda.device import TRANSPOSED

    rng = np.random.default_rng(sum(map(ord, cell)) + 2)
    params, x, target, mask, H, O = random_problem(cell, "xent", rng, np.float32)
    M, T, B, n_in = x.shape
    ens = three_adam_steps(cell, params, x, target, mask, H, O, threads=7)
    after, *_ = ens.fetch()
    assert np.abs(after - params).max() > 0
    expected, offset = [], 0
    for name, shape in cells.get(cell).block_shapes(n_in, H, O):
        size = int(np.prod(shape))
        if name in TRANSPOSED:
            expected.append(after[:, offset:offset + size].reshape(M, *shape).transpose(0, 2, 1))
        offset += size
    names = {name for name, _ in cells.get(cell).block_shapes(n_in, H, O)}
    assert len(expected) == len(names & set(TRANSPOSED))
    flat = np.concatenate([e.reshape(M, -1) for e in expected] or [np.zeros((M, 0))], axis=1)
    np.testing.assert_array_equal(ens.transposed.copy_to_host(), flat)


def test_results_are_identical_whatever_the_tiling():
    """Each tile's gradient is summed in a fixed order: same tiling, same bytes; a
    different tiling changes only the rounding."""
    rng = np.random.default_rng(11)
    params, x, target, mask, H, O = random_problem("gru", "xent", rng, np.float32)
    first = device_loss_and_grad("gru", params, x, target, mask, "xent", H, O, 2, 5)[1]
    again = device_loss_and_grad("gru", params, x, target, mask, "xent", H, O, 2, 5)[1]
    other = device_loss_and_grad("gru", params, x, target, mask, "xent", H, O, 1, 32)[1]
    np.testing.assert_array_equal(first, again)
    np.testing.assert_allclose(first, other, rtol=1e-5, atol=1e-7)


def test_run_suite_records_cuda_runs_under_their_own_kernel_version(tmp_path):
    from ablate.store import KERNEL_VERSION, kernel_version, load
    from ablate.suite import load_suite
    from ablate.sweep import run_suite

    suite = tmp_path / "kc.toml"
    suite.write_text('cells = ["lstm"]\nseeds = 2\nlearning_rates = [1e-2]\nhidden_sizes = [3]\n'
                     '[training]\nbudget = 4\nbatch_size = 4\neval_every = 2\n'
                     '[evaluation]\nvalidation_batch = 8\ntest_batch = 8\n'
                     '[tasks.tv]\ngaps = [2]\n')
    summary = run_suite(load_suite(suite), tmp_path / "results", backend="cuda", workers=1,
                        progress=False)
    assert (summary.done, summary.failed) == (2, 0)
    frame = load(summary.ledger)
    assert set(frame["kernel_version"]) == {kernel_version("cuda")} != {KERNEL_VERSION}
    assert set(frame["backend"]) == {"cuda"}
    again = run_suite(load_suite(suite), tmp_path / "results", backend="cuda", progress=False)
    assert (again.skipped, again.done) == (2, 0)


def test_numbas_built_in_cuda_target_is_refused(monkeypatch):
    from numba import cuda

    from ablate.cuda import CudaUnavailable, require

    require()  # numba-cuda (here its simulator) is accepted
    monkeypatch.setattr(cuda, "implementation", "Built-in")
    with pytest.raises(CudaUnavailable, match="not Numba's deprecated built-in"):
        require()


def test_dry_run_for_the_gpu_counts_ensembles_at_once_and_says_the_estimate_is_the_cpus(
        tmp_path):
    from ablate.cli import dry_run_text
    from ablate.suite import load_suite

    suite = tmp_path / "kc.toml"
    suite.write_text('cells = ["lstm", "gru"]\nseeds = 2\nlearning_rates = [1e-2]\n'
                     '[tasks.tv]\ngaps = [2, 4]\n')
    text = dry_run_text(load_suite(suite), tmp_path, None, 128, "cuda")
    assert "8 runs" in text and "in 4 ensembles on 4 GPU threads (ensembles at once)\n" in text
    text = dry_run_text(load_suite(suite), tmp_path, 1, 128, "cuda")
    assert "in 4 ensembles on 1 GPU thread (ensembles at once)\n" in text
    assert "not modelled for the GPU" in text


@pytest.mark.skipif(ON_GPU, reason="a GPU is present here")
def test_cli_without_a_gpu_is_one_line_and_exit_2(tmp_path):
    suite = tmp_path / "kc.toml"
    suite.write_text('cells = ["lstm"]\nseeds = 1\nlearning_rates = [1e-2]\n'
                     '[tasks.tv]\ngaps = [2]\n')
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "0"}
    result = subprocess.run([sys.executable, str(ROOT / "run_suite.py"), str(suite),
                             "--backend", "cuda", "--results", str(tmp_path)],
                            capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "backend 'cuda' cannot run on this machine" in lines[0], lines
    assert "--backend cpu" in lines[0]


def test_cpu_share_benchmark_runs():
    """bench/cpu_share.py at tiny sizes: every figure it prints is there (CPU work only)."""
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run(
        [sys.executable, str(root / "bench" / "cpu_share.py"), "--gap", "3", "--hidden", "4",
         "--batch", "4", "--validation-batch", "8", "--test-batch", "8", "--budget", "10",
         "--eval-every", "5"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    for line in ("CPU training step", "validation evaluation", "test evaluation", "diagnosis",
                 "scoring the device's outputs", "a run at budget 10:"):
        assert line in result.stdout, line
    assert "3 validations" in result.stdout and "predicted on the GPU" in result.stdout


@pytest.mark.skipif(ON_GPU, reason="the profiler runs it on a GPU (bench/gpu_check.sh)")
def test_profile_step_runs_under_the_simulator():
    """bench/profile_step.py builds its case and runs the one step ncu is to profile; it
    refuses a run whose --simulate disagrees with the simulator switch, in one line."""
    simulated = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    script = str(ROOT / "bench" / "profile_step.py")
    result = subprocess.run([sys.executable, script, "--simulate"], capture_output=True,
                            text=True, env=simulated, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "case simulated: 2 model(s), H 4" in result.stdout
    assert result.stdout.rstrip().endswith("profiled one step: 3 launches")
    resident = subprocess.run([sys.executable, script, "--simulate", "--resident"],
                              capture_output=True, text=True, env=simulated, cwd=ROOT,
                              timeout=600)
    assert resident.returncode == 0, resident.stderr[-2000:]
    assert "32 threads a block, 2 blocks, R resident in registers\n" in resident.stdout
    spread = subprocess.run([sys.executable, script, "--simulate", "--parts", "3",
                             "--resident"], capture_output=True, text=True, env=simulated,
                            cwd=ROOT, timeout=600)
    assert spread.returncode == 0, spread.stderr[-2000:]
    assert " 6 blocks, R resident in registers, each tile over 3 blocks\n" in spread.stdout
    refused = subprocess.run([sys.executable, script, "--case", "single"],
                             capture_output=True, text=True, env=simulated, cwd=ROOT,
                             timeout=600)
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        "bench/profile_step.py: NUMBA_ENABLE_CUDASIM=1 is set: pass --simulate to check the "
        "code paths, or unset it to use the GPU"]


@pytest.mark.skipif(ON_GPU, reason="the real benchmark runs on a GPU (bench/gpu_check.sh)")
def test_gpu_benchmark_runs_under_the_simulator(tmp_path):
    """bench/gpu.py's code paths (tables, targets, JSON) at its --simulate sizes."""
    out = tmp_path / "gpu.json"
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu.py"), "--simulate",
                             "--rows-per-thread", "1", "--resident",
                             "--parts", "2", "--clusters", "--budget", "100000",
                             "--json", str(out)],
                            capture_output=True,
                            text=True, env=env, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "SIMULATOR RUN" in result.stdout and "targets (issue 7" in result.stdout
    data = json.loads(out.read_text())
    assert data["simulated"] and len(data["ensembles"]) == 2
    assert len(data["single"]) == 2 and data["group"]["models"] == 1
    assert "a shape group of 1 model (one run_suite.py ensemble)" in result.stdout
    # B 3: the default tile is 3 rows; one model is timed at the other tilings too
    # (fwd+bwd), and so is the shape group's ensemble, here the default tile with R
    # resident in registers (--resident); one model (the single cases, and the simulated
    # shape group) also with its batch over 2 blocks (--parts), and so with R resident too;
    # an ensemble spread only with R resident (its 2 or 3 models' blocks fit the SMs);
    # each spread tiling also with its blocks a cluster (--clusters), just before it; the
    # designs never timed on a GPU first (which tilings at the full sizes: the test below)
    for row in data["ensembles"] + data["single"] + [data["group"]]:
        one_model = row in data["single"] or row["models"] == 1
        kinds = [True, False] if one_model else [True]  # R resident; R in memory
        spread = [(3, 1, resident, 2, clusters) for resident in kinds
                  for clusters in (True, False)]
        timed = [(v["tile_rows"], v["rows_per_thread"], v["resident"], v["parts"],
                  v["clusters"]) for v in row["variants"]]
        assert timed == spread + [(3, 1, True, 1, False)]
        assert not row["failed_variants"] and not row["skipped_variants"]
    assert "R resident in registers: fwd+bwd " in result.stdout
    assert "a tile over 2 blocks: fwd+bwd " in result.stdout
    assert "R resident in registers, a tile over 2 blocks: fwd+bwd " in result.stdout
    assert "R resident in registers, a tile over 2 blocks (a cluster): fwd+bwd " in result.stdout
    assert all(v["fwd_bwd_us_per_time_step"] > 0 for v in data["single"][0]["variants"])
    # every default-tiling case split by kernel: the forward alone is timed, and the three
    # parts add up to the step (by construction of the differences)
    for row in data["single"]:
        split = row["ablate_phases_us_per_time_step"]
        assert split["forward"] > 0
        assert sum(split.values()) == pytest.approx(row["ablate_us_per_time_step"])
    for row in data["ensembles"] + [data["group"]]:
        assert sum(row["ablate_phases_ms"].values()) == pytest.approx(row["ablate_step_ms"])
    assert result.stdout.count("ms a step: forward ") == 3
    assert [(r["groups"], r["models"]) for r in data["groups_at_once"]] == [(1, 1), (2, 2)]
    assert all(r["model_steps_per_second"] > 0 for r in data["groups_at_once"])
    assert "2 groups of 1 at once:" in result.stdout
    assert data["evaluation"]["rows"] == 5 and data["evaluation"]["predict_ms"] > 0
    assert "validation of 5 sequences on the device, 1 model:" in result.stdout
    assert data["complete"] is True
    assert "the same at each T's fastest tiling measured" in result.stdout
    assert "the same two targets at each size's fastest tiling measured" in result.stdout
    assert "the same two targets at one tiling for both sizes" in result.stdout


def bench_module(name: str, script: str = "gpu.py"):
    """bench/<script> imported as a module of its own (a script, not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / script)
    gpu = importlib.util.module_from_spec(spec)
    sys.modules[name] = gpu  # its dataclasses look it up
    try:
        spec.loader.exec_module(gpu)
    finally:
        del sys.modules[name]
    return gpu


def test_gpu_benchmark_budget_shares_time_over_the_cases_and_keeps_the_order():
    """--budget: each case gets the time left over the cases still to come; its tilings are
    timed in order until its deadline passes, the rest listed as skipped (a fake clock: each
    tiling takes 10 s)."""
    gpu = bench_module("gpu_budget")
    now = [0.0]
    budget = gpu.Budget(100.0, cases=4, clock=lambda: now[0])
    chosen = [(1, 32, True, 8, True), (2, 32, True, 8, False), (1, 2, True, 1, False),
              (2, 2, False, 1, False)]
    timed = []

    def time_one(*variant):
        timed.append(variant)
        now[0] += 10.0

    deadline = budget.case_deadline()  # 100 s over 4 cases: 25 s, so 3 tilings start
    assert deadline == 25.0
    skipped = gpu.time_variants(chosen, time_one, deadline, budget.clock)
    assert timed == chosen[:3]
    assert skipped == [{"rows_per_thread": 2, "tile_rows": 2, "resident": False, "parts": 1,
                        "clusters": False}]
    assert budget.case_deadline() == 30.0 + 70.0 / 3  # the rest over the 3 cases left
    now[0] = 200.0  # past the end: the last cases start no tiling
    assert budget.case_deadline() == 200.0
    assert gpu.time_variants(chosen, time_one, 200.0, budget.clock) == [
        dict(zip(("rows_per_thread", "tile_rows", "resident", "parts", "clusters"), v,
                 strict=True)) for v in chosen]
    assert gpu.Budget(None, cases=4).case_deadline() == float("inf")
    novel_first = [(1, 16, True, 8, True), (1, 16, True, 8, False), (1, 32, False, 8, True),
                   (1, 32, False, 8, False), (1, 2, True, 1, False), (1, 2, False, 1, False)]
    shuffled = [novel_first[i] for i in (4, 2, 0, 5, 3, 1)]  # each twin still after its cluster
    assert sorted(shuffled, key=gpu.by_novelty) == novel_first


def test_gpu_benchmark_times_these_tilings_at_the_full_sizes(monkeypatch):
    """What gpu_check.sh's options (--tile-rows 2,32 --rows-per-thread 1,2,8 --resident
    --parts 8,16 --clusters) time at the issue's sizes on a GPU of 132 SMs, in order: R
    resident in spread blocks, spread blocks, R resident in one block, plain tilings, each
    spread tiling of 8 blocks first as a cluster, then meeting in global memory; (rows a
    thread, tile, resident, parts, clusters). One model spread at 16 rows a tile with R (H
    128's R over 8 or 16 blocks: its staged da fills shared memory at 32); ensembles spread
    only with R and only where their blocks fit the SMs (16 × 8 and 6 × 8, 6 × 16; not 128
    models); clusters of 8 blocks only (16 is not portable)."""
    from types import SimpleNamespace

    from ablate.cuda.device import default_tiling

    gpu = bench_module("gpu_variants")
    monkeypatch.setattr(gpu, "sm_count", lambda: 132)
    monkeypatch.setattr(gpu, "resident_threads", lambda: 256)
    options = SimpleNamespace(rows_per_thread=[1, 2, 8], tile_rows=[2, 32], resident=True,
                              parts=[8, 16], clusters=True)

    def chosen(M, H):
        tile = default_tiling(32, H, 1)[0]
        default = SimpleNamespace(M=M, B=32, H=H, dtype=np.float32, rows_per_thread=1,
                                  tile_rows=tile)
        return gpu.variants(options, default)

    def spread(resident, tile):
        return [(rows, tile, resident, parts, clusters) for parts in (8, 16)
                for rows in (1, 2, 8) for clusters in ((True, False) if parts == 8 else (False,))]

    assert chosen(1, 128) == spread(True, 16) + spread(False, 32) + [
        (1, 32, False, 1, False), (2, 4, False, 1, False), (2, 2, False, 1, False),
        (2, 32, False, 1, False), (8, 16, False, 1, False), (8, 32, False, 1, False)]
    one_block_r = [(1, 4, True, 1), (1, 2, True, 1), (1, 32, True, 1), (2, 8, True, 1),
                   (2, 2, True, 1), (2, 32, True, 1), (8, 32, True, 1)]
    plain = [(1, 2, False, 1), (1, 32, False, 1), (2, 8, False, 1), (2, 2, False, 1),
             (2, 32, False, 1), (8, 32, False, 1)]
    one_block = [(*v, False) for v in one_block_r + plain]
    ensemble_spread = [(rows, 32, True, 8, clusters) for rows in (1, 2, 8)
                       for clusters in (True, False)]
    assert chosen(16, 64) == ensemble_spread + one_block
    assert chosen(128, 64) == one_block
    assert chosen(6, 64) == ensemble_spread + [
        (rows, 32, True, 16, False) for rows in (1, 2, 8)] + one_block
    options.clusters = False  # without --clusters: no cluster tiling
    assert all(not v[4] for v in chosen(1, 128) + chosen(16, 64))


@pytest.mark.parametrize("flags, message", [
    (["--budget", "-1"], "--budget must be seconds, 0 or more, got -1.0"),
    (["--budget", "nan"], "--budget must be seconds, 0 or more, got nan"),
    (["--parts", "1"], "--parts must be in 2.."),
    (["--rows-per-thread", "3"], "--rows-per-thread must be among"),
])
def test_gpu_benchmark_refuses_bad_options_in_one_line(capsys, flags, message):
    gpu = bench_module("gpu_options")
    with pytest.raises(SystemExit) as stopped:
        gpu.main(flags)
    assert stopped.value.code == 2 and message in capsys.readouterr().err


def test_gpu_benchmark_judges_the_two_ensemble_targets_at_one_shared_tiling():
    """Beside each size's fastest tiling, the tiling timed at both sizes that comes nearest
    both ensemble targets at once: here tile 32 resident (16 models 6,400 model-steps/s,
    128 models 1.25× the time) although tile 2 is the fastest at 16 models."""
    gpu = bench_module("gpu_judge")

    def ensemble(M, default_ms, timed):
        variants = [{"tile_rows": tile, "rows_per_thread": 1, "resident": resident,
                     "parts": parts, "step_ms": ms, "model_steps_per_second": 1e3 * M / ms}
                    for (tile, resident, parts), ms in timed.items()]
        return {"models": M, "H": 64, "B": 32, "T": 100, "tile_rows": 4, "rows_per_thread": 1,
                "ablate_step_ms": default_ms, "ablate_model_steps_per_second": 1e3 * M / default_ms,
                "cudnn_over_ablate": 5.0, "variants": variants, "occupancy": None}

    small = ensemble(16, 8.0, {(2, False, 1): 2.0, (32, True, 1): 2.5, (32, True, 8): 1.0})
    large = ensemble(128, 40.0, {(2, False, 1): 16.0, (32, True, 1): 3.125})
    tiling, rate, scaling = gpu.one_tiling_for_both(small, large)
    assert (tiling["tile_rows"], tiling["resident"], tiling["parts"]) == (32, True, 1)
    assert rate == pytest.approx(6400) and scaling == pytest.approx(1.25)
    single = [{"T": 100, "H": 128, "ablate_fwd_bwd_us_per_time_step": 50.0,
               "ablate_us_per_time_step": 60.0, "variants": []}]
    targets = {t["target"]: t for t in gpu.judge(single, [small, large])}
    shared = next(t for name, t in targets.items() if "one tiling for both sizes" in name)
    assert shared["met"] and shared["value"] == pytest.approx(1.25)
    fastest = targets["the same two targets at each size's fastest tiling measured"]
    assert not fastest["met"] and fastest["value"] == pytest.approx(3.125)  # 3.125 / 1.0
    # sizes that share only the default tiling: no such line
    assert gpu.one_tiling_for_both(ensemble(16, 8.0, {}), large) is None


@pytest.mark.skipif(ON_GPU, reason="runs bench/gpu.py under the simulator")
def test_gpu_benchmark_keeps_the_rows_measured_before_a_failure(tmp_path, monkeypatch):
    """The GPU session has one try: a case that fails or hangs (here the ensembles raise)
    must not take the single-model rows already measured with it."""
    gpu = bench_module("gpu_bench")

    def hung(*args):
        raise RuntimeError("the ensembles hung")

    monkeypatch.setattr(gpu, "ensemble_rows", hung)
    out = tmp_path / "gpu.json"
    with pytest.raises(RuntimeError, match="hung"):
        gpu.main(["--simulate", "--json", str(out)])
    data = json.loads(out.read_text())
    assert data["complete"] is False and data["ensembles"] == []
    assert [row["T"] for row in data["single"]] == [5, 7]


def test_gpu_benchmark_reads_how_many_clusters_run_at_once(monkeypatch, capsys):
    """bench/gpu.py's occupancy of a cluster launch: cuda.core's max_active_clusters for the
    forward and backward kernels at the launch's clusters (a fake cuda.core: no GPU here);
    where cuda.core cannot say, one line and None, the measurement kept."""
    import types

    gpu = bench_module("gpu_clusters")
    asked = []

    class Occupancy:
        def max_active_clusters(self, config, *, stream):
            asked.append((config, stream))
            return 14

    kernel = types.SimpleNamespace(occupancy=Occupancy())
    cufunc = types.SimpleNamespace(kernel=kernel)
    compiled = types.SimpleNamespace(
        _codelibrary=types.SimpleNamespace(get_cufunc=lambda: cufunc))
    dispatcher = types.SimpleNamespace(overloads={"sig": compiled})
    ens = types.SimpleNamespace(grid=(32,), parts=8, threads=256,
                                kernels=types.SimpleNamespace(forward=dispatcher,
                                                              backward=dispatcher))
    fake = types.ModuleType("cuda.core")
    fake.LaunchConfig = lambda **options: options
    fake.Device = lambda: types.SimpleNamespace(default_stream="stream")
    monkeypatch.setitem(sys.modules, "cuda.core", fake)
    assert gpu.clusters_at_once(ens) == {"forward": 14, "backward": 14}
    assert asked == [({"grid": 4, "cluster": (8, 1, 1), "block": 256}, "stream")] * 2
    del fake.Device
    assert gpu.clusters_at_once(ens) is None
    assert "(clusters at once not read: ImportError" in capsys.readouterr().out
