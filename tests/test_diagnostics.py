"""Tests of ablate.diagnostics: error-flow shape and decay, gate values (checked by rebuilding
the cell's memory from them), gate statistics, state drift, and a trained run's record."""

from __future__ import annotations

import numpy as np
import pytest

import ablate
from ablate import diagnostics, tasks

TV = tasks.get("tv")
GAP = 20
H = 32


def fresh(cell: str, seed: int = 0, task=TV, gap: int = GAP) -> np.ndarray:
    return ablate.init_params(cell, task.n_in(gap), H, task.n_out(gap), seed)


# ---------------------------------------------------------------- error flow


@pytest.mark.parametrize("cell", ["lstm", "rnn"])
def test_error_flow_shape(cell):
    flow = diagnostics.error_flow(cell, fresh(cell), TV, GAP, H, n_rows=8)
    batch = TV.batch(GAP, 8, 0, "test", 1)
    depth = int(diagnostics.last_masked_steps(batch.mask).min()) + 1
    assert depth >= GAP + 2  # the cue waits gap + 1 steps for its query
    assert flow["distance"] == list(range(depth))
    assert len(flow["dh_norm"]) == depth
    assert all(np.isfinite(flow["dh_norm"])) and min(flow["dh_norm"]) > 0
    if cell == "rnn":
        assert flow["dc_norm"] is None and flow["dc_decay_rate"] is None
    else:
        assert len(flow["dc_norm"]) == depth and min(flow["dc_norm"]) > 0


def test_error_flow_loss_is_at_the_last_masked_step_only():
    params = fresh("rnn")
    flow = diagnostics.error_flow("rnn", params, TV, GAP, H, n_rows=1)
    batch = TV.batch(GAP, 1, 0, "test", 1)
    t_loss = int(diagnostics.last_masked_steps(batch.mask)[0])
    mask = np.zeros((t_loss + 1, 1), np.float32)
    mask[t_loss] = 1.0
    direct = ablate.loss_grad_flow("rnn", params, batch.x[: t_loss + 1], batch.target[: t_loss + 1],
                                   mask, "xent", H, TV.n_out(GAP))
    np.testing.assert_allclose(flow["dh_norm"], direct.dh_norm[::-1][: len(flow["dh_norm"])])


def test_rnn_error_decays_faster_than_the_lstm_cell_state_at_init():
    for seed in range(3):
        rnn = diagnostics.error_flow("rnn", fresh("rnn", seed), TV, GAP, H, seed=seed)
        lstm = diagnostics.error_flow("lstm", fresh("lstm", seed), TV, GAP, H, seed=seed)
        # forget bias +1: ‖∂L/∂c_t‖ shrinks ~σ(1) ≈ 0.73 per step; rnn's ‖∂L/∂h_t‖ far faster
        assert rnn["dh_decay_rate"] < lstm["dc_decay_rate"] - 0.2
        assert lstm["dc_decay_rate"] < 0


def test_decay_rate_recovers_an_exponential():
    distance = np.arange(30)
    assert diagnostics.decay_rate(distance, 3.0 * np.exp(-0.25 * distance)) == pytest.approx(-0.25)
    assert diagnostics.decay_rate(distance, np.ones(30)) == pytest.approx(0.0, abs=1e-12)
    assert diagnostics.decay_rate([0, 1], [1.0, 0.5]) is None  # one point at d >= 1
    assert diagnostics.decay_rate([0, 1, 2], [1.0, 0.0, 0.0]) is None  # zeros are skipped


# ---------------------------------------------------------------- gates


def _shift(values: np.ndarray) -> np.ndarray:
    """values at t−1 (zero at t = 0)."""
    return np.concatenate([np.zeros_like(values[:1]), values[:-1]])


