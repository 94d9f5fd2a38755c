"""Tests of ablate.train and ablate.results: real learning, ensembles, early stop, divergence,
clipping, the RunResult record and argument errors. No test asserts a wall-clock time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import ablate
from ablate import tasks
from ablate.results import RunResult, RunSpec
from ablate.train import clip_by_global_norm, global_norm, train, train_ensemble

# A small, fast tv setting shared by the mechanics tests (not the learning tests).
SMALL = RunSpec("lstm", "tv", gap=5, n_hidden=16, budget=100, eval_every=25, eval_batch=64,
                test_batch=64)


# ---------------------------------------------------------------- real learning


def test_lstm_solves_tv_at_gap_10_for_every_seed():
    specs = [RunSpec("lstm", "tv", gap=10, seed=seed, lr=1e-2, n_hidden=32, budget=800,
                     eval_every=50) for seed in range(4)]
    results = train(specs, diagnostics=False)
    for result in results:
        assert result.stop_reason == "solved", (result.run_id, result.curve["val_metric"])
        assert result.solved and result.metric >= 0.99
        assert result.steps_to_solve == result.steps <= 800
        assert result.score == pytest.approx((result.metric - 0.5) / 0.5)


def test_lstm_solves_copy_at_gap_10_for_every_seed():
    # Three symbols to recall (Arjovsky's copy with n_recall=3): the default ten take an
    # LSTM tens of thousands of steps, too long for a test.
    specs = [RunSpec("lstm", "copy", gap=10, seed=seed, lr=1e-2, n_hidden=64, budget=2500,
                     eval_every=100, eval_batch=1024, task_options={"n_recall": 3})
             for seed in range(4)]
    for result in train(specs, diagnostics=False):
        assert result.stop_reason == "solved", (result.run_id, result.curve["val_metric"])
        assert not result.diverged
        # The run stops once validation shows 99% at 95% confidence (Task.surely_solved),
        # so the test stream's 99% holds too. (Stopping at the first bare 99% on validation,
        # seed 2 stopped at 99.3% and scored 98.99% on the test: the winner's curse.)
        assert result.solved and result.metric >= 0.99, (result.run_id, result.metric)


# ---------------------------------------------------------------- ensembles


def test_ensemble_equals_runs_one_by_one():
    specs = [SMALL.replace(seed=0), SMALL.replace(seed=1, lr=3e-3), SMALL.replace(seed=2, clip=0.0)]
    together = train_ensemble(specs, diagnostics=False, threads=2)
    for k, spec in enumerate(specs):
        alone = train_ensemble([spec], diagnostics=False, threads=1)
        assert alone.params[0].tobytes() == together.params[k].tobytes(), spec.run_id
        assert alone.results[0].curve == together.results[k].curve
        assert alone.results[0].metric == together.results[k].metric


def test_same_seed_same_bytes_and_seed_matters():
    first = train_ensemble([SMALL], diagnostics=False).params[0]
    again = train_ensemble([SMALL], diagnostics=False).params[0]
    other = train_ensemble([SMALL.replace(seed=1)], diagnostics=False).params[0]
    assert first.tobytes() == again.tobytes()
    assert first.tobytes() != other.tobytes()


def test_train_groups_specs_by_shape_and_keeps_their_order():
    specs = [SMALL.replace(seed=0), SMALL.replace(gap=3), SMALL.replace(seed=1)]
    results = train(specs, diagnostics=False)
    assert [r.spec for r in results] == specs
    assert [r.ensemble["size"] for r in results] == [2, 1, 2]


def test_divergence_is_isolated():
    # lr = 1e38: the first Adam step moves every weight by ~1e38, the next overflows float32
    specs = [SMALL.replace(seed=0), SMALL.replace(seed=1, lr=1e38), SMALL.replace(seed=2)]
    trained = train_ensemble(specs, diagnostics=True, threads=2)
    healthy, diverged = trained.results[0], trained.results[1]
    assert diverged.diverged and diverged.stop_reason == "diverged"
    assert diverged.diverged_at is not None and diverged.steps == diverged.diverged_at - 1
    assert diverged.steps < SMALL.budget and not diverged.solved
    assert "error_flow" in diverged.diagnostics["init"]
    for k in (0, 2):
        result = trained.results[k]
        assert not result.diverged and result.stop_reason in ("solved", "budget")
        assert np.isfinite(trained.params[k]).all()
        alone = train_ensemble([specs[k]], diagnostics=False)
        assert alone.params[0].tobytes() == trained.params[k].tobytes()
    json.dumps(diverged.to_dict(), allow_nan=False)  # non-finite values stored as None
    assert healthy.metric is not None


def test_early_stop_at_the_criterion():
    # 512 validation sequences: enough to show 99% at 95% confidence (Task.surely_solved)
    spec = SMALL.replace(budget=2000, eval_every=25, lr=1e-2, eval_batch=512)
    result = train(spec, diagnostics=False)[0]
    task = tasks.get("tv")
    surely = [task.surely_solved(v, spec.eval_batch) for v in result.curve["val_metric"]]
    assert result.stop_reason == "solved" and result.steps < spec.budget
    assert result.steps == result.steps_to_solve == result.curve["step"][-1]
    assert surely[-1] and not any(surely[:-1])
    assert result.curve["step"] == list(range(0, result.steps + 1, spec.eval_every))
    assert result.solved


def test_a_bare_99_percent_on_validation_does_not_stop_a_run():
    """64 validation sequences cannot show 99% at 95% confidence (that takes 381, all
    right): the run trains to its budget although validation reads 100% early on, and the
    test batch decides."""
    spec = SMALL.replace(budget=400, eval_every=25, lr=1e-2, eval_batch=64)
    result = train(spec, diagnostics=False)[0]
    assert tasks.get("tv").solved(max(result.curve["val_metric"]))  # a bare 99% was there
    assert result.stop_reason == "budget" and result.steps == 400
    assert result.steps_to_solve is None


def test_solve_patience_stops_at_the_first_streak_of_that_many_evaluations():
    spec = SMALL.replace(budget=3000, eval_every=10, lr=1e-2, eval_batch=512)
    (first,) = train(spec, diagnostics=False)
    (patient,) = train(spec.replace(solve_patience=3), diagnostics=False)
    task = tasks.get("tv")
    # up to where the first stopped, the two runs are the same training
    n = len(first.curve["step"])
    for name in ("step", "train_loss", "grad_norm", "val_loss", "val_metric"):
        assert patient.curve[name][:n] == first.curve[name][:n]
    assert first.stop_reason == patient.stop_reason == "solved"
    met = [task.surely_solved(value, spec.eval_batch) for value in patient.curve["val_metric"]]
    streaks = "".join("1" if m else "0" for m in met).split("0")
    assert max(len(run) for run in streaks[:-1]) < 3 and len(streaks[-1]) == 3
    assert patient.steps == patient.curve["step"][-1] >= first.steps + 2 * spec.eval_every
    assert patient.steps_to_solve == patient.curve["step"][-3]
    assert patient.run_id.endswith("-sp3-s0") and first.run_id.endswith("-h16-lr0.01-s0")


def test_solve_patience_is_part_of_the_run_but_not_of_its_shape():
    spec = RunSpec("lstm", "tv", gap=5, seed=1)
    patient = spec.replace(solve_patience=4)
    assert "solve_patience" not in spec.to_dict()  # keys of specs without it are unchanged
    assert patient.key != spec.key and patient.shape_key() == spec.shape_key()
    assert RunSpec.from_dict(patient.to_dict()) == patient
    assert patient.run_id == "lstm-tv-gap5-h32-lr0.01-sp4-s1"


def test_budget_stops_and_curve_ends_at_the_budget():
    spec = SMALL.replace(budget=30, eval_every=20, lr=1e-4)  # too little to solve tv
    result = train(spec, diagnostics=False)[0]
    assert result.stop_reason == "budget" and result.steps == 30
    assert result.curve["step"] == [0, 20, 30]
    assert result.curve["train_loss"][0] is None and result.curve["train_loss"][1] > 0
    assert result.steps_to_solve is None


# ---------------------------------------------------------------- clipping


def test_clip_by_global_norm():
    rng = np.random.default_rng(0)
    grad = rng.normal(size=1000).astype(np.float32)
    norm = float(np.linalg.norm(grad.astype(np.float64)))
    clipped = grad.copy()
    assert clip_by_global_norm(clipped, 1.5) == pytest.approx(norm, rel=1e-12)
    assert np.linalg.norm(clipped.astype(np.float64)) == pytest.approx(1.5, rel=1e-6)
    np.testing.assert_allclose(clipped, grad * (1.5 / norm), rtol=1e-6)  # direction kept
    for threshold in (0.0, 2 * norm):  # off, or below the threshold: untouched
        untouched = grad.copy()
        clip_by_global_norm(untouched, threshold)
        assert untouched.tobytes() == grad.tobytes()
    assert global_norm(np.array([3.0, 4.0])) == 5.0


def test_one_training_step_is_loss_grad_then_clip_then_adam():
    spec = SMALL.replace(budget=1, eval_every=1, batch_size=8, clip=0.05, lr=1e-2)
    trained = train_ensemble([spec], diagnostics=False)
    task = tasks.get("tv")
    n_in, n_out = task.n_in(spec.gap), task.n_out(spec.gap)
    params = ablate.init_params("lstm", n_in, spec.n_hidden, n_out, spec.seed)
    batch = task.batch(spec.gap, spec.batch_size, spec.seed, "train", 0)
    loss, grad = ablate.loss_and_grad("lstm", params, batch.x, batch.target, batch.mask,
                                      "xent", spec.n_hidden, n_out)
    norm = clip_by_global_norm(grad, spec.clip)
    assert norm > spec.clip  # the clip is active in this step
    assert np.linalg.norm(grad.astype(np.float64)) == pytest.approx(spec.clip, rel=1e-6)
    ablate.adam_step(params, grad, np.zeros_like(params), np.zeros_like(params), 1, spec.lr)
    np.testing.assert_allclose(trained.params[0], params, rtol=1e-6, atol=1e-7)
    assert trained.results[0].curve["train_loss"][1] == pytest.approx(loss, rel=1e-6)
    assert trained.results[0].curve["grad_norm"][1] == pytest.approx(norm, rel=1e-6)


# ---------------------------------------------------------------- the record


def test_run_result_round_trips_through_json():
    result = train(SMALL.replace(budget=25), diagnostics=True)[0]
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    again = RunResult.from_dict(data)
    assert again == result
    assert again.to_dict() == result.to_dict()
    for key in ("spec", "curve", "metric", "score", "solved", "steps_to_solve", "diverged",
                "wall_seconds", "compile_seconds", "steps_per_second", "versions", "commit",
                "backend", "diagnostics"):
        assert key in data
    assert data["backend"] == "cpu"
    assert set(data["versions"]) == {"ablate", "numba", "numpy", "python"}
    assert set(data["diagnostics"]) == {"init", "final"}
    assert data["spec"]["task_options"] == {} and data["spec"]["dtype"] == "float32"


def test_run_spec_id_key_and_options():
    spec = RunSpec("lstm", "copy", gap=200, seed=3, task_options={"n_recall": 3})
    assert spec.run_id == "lstm-copy-gap200-h32-lr0.01-s3"
    assert spec.options == {"n_recall": 3}
    assert spec == RunSpec.from_dict(spec.to_dict()) and hash(spec) == hash(spec.replace())
    assert spec.key != spec.replace(seed=4).key
    assert spec.shape_key() == spec.replace(seed=4, lr=1e-3, clip=0.0, budget=5).shape_key()


def test_forget_bias_is_part_of_the_run_but_not_of_its_shape():
    spec = RunSpec("lstm", "tv", gap=5, seed=1)
    biased = spec.replace(forget_bias=3)
    assert biased.forget_bias == 3.0 and biased.run_id == "lstm-tv-gap5-h32-lr0.01-fb3-s1"
    assert "forget_bias" not in spec.to_dict()  # keys of specs without it are unchanged
    assert biased.key != spec.key and biased.shape_key() == spec.shape_key()
    assert RunSpec.from_dict(biased.to_dict()) == biased
    # the run starts from exactly init_params(..., forget_bias=3)
    (result,) = train(SMALL.replace(forget_bias=3.0, budget=1, eval_every=1),
                      diagnostics=False)
    (plain,) = train(SMALL.replace(budget=1, eval_every=1), diagnostics=False)
    assert result.curve["val_loss"][0] != plain.curve["val_loss"][0]


def test_evaluation_in_row_chunks_equals_one_call(monkeypatch):
    """Chunks of EVAL_ROWS sequences (a ragged last one) give the whole batch's loss and metric."""
    import ablate.train as train_module

    monkeypatch.setattr(train_module, "EVAL_ROWS", 8)
    spec = RunSpec("gru", "copy", gap=7, n_hidden=11, eval_batch=37, test_batch=37, seed=5,
                   task_options={"n_recall": 3})
    setup = train_module.EnsembleSetup(spec)
    assert [rows.stop - rows.start for rows, _ in setup.validation_x] == [8, 8, 8, 8, 5]
    params = ablate.init_params("gru", setup.n_in, 11, setup.n_out, seed=5)
    loss, metric = setup.evaluate(params, "validation")
    batch = setup.validation
    y = ablate.forward("gru", params, batch.x.astype(np.float32), 11, setup.n_out).y
    assert loss == pytest.approx(train_module.masked_loss(y, batch.target, batch.mask, "xent"),
                                 rel=1e-6)
    assert metric == setup.task.metric(y, batch)


