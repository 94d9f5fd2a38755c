"""The public cell API: dtypes, determinism, layout, initialisation and bad arguments."""

from __future__ import annotations

import re

import numpy as np
import pytest

import ablate

CELL_NAMES = ablate.cells.names()
F32, F64 = np.float32, np.float64

# One moderate size shared by the tests below, so compiled signatures are shared too.
N_IN, N_HIDDEN, N_OUT, N_BATCH, N_STEPS = 10, 32, 10, 8, 50


def rel_err(ours: np.ndarray, ref: np.ndarray) -> float:
    """max|ours − ref| / max|ref|; an all-zero reference counts the absolute error."""
    ours, ref = np.asarray(ours, dtype=F64), np.asarray(ref, dtype=F64)
    diff = float(np.max(np.abs(ours - ref), initial=0.0))
    scale = float(np.max(np.abs(ref), initial=0.0))
    return diff / scale if scale > 0 else diff


def problem(loss: str, dtype=F32, seed: int = 0):
    """x [T,B,I], target, mask [T,B] (about half the steps counted) at the moderate size."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 1.0, (N_STEPS, N_BATCH, N_IN)).astype(dtype)
    if loss == "xent":
        target = rng.integers(0, N_OUT, (N_STEPS, N_BATCH)).astype(np.int64)
    else:
        target = rng.normal(0.0, 1.0, (N_STEPS, N_BATCH, N_OUT)).astype(dtype)
    mask = (rng.random((N_STEPS, N_BATCH)) < 0.5).astype(dtype)
    mask[-1] = 1.0
    return x, target, mask


def cast(x, target, mask, dtype):
    return x.astype(dtype), target if target.dtype == np.int64 else target.astype(dtype), \
        mask.astype(dtype)


# --- float32 against float64 --------------------------------------------------------

@pytest.mark.parametrize("loss", ["xent", "mse"])
@pytest.mark.parametrize("name", CELL_NAMES)
def test_float32_matches_float64(name, loss):
    cell = ablate.cells.get(name)
    params32 = ablate.init_params(cell.name, N_IN, N_HIDDEN, N_OUT, seed=1, dtype=F32)
    params64 = params32.astype(F64)  # the same values: only the arithmetic differs
    x, target, mask = problem(loss, F32)
    loss32, grad32 = ablate.loss_and_grad(cell.name, params32, x, target, mask, loss,
                                          N_HIDDEN, N_OUT)
    loss64, grad64 = ablate.loss_and_grad(cell.name, params64, *cast(x, target, mask, F64), loss,
                                          N_HIDDEN, N_OUT)
    assert grad32.dtype == F32 and grad64.dtype == F64
    assert isinstance(loss32, float) and isinstance(loss64, float)
    errors = {"loss": abs(loss32 - loss64) / abs(loss64)}
    blocks32 = ablate.unflatten(cell.name, grad32, N_IN, N_HIDDEN, N_OUT)
    blocks64 = ablate.unflatten(cell.name, grad64, N_IN, N_HIDDEN, N_OUT)
    for block in blocks64:
        errors[f"d{block}"] = rel_err(blocks32[block], blocks64[block])
    bad = {k: v for k, v in errors.items() if not v < 1e-4}
    assert not bad, f"{name} {loss}: float32 vs float64 relative errors {bad}"


# --- determinism --------------------------------------------------------------------

@pytest.mark.parametrize("name", CELL_NAMES)
def test_same_seed_same_bytes(name):
    cell = ablate.cells.get(name)
    first = ablate.init_params(cell.name, N_IN, N_HIDDEN, N_OUT, seed=3)
    second = ablate.init_params(cell.name, N_IN, N_HIDDEN, N_OUT, seed=3)
    assert first.dtype == F32, "init_params defaults to float32"
    assert first.tobytes() == second.tobytes()
    other = ablate.init_params(cell.name, N_IN, N_HIDDEN, N_OUT, seed=4)
    assert other.tobytes() != first.tobytes(), "a different seed gave the same parameters"

    x, target, mask = problem("xent", F32)
    loss_a, grad_a = ablate.loss_and_grad(cell.name, first, x, target, mask, "xent",
                                          N_HIDDEN, N_OUT)
    loss_b, grad_b = ablate.loss_and_grad(cell.name, second, x, target, mask, "xent",
                                          N_HIDDEN, N_OUT)
    assert loss_a == loss_b
    assert grad_a.tobytes() == grad_b.tobytes()


# --- layout -------------------------------------------------------------------------

@pytest.mark.parametrize("name", CELL_NAMES)
def test_unflatten_views_follow_block_shapes(name):
    cell = ablate.cells.get(name)
    n_params = cell.n_params(N_IN, N_HIDDEN, N_OUT)
    params = np.arange(n_params, dtype=F64)
    blocks = ablate.unflatten(cell.name, params, N_IN, N_HIDDEN, N_OUT)
    shapes = cell.block_shapes(N_IN, N_HIDDEN, N_OUT)
    assert [(k, v.shape) for k, v in blocks.items()] == [(k, tuple(s)) for k, s in shapes]
    offset = 0
    for block in blocks.values():
        assert np.shares_memory(block, params), "unflatten should return views"
        np.testing.assert_array_equal(block.ravel(), params[offset:offset + block.size])
        offset += block.size
    assert offset == n_params
    again = ablate.flatten(cell.name, {k: v.copy() for k, v in blocks.items()},
                           N_IN, N_HIDDEN, N_OUT)
    np.testing.assert_array_equal(again, params)


# --- initialisation -----------------------------------------------------------------

@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("name", CELL_NAMES)
def test_init_follows_spec(name, dtype):
    """uniform(±1/√H) weights; b shifted by forget_bias on f, input_bias on i; irnn R = I."""
    cell = ablate.cells.get(name)
    params = ablate.init_params(cell.name, N_IN, N_HIDDEN, N_OUT, seed=0, dtype=dtype)
    assert params.dtype == dtype
    assert params.shape == (cell.n_params(N_IN, N_HIDDEN, N_OUT),)
    assert np.all(np.isfinite(params))
    blocks = ablate.unflatten(cell.name, params, N_IN, N_HIDDEN, N_OUT)
    bound = 1.0 / np.sqrt(N_HIDDEN) * (1 + 1e-6)
    assert np.max(np.abs(blocks["W"])) <= bound
    assert np.std(blocks["W"]) > 0.3 * bound, "W looks not randomly initialised"
    if cell.identity_recurrence:
        np.testing.assert_array_equal(blocks["R"], np.eye(N_HIDDEN, dtype=dtype))
        np.testing.assert_array_equal(blocks["b"], 0.0)
        return
    if cell.recurrent:
        assert np.max(np.abs(blocks["R"])) <= bound
    for k, gate in enumerate(cell.gates):
        bias = blocks["b"][k * N_HIDDEN:(k + 1) * N_HIDDEN].astype(F64)
        offset = {"f": cell.forget_bias, "i": cell.input_bias}.get(gate, 0.0)
        assert np.max(np.abs(bias - offset)) <= bound + 1e-6, \
            f"{name}: bias of gate {gate} should be uniform(±1/√H) + {offset}"


FORGET_BIAS_CELLS = [n for n in CELL_NAMES if "f" in ablate.cells.get(n).gates]


@pytest.mark.parametrize("name", FORGET_BIAS_CELLS)
def test_forget_bias_plus_one_where_spec_says(name):
    cell = ablate.cells.get(name)
    params = ablate.init_params(cell.name, N_IN, N_HIDDEN, N_OUT, seed=2, dtype=F64)
    b = ablate.unflatten(cell.name, params, N_IN, N_HIDDEN, N_OUT)["b"]
    k = cell.gates.index("f")
    forget = b[k * N_HIDDEN:(k + 1) * N_HIDDEN]
    if cell.forget_bias == 1.0:
        assert forget.min() > 1.0 - 1.0 / np.sqrt(N_HIDDEN) - 1e-9
    assert abs(forget.mean() - cell.forget_bias) < 0.1


@pytest.mark.parametrize("name", FORGET_BIAS_CELLS)
def test_forget_bias_argument_replaces_the_default_shift(name):
    """init_params(..., forget_bias=x): b_f = uniform(±1/√H) + x, every other block the same
    draws as the default init (only the shift differs)."""
    cell = ablate.cells.get(name)
    default = ablate.init_params(name, N_IN, N_HIDDEN, N_OUT, seed=4, dtype=F64)
    shifted = ablate.init_params(name, N_IN, N_HIDDEN, N_OUT, seed=4, dtype=F64, forget_bias=4.5)
    k = cell.gates.index("f")
    forget = slice(k * N_HIDDEN, (k + 1) * N_HIDDEN)
    b_default = ablate.unflatten(name, default, N_IN, N_HIDDEN, N_OUT)["b"]
    b_shifted = ablate.unflatten(name, shifted, N_IN, N_HIDDEN, N_OUT)["b"]
    np.testing.assert_allclose(b_shifted[forget] - b_default[forget], 4.5 - cell.forget_bias)
    changed = np.flatnonzero(shifted != default)
    offset = sum(np.prod(s) for n, s in cell.block_shapes(N_IN, N_HIDDEN, N_OUT)
                 if n in ("W", "R"))
    assert set(changed) <= set(range(offset + forget.start, offset + forget.stop))


@pytest.mark.parametrize("name", [n for n in CELL_NAMES if n not in FORGET_BIAS_CELLS])
def test_forget_bias_on_a_cell_without_forget_gate_is_an_error(name):
    with pytest.raises(ValueError, match=f"cell '{name}' has no forget gate"):
        ablate.init_params(name, N_IN, N_HIDDEN, N_OUT, forget_bias=2.0)


def test_spec_forget_bias_on_the_lstm_family():
    """The LSTM cells with a forget gate start it at +1 (Jozefowicz et al. 2015)."""
    for name in ("lstm", "lstm_peephole", "nig", "nog", "niaf", "noaf", "fgr",
                 "net_readout", "sigmoid_input", "sigmoid_readout", "use_gate"):
        if name in CELL_NAMES:
            assert ablate.cells.get(name).forget_bias == 1.0, name


def test_lstm97_input_bias_negative():
    cell = ablate.cells.get("lstm97")
    params = ablate.init_params(cell.name, N_IN, N_HIDDEN, N_OUT, seed=0)
    b = ablate.unflatten(cell.name, params, N_IN, N_HIDDEN, N_OUT)["b"]
    k = cell.gates.index("i")
    assert np.all(b[k * N_HIDDEN:(k + 1) * N_HIDDEN] < 0)


def test_irnn_recurrence_is_identity():
    cell = ablate.cells.get("irnn")
    for dtype in (F32, F64):
        params = ablate.init_params(cell.name, N_IN, N_HIDDEN, N_OUT, seed=9, dtype=dtype)
        blocks = ablate.unflatten(cell.name, params, N_IN, N_HIDDEN, N_OUT)
        np.testing.assert_array_equal(blocks["R"], np.eye(N_HIDDEN))


# --- bad arguments: one clear ValueError --------------------------------------------

def one_clear_error(call, *words: str) -> str:
    """call() raises a single-line ValueError, not chained, naming every word."""
    with pytest.raises(ValueError) as info:
        call()
    error = info.value
    message = str(error)
    assert "\n" not in message.strip(), f"not one line: {message!r}"
    assert error.__cause__ is None and (error.__suppress_context__ or
                                        error.__context__ is None), \
        f"chained error: {error!r} from {error.__context__!r}"
    for word in words:
        assert word.lower() in message.lower(), f"{word!r} not in {message!r}"
    return message


@pytest.fixture(scope="module")
def lstm_case():
    cell = ablate.cells.get("lstm")
    params = ablate.init_params(cell.name, N_IN, N_HIDDEN, N_OUT, seed=0)
    x, target, mask = problem("xent", F32)
    return cell, params, x, target, mask


def test_unknown_cell_lists_known_ones():
    for call in (lambda: ablate.cells.get("lstn"),
                 lambda: ablate.init_params("lstn", N_IN, N_HIDDEN, N_OUT)):
        message = one_clear_error(call, "lstn")
        for name in CELL_NAMES:
            assert name in message, f"known cell {name!r} not listed in {message!r}"


def test_to_torch_only_for_cells_torch_has():
    params = ablate.init_params("nfg", N_IN, N_HIDDEN, N_OUT)
    one_clear_error(lambda: ablate.to_torch("nfg", params, N_IN, N_HIDDEN, N_OUT),
                    "nfg", "lstm", "gru", "rnn")


def test_unknown_loss(lstm_case):
    cell, params, x, target, mask = lstm_case
    one_clear_error(lambda: ablate.loss_and_grad(cell.name, params, x, target, mask, "hinge",
                                                 N_HIDDEN, N_OUT), "hinge", "xent", "mse")


def test_x_wrong_ndim(lstm_case):
    cell, params, x, target, mask = lstm_case
    one_clear_error(lambda: ablate.loss_and_grad(cell.name, params, x[0], target, mask, "xent",
                                                 N_HIDDEN, N_OUT), "x")
    one_clear_error(lambda: ablate.forward(cell.name, params, x[0], N_HIDDEN, N_OUT), "x")


def test_x_size_inconsistent_with_params(lstm_case):
    cell, params, x, target, mask = lstm_case
    wider = np.concatenate([x, x[:, :, :1]], axis=2)  # I = 11: params were made for 10
    for call in (
        lambda: ablate.loss_and_grad(cell.name, params, wider, target, mask, "xent",
                                     N_HIDDEN, N_OUT),
        lambda: ablate.forward(cell.name, params, wider, N_HIDDEN, N_OUT),
    ):
        message = one_clear_error(call, "params")
        # it must say where the mismatch comes from: x itself, or the n_in read from it
        assert re.search(r"\bx\b", message) or "n_in=11" in message, message


def test_n_hidden_inconsistent_with_params(lstm_case):
    cell, params, x, target, mask = lstm_case
    one_clear_error(lambda: ablate.loss_and_grad(cell.name, params, x, target, mask, "xent",
                                                 N_HIDDEN + 1, N_OUT), "n_hidden")
    one_clear_error(lambda: ablate.forward(cell.name, params, x, N_HIDDEN + 1, N_OUT), "n_hidden")


def test_target_shape_mismatch(lstm_case):
    cell, params, x, target, mask = lstm_case
    one_clear_error(lambda: ablate.loss_and_grad(cell.name, params, x, target[:, :-1], mask,
                                                 "xent", N_HIDDEN, N_OUT), "target")
    _, mse_target, _ = problem("mse", F32)
    one_clear_error(lambda: ablate.loss_and_grad(cell.name, params, x, mse_target[..., :-1], mask,
                                                 "mse", N_HIDDEN, N_OUT), "target")


def test_target_class_out_of_range(lstm_case):
    cell, params, x, target, mask = lstm_case
    bad = target.copy()
    bad[-1, 1] = N_OUT  # a counted step (mask[-1] = 1); masked-out targets may be anything
    one_clear_error(lambda: ablate.loss_and_grad(cell.name, params, x, bad, mask, "xent",
                                                 N_HIDDEN, N_OUT), "target")


def test_mask_shape_mismatch(lstm_case):
    cell, params, x, target, mask = lstm_case
    one_clear_error(lambda: ablate.loss_and_grad(cell.name, params, x, target, mask[:-1], "xent",
                                                 N_HIDDEN, N_OUT), "mask")


def test_non_finite_x(lstm_case):
    cell, params, x, target, mask = lstm_case
    bad = x.copy()
    bad[2, 1, 0] = np.nan
    message = one_clear_error(lambda: ablate.loss_and_grad(cell.name, params, bad, target, mask,
                                                           "xent", N_HIDDEN, N_OUT), "x")
    assert "finite" in message.lower() or "nan" in message.lower(), message
    one_clear_error(lambda: ablate.forward(cell.name, params, bad, N_HIDDEN, N_OUT), "x")


def test_non_finite_params(lstm_case):
    cell, params, x, target, mask = lstm_case
    bad = params.copy()
    bad[5] = np.inf
    message = one_clear_error(lambda: ablate.loss_and_grad(cell.name, bad, x, target, mask,
                                                           "xent", N_HIDDEN, N_OUT), "params")
    assert "finite" in message.lower() or "inf" in message.lower(), message
    one_clear_error(lambda: ablate.forward(cell.name, bad, x, N_HIDDEN, N_OUT), "params")


@pytest.mark.parametrize("name", ["lstm", "nfg", "gru", "rnn", "minlstm"])
def test_training_driver_skips_the_error_flow_and_nothing_else(name):
    """Training calls the chunk driver with flow=False: the same loss and gradient bit for
    bit, the norms left at zero; with flow=True they are the error flow."""
    rng = np.random.default_rng(7)
    T, B, I, H, O = 12, 4, 3, 6, 2
    params = ablate.init_params(name, I, H, O, seed=3, dtype=np.float32)
    x = rng.normal(size=(T, B, I)).astype(np.float32)
    target = rng.integers(0, O, (T, B)).astype(np.int64)
    mask = np.ones((T, B), np.float32)
    chunk_loss_grad, _ = ablate.cells.drivers(name, np.float32)
    out = {}
    for flow in (True, False):
        grad = np.zeros_like(params)
        loss, dh_sq, dc_sq = chunk_loss_grad(params, x, target, np.zeros((0, 0, 0), np.float32),
                                             mask, 0, H, O, 1.0 / mask.sum(), grad, flow)
        out[flow] = (loss, grad, dh_sq, dc_sq)
    assert out[True][0] == out[False][0]
    np.testing.assert_array_equal(out[True][1], out[False][1])
    assert np.all(out[True][2] > 0) and not np.any(out[False][2]) and not np.any(out[False][3])
    if ablate.cells.get(name).has_cell_state:
        assert np.all(out[True][3] > 0)
