"""Why a cell did or did not learn: error flow, gate behaviour, cell-state drift (DESIGN.md §5).

Measured per run at initialisation and after training (``ablate.train`` calls ``diagnose``),
on sequences of the run's task that no training or scoring step sees (stream "test",
indices ≥ 1 of the evaluation seed). Every number is plain JSON.

Error flow (the "constant error carousel" made visible). For each of ``n_rows`` sequences
the loss is taken at one step only, the sequence's last masked step t* (tv: the query;
copy: the last recall step), and backpropagated: ‖∂L/∂h_t‖ and ‖∂L/∂c_t‖ for every t ≤ t*,
listed against the distance d = t* − t and averaged over the sequences. ``*_decay_rate`` is
the least-squares slope of ln‖·‖ against d over d ≥ 1 up to the first exact 0 (per step;
0 is a flat carousel, −0.69 halves the error every step): flat for a gated memory whose
forget gate is near 1, steeply negative for ``rnn`` and ``single_net``.

Gates. Every cell that has them gets two gate roles, in its own terms:
    keep   how much of the memory survives a step     lstm family: f;  gru: z;
                                                       mingru: 1 − z;  minlstm: f/(f+i)
    write  how much new content enters                 lstm family: i;  gru: 1 − z;
                                                       mingru: z;      minlstm: i/(f+i)
(a missing gate counts as the constant it is: ``nfg`` keeps 1, ``nig`` writes 1; ``rnn``,
``irnn`` and ``single_net`` have neither). Over the gap, the steps after each sequence's
first cue up to the step that needs it: the mean keep value, and the retention ∏ keep (the
fraction of what was written at the cue that survives the gap, ignoring new writes) —
averaged over units and for the best unit. At the cue against the other non-marker steps
(distractors and filler): the mean write value, and the best unit's difference.

State drift. ``n_segments`` test sequences concatenated in time and run with no state
reset (a stream ``n_segments`` × longer than any training sequence): the Euclidean norm
over units of c_t (or of h_t for cells without a cell state), averaged over the streams,
at the end of every segment; its growth last/first; the largest |c|; and the task metric
on the first and on the last segment. A cell that can only add to its memory (``nfg``,
``sigmoid_input``) is expected to drift upward; whatever it shows is what is reported.
"""

from __future__ import annotations

import numpy as np

import ablate
from ablate import cells
from ablate.decay import decay_fit
from ablate.tasks.task import CUE, DISTRACTOR, FILLER, Task

__all__ = [
    "diagnose",
    "error_flow",
    "gate_values",
    "gate_stats",
    "state_drift",
    "decay_rate",
    "warm_up",
]

ERROR_FLOW_ROWS = 16  # sequences whose error flow is averaged
GATE_ROWS = 64  # sequences for the gate statistics
DRIFT_ROWS = 32  # concatenated streams for the state drift
DRIFT_SEGMENTS = 20  # sequences per stream: the stream is this many times a training one


def diagnose(
    cell: str, params: np.ndarray, task: Task, gap: int, n_hidden: int, seed: int = 0
) -> dict:
    """{"error_flow", "gates", "state_drift"} of one model on its task."""
    if not np.isfinite(params).all():
        return {"skipped": "non-finite parameters"}
    return {
        "error_flow": error_flow(cell, params, task, gap, n_hidden, seed=seed),
        "gates": gate_stats(cell, params, task, gap, n_hidden, seed=seed),
        "state_drift": state_drift(cell, params, task, gap, n_hidden, seed=seed),
    }


def warm_up(cell: str, params: np.ndarray, task: Task, gap: int, n_hidden: int) -> None:
    """Compile (or load) the kernels ``diagnose`` calls."""
    batch = task.batch(gap, 1, 0, "test", 1)
    mask = np.zeros_like(batch.mask)
    mask[last_masked_steps(batch.mask)[0], 0] = 1.0
    ablate.loss_grad_flow(
        cell, params, batch.x, batch.target, mask, task.loss, n_hidden, task.n_out(gap),
        flush_denormals=False,
    )


