"""Every cell's forward and gradient against independent references, in float64.

- the PyTorch autograd reference (``ablate.reference.torch_cells``, written from spec.py):
  loss, y/h/c and every named gradient block, relative error < 1e-9;
- central finite differences on tiny sizes (no torch involved);
- ``torch.nn.LSTM/GRU/RNN`` + ``Linear`` with converted weights, both directions.

Relative error of a block: max|ours − ref| / max|ref|. Cells are parametrized over
``ablate.cells.names()``: a new cell is tested the moment it is registered.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ablate
from ablate.reference import torch_cells

CELL_NAMES = ablate.cells.names()
LOSSES = ("xent", "mse")
F64 = np.float64


def rel_err(ours: np.ndarray, ref: np.ndarray) -> float:
    """max|ours − ref| / max|ref|; an all-zero reference counts the absolute error."""
    ours, ref = np.asarray(ours, dtype=F64), np.asarray(ref, dtype=F64)
    assert ours.shape == ref.shape, f"shape {ours.shape} != reference {ref.shape}"
    diff = float(np.max(np.abs(ours - ref), initial=0.0))
    scale = float(np.max(np.abs(ref), initial=0.0))
    return diff / scale if scale > 0 else diff


def spec_blocks(cell, flat: np.ndarray, n_in: int, n_hidden: int, n_out: int) -> dict:
    """Slice a flat vector by ``Cell.block_shapes`` (our own reading of the layout)."""
    blocks, offset = {}, 0
    for name, shape in cell.block_shapes(n_in, n_hidden, n_out):
        size = int(np.prod(shape))
        blocks[name] = flat[offset:offset + size].reshape(shape)
        offset += size
    assert offset == flat.size, f"layout covers {offset} of {flat.size} parameters"
    return blocks


STEPS_BY_SEED = (13, 1, 9, 4)  # every cell sees every length (T = 1 included) over 4 seeds


def random_problem(cell, seed: int, loss: str, sizes=None, dtype=F64, one_hot=False):
    """Random odd shapes, random parameters, inputs, targets and a mask with zero steps;
    ``one_hot``: each input row a single 1 or (one in four) all zeros, as the symbol tasks
    feed them (the LSTM kernels then add columns of W: kernels/one_hot.py)."""
    rng = np.random.default_rng([seed, len(cell.name), sum(map(ord, cell.name))])
    if sizes is None:
        sizes = dict(
            n_in=int(rng.choice([3, 5, 7])), n_hidden=int(rng.choice([5, 7, 9])),
            n_batch=int(rng.choice([1, 3, 5])), n_steps=STEPS_BY_SEED[seed % 4],
            n_out=int(rng.choice([2, 3])),
        )
    n_in, n_hidden, n_out = sizes["n_in"], sizes["n_hidden"], sizes["n_out"]
    n_steps, n_batch = sizes["n_steps"], sizes["n_batch"]
    n_params = cell.n_params(n_in, n_hidden, n_out)
    params = rng.normal(0.0, 0.6, n_params).astype(dtype)
    x = rng.normal(0.0, 1.0, (n_steps, n_batch, n_in)).astype(dtype)
    if one_hot:
        columns = rng.integers(0, n_in, (n_steps, n_batch))
        x = (np.eye(n_in)[columns] * (rng.random((n_steps, n_batch, 1)) < 0.75)).astype(dtype)
    if loss == "xent":
        target = rng.integers(0, n_out, (n_steps, n_batch)).astype(np.int64)
    else:
        target = rng.normal(0.0, 1.0, (n_steps, n_batch, n_out)).astype(dtype)
    mask = (rng.random((n_steps, n_batch)) < 0.7) * rng.uniform(0.5, 2.0, (n_steps, n_batch))
    if n_steps > 1:
        mask[rng.integers(n_steps)] = 0.0  # a whole step without loss
    if mask.sum() == 0:
        mask[-1, 0] = 1.0
    return dict(params=params, x=x, target=target, mask=mask.astype(dtype), **sizes)


# --- the autograd reference ----------------------------------------------------------

def test_reference_covers_every_cell():
    torch_cells.check_complete()
    for name in CELL_NAMES:
        assert ablate.cells.get(name).name == name
        torch_cells.get_cell(name)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("name", CELL_NAMES)
def test_matches_autograd_reference(name, loss, seed):
    check_against_reference(name, loss, seed, random_problem(ablate.cells.get(name), seed, loss))


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("name", CELL_NAMES)
def test_one_hot_inputs_match_autograd_reference(name, seed):
    p = random_problem(ablate.cells.get(name), seed, "xent", one_hot=True)
    check_against_reference(name, "xent", seed, p)


def check_against_reference(name, loss, seed, p):
    cell = ablate.cells.get(name)
    n_in, n_hidden, n_out = p["n_in"], p["n_hidden"], p["n_out"]
    ref_loss, ref_grads, ref_out = torch_cells.reference_loss_and_grad(
        name, spec_blocks(cell, p["params"], n_in, n_hidden, n_out),
        p["x"], p["target"], p["mask"], loss,
    )

    result = ablate.forward(cell.name, p["params"], p["x"], n_hidden, n_out)
    errors = {"y": rel_err(result.y, ref_out["y"]), "h": rel_err(result.h, ref_out["h"])}
    if cell.has_cell_state:
        assert result.c is not None, f"{name} has a cell state but forward returned c=None"
        errors["c"] = rel_err(result.c, ref_out["c"])
    else:
        assert result.c is None, f"{name} has no cell state but forward returned c"

    value, grad = ablate.loss_and_grad(
        name, p["params"], p["x"], p["target"], p["mask"], loss, n_hidden, n_out
    )
    assert isinstance(value, float)
    assert grad.dtype == F64 and grad.shape == p["params"].shape
    errors["loss"] = abs(value - ref_loss) / abs(ref_loss)
    grads = ablate.unflatten(cell.name, grad, n_in, n_hidden, n_out)
    assert list(grads) == list(ref_grads), "gradient blocks differ from block_shapes"
    for block, ref in ref_grads.items():
        errors[f"d{block}"] = rel_err(grads[block], ref)

    bad = {k: v for k, v in errors.items() if not v < 1e-9}
    sizes = {k: p[k] for k in ("n_in", "n_hidden", "n_batch", "n_steps", "n_out")}
    assert not bad, f"{name} {loss} seed={seed} {sizes}: relative errors {bad}"


# --- finite differences, no torch ----------------------------------------------------

FD_CELLS = ["lstm", "lstm_peephole", "fgr", "single_net", "net_readout", "use_gate",
            "gru", "minlstm", "irnn"]
FD_SIZES = dict(n_in=2, n_hidden=3, n_batch=2, n_steps=5, n_out=3)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("name", FD_CELLS)
def test_matches_finite_differences(name, loss):
    cell = ablate.cells.get(name)
    p = random_problem(cell, 7, loss, sizes=FD_SIZES)
    args = (p["x"], p["target"], p["mask"], loss, p["n_hidden"], p["n_out"])
    _, grad = ablate.loss_and_grad(cell.name, p["params"], *args)

    eps = 1e-5
    numeric = np.empty_like(p["params"])
    for k in range(p["params"].size):
        plus, minus = p["params"].copy(), p["params"].copy()
        plus[k] += eps
        minus[k] -= eps
        numeric[k] = (ablate.loss_and_grad(cell.name, plus, *args)[0]
                      - ablate.loss_and_grad(cell.name, minus, *args)[0]) / (2 * eps)

    ours = spec_blocks(cell, grad, p["n_in"], p["n_hidden"], p["n_out"])
    fd = spec_blocks(cell, numeric, p["n_in"], p["n_hidden"], p["n_out"])
    errors = {block: rel_err(ours[block], fd[block]) for block in fd}
    bad = {k: v for k, v in errors.items() if not v < 1e-6}
    assert not bad, f"{name} {loss}: relative error against finite differences {bad}"


# --- torch.nn with converted weights -------------------------------------------------

TORCH_MODULES = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}
NN_SIZES = dict(n_in=5, n_hidden=7, n_batch=3, n_steps=9, n_out=3)


def nn_grads_as_blocks(name: str, module, linear, n_hidden: int) -> dict[str, np.ndarray]:
    """Autograd's gradients of the torch modules, in our block names.

    Our single bias b stands for bias_ih + bias_hh (GRU: b = bias_ih + [bias_hh_r;
    bias_hh_z; 0] and b_hn = bias_hh_n), so its gradient is bias_ih's.
    """
    def grad(t: torch.Tensor) -> np.ndarray:
        return t.grad.detach().numpy().copy()

    blocks = {
        "W": grad(module.weight_ih_l0), "R": grad(module.weight_hh_l0),
        "b": grad(module.bias_ih_l0),
    }
    bias_hh = grad(module.bias_hh_l0)
    if name == "gru":
        np.testing.assert_allclose(bias_hh[:2 * n_hidden], blocks["b"][:2 * n_hidden],
                                   rtol=1e-12, atol=1e-15)
        blocks["b_hn"] = bias_hh[2 * n_hidden:]
    else:
        np.testing.assert_allclose(bias_hh, blocks["b"], rtol=1e-12, atol=1e-15)
    blocks["W_out"] = grad(linear.weight)
    blocks["b_out"] = grad(linear.bias)
    return blocks


def compare_with_nn(name: str, params: np.ndarray, module, linear, loss: str, seed: int):
    """Run torch.nn and ours on the same problem; assert outputs and gradients agree."""
    cell = ablate.cells.get(name)
    p = random_problem(cell, seed, loss, sizes=NN_SIZES)
    n_in, n_hidden, n_out = p["n_in"], p["n_hidden"], p["n_out"]

    module.zero_grad()
    linear.zero_grad()
    out, state = module(torch.from_numpy(p["x"]))
    y = linear(out)
    target = torch.from_numpy(p["target"])
    nn_loss = torch_cells.reference_loss(y, target, torch.from_numpy(p["mask"]), loss)
    nn_loss.backward()

    result = ablate.forward(cell.name, params, p["x"], n_hidden, n_out)
    errors = {"y": rel_err(result.y, y.detach().numpy()),
              "h": rel_err(result.h, out.detach().numpy())}
    if name == "lstm":
        errors["c_last"] = rel_err(result.c[-1], state[1][0].detach().numpy())
    value, grad = ablate.loss_and_grad(
        name, params, p["x"], p["target"], p["mask"], loss, n_hidden, n_out
    )
    errors["loss"] = abs(value - nn_loss.item()) / abs(nn_loss.item())
    ours = ablate.unflatten(cell.name, grad, n_in, n_hidden, n_out)
    for block, ref in nn_grads_as_blocks(name, module, linear, n_hidden).items():
        errors[f"d{block}"] = rel_err(ours[block], ref)
    bad = {k: v for k, v in errors.items() if not v < 1e-9}
    assert not bad, f"{name} {loss} vs torch.nn.{TORCH_MODULES[name].__name__}: {bad}"


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("name", list(TORCH_MODULES))
def test_to_torch_matches_torch_nn(name, loss):
    cell = ablate.cells.get(name)
    s = NN_SIZES
    params = ablate.init_params(cell.name, s["n_in"], s["n_hidden"], s["n_out"], seed=5, dtype=F64)
    params = params + np.random.default_rng(5).normal(0.0, 0.2, params.shape)  # no zeros
    module, linear = ablate.to_torch(cell.name, params, s["n_in"], s["n_hidden"], s["n_out"])
    assert type(module) is TORCH_MODULES[name] and type(linear) is torch.nn.Linear
    assert module.batch_first is False and module.num_layers == 1
    assert module.input_size == s["n_in"] and module.hidden_size == s["n_hidden"]
    assert linear.in_features == s["n_hidden"] and linear.out_features == s["n_out"]
    assert module.weight_ih_l0.dtype == torch.float64, "to_torch should keep float64"
    compare_with_nn(name, params, module, linear, loss, seed=11)
    # and back: from_torch(to_torch(p)) == p
    np.testing.assert_allclose(ablate.from_torch(cell.name, module, linear), params,
                               rtol=1e-15, atol=1e-15)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("name", list(TORCH_MODULES))
def test_from_torch_matches_torch_nn(name, loss):
    s = NN_SIZES
    torch.manual_seed(3)
    module = TORCH_MODULES[name](s["n_in"], s["n_hidden"]).double()
    linear = torch.nn.Linear(s["n_hidden"], s["n_out"]).double()
    params = ablate.from_torch(name, module, linear)
    cell = ablate.cells.get(name)
    assert params.dtype == F64
    assert params.shape == (cell.n_params(s["n_in"], s["n_hidden"], s["n_out"]),)
    compare_with_nn(name, params, module, linear, loss, seed=12)


@pytest.mark.parametrize("name", list(TORCH_MODULES))
def test_from_torch_keeps_float32(name):
    s = NN_SIZES
    module = TORCH_MODULES[name](s["n_in"], s["n_hidden"])
    linear = torch.nn.Linear(s["n_hidden"], s["n_out"])
    params = ablate.from_torch(name, module, linear)
    assert params.dtype == np.float32


@pytest.mark.parametrize("name", list(TORCH_MODULES))
def test_reference_matches_torch_nn(name):
    """The autograd reference itself agrees with torch.nn (no ablate kernel involved)."""
    s = NN_SIZES
    torch.manual_seed(4)
    module = TORCH_MODULES[name](s["n_in"], s["n_hidden"]).double()
    linear = torch.nn.Linear(s["n_hidden"], s["n_out"]).double()
    sd = {k: v.detach() for k, v in module.state_dict().items()}
    b = sd["bias_ih_l0"] + sd["bias_hh_l0"]
    blocks = {"W": sd["weight_ih_l0"], "R": sd["weight_hh_l0"], "b": b}
    if name == "gru":
        n = s["n_hidden"]
        blocks["b"] = torch.cat((b[:2 * n], sd["bias_ih_l0"][2 * n:]))
        blocks["b_hn"] = sd["bias_hh_l0"][2 * n:]
    blocks.update(W_out=linear.weight.detach(), b_out=linear.bias.detach())
    x = torch.randn(s["n_steps"], s["n_batch"], s["n_in"], dtype=torch.float64)
    y, h, _ = torch_cells.reference_forward(name, blocks, x)
    out, _ = module(x)
    torch.testing.assert_close(h, out, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(y, linear(out), rtol=1e-12, atol=1e-12)