@pytest.mark.parametrize("cell", ["lstm", "lstm_peephole", "fgr", "cifg", "nfg"])
def test_lstm_gates_rebuild_the_cell_state(cell):
    params = fresh(cell, seed=1)
    batch = TV.batch(GAP, 4, 0, "test", 1)
    gates = diagnostics.gate_values(cell, params, batch.x, H, TV.n_out(GAP))
    c = ablate.forward(cell, params, batch.x, H, TV.n_out(GAP)).c
    rebuilt = gates["f"] * _shift(c) + gates["i"] * gates["g"]  # c_t = f ⊙ c_{t-1} + i ⊙ g
    np.testing.assert_allclose(rebuilt, c, atol=2e-5)
    assert gates["keep"] is gates["f"] and gates["write"] is gates["i"]
    if cell == "nfg":
        assert (gates["f"] == 1.0).all()
    if cell == "cifg":
        np.testing.assert_allclose(gates["f"], 1.0 - gates["i"])


def test_gru_gates_rebuild_the_hidden_state():
    params = fresh("gru", seed=1)
    batch = TV.batch(GAP, 4, 0, "test", 1)
    gates = diagnostics.gate_values("gru", params, batch.x, H, TV.n_out(GAP))
    h = ablate.forward("gru", params, batch.x, H, TV.n_out(GAP)).h
    rebuilt = (1.0 - gates["z"]) * gates["n"] + gates["z"] * _shift(h)
    np.testing.assert_allclose(rebuilt, h, atol=2e-5)


def test_gate_stats_at_init():
    lstm = diagnostics.gate_stats("lstm", fresh("lstm"), TV, GAP, H)
    # forget bias +1 and small weights: f ≈ σ(1) = 0.73 everywhere, so little survives 21 steps
    assert lstm["keep_gap_mean"] == pytest.approx(1 / (1 + np.exp(-1)), abs=0.05)
    assert 0 < lstm["retention_mean"] <= lstm["retention_best_unit"] < 0.1
    assert 0.3 < lstm["write_cue_mean"] < 0.7 and 0.3 < lstm["write_other_mean"] < 0.7
    nfg = diagnostics.gate_stats("nfg", fresh("nfg"), TV, GAP, H)
    assert nfg["keep_gap_mean"] == 1.0 and nfg["retention_mean"] == 1.0
    assert nfg["keep_gate"] == "none (f = 1)"
    assert diagnostics.gate_stats("rnn", fresh("rnn"), TV, GAP, H) is None


# ---------------------------------------------------------------- state drift


def test_state_drift_without_a_forget_gate_grows():
    lstm = diagnostics.state_drift("lstm", fresh("lstm"), TV, GAP, H, n_segments=10)
    nfg = diagnostics.state_drift("nfg", fresh("nfg"), TV, GAP, H, n_segments=10)
    rnn = diagnostics.state_drift("rnn", fresh("rnn"), TV, GAP, H, n_segments=10)
    assert len(lstm["norm_at_segment_end"]) == 10 and lstm["segment_steps"] == GAP + 12
    assert lstm["state"] == "c" and rnn["state"] == "h"
    # c_t = c_{t-1} + i ⊙ g accumulates: a random walk; the forget gate keeps lstm's bounded
    assert nfg["growth"] > 2.0 > lstm["growth"]
    assert rnn["max_abs"] <= 1.0


# ---------------------------------------------------------------- a trained run


def test_training_records_diagnostics_at_init_and_at_the_end():
    from ablate.results import RunSpec
    from ablate.train import train

    spec = RunSpec("lstm", "tv", gap=10, n_hidden=H, budget=800, eval_every=50)
    result = train(spec)[0]
    assert result.solved
    init, final = result.diagnostics["init"], result.diagnostics["final"]
    for stage in (init, final):
        assert set(stage) == {"error_flow", "gates", "state_drift"}
    # learning to hold the cue: the forget gate opens across the gap, more of the cue survives
    assert final["gates"]["retention_best_unit"] > init["gates"]["retention_best_unit"]
    assert final["error_flow"]["dc_decay_rate"] > init["error_flow"]["dc_decay_rate"]