# ---------------------------------------------------------------- error flow


def last_masked_steps(mask: np.ndarray) -> np.ndarray:
    """t* [B]: the last step of each sequence where the loss is taken."""
    T = mask.shape[0]
    return T - 1 - np.argmax(mask[::-1] > 0, axis=0)


def error_flow(
    cell: str,
    params: np.ndarray,
    task: Task,
    gap: int,
    n_hidden: int,
    n_rows: int = ERROR_FLOW_ROWS,
    seed: int = 0,
) -> dict:
    """‖∂L/∂h_t‖, ‖∂L/∂c_t‖ against the distance from the loss step; decay rates per step.

    {"distance": [D], "dh_norm": [D], "dc_norm": [D] or None, "dh_decay_rate",
     "dc_decay_rate", "rows"}; D = the shortest t* + 1 over the sequences.
    """
    has_c = cells.get(cell).has_cell_state
    n_out = task.n_out(gap)
    batch = task.batch(gap, n_rows, seed, "test", 1)
    loss_steps = last_masked_steps(batch.mask)
    depth = int(loss_steps.min()) + 1
    dh = np.zeros((n_rows, depth))
    dc = np.zeros((n_rows, depth))
    for row in range(n_rows):
        t_loss = int(loss_steps[row])
        mask = np.zeros((t_loss + 1, 1), np.float32)
        mask[t_loss, 0] = 1.0
        flow = ablate.loss_grad_flow(
            cell, params, batch.x[: t_loss + 1, row : row + 1],
            batch.target[: t_loss + 1, row : row + 1], mask, task.loss, n_hidden, n_out,
            flush_denormals=False,  # measure the decay down to the last representable value
        )
        # distance d = t* − t, so reverse time; keep the distances every row has
        dh[row] = flow.dh_norm[::-1][:depth]
        dc[row] = flow.dc_norm[::-1][:depth]
    distance = np.arange(depth)
    dh_mean, dc_mean = dh.mean(axis=0), dc.mean(axis=0)
    return {
        "loss_step": "the last masked step of each sequence",
        "rows": n_rows,
        "distance": distance.tolist(),
        "dh_norm": dh_mean.tolist(),
        "dc_norm": dc_mean.tolist() if has_c else None,
        "dh_decay_rate": decay_rate(distance, dh_mean),
        "dc_decay_rate": decay_rate(distance, dc_mean) if has_c else None,
    }


def decay_rate(distance: np.ndarray, norm: np.ndarray) -> float | None:
    """Least-squares slope of ln(norm) against distance over d ≥ 1, up to the first exact 0
    (``ablate.decay.decay_fit``, which the report uses on the stored curves too).

    None with fewer than two such points. exp(rate) is the factor per step.
    """
    fit = decay_fit(distance, norm)
    return None if fit is None else fit.rate


# ---------------------------------------------------------------- gates


def _sigmoid(a: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * a))  # σ without overflow warnings