# ---------------------------------------------------------------- compile cache

_CHILD = """
import json
from ablate.results import RunSpec
from ablate.train import train, trainer
spec = RunSpec("lstm", "tv", gap=5, n_hidden=16, budget=1, eval_every=1, eval_batch=8,
               test_batch=8)
train(spec, diagnostics=False)
stats = trainer("lstm", "float32").stats
print(json.dumps({"hits": sum(stats.cache_hits.values()),
                  "misses": sum(stats.cache_misses.values())}))
"""


def test_a_second_process_loads_the_trainer_from_the_disk_cache(tmp_path):
    """The first process compiles the trainer into the cache, the second loads it. Both use
    a cache of their own: in the shared one, another test's process writing the same index
    at that moment could drop the entry (seen once under -n 2)."""
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root), "NUMBA_CACHE_DIR": str(tmp_path)}

    def compile_stats() -> dict:
        out = subprocess.run([sys.executable, "-c", _CHILD], env=env, capture_output=True,
                             text=True, check=True, cwd=root)
        return json.loads(out.stdout.splitlines()[-1])

    assert compile_stats() == {"hits": 0, "misses": 1}
    assert compile_stats() == {"hits": 1, "misses": 0}


# ---------------------------------------------------------------- bad arguments


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"cell": "lstmm"}, "unknown cell 'lstmm'"),
        ({"task": "nope"}, "unknown task 'nope'"),
        ({"gap": -1}, "gap must be an integer >= 1"),
        ({"gap": 0}, "gap must be an integer >= 1"),
        ({"budget": 0}, "budget must be an integer >= 1"),
        ({"lr": 0.0}, "lr must be a finite number > 0"),
        ({"lr": -1e-3}, "lr must be a finite number > 0"),
        ({"lr": float("nan")}, "lr must be a finite number > 0"),
        ({"clip": -1.0}, "clip must be a finite number >= 0"),
        ({"eval_every": 0}, "eval_every must be an integer >= 1"),
        ({"n_hidden": 2.5}, "n_hidden must be an integer >= 1"),
        ({"dtype": "float16"}, "dtype must be one of float32, float64"),
        ({"task_options": {"colour": 1}}, "unknown option 'colour'"),
        ({"cell": "gru", "forget_bias": 3.0},
         "cell 'gru' has no forget gate .*cells with one: lstm"),
        ({"forget_bias": float("inf")}, "forget_bias must be a finite number or None"),
        ({"forget_bias": "3"}, "forget_bias must be a finite number or None"),
        ({"solve_patience": 0}, "solve_patience must be an integer >= 1"),
        ({"solve_patience": 2.0}, "solve_patience must be an integer >= 1"),
        ({"solve_patience": True}, "solve_patience must be an integer >= 1"),
    ],
)
def test_bad_arguments_raise_one_clear_value_error(changes, message):
    arguments = {"cell": "lstm", "task": "tv", "gap": 5, **changes}
    with pytest.raises(ValueError, match=message) as error:
        RunSpec(**arguments)
    assert "\n" not in str(error.value)


def test_bad_ensembles_raise_value_error():
    with pytest.raises(ValueError, match="at least one RunSpec"):
        train([])
    with pytest.raises(ValueError, match="gap differs"):
        train_ensemble([SMALL, SMALL.replace(gap=6)])
    with pytest.raises(ValueError, match="RunSpec instances"):
        train([{"cell": "lstm"}])
    with pytest.raises(ValueError, match="threads must be a positive integer"):
        train_ensemble([SMALL], threads=0)
