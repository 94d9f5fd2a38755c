"""What each cell is: its gates, its parameter blocks and their shapes, its equations.

Shape legend used across the package:
    T time steps, B batch, I input size, H hidden size, O output size,
    G = len(gates) * H packed gate rows.

Every model is ``cell -> linear readout``; its parameters live in one flat vector laid out
block after block, in this order:

    W      [G, I]   input weights, one H-row block per gate in ``gates`` order
    R      [G, H]   recurrent weights (absent where ``recurrent`` is False)
    b      [G]      bias
    extras          cell-specific blocks, in the order listed by the cell
    W_out  [O, H]   readout weights:  y_t = W_out h_t + b_out
    b_out  [O]

Pre-activations are ``a = W x_t + R h_{t-1} + b``; ``a_i`` names the rows of gate ``i``.
Initial states are zero: h_{-1} = c_{-1} = 0.
"""

from __future__ import annotations

from dataclasses import dataclass

# Extra block shapes are written with these symbols; `block_shapes` resolves them.
_SHAPE_SYMBOLS = ("I", "H", "O", "3", "3H")


@dataclass(frozen=True)
class Cell:
    """The static description of one registered cell."""

    name: str
    gates: tuple[str, ...]  # packed row blocks of W, R, b (each H rows), in this order
    equations: str  # the cell's equations, exactly what the kernels compute
    source: str  # where the formulation comes from
    recurrent: bool = True  # has the recurrent matrix R
    has_cell_state: bool = True  # has a memory c_t besides h_t
    extras: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (block name, symbolic shape)
    forget_bias: float = 0.0  # added to the uniform init of b[f] (Jozefowicz et al. 2015)
    input_bias: float = 0.0  # added to the uniform init of b[i] (lstm97: negative)
    identity_recurrence: bool = False  # irnn: R = identity, b = 0 (Le et al. 2015)
    torch_module: str | None = None  # the torch.nn module with identical equations

    def block_shapes(self, n_in: int, n_hidden: int, n_out: int) -> list[tuple[str, tuple]]:
        """[(block name, shape)] in flat-vector order."""
        sizes = {"I": n_in, "H": n_hidden, "O": n_out, "3": 3, "3H": 3 * n_hidden}
        n_gate_rows = len(self.gates) * n_hidden
        blocks = [("W", (n_gate_rows, n_in))]
        if self.recurrent:
            blocks.append(("R", (n_gate_rows, n_hidden)))
        blocks.append(("b", (n_gate_rows,)))
        for name, symbolic in self.extras:
            blocks.append((name, tuple(sizes[s] for s in symbolic)))
        blocks += [("W_out", (n_out, n_hidden)), ("b_out", (n_out,))]
        return blocks

    def n_params(self, n_in: int, n_hidden: int, n_out: int) -> int:
        total = 0
        for _, shape in self.block_shapes(n_in, n_hidden, n_out):
            size = 1
            for s in shape:
                size *= s
            total += size
        return total


_LSTM = "i = σ(a_i)  f = σ(a_f)  g = tanh(a_g)  o = σ(a_o)"
_LSTM_C = "c_t = f ⊙ c_{t-1} + i ⊙ g"
_LSTM_H = "h_t = o ⊙ tanh(c_t)"
_GREFF = "Greff et al. 2017, LSTM: A Search Space Odyssey"