def _project(values: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """values [T,B,K] @ weight.T [K,G] as one 2-D product (3-D matmul skips BLAS here)."""
    T, B, K = values.shape
    return (values.reshape(T * B, K) @ weight.T).reshape(T, B, weight.shape[0])


def gate_values(
    cell: str, params: np.ndarray, x: np.ndarray, n_hidden: int, n_out: int
) -> dict[str, np.ndarray]:
    """Every gate of the cell at every step, post-activation, float64 [T,B,H] each.

    Recomputed in NumPy from ``ablate.forward``'s states and the named parameter blocks, by
    the equations of ``ablate/cells/spec.py``: {gate letter: values} (the candidate too:
    "g" for the LSTM family, "n" for gru, "h_tilde" for mingru/minlstm), plus "keep" and
    "write" where the cell has those roles (see the module docstring). Empty for rnn/irnn.
    """
    spec = cells.get(cell)
    x = np.asarray(x)
    T, B, n_in = x.shape
    H = n_hidden
    state = ablate.forward(cell, params, x, n_hidden, n_out)
    blocks = {
        name: np.asarray(block, np.float64)
        for name, block in ablate.unflatten(cell, params, n_in, n_hidden, n_out).items()
    }
    h_prev = np.concatenate([np.zeros((1, B, H)), state.h[:-1].astype(np.float64)])
    pre = _project(x.astype(np.float64), blocks["W"]) + blocks["b"]  # W x_t + b [T,B,G]
    recurrent = _project(h_prev, blocks["R"]) if spec.recurrent else np.zeros_like(pre)
    slot = {gate: pre[..., k * H : (k + 1) * H] for k, gate in enumerate(spec.gates)}
    rec = {gate: recurrent[..., k * H : (k + 1) * H] for k, gate in enumerate(spec.gates)}
    from ablate.cells import lstm_family, simple_family

    if cell in lstm_family.VARIANTS:
        return _lstm_gates(lstm_family.VARIANTS[cell], lstm_family, blocks, state, slot, rec, H)
    kind = simple_family.VARIANTS[cell].kind
    if kind == simple_family.GRU:
        r = _sigmoid(slot["r"] + rec["r"])
        z = _sigmoid(slot["z"] + rec["z"])
        n = np.tanh(slot["n"] + r * (rec["n"] + blocks["b_hn"]))
        return {"r": r, "z": z, "n": n, "keep": z, "write": 1.0 - z}
    if kind == simple_family.MIN:
        if cell == "minlstm":
            f, i = _sigmoid(slot["f"]), _sigmoid(slot["i"])
            return {"f": f, "i": i, "h_tilde": slot["h"], "keep": f / (f + i), "write": i / (f + i)}
        z = _sigmoid(slot["z"])
        return {"z": z, "h_tilde": slot["h"], "keep": 1.0 - z, "write": z}
    return {}


def _lstm_gates(variant, family, blocks, state, slot, rec, H) -> dict[str, np.ndarray]:
    """i, f, g, o (and keep = f, write = i) of an LSTM-family cell."""
    c = state.c.astype(np.float64)
    T, B, _ = c.shape
    c_prev = np.concatenate([np.zeros((1, B, H)), c[:-1]])
    pre = {gate: slot[gate] + rec[gate] for gate in slot}
    if variant.peephole:
        peep = blocks["peephole"]
        pre["i"] = pre["i"] + peep[0] * c_prev
        pre["f"] = pre["f"] + peep[1] * c_prev
        pre["o"] = pre["o"] + peep[2] * c
    if variant.full_gate_recurrence:  # [a_i; a_f; a_o] += R_gates [i; f; o]_{t-1}
        feedback = np.zeros((B, 3 * H))
        out = {gate: np.empty((T, B, H)) for gate in "ifo"}
        for t in range(T):
            extra = feedback @ blocks["R_gates"].T
            for k, gate in enumerate("ifo"):
                out[gate][t] = _sigmoid(pre[gate][t] + extra[:, k * H : (k + 1) * H])
            feedback = np.concatenate([out["i"][t], out["f"][t], out["o"][t]], axis=1)
        gates = dict(out)
    else:
        gates = {gate: _sigmoid(pre[gate]) for gate in "ifo" if gate in pre}
    if variant.single_net:  # no gates on the cell path
        return {"o": gates["o"]}
    act = {
        family.TANH: np.tanh,
        family.LINEAR: lambda a: a,
        family.SIGMOID: _sigmoid,
        family.SCALED_SIGMOID: lambda a: 4.0 * _sigmoid(a) - 2.0,
    }[variant.input_act]
    gates["g"] = act(pre["g"])
    ones = np.ones((T, B, H))
    if "i" not in gates:
        gates["i"] = ones
    if "f" not in gates:
        gates["f"] = 1.0 - gates["i"] if variant.cifg else ones
    if variant.net_readout:
        gates.pop("o", None)  # the "o" slot holds the readout network, not a gate
    gates["keep"], gates["write"] = gates["f"], gates["i"]
    return gates


KEEP_ROLE = {"gru": "z", "mingru": "1 − z", "minlstm": "f / (f + i)", "nfg": "none (f = 1)",
             "lstm97": "none (f = 1)", "cifg": "f = 1 − i"}
WRITE_ROLE = {"gru": "1 − z", "mingru": "z", "minlstm": "i / (f + i)", "nig": "none (i = 1)"}


def gate_stats(
    cell: str,
    params: np.ndarray,
    task: Task,
    gap: int,
    n_hidden: int,
    n_rows: int = GATE_ROWS,
    seed: int = 0,
) -> dict | None:
    """Keep values over the gap and write values at the cue against the other steps.

    None for cells without keep/write gates (rnn, irnn, single_net).
    """
    batch, annotation = task.annotated_batch(gap, n_rows, seed, "test", 1)
    gates = gate_values(cell, params, batch.x, n_hidden, task.n_out(gap))
    if "keep" not in gates:
        return None
    keep, write = gates["keep"], gates["write"]
    role, link = annotation.role, annotation.link
    kept, retention = [], []
    for row in range(batch.x.shape[1]):
        cues = np.flatnonzero((role[:, row] == CUE) & (link[:, row] >= 0))
        if cues.size == 0:
            continue
        cue, needed = int(cues[0]), int(link[cues[0], row])
        span = keep[cue + 1 : needed + 1, row]  # c_needed = ∏ keep · c_cue + new writes
        kept.append(span.mean())
        with np.errstate(divide="ignore"):
            retention.append(np.exp(np.log(span).sum(axis=0)))  # [H]
    cue_steps = role == CUE
    other_steps = (role == DISTRACTOR) | (role == FILLER)
    write_cue = write[cue_steps]  # [N,H]
    write_other = write[other_steps]
    selectivity = write_cue.mean(axis=0) - write_other.mean(axis=0) if (
        write_cue.size and write_other.size) else None
    retention = np.array(retention)
    return {
        "keep_gate": KEEP_ROLE.get(cell, "f"),
        "write_gate": WRITE_ROLE.get(cell, "i"),
        "rows": n_rows,
        "keep_gap_mean": float(np.mean(kept)) if kept else None,
        "retention_mean": float(retention.mean()) if retention.size else None,
        "retention_best_unit": float(retention.max(axis=1).mean()) if retention.size else None,
        "write_cue_mean": float(write_cue.mean()) if write_cue.size else None,
        "write_other_mean": float(write_other.mean()) if write_other.size else None,
        "write_selectivity_best_unit": float(selectivity.max()) if selectivity is not None
        else None,
    }


# ---------------------------------------------------------------- state drift


def state_drift(
    cell: str,
    params: np.ndarray,
    task: Task,
    gap: int,
    n_hidden: int,
    n_segments: int = DRIFT_SEGMENTS,
    n_rows: int = DRIFT_ROWS,
    seed: int = 0,
) -> dict:
    """‖c_t‖ (or ‖h_t‖) over ``n_segments`` test sequences run back to back with no reset."""
    n_out = task.n_out(gap)
    segments = [task.batch(gap, n_rows, seed, "test", 2 + k) for k in range(n_segments)]
    x = np.concatenate([segment.x for segment in segments])
    state = ablate.forward(cell, params, x, n_hidden, n_out)
    memory = state.c if state.c is not None else state.h
    T = segments[0].x.shape[0]
    norms = np.linalg.norm(memory.astype(np.float64), axis=2).mean(axis=1)  # [n_segments·T]
    at_ends = norms[T - 1 :: T]
    first = task.metric(state.y[:T], segments[0])
    last = task.metric(state.y[-T:], segments[-1])
    return {
        "state": "c" if state.c is not None else "h",
        "measured": (
            f"mean over {n_rows} streams of ‖state_t‖₂ over units at the end of each of "
            f"{n_segments} test sequences of {T} steps run back to back without reset"
        ),
        "segment_steps": T,
        "norm_at_segment_end": at_ends.tolist(),
        "growth": float(at_ends[-1] / at_ends[0]) if at_ends[0] > 0 else None,
        "max_abs": float(np.abs(memory).max()),
        "metric_first_segment": float(first),
        "metric_last_segment": float(last),
    }
