"""Every cell of ``ablate.cells.spec.SPECS`` as a plain PyTorch eager loop over time.

Written from the equations in ``ablate/cells/spec.py`` alone, never from the compiled
kernels: it is the independent reference the hand-written backward passes are checked
against (PyTorch autograd differentiates it), and the "same cell written as a PyTorch
eager loop" the benchmark times.

Shapes (the package legend): x [T,B,I]; y [T,B,O]; h, c [T,B,H]; G = len(gates) * H.
Blocks are keyed by the names of ``Cell.block_shapes``; W, R and b hold one H-row block
per gate, in ``cell.gates`` order. Initial states are zero. Everything follows the dtype
of the blocks (float32 or float64).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import torch

from ablate.cells.spec import SPECS, Cell

_CELLS: dict[str, Cell] = {cell.name: cell for cell in SPECS}

LOSSES = ("xent", "mse")

# step(ax_t [B,G], h_{t-1} [B,H], c_{t-1} [B,H], carry, blocks) -> (h_t, c_t, carry)
# ax_t = W x_t + b, the input side of every pre-activation, computed for all t at once.
Step = Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]
_STEPS: dict[str, Step] = {}


def _register(name: str) -> Callable[[Step], Step]:
    def wrap(step: Step) -> Step:
        _STEPS[name] = step
        return step

    return wrap


def _split(a: torch.Tensor, n_gates: int) -> tuple[torch.Tensor, ...]:
    """[B, n_gates*H] -> n_gates tensors [B,H], in packed order."""
    return a.chunk(n_gates, dim=-1)


def _recurrent(ax: torch.Tensor, h: torch.Tensor, p: Mapping[str, torch.Tensor]):
    """a = W x_t + b + R h_{t-1}."""
    return ax + h @ p["R"].T


σ = torch.sigmoid
tanh = torch.tanh


# --- the LSTM and its ablations ------------------------------------------------------

@_register("lstm")
def _lstm(ax, h, c, carry, p):
    i, f, g, o = _split(_recurrent(ax, h, p), 4)
    i, f, g, o = σ(i), σ(f), tanh(g), σ(o)
    c = f * c + i * g
    return o * tanh(c), c, None


@_register("lstm_peephole")
def _lstm_peephole(ax, h, c_prev, carry, p):
    a_i, a_f, a_g, a_o = _split(_recurrent(ax, h, p), 4)
    p_i, p_f, p_o = p["peephole"]  # rows of [3,H]
    i = σ(a_i + p_i * c_prev)  # i and f see c_{t-1}
    f = σ(a_f + p_f * c_prev)
    g = tanh(a_g)
    c = f * c_prev + i * g
    o = σ(a_o + p_o * c)  # o sees c_t
    return o * tanh(c), c, None


@_register("nig")
def _nig(ax, h, c, carry, p):
    f, g, o = _split(_recurrent(ax, h, p), 3)
    f, g, o = σ(f), tanh(g), σ(o)
    c = f * c + g  # i = 1
    return o * tanh(c), c, None


@_register("nfg")
def _nfg(ax, h, c, carry, p):
    i, g, o = _split(_recurrent(ax, h, p), 3)
    i, g, o = σ(i), tanh(g), σ(o)
    c = c + i * g  # f = 1
    return o * tanh(c), c, None


@_register("nog")
def _nog(ax, h, c, carry, p):
    i, f, g = _split(_recurrent(ax, h, p), 3)
    i, f, g = σ(i), σ(f), tanh(g)
    c = f * c + i * g
    return tanh(c), c, None  # o = 1


@_register("niaf")
def _niaf(ax, h, c, carry, p):
    i, f, g, o = _split(_recurrent(ax, h, p), 4)
    i, f, o = σ(i), σ(f), σ(o)  # g = a_g: no input activation
    c = f * c + i * g
    return o * tanh(c), c, None


@_register("noaf")
def _noaf(ax, h, c, carry, p):
    i, f, g, o = _split(_recurrent(ax, h, p), 4)
    i, f, g, o = σ(i), σ(f), tanh(g), σ(o)
    c = f * c + i * g
    return o * c, c, None  # no output activation


@_register("cifg")
def _cifg(ax, h, c, carry, p):
    i, g, o = _split(_recurrent(ax, h, p), 3)
    i, g, o = σ(i), tanh(g), σ(o)
    c = (1 - i) * c + i * g  # f = 1 - i
    return o * tanh(c), c, None


@_register("fgr")
def _fgr(ax, h, c, prev_gates, p):
    """prev_gates [B,3H] = [i_{t-1}; f_{t-1}; o_{t-1}] post-activation, zero at t = 0."""
    a_i, a_f, a_g, a_o = _split(_recurrent(ax, h, p), 4)
    if prev_gates is not None:
        r_i, r_f, r_o = _split(prev_gates @ p["R_gates"].T, 3)
        a_i, a_f, a_o = a_i + r_i, a_f + r_f, a_o + r_o
    i, f, g, o = σ(a_i), σ(a_f), tanh(a_g), σ(a_o)
    c = f * c + i * g
    return o * tanh(c), c, torch.cat((i, f, o), dim=-1)


@_register("single_net")
def _single_net(ax, h, c_prev, carry, p):
    a_c, a_o = _split(_recurrent(ax, h, p), 2)
    c = tanh(a_c + c_prev @ p["P_c"].T)  # one network computes the new memory
    return σ(a_o) * tanh(c), c, None


@_register("net_readout")
def _net_readout(ax, h, c, carry, p):
    i, f, g, a_h = _split(_recurrent(ax, h, p), 4)
    i, f, g = σ(i), σ(f), tanh(g)
    c = f * c + i * g
    return tanh(a_h + c @ p["P_h"].T), c, None  # a network reads the memory


@_register("sigmoid_input")
def _sigmoid_input(ax, h, c, carry, p):
    i, f, g, o = _split(_recurrent(ax, h, p), 4)
    i, f, g, o = σ(i), σ(f), σ(g), σ(o)  # g = σ(a_g) can only add
    c = f * c + i * g
    return o * tanh(c), c, None


@_register("sigmoid_readout")
def _sigmoid_readout(ax, h, c, carry, p):
    i, f, g, o = _split(_recurrent(ax, h, p), 4)
    i, f, g, o = σ(i), σ(f), tanh(g), σ(o)
    c = f * c + i * g
    return o * σ(c), c, None


@_register("use_gate")
def _use_gate(ax, h, c_prev, carry, p):
    i, f, g, o = _split(_recurrent(ax, h, p), 4)
    i, f, g, o = σ(i), σ(f), tanh(g), σ(o)
    c = f * c_prev + i * g
    use = tanh((f * c_prev) @ p["W_u"].T + p["b_u"])  # reads the forgotten-into memory
    return use * o, c, None


@_register("lstm97")
def _lstm97(ax, h, c, carry, p):
    i, g, o = _split(_recurrent(ax, h, p), 3)
    i, g, o = σ(i), 4 * σ(g) - 2, σ(o)
    c = c + i * g  # no forget gate
    return o * (2 * σ(c) - 1), c, None


# --- other cells ---------------------------------------------------------------------

@_register("rnn")
def _rnn(ax, h, c, carry, p):
    return tanh(_recurrent(ax, h, p)), c, None


@_register("irnn")
def _irnn(ax, h, c, carry, p):
    return torch.relu(_recurrent(ax, h, p)), c, None


@_register("gru")
def _gru(ax, h, c, carry, p):
    x_r, x_z, x_n = _split(ax, 3)  # W x_t + b (b: the input-side biases)
    h_r, h_z, h_n = _split(h @ p["R"].T, 3)
    r, z = σ(x_r + h_r), σ(x_z + h_z)
    n = tanh(x_n + r * (h_n + p["b_hn"]))
    return (1 - z) * n + z * h, c, None


@_register("mingru")
def _mingru(ax, h, c, carry, p):
    a_z, h_tilde = _split(ax, 2)  # no recurrent matrix
    z = σ(a_z)
    return (1 - z) * h + z * h_tilde, c, None


@_register("minlstm")
def _minlstm(ax, h, c, carry, p):
    a_f, a_i, h_tilde = _split(ax, 3)  # no recurrent matrix
    f, i = σ(a_f), σ(a_i)
    total = f + i
    return (f / total) * h + (i / total) * h_tilde, c, None


# --- the model: cell -> linear readout -> loss ---------------------------------------

def get_cell(cell_name: str) -> Cell:
    """The spec of a registered cell; ValueError naming the known ones otherwise."""
    if cell_name not in _CELLS:
        raise ValueError(f"unknown cell {cell_name!r}; known cells: {', '.join(_CELLS)}")
    if cell_name not in _STEPS:
        raise ValueError(f"cell {cell_name!r} has no torch reference yet; "
                         f"referenced: {', '.join(_STEPS)}")
    return _CELLS[cell_name]


def reference_forward(
    cell_name: str, blocks: Mapping[str, torch.Tensor], x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Run the cell over x [T,B,I]; returns y [T,B,O], h [T,B,H], c [T,B,H] (None if stateless)."""
    cell = get_cell(cell_name)
    step = _STEPS[cell_name]
    W, b = blocks["W"], blocks["b"]
    n_hidden = b.shape[0] // len(cell.gates)
    _, n_batch, _ = x.shape
    x = x.to(W.dtype)
    ax = x @ W.T + b  # [T,B,G] input side of every pre-activation, all steps at once
    h = ax.new_zeros(n_batch, n_hidden)
    c = ax.new_zeros(n_batch, n_hidden)
    carry = None
    hs, cs = [], []
    # unbind, not ax[t]: indexing's backward would materialise a zero [T,B,G] per step
    for ax_t in ax.unbind(0):
        h, c, carry = step(ax_t, h, c, carry, blocks)
        hs.append(h)
        cs.append(c)
    h_all = torch.stack(hs) if hs else ax.new_zeros(0, n_batch, n_hidden)
    c_all = (torch.stack(cs) if cs else ax.new_zeros(0, n_batch, n_hidden)) \
        if cell.has_cell_state else None
    y = h_all @ blocks["W_out"].T + blocks["b_out"]  # y_t = W_out h_t + b_out for every t
    return y, h_all, c_all