SPECS: tuple[Cell, ...] = (
    Cell(
        "lstm", ("i", "f", "g", "o"),
        f"{_LSTM}; {_LSTM_C}; {_LSTM_H}",
        "torch.nn.LSTM; Gers et al. 2000 forget gate", forget_bias=1.0, torch_module="LSTM",
    ),
    Cell(
        "lstm_peephole", ("i", "f", "g", "o"),
        "i = σ(a_i + p_i ⊙ c_{t-1})  f = σ(a_f + p_f ⊙ c_{t-1})  g = tanh(a_g); "
        f"{_LSTM_C}; o = σ(a_o + p_o ⊙ c_t); {_LSTM_H}",
        "Gers & Schmidhuber 2000; Greff's vanilla LSTM",
        extras=(("peephole", ("3", "H")),), forget_bias=1.0,
    ),
    Cell(
        "nig", ("f", "g", "o"),
        f"i = 1  f = σ(a_f)  g = tanh(a_g)  o = σ(a_o); c_t = f ⊙ c_{{t-1}} + g; {_LSTM_H}",
        f"{_GREFF} (NIG)", forget_bias=1.0,
    ),
    Cell(
        "nfg", ("i", "g", "o"),
        f"i = σ(a_i)  f = 1  g = tanh(a_g)  o = σ(a_o); c_t = c_{{t-1}} + i ⊙ g; {_LSTM_H}",
        f"{_GREFF} (NFG); Hochreiter & Schmidhuber 1997 had no forget gate",
    ),
    Cell(
        "nog", ("i", "f", "g"),
        f"i = σ(a_i)  f = σ(a_f)  g = tanh(a_g)  o = 1; {_LSTM_C}; h_t = tanh(c_t)",
        f"{_GREFF} (NOG)", forget_bias=1.0,
    ),
    Cell(
        "niaf", ("i", "f", "g", "o"),
        f"i = σ(a_i)  f = σ(a_f)  g = a_g  o = σ(a_o); {_LSTM_C}; {_LSTM_H}",
        f"{_GREFF} (NIAF)", forget_bias=1.0,
    ),
    Cell(
        "noaf", ("i", "f", "g", "o"),
        f"{_LSTM}; {_LSTM_C}; h_t = o ⊙ c_t",
        f"{_GREFF} (NOAF)", forget_bias=1.0,
    ),
    Cell(
        "cifg", ("i", "g", "o"),
        f"i = σ(a_i)  f = 1 - i  g = tanh(a_g)  o = σ(a_o); {_LSTM_C}; {_LSTM_H}",
        f"{_GREFF} (CIFG)",
    ),
    Cell(
        "fgr", ("i", "f", "g", "o"),
        "[a_i; a_f; a_o] += R_gates [i_{t-1}; f_{t-1}; o_{t-1}] (gate activations of t-1, "
        f"zero at t = 0); {_LSTM}; {_LSTM_C}; {_LSTM_H}",
        f"{_GREFF} (FGR)", extras=(("R_gates", ("3H", "3H")),), forget_bias=1.0,
    ),
    Cell(
        "single_net", ("c", "o"),
        "c_t = tanh(a_c + P_c c_{t-1})  o = σ(a_o); h_t = o ⊙ tanh(c_t)",
        "seed question 1: one network computes the new memory, no gates on the cell path",
        extras=(("P_c", ("H", "H")),),
    ),
    Cell(
        "net_readout", ("i", "f", "g", "h"),
        "i = σ(a_i)  f = σ(a_f)  g = tanh(a_g); "
        f"{_LSTM_C}; h_t = tanh(a_h + P_h c_t)",
        "seed question 2: a network reads the memory instead of the output gate",
        extras=(("P_h", ("H", "H")),), forget_bias=1.0,
    ),
    Cell(
        "sigmoid_input", ("i", "f", "g", "o"),
        f"i = σ(a_i)  f = σ(a_f)  g = σ(a_g)  o = σ(a_o); {_LSTM_C}; {_LSTM_H}",
        "seed claim: a sigmoid input can only add memory, never subtract", forget_bias=1.0,
    ),
    Cell(
        "sigmoid_readout", ("i", "f", "g", "o"),
        f"{_LSTM}; {_LSTM_C}; h_t = o ⊙ σ(c_t)",
        "seed formulation h = h_int · S(c)", forget_bias=1.0,
    ),
    Cell(
        "use_gate", ("i", "f", "g", "o"),
        f"{_LSTM}; {_LSTM_C}; h_t = tanh(W_u (f ⊙ c_{{t-1}}) + b_u) ⊙ o",
        "seed text: learn / forget / remember / use gate",
        extras=(("W_u", ("H", "H")), ("b_u", ("H",))), forget_bias=1.0,
    ),
    Cell(
        "lstm97", ("i", "g", "o"),
        "i = σ(a_i)  g = 4σ(a_g) - 2  o = σ(a_o); c_t = c_{t-1} + i ⊙ g; "
        "h_t = o ⊙ (2σ(c_t) - 1)",
        "Hochreiter & Schmidhuber 1997", input_bias=-1.0,
    ),
    Cell(
        "rnn", ("h",),
        "h_t = tanh(a_h)", "Elman 1990; torch.nn.RNN",
        has_cell_state=False, torch_module="RNN",
    ),
    Cell(
        "irnn", ("h",),
        "h_t = relu(a_h); R initialised to the identity, b to zero",
        "Le, Jaitly & Hinton 2015", has_cell_state=False, identity_recurrence=True,
    ),
    Cell(
        "gru", ("r", "z", "n"),
        "r = σ(a_r)  z = σ(a_z)  n = tanh(W_n x_t + b_n + r ⊙ (R_n h_{t-1} + b_hn)); "
        "h_t = (1 - z) ⊙ n + z ⊙ h_{t-1}",
        "Cho et al. 2014; torch.nn.GRU", has_cell_state=False,
        extras=(("b_hn", ("H",)),), torch_module="GRU",
    ),
    Cell(
        "mingru", ("z", "h"),
        "z = σ(W_z x_t + b_z)  h̃ = W_h x_t + b_h; h_t = (1 - z) ⊙ h_{t-1} + z ⊙ h̃",
        "Feng et al. 2024, Were RNNs All We Needed?", recurrent=False, has_cell_state=False,
    ),
    Cell(
        "minlstm", ("f", "i", "h"),
        "f = σ(W_f x_t + b_f)  i = σ(W_i x_t + b_i)  f' = f / (f + i)  i' = i / (f + i)  "
        "h̃ = W_h x_t + b_h; h_t = f' ⊙ h_{t-1} + i' ⊙ h̃",
        "Feng et al. 2024, Were RNNs All We Needed?", recurrent=False, has_cell_state=False,
    ),
)
