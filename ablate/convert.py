"""Weight conversion to and from torch.nn.LSTM / GRU / RNN (+ nn.Linear readout).

Gate order is PyTorch's (LSTM i,f,g,o; GRU r,z,n), so weights copy 1:1. PyTorch has two
biases per gate where ablate has one: b = b_ih + b_hh, except GRU's n gate, where the
hidden-side bias sits inside r ⊙ (R_n h + b_hn) and is kept apart as ``b_hn``.
Going to torch, b goes to bias_ih and bias_hh carries only GRU's b_hn (zeros elsewhere).
torch is imported lazily: it is a test and benchmark dependency, not a runtime one.
"""

from __future__ import annotations

import numpy as np

from ablate import cells
from ablate.model import flatten, unflatten

_TORCH_CELLS = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}


def _check(cell: str) -> None:
    cells.get(cell)
    if cell not in _TORCH_CELLS:
        raise ValueError(
            f"{cell!r} has no torch.nn counterpart; convertible cells: {', '.join(_TORCH_CELLS)}"
        )


def to_torch(cell: str, params: np.ndarray, n_in: int, n_hidden: int, n_out: int):
    """(torch.nn.LSTM|GRU|RNN, torch.nn.Linear) computing the same model, params' dtype."""
    import torch

    _check(cell)
    blocks = unflatten(cell, params, n_in, n_hidden, n_out)
    dtype = torch.float64 if params.dtype == np.float64 else torch.float32
    module = getattr(torch.nn, _TORCH_CELLS[cell])(n_in, n_hidden).to(dtype)
    linear = torch.nn.Linear(n_hidden, n_out).to(dtype)
    bias_hh = np.zeros(blocks["b"].shape, params.dtype)
    if cell == "gru":
        bias_hh[2 * n_hidden :] = blocks["b_hn"]
    with torch.no_grad():
        module.weight_ih_l0.copy_(torch.from_numpy(blocks["W"].copy()))
        module.weight_hh_l0.copy_(torch.from_numpy(blocks["R"].copy()))
        module.bias_ih_l0.copy_(torch.from_numpy(blocks["b"].copy()))
        module.bias_hh_l0.copy_(torch.from_numpy(bias_hh))
        linear.weight.copy_(torch.from_numpy(blocks["W_out"].copy()))
        linear.bias.copy_(torch.from_numpy(blocks["b_out"].copy()))
    return module, linear


def from_torch(cell: str, module, linear) -> np.ndarray:
    """The flat params of a single-layer, unidirectional torch module and its readout."""
    _check(cell)
    expected = _TORCH_CELLS[cell]
    if type(module).__name__ != expected:
        raise ValueError(f"{cell!r} converts from torch.nn.{expected}, got {type(module).__name__}")
    if module.num_layers != 1 or module.bidirectional or not module.bias:
        raise ValueError("only single-layer, unidirectional modules with biases convert")
    if cell == "rnn" and module.nonlinearity != "tanh":
        raise ValueError("rnn converts from torch.nn.RNN with nonlinearity='tanh' only")

    def numpy(tensor) -> np.ndarray:
        return tensor.detach().cpu().numpy().copy()

    n_in, n_hidden, n_out = module.input_size, module.hidden_size, linear.out_features
    bias_ih, bias_hh = numpy(module.bias_ih_l0), numpy(module.bias_hh_l0)
    blocks = {
        "W": numpy(module.weight_ih_l0),
        "R": numpy(module.weight_hh_l0),
        "b": bias_ih + bias_hh,
        "W_out": numpy(linear.weight),
        "b_out": numpy(linear.bias),
    }
    if cell == "gru":
        blocks["b"][2 * n_hidden :] = bias_ih[2 * n_hidden :]
        blocks["b_hn"] = bias_hh[2 * n_hidden :]
    return flatten(cell, blocks, n_in, n_hidden, n_out)