def reference_loss(
    y: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, loss: str
) -> torch.Tensor:
    """Σ_{t,b} mask·ℓ / Σ_{t,b} mask, where ℓ is per (t, b):

    xent: target int64 [T,B]; ℓ = logsumexp(y_tb) − y_tb[target_tb]
    mse:  target float [T,B,O]; ℓ = mean_o (y_tbo − target_tbo)²
    """
    mask = mask.to(y.dtype)
    if loss == "xent":
        picked = y.gather(-1, target.long().unsqueeze(-1)).squeeze(-1)
        per_step = torch.logsumexp(y, dim=-1) - picked
    elif loss == "mse":
        per_step = ((y - target.to(y.dtype)) ** 2).mean(dim=-1)
    else:
        raise ValueError(f"unknown loss {loss!r}; allowed: {', '.join(LOSSES)}")
    return (mask * per_step).sum() / mask.sum()


def reference_loss_and_grad(
    cell_name: str,
    blocks: Mapping[str, np.ndarray],
    x: np.ndarray,
    target: np.ndarray,
    mask: np.ndarray,
    loss: str,
) -> tuple[float, dict[str, np.ndarray], dict[str, np.ndarray | None]]:
    """NumPy in, NumPy out: (loss, gradient by block name, forward outputs y/h/c).

    Computes in the dtype of the blocks (use float64 for gradient checks).
    """
    params = {
        name: torch.tensor(np.asarray(value), requires_grad=True)
        for name, value in blocks.items()
    }
    dtype = params["W"].dtype
    x_t = torch.as_tensor(np.asarray(x)).to(dtype)
    target_t = torch.as_tensor(np.asarray(target))
    if loss == "mse":
        target_t = target_t.to(dtype)
    mask_t = torch.as_tensor(np.asarray(mask)).to(dtype)
    y, h, c = reference_forward(cell_name, params, x_t)
    value = reference_loss(y, target_t, mask_t, loss)
    value.backward()
    grads = {name: p.grad.detach().numpy() if p.grad is not None else np.zeros_like(
        p.detach().numpy()) for name, p in params.items()}
    outputs = {
        "y": y.detach().numpy(),
        "h": h.detach().numpy(),
        "c": None if c is None else c.detach().numpy(),
    }
    return float(value.detach()), grads, outputs


