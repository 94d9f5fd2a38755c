"""ablate.cost: run and suite time estimates (shape of the model, and the recorded
measurements it must bound; no test reads a clock)."""

from __future__ import annotations

import pytest

from ablate.cost import estimate_seconds, estimate_suite_seconds, sequence_lengths
from ablate.results import RunSpec

BASE = RunSpec("lstm", "tv", gap=100, budget=1000)
POINTS = [
    BASE,
    RunSpec("gru", "copy", gap=30, task_options={"n_recall": 3}),
    RunSpec("rnn", "adding", gap=50),
    RunSpec("nfg", "continual", gap=10),
    RunSpec("single_net", "temporal_order", gap=40),
    RunSpec("lstm_peephole", "timing", gap=20),
    RunSpec("mingru", "mqar", gap=10),
]


@pytest.mark.parametrize("spec", POINTS, ids=lambda s: s.run_id)
def test_positive_and_monotone_in_budget_gap_and_hidden_size(spec):
    seconds = estimate_seconds(spec)
    assert seconds > 0
    assert estimate_seconds(spec.replace(budget=2 * spec.budget)) > seconds
    assert estimate_seconds(spec.replace(gap=2 * spec.gap)) > seconds
    assert estimate_seconds(spec.replace(n_hidden=2 * spec.n_hidden)) > seconds
    assert estimate_seconds(spec.replace(batch_size=2 * spec.batch_size)) > seconds
    assert estimate_seconds(spec, diagnostics=False) < seconds
    assert estimate_seconds(spec.replace(dtype="float64")) > seconds


def test_monotone_over_a_grid_of_sizes():
    for cell in ("lstm", "gru", "rnn"):
        for n_hidden in (1, 2, 4, 8, 16, 32, 64, 128, 256):
            smaller = BASE.replace(cell=cell, n_hidden=n_hidden)
            larger = BASE.replace(cell=cell, n_hidden=n_hidden + 1)
            assert estimate_seconds(larger) >= estimate_seconds(smaller), (cell, n_hidden)


def test_sequence_lengths_follow_the_task():
    assert sequence_lengths(RunSpec("lstm", "tv", gap=100)) == (112, 112)
    assert sequence_lengths(RunSpec("lstm", "copy", gap=100, task_options={"n_recall": 3})) == (
        106, 106)
    train_t, eval_t = sequence_lengths(RunSpec("lstm", "continual", gap=10))
    assert eval_t == 4 * train_t  # 32 evaluation episodes against 8 in training


def test_suite_estimate_uses_workers_and_keeps_ensembles_together():
    specs = [BASE.replace(seed=seed, lr=lr) for seed in range(3) for lr in (1e-3, 3e-3)]
    specs += [BASE.replace(gap=10, seed=seed) for seed in range(3)]
    one = estimate_suite_seconds(specs, workers=1)
    two = estimate_suite_seconds(specs, workers=2)
    total = sum(estimate_seconds(spec) for spec in specs)
    assert total < one and two < one
    # the six gap-100 runs share shapes: one ensemble, on one worker
    assert two >= sum(estimate_seconds(spec) for spec in specs[:6])
    assert estimate_suite_seconds(specs, workers=2) == two  # deterministic
    assert estimate_suite_seconds([], workers=2) == 0.0
    with pytest.raises(ValueError, match="workers must be a positive integer"):
        estimate_suite_seconds(specs, workers=0)


def test_an_upper_bound_within_two_of_every_recorded_full_budget_ensemble():
    """Against the measurements the model was fitted beside (bench/suite_data/solve.jsonl,
    recorded by ``bench/suite_costs.py solve``; no clock is read here): every ensemble whose
    runs all trained their whole budget took between half the estimate and the estimate."""
    import collections
    import json
    from pathlib import Path

    data = Path(__file__).resolve().parent.parent / "bench" / "suite_data" / "solve.jsonl"
    calls = collections.defaultdict(list)
    for line in data.read_text().splitlines():
        row = json.loads(line)
        calls[(row["time"], row["call"])].append(row)
    checked = 0
    for (_, seconds), rows in calls.items():
        if any(row["stop"] != "budget" or row["diagnostics"] for row in rows):
            continue
        estimate = sum(estimate_seconds(RunSpec.from_dict(row["spec"])) for row in rows)
        assert estimate / 2 <= seconds <= estimate, (rows[0]["spec"], seconds, estimate)
        checked += 1
    assert checked >= 15
