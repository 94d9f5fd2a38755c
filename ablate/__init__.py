"""ablate: why does an LSTM need its gates? Measured, not argued.

Shape legend (used on every array in the package):
    T time steps, B batch, I input size, H hidden size, O output size,
    G packed gate rows (number of gates × H), P parameters of one model.

Public API::

    ablate.cells.names(), ablate.cells.get(name)
    ablate.init_params(cell, n_in, n_hidden, n_out, seed, dtype, forget_bias) -> params [P]
    ablate.unflatten(cell, params, n_in, n_hidden, n_out) -> {block: view}
    ablate.forward(cell, params, x, n_hidden, n_out) -> Forward(y, h, c)
    ablate.loss_and_grad(cell, params, x, target, mask, loss, n_hidden, n_out) -> (loss, grad)
    ablate.to_torch(...), ablate.from_torch(...)   for lstm, gru, rnn
"""

from ablate.kernels.vector_width import prefer_512_bit_vectors

prefer_512_bit_vectors()  # before the first kernel is declared: see kernels/vector_width.py

from ablate import cells  # noqa: E402
from ablate.convert import from_torch, to_torch  # noqa: E402
from ablate.kernels.adam import adam_step  # noqa: E402
from ablate.model import (  # noqa: E402
    Forward,
    LossGrad,
    flatten,
    forward,
    init_params,
    loss_and_grad,
    loss_grad_flow,
    unflatten,
)

__all__ = [
    "cells",
    "init_params",
    "unflatten",
    "flatten",
    "forward",
    "loss_and_grad",
    "loss_grad_flow",
    "Forward",
    "LossGrad",
    "adam_step",
    "to_torch",
    "from_torch",
]
__version__ = "0.1.0"