class EagerCell(torch.nn.Module):
    """cell -> linear readout as a torch module: the blocks are its parameters.

    ``forward(x [T,B,I]) -> y [T,B,O]``; train it with any torch optimiser.
    """

    def __init__(self, cell_name: str, blocks: Mapping[str, np.ndarray | torch.Tensor]):
        super().__init__()
        get_cell(cell_name)
        self.cell_name = cell_name
        self.blocks = torch.nn.ParameterDict({
            name: torch.nn.Parameter(torch.as_tensor(np.asarray(value)).clone())
            for name, value in blocks.items()
        })

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _, _ = reference_forward(self.cell_name, self.blocks, x)
        return y


def random_blocks(
    cell_name: str, n_in: int, n_hidden: int, n_out: int,
    seed: int = 0, scale: float | None = None, dtype=np.float64,
) -> dict[str, np.ndarray]:
    """Uniform(±scale) blocks (scale 1/√H by default) in ``block_shapes`` order.

    Independent of ``ablate.init_params``: for tests and benchmarks that need weights
    without the compiled package.
    """
    cell = get_cell(cell_name)
    rng = np.random.default_rng(seed)
    bound = 1.0 / np.sqrt(n_hidden) if scale is None else scale
    return {
        name: rng.uniform(-bound, bound, size=shape).astype(dtype)
        for name, shape in cell.block_shapes(n_in, n_hidden, n_out)
    }


def check_complete() -> None:
    """Every registered cell has a reference step (a new cell without one fails loudly)."""
    missing = [name for name in _CELLS if name not in _STEPS]
    if missing:
        raise ValueError(f"cells without a torch reference: {', '.join(missing)}")
