"""The validation batch scored on the device (ablate.cuda.evaluation): the outputs equal the
CPU kernels' predictions, and the steps it leaves out (NaN) change no task's score."""

from __future__ import annotations

import numpy as np
import pytest

from ablate import tasks
from ablate.results import RunSpec
from ablate.train import EnsembleSetup, masked_loss


def plausible_outputs(task, gap: int, batch, rng) -> np.ndarray:
    """Outputs [T, N, O] that are right for about half the scored (step, row) pairs, so a
    metric reading them is neither 0 nor 1."""
    T, N = batch.mask.shape
    O = task.n_out(gap)
    if task.loss == "xent":
        y = rng.normal(size=(T, N, O))
        right = rng.random((T, N)) < 0.5
        t, r = np.nonzero(right)
        y[t, r, batch.target[t, r]] += 10.0
    else:
        noise = np.where(rng.random((T, N, 1)) < 0.5, 0.01, 1.0)
        y = batch.target + noise * rng.normal(size=batch.target.shape)
    return y.astype(np.float32)


@pytest.mark.parametrize("name", tasks.names())
@pytest.mark.parametrize("gap", [3, 17])
def test_no_tasks_score_reads_the_steps_where_no_row_is_scored(name, gap):
    """The device brings back only the steps where some row's mask is set; the others are
    NaN on the host. Every task's loss and metric must come out the same as with real
    outputs there (a metric that read them would see NaN and count them wrong)."""
    task = tasks.get(name)
    rng = np.random.default_rng(gap)
    batch = task.batch(gap, 24, 5, "validation", 0)
    y = plausible_outputs(task, gap, batch, rng)
    left_out = ~batch.mask.any(axis=1)
    holey = y.copy()
    holey[left_out] = np.nan
    metric = task.metric(y, batch)
    assert 0 < metric < 1
    assert task.metric(holey, batch) == metric
    assert masked_loss(holey, batch.target, batch.mask, task.loss) == masked_loss(
        y, batch.target, batch.mask, task.loss)


pytest.importorskip("numba.cuda")


def setup_and_ensemble(cell: str, task: str, M: int, **changes):
    from ablate.cuda.device import DeviceEnsemble
    from ablate.train import init_params

    spec = RunSpec(cell, task, gap=2, n_hidden=3, batch_size=4, eval_batch=10, **changes)
    setup = EnsembleSetup(spec)
    T = setup.interval_batches(0, 0, 1)[0].shape[1]
    device = DeviceEnsemble(cell, setup.dtype, M, T, spec.batch_size, setup.n_in,
                            spec.n_hidden, setup.n_out, 1, tile_rows=3, threads=7)
    params = np.stack([init_params(cell, setup.n_in, spec.n_hidden, setup.n_out, seed,
                                   setup.dtype) for seed in range(M)])
    device.set_params(params)
    return setup, device, params


@pytest.mark.parametrize("cell, task", [("lstm", "tv"), ("use_gate", "tv"), ("gru", "tv"),
                                        ("minlstm", "adding")])
def test_device_outputs_equal_the_cpu_kernels_predictions(cell, task):
    """10 validation rows in chunks of the batch's 4 (the last one short), 3 models of
    which 2 are asked for: their outputs at the scored steps equal the CPU forward's."""
    from ablate.cuda.engine import device_evaluation

    setup, device, params = setup_and_ensemble(cell, task, 3)
    evaluation = device_evaluation(device, setup)
    try:
        predicted = evaluation.predict([0, 2])
    finally:
        evaluation.close()
        device.close()
    scored = setup.validation.mask.any(axis=1)
    for k in (0, 2):
        y = evaluation.outputs_of(predicted, k)
        want = setup.predict(params[k], np.ascontiguousarray(setup.validation.x, setup.dtype),
                             setup.spec.n_hidden, setup.n_out)[0]
        np.testing.assert_allclose(y[scored], want[scored], rtol=1e-4, atol=1e-6)
        assert np.isnan(y[~scored]).all()
        assert setup.score(y, "validation") == pytest.approx(
            setup.evaluate(params[k], "validation"), rel=1e-5)


def test_a_validation_batch_of_another_length_is_scored_on_the_cpu():
    """continual evaluates more episodes than it trains on: its validation sequences do not
    fit the work vectors, so the engine leaves them to the CPU kernels."""
    from ablate.cuda.engine import device_evaluation

    setup, device, _ = setup_and_ensemble("lstm", "continual", 1)
    try:
        assert setup.validation.x.shape[0] != device.T
        assert device_evaluation(device, setup) is None
    finally:
        device.close()
