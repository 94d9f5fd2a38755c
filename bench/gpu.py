"""GPU training speed: ablate's CUDA kernels against torch.nn.LSTM with cuDNN, same run.

The workload: ``lstm`` models on the ``copy`` task (I=10, O=9, cross-entropy on the 10 recall
steps), Adam at lr 1e-3, global-norm clipping at 1.0, float32, every model its own seed and
its own training batches. Measured in one run:

  one model  H=128, B=32, T=100 (gap 80) and T=1000 (gap 980): the wall time of a training
             step and of its forward + backward alone, and both per time step (time / T);
             the forward + backward also at the other tilings (as the ensembles' below),
             and with --parts its batch spread over that many blocks (--resident: each
             holding its units' share of R; --clusters: those blocks also as a thread-block
             cluster meeting at its hardware barrier, ablate.cuda.cluster)
  ensembles  16 and 128 models, H=64, B=32, T=100, trained together by one DeviceEnsemble
             (three launches a step for all models): model-steps/s (models × steps / wall
             seconds) and the 128-model step time over the 16-model one; also 6 models, a
             suite's shape group (3 seeds × 2 learning rates), which run_suite.py trains as
             one ensemble at a time: how much of the GPU one such launch uses; with
             --resident and --parts also each model's tile spread over that many blocks
             holding R, where all the blocks fit the SMs at once
  groups at once  1, 2, 4 and 8 such shape groups, each its own DeviceEnsemble and CUDA
             stream, trained at once on as many threads of this process (what run_suite.py's
             CUDA worker does, --workers of them): total model-steps/s, at the group's
             fastest tiling measured
  validation  the validation batch (512 sequences) of such a group scored on the device, as
             run_suite.py's CUDA engine does between intervals: ms, and in training steps
  phases     each default-tiling case's step split into its three launches: the forward
             alone, forward + backward, the whole step (the backward and Adam by
             difference), so a GPU run says which kernel the time goes to
  cuDNN      the same shapes as ``nn.LSTM`` + ``nn.Linear`` + ``torch.optim.Adam`` (fused) +
             ``clip_grad_norm_`` on cuda, cuDNN on, TF32 off unless --tf32 (ablate computes in
             plain float32); an ensemble is its M models as M separate torch models trained
             one after another: at each step every model takes its step in turn

How: the batches of --steps steps are drawn with ``task.batch`` and put on the GPU once
(ablate: ``DeviceEnsemble.load_interval``; torch: one tensor per array). A repeat runs those
steps (ablate: ``ens.step(s, 0)`` for s in 0..S−1) and then waits for the device
(``numba.cuda.synchronize`` / ``torch.cuda.synchronize``); a step's time is the repeat's wall
time / S, and the best of --repeats repeats counts (a case stops repeating after
CASE_SECONDS of timed repeats). ablate and torch take their repeats in turn, after a warm-up
that is not timed (kernel compilation, cuDNN set-up; the compile time is shown apart).

Targets of issue 7 (on an H100/H200), judged at the end: one model ≤ 20 µs per time step
(forward + backward) at H ≤ 128; ≥ 5,000 model-steps/s at 16 × (H64, B32, T100); 128 models
within 1.5× the 16-model step time; ≥ 10× cuDNN running the same models one after another.

Without a usable GPU the script prints one line saying why and exits with status 2.
--simulate runs a tiny configuration under Numba's CUDA simulator (which the caller turns on
with NUMBA_ENABLE_CUDASIM=1) to check the script's code paths; its timings mean nothing.

    python bench/gpu.py                      # a minute or two on an H100 (a case stops
                                             # repeating after CASE_SECONDS)
    python bench/gpu.py --quick --json gpu.json
    python bench/gpu.py --quick --tile-rows 8,32 --rows-per-thread 1,2,4,8   # other tilings
    python bench/gpu.py --quick --resident --parts 8,16 --clusters --budget 220   # the new designs
                                             # first, each case's other tilings cut at its
                                             # share of 220 s
    NUMBA_ENABLE_CUDASIM=1 python bench/gpu.py --simulate
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import platform
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout

from ablate.cuda import simulator  # noqa: E402  (imports numba only when asked)

CELL = "lstm"
CLIP = 1.0
LR = 1e-3
CASE_SECONDS = 30.0  # a case stops repeating once its timed repeats took this long


@dataclass(frozen=True)
class Sizes:
    """The measured shapes; T = gap + 2 · n_recall of the copy task."""

    single_hidden: int
    single_gaps: tuple[int, ...]
    ensemble_hidden: int
    ensemble_gap: int
    models: tuple[int, int]  # the small and the large ensemble (the targets')
    group_models: int  # a suite's shape group: run_suite.py's ensemble of one cell and gap
    groups_at_once: tuple[int, ...]  # shape groups trained at once on threads, each timed
    validation_rows: int  # sequences of the validation batch scored on the device
    batch: int
    copy: dict


FULL = Sizes(single_hidden=128, single_gaps=(80, 980), ensemble_hidden=64, ensemble_gap=80,
             models=(16, 128), group_models=6, groups_at_once=(1, 2, 4, 8),
             validation_rows=512, batch=32,
             copy={})
SIMULATED = Sizes(single_hidden=4, single_gaps=(1, 3), ensemble_hidden=4, ensemble_gap=1,
                  models=(2, 3), group_models=1, groups_at_once=(1, 2),
                  validation_rows=5, batch=3,
                  copy={"n_symbols": 2, "n_recall": 2})  # T 5, 7

TARGET_US_PER_TIME_STEP = 20.0
TARGET_MODEL_STEPS = 5000.0
TARGET_SCALING = 1.5
TARGET_VS_CUDNN = 10.0


# ---------------------------------------------------------------- data


@dataclass
class Data:
    """S steps of copy batches for M models: x [M,S,T,B,I], target_class [M,S,T,B] (0 where
    unmasked), mask [M,S,T,B]."""

    x: np.ndarray
    target_class: np.ndarray
    mask: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int, int, int]:
        return self.x.shape  # M, S, T, B, I


def copy_data(sizes: Sizes, n_models: int, n_steps: int, gap: int) -> tuple[Data, int]:
    """Model m's batches are task.batch(gap, B, seed=m, "train", index=step); and O."""
    from ablate import tasks

    task = tasks.get("copy", **sizes.copy)
    first = task.batch(gap, sizes.batch, 0, "train", 0)
    T, B, n_in = first.x.shape
    x = np.empty((n_models, n_steps, T, B, n_in), np.float32)
    target_class = np.empty((n_models, n_steps, T, B), np.int64)
    mask = np.empty((n_models, n_steps, T, B), np.float32)
    for m in range(n_models):
        for s in range(n_steps):
            batch = task.batch(gap, sizes.batch, m, "train", s)
            x[m, s], mask[m, s] = batch.x, batch.mask
            target_class[m, s] = np.where(batch.mask > 0, batch.target, 0)
    return Data(x, target_class, mask), task.n_out(gap)


# ---------------------------------------------------------------- timing


def time_repeat(run: Callable[[], None], sync: Callable[[], None], n_steps: int) -> float:
    """Seconds per step of one repeat: run() issues n_steps steps, then wait for the device."""
    sync()
    started = time.perf_counter()
    run()
    sync()
    return (time.perf_counter() - started) / n_steps


def measure(routes: dict[str, tuple[Callable[[], None], Callable[[], None]]], n_steps: int,
            repeats: int, case_seconds: float) -> dict[str, list[float]]:
    """Seconds per step of every repeat of every route; the routes take their repeats in
    turn, and stop after ``case_seconds`` of timed repeats (at least one each)."""
    times: dict[str, list[float]] = {name: [] for name in routes}
    spent = 0.0
    for _ in range(repeats):
        for name, (run, sync) in routes.items():
            times[name].append(time_repeat(run, sync, n_steps))
            spent += times[name][-1] * n_steps
        if spent > case_seconds:
            break
    return times


# ---------------------------------------------------------------- ablate


class AblateCase:
    """A DeviceEnsemble of M models with S steps of batches loaded (compiled on creation)."""

    def __init__(self, data: Data, H: int, O: int, tile_rows: int | None = None,
                 rows_per_thread: int = 1, resident: bool = False, parts: int = 1,
                 clusters: bool = False) -> None:
        from numba import cuda

        from ablate import init_params
        from ablate.cuda.device import DeviceEnsemble
        from ablate.kernels.driver import LOSS_CODES

        self.cuda, self.loss_code = cuda, LOSS_CODES["xent"]
        M, S, T, B, n_in = data.shape
        self.n_steps = S
        self.ens = DeviceEnsemble(CELL, np.float32, M, T, B, n_in, H, O, interval=S,
                                  tile_rows=tile_rows, rows_per_thread=rows_per_thread,
                                  threads=resident_threads() if resident else None,
                                  resident=resident, parts=parts, clusters=clusters)
        self.ens.set_params(np.stack([init_params(CELL, n_in, H, O, seed=m, dtype=np.float32)
                                      for m in range(M)]))
        self.ens.load_interval(
            data.x, data.target_class, np.zeros((M, S, T, B, 0), np.float32), data.mask,
            limit=np.full(M, S, np.int64), first_step=np.ones(M, np.int64),
            lr=np.full(M, LR), clip=np.full(M, CLIP))
        started = time.perf_counter()
        self.ens.step(0, self.loss_code)  # warm-up: the first launches compile the kernels
        self.ens.loss_and_grad(0, self.loss_code)
        cuda.synchronize()
        self.first_seconds = time.perf_counter() - started

    def occupancy(self) -> dict | None:
        return self.occupancy_of(self.ens)

    @staticmethod
    def occupancy_of(ens) -> dict | None:
        """The grid, the blocks an SM holds (the driver's answer) and the waves of the
        forward and backward launches; None under the simulator (it has no occupancy)."""
        if simulator.active():
            return None
        from ablate.cuda.occupancy import device_limits, driver_blocks_per_sm, waves

        grid = ens.n_tiles * ens.M * ens.parts
        try:
            per_sm = {role: driver_blocks_per_sm(getattr(ens.kernels, role), ens.threads)
                      for role in ("forward", "backward")}
        except Exception as error:  # a diagnostic: never lose the measurement for it
            print(f"    (occupancy not read: {type(error).__name__}: {error})", flush=True)
            return None
        fewest = min(per_sm.values())
        found = {"blocks": grid, "threads": ens.threads, "blocks_per_sm": per_sm,
                 "waves": waves(grid, fewest, device_limits()) if fewest else None}
        if ens.clusters:
            found["clusters"] = grid // ens.parts
            found["clusters_at_once"] = clusters_at_once(ens)
        return found

    def sync(self) -> None:
        self.cuda.synchronize()

    def train(self) -> None:
        for s in range(self.n_steps):
            self.ens.step(s, self.loss_code)

    def forward_backward(self) -> None:
        for s in range(self.n_steps):
            self.ens.loss_and_grad(s, self.loss_code)

    def forward(self) -> None:
        for s in range(self.n_steps):
            self.ens.forward(s, self.loss_code)

    def train_and_wait(self) -> None:
        """The steps, then a wait for this ensemble's stream only (as run_suite.py's CUDA
        worker does between intervals): for several ensembles trained at once."""
        self.train()
        self.ens.stream.synchronize()

    def diverged(self) -> int:
        """Models that stopped early (their later steps return at once: timing too short)."""
        _, losses, _, limit = self.ens.fetch()
        return int(np.sum((limit < self.n_steps) | ~np.isfinite(losses).all(axis=1)))


# ---------------------------------------------------------------- torch


def torch_status(tf32: bool):
    """(torch module or None, a few words on it)."""
    try:
        import torch
    except ImportError:
        return None, "torch not installed: ablate's numbers only"
    if not torch.cuda.is_available():
        return None, f"torch {torch.__version__} has no CUDA here: ablate's numbers only"
    torch.backends.cudnn.enabled = True
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    return torch, (f"torch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}, "
                   f"TF32 {'on' if tf32 else 'off'}")


class TorchModels:
    """M separate nn.LSTM + nn.Linear + fused Adam models on cuda, trained one after
    another on the same batches as ablate's."""

    def __init__(self, torch, data: Data, H: int, O: int) -> None:
        self.torch, self.O = torch, O
        M, S, T, B, n_in = data.shape
        self.n_models, self.n_steps = M, S
        device = torch.device("cuda")
        self.x = torch.from_numpy(data.x).to(device)
        self.target = torch.from_numpy(data.target_class).to(device)
        self.mask = torch.from_numpy(data.mask).to(device)
        self.models = []
        for m in range(M):
            torch.manual_seed(m)
            lstm = torch.nn.LSTM(n_in, H).to(device)
            readout = torch.nn.Linear(H, O).to(device)
            parameters = [*lstm.parameters(), *readout.parameters()]
            optimiser = torch.optim.Adam(parameters, lr=LR, fused=True)
            self.models.append((lstm, readout, parameters, optimiser))
        started = time.perf_counter()
        self.train_step(0)  # warm-up: cuDNN set-up, allocator, fused Adam
        self.forward_backward_step(0)
        self.sync()
        self.first_seconds = time.perf_counter() - started

    def sync(self) -> None:
        self.torch.cuda.synchronize()

    def _loss(self, m: int, s: int):
        lstm, readout, _, _ = self.models[m]
        y = readout(lstm(self.x[m, s])[0])
        mask = self.mask[m, s].reshape(-1)
        rows = self.torch.nn.functional.cross_entropy(
            y.reshape(-1, self.O), self.target[m, s].reshape(-1), reduction="none")
        return (rows * mask).sum() / mask.sum()  # Σ mask·ℓ / Σ mask, like ablate's loss

    def train_step(self, s: int) -> None:
        """Step s of every model, one model after another."""
        for m, (_, _, parameters, optimiser) in enumerate(self.models):
            loss = self._loss(m, s)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            self.torch.nn.utils.clip_grad_norm_(parameters, CLIP)
            optimiser.step()

    def forward_backward_step(self, s: int) -> None:
        for m, (_, _, _, optimiser) in enumerate(self.models):
            optimiser.zero_grad(set_to_none=True)
            self._loss(m, s).backward()

    def train(self) -> None:
        for s in range(self.n_steps):
            self.train_step(s)

    def forward_backward(self) -> None:
        for s in range(self.n_steps):
            self.forward_backward_step(s)


# ---------------------------------------------------------------- cases


def single_rows(args, sizes: Sizes, torch, rows: list) -> list[dict]:
    """One model at H=single_hidden for every T: step and forward + backward times, each
    appended to ``rows`` as soon as it is measured (``save_partial`` writes them)."""
    H = sizes.single_hidden
    for gap in sizes.single_gaps:
        deadline = args.budget.case_deadline()
        data, O = copy_data(sizes, 1, args.steps, gap)
        T = data.shape[2]
        ours = AblateCase(data, H, O)
        routes = {"ablate step": (ours.train, ours.sync),
                  "ablate fwd+bwd": (ours.forward_backward, ours.sync),
                  "ablate fwd": (ours.forward, ours.sync)}
        theirs = TorchModels(torch, data, H, O) if torch else None
        if theirs:
            routes["cuDNN step"] = (theirs.train, theirs.sync)
            routes["cuDNN fwd+bwd"] = (theirs.forward_backward, theirs.sync)
        times = measure(routes, args.steps, args.repeats, args.case_seconds)
        best = {name: min(values) for name, values in times.items()}
        row = {"H": H, "B": sizes.batch, "T": T, "repeats": len(times["ablate step"]),
               "compile_seconds": ours.first_seconds, "diverged": ours.diverged(),
               "ablate_step_ms": 1e3 * best["ablate step"],
               "ablate_us_per_time_step": 1e6 * best["ablate step"] / T,
               "ablate_fwd_bwd_us_per_time_step": 1e6 * best["ablate fwd+bwd"] / T,
               "ablate_phases_us_per_time_step": phases(best, "ablate step", T, 1e6),
               "cudnn_step_ms": None, "cudnn_us_per_time_step": None,
               "cudnn_fwd_bwd_us_per_time_step": None, "cudnn_over_ablate": None,
               "every_repeat_ms": {k: [1e3 * v for v in vs] for k, vs in times.items()}}
        if theirs:
            row.update(cudnn_step_ms=1e3 * best["cuDNN step"],
                       cudnn_us_per_time_step=1e6 * best["cuDNN step"] / T,
                       cudnn_fwd_bwd_us_per_time_step=1e6 * best["cuDNN fwd+bwd"] / T,
                       cudnn_over_ablate=best["cuDNN step"] / best["ablate step"])
        row["tile_rows"] = ours.ens.tile_rows
        row["rows_per_thread"] = ours.ens.rows_per_thread
        row["occupancy"] = ours.occupancy()
        print(f"  one model, T{T}: ablate {row['ablate_step_ms']:.3f} ms a step, fwd+bwd "
              f"{row['ablate_fwd_bwd_us_per_time_step']:.1f} µs a time step (first launch "
              f"{ours.first_seconds:.1f} s; {occupancy_words(ours.ens, row['occupancy'])})",
              flush=True)
        print(f"    µs a time step: {phase_words(row['ablate_phases_us_per_time_step'])}",
              flush=True)
        row["variants"], row["failed_variants"] = [], []

        def time_one(rows_per_thread, tile_rows, resident, parts, clusters, data=data, O=O,
                     row=row, T=T):
            timed = time_variant(args, data, H, O, tile_rows, rows_per_thread,
                                 "forward_backward", row["failed_variants"], resident, parts,
                                 clusters)
            if timed is None:
                return
            seconds, ens = timed
            occupancy = AblateCase.occupancy_of(ens)
            row["variants"].append({"tile_rows": ens.tile_rows,
                                    "rows_per_thread": rows_per_thread, "resident": resident,
                                    "parts": parts, "clusters": clusters,
                                    "threads": ens.threads,
                                    "occupancy": occupancy,
                                    "fwd_bwd_us_per_time_step": 1e6 * seconds / T})
            print(f"    {occupancy_words(ens, occupancy)}: fwd+bwd {1e6 * seconds / T:.1f} µs "
                  "a time step", flush=True)

        row["skipped_variants"] = time_variants(variants(args, ours.ens), time_one, deadline,
                                                args.budget.clock)
        rows.append(row)
        args.save_partial()
        del ours, theirs
    return rows


def phases(best: dict, step: str, T: int, unit: float) -> dict:
    """A step's time split by kernel, from routes that stop after the forward, after the
    backward and after Adam (their best repeats; a difference can come out slightly
    negative where it is within the noise): forward, backward, Adam, in ``unit`` per time
    step (T) or per step (T = 1)."""
    forward, both, whole = best["ablate fwd"], best["ablate fwd+bwd"], best[step]
    return {"forward": unit * forward / T, "backward": unit * (both - forward) / T,
            "adam": unit * (whole - both) / T}


def phase_words(split: dict) -> str:
    total = sum(split.values())
    return ", ".join(f"{name} {value:.1f} ({value / total:.0%})" if total > 0 else
                     f"{name} {value:.1f}" for name, value in split.items())


class Budget:
    """--budget: the seconds the cases may spend, shared out as they start: a case gets the
    time left over the cases still to come (so one slow case cannot take the later cases'
    targets with it, and a quick one leaves its share to them). A case's default tiling is
    always timed; only its other tilings stop at the case's deadline."""

    def __init__(self, seconds: float | None, cases: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.end = None if seconds is None else clock() + seconds
        self.cases_left = cases

    def case_deadline(self) -> float:
        """The clock reading after which the starting case times no more tilings."""
        if self.end is None:
            return math.inf
        now = self.clock()
        share = max(0.0, self.end - now) / max(1, self.cases_left)
        self.cases_left -= 1
        return now + share


def time_variants(chosen: list[tuple[int, int, bool, int, bool]],
                  time_one: Callable[..., None],
                  deadline: float, clock: Callable[[], float]) -> list[dict]:
    """time_one(*variant) for each variant in order until ``clock()`` reaches ``deadline``;
    the variants left untimed, as dicts (one printed line lists them)."""
    skipped = []
    for variant in chosen:
        if clock() >= deadline:
            skipped.append(dict(zip(("rows_per_thread", "tile_rows", "resident", "parts",
                                     "clusters"), variant, strict=True)))
            continue
        time_one(*variant)
    if skipped:
        print(f"    not timed within --budget: {len(skipped)} tiling(s): "
              + "; ".join(variant_words(v) for v in skipped), flush=True)
    return skipped


def time_variant(args, data: Data, H: int, O: int, tile_rows: int, rows_per_thread: int,
                 route: str, failed: list, resident: bool = False, parts: int = 1,
                 clusters: bool = False) -> tuple | None:
    """(best seconds a step of ``route`` — "train" or "forward_backward" —, the ensemble) of
    one other tiling, ablate only; None, with one printed line and an entry in ``failed``,
    where it fails to build or launch (the other tilings and the JSON are kept)."""
    try:
        case = AblateCase(data, H, O, tile_rows, rows_per_thread, resident, parts, clusters)
        seconds = min(measure({"ablate": (getattr(case, route), case.sync)}, args.steps,
                              args.repeats, args.case_seconds)["ablate"])
    except Exception as error:  # one tiling failing must not lose the others
        words = f"{type(error).__name__}: {error}".splitlines()[0]
        chosen = {"tile_rows": tile_rows, "rows_per_thread": rows_per_thread,
                  "resident": resident, "parts": parts, "clusters": clusters}
        print(f"    {variant_words(chosen)}: failed ({words})", flush=True)
        failed.append({**chosen, "error": words})
        return None
    return seconds, case.ens


def ensemble_rows(args, sizes: Sizes, torch, rows: list) -> list[dict]:
    """Each ensemble size, the targets' first and then the shape group's: one DeviceEnsemble
    against its models run one after another, appended to ``rows`` as soon as it is
    measured."""
    H = sizes.ensemble_hidden
    for M in (*sizes.models, sizes.group_models):
        deadline = args.budget.case_deadline()
        data, O = copy_data(sizes, M, args.steps, sizes.ensemble_gap)
        T = data.shape[2]
        ours = AblateCase(data, H, O)
        routes = {"ablate": (ours.train, ours.sync),
                  "ablate fwd+bwd": (ours.forward_backward, ours.sync),
                  "ablate fwd": (ours.forward, ours.sync)}
        theirs = TorchModels(torch, data, H, O) if torch else None
        if theirs:
            routes["cuDNN"] = (theirs.train, theirs.sync)
        times = measure(routes, args.steps, args.repeats, args.case_seconds)
        best = {name: min(values) for name, values in times.items()}
        row = {"models": M, "H": H, "B": sizes.batch, "T": T,
               "repeats": len(times["ablate"]), "diverged": ours.diverged(),
               "ablate_step_ms": 1e3 * best["ablate"],
               "ablate_model_steps_per_second": M / best["ablate"],
               "ablate_phases_ms": phases(best, "ablate", 1, 1e3),
               "cudnn_step_ms": None, "cudnn_model_steps_per_second": None,
               "cudnn_over_ablate": None,
               "every_repeat_ms": {k: [1e3 * v for v in vs] for k, vs in times.items()}}
        if theirs:
            row.update(cudnn_step_ms=1e3 * best["cuDNN"],
                       cudnn_model_steps_per_second=M / best["cuDNN"],
                       cudnn_over_ablate=best["cuDNN"] / best["ablate"])
        row["tile_rows"] = ours.ens.tile_rows
        row["rows_per_thread"] = ours.ens.rows_per_thread
        row["occupancy"] = ours.occupancy()
        print(f"  {M} models: ablate {row['ablate_model_steps_per_second']:.0f} model-steps/s "
              f"({occupancy_words(ours.ens, row['occupancy'])})", flush=True)
        print(f"    ms a step: {phase_words(row['ablate_phases_ms'])}", flush=True)
        row["variants"], row["failed_variants"] = [], []

        def time_one(rows_per_thread, tile_rows, resident, parts, clusters, data=data, O=O,
                     row=row, M=M):
            timed = time_variant(args, data, H, O, tile_rows, rows_per_thread, "train",
                                 row["failed_variants"], resident, parts, clusters)
            if timed is None:
                return
            seconds, ens = timed
            occupancy = AblateCase.occupancy_of(ens)
            row["variants"].append({
                "tile_rows": ens.tile_rows, "rows_per_thread": rows_per_thread,
                "resident": resident, "parts": parts, "clusters": clusters,
                "threads": ens.threads, "step_ms": 1e3 * seconds,
                "model_steps_per_second": M / seconds, "occupancy": occupancy})
            print(f"    {occupancy_words(ens, occupancy)}: {M / seconds:.0f} "
                  "model-steps/s", flush=True)

        row["skipped_variants"] = time_variants(variants(args, ours.ens), time_one, deadline,
                                                args.budget.clock)
        rows.append(row)
        args.save_partial()
        del ours, theirs, data
    return rows


def groups_at_once_rows(args, sizes: Sizes, group: dict, rows: list) -> list[dict]:
    """K shape groups at once (K in sizes.groups_at_once), each a DeviceEnsemble on its own
    stream driven by its own thread, at the group's fastest tiling: a repeat is every
    thread issuing the steps and waiting for its stream. Appended to ``rows`` as measured;
    a K that fails prints one line and is recorded with its error."""
    best = fastest_tiling(group)
    M, H = group["models"], sizes.ensemble_hidden
    data, O = copy_data(sizes, M, args.steps, sizes.ensemble_gap)
    for K in sizes.groups_at_once:
        row = {"groups": K, "models": K * M, "tile_rows": best["tile_rows"],
               "rows_per_thread": best["rows_per_thread"], "resident": best["resident"],
               "parts": best["parts"], "clusters": best.get("clusters", False)}
        try:
            cases = [AblateCase(data, H, O, best["tile_rows"], best["rows_per_thread"],
                                best["resident"], best["parts"], best.get("clusters", False))
                     for _ in range(K)]
            with ThreadPoolExecutor(K, thread_name_prefix="group") as pool:
                def train_all(pool=pool, cases=cases) -> None:
                    list(pool.map(AblateCase.train_and_wait, cases))

                times = measure({"ablate": (train_all, cases[0].sync)}, args.steps,
                                args.repeats, args.case_seconds)["ablate"]
        except Exception as error:  # one K failing must not lose the others
            row["error"] = f"{type(error).__name__}: {error}".splitlines()[0]
            print(f"  {K} groups at once: failed ({row['error']})", flush=True)
        else:
            seconds = min(times)
            row.update(step_ms=1e3 * seconds, model_steps_per_second=K * M / seconds,
                       every_repeat_ms=[1e3 * t for t in times])
            print(f"  {K} group{'s' if K > 1 else ''} of {M} at once: "
                  f"{row['model_steps_per_second']:,.0f} model-steps/s", flush=True)
            del cases
        rows.append(row)
        args.save_partial()
    return rows


def evaluation_row(args, sizes: Sizes, group: dict) -> dict:
    """The validation batch (sizes.validation_rows copy sequences) scored on the device for
    the shape group at its fastest tiling, outputs back on the host (what run_suite.py's
    CUDA engine does between intervals: ablate.cuda.evaluation), against the group's
    training step. A failure prints one line and is recorded with its error."""
    from ablate.cuda.evaluation import DeviceEvaluation

    best = fastest_tiling(group)
    M, H, N, B = group["models"], sizes.ensemble_hidden, sizes.validation_rows, sizes.batch
    row = {"models": M, "rows": N, "tile_rows": best["tile_rows"],
           "rows_per_thread": best["rows_per_thread"], "resident": best["resident"],
           "parts": best["parts"], "clusters": best.get("clusters", False)}
    try:
        data, O = copy_data(sizes, M, args.steps, sizes.ensemble_gap)
        case = AblateCase(data, H, O, best["tile_rows"], best["rows_per_thread"],
                          best["resident"], best["parts"], best.get("clusters", False))
        chunks = math.ceil(N / B)
        rows, _ = copy_data(sizes, 1, chunks, sizes.ensemble_gap)  # x [1, chunks, T, B, I]
        _, _, T, _, I = rows.shape
        x = rows.x[0].transpose(1, 0, 2, 3).reshape(T, chunks * B, I)[:, :N]
        mask = rows.mask[0].transpose(1, 0, 2).reshape(T, chunks * B)[:, :N]
        evaluation = DeviceEvaluation(case.ens, x, mask)
        everyone = list(range(M))
        evaluation.predict(everyone)  # warm-up: the gather kernel compiles
        predict, train = [], []
        for _ in range(args.repeats):
            predict.append(time_repeat(lambda: evaluation.predict(everyone), case.sync, 1))
            train.append(time_repeat(case.train, case.sync, args.steps))
        evaluation.close()
    except Exception as error:  # a diagnostic beside the targets: never lose them for it
        row["error"] = f"{type(error).__name__}: {error}".splitlines()[0]
        print(f"  validation on the device: failed ({row['error']})", flush=True)
        return row
    row.update(predict_ms=1e3 * min(predict), train_step_ms=1e3 * min(train),
               every_predict_ms=[1e3 * t for t in predict])
    row["training_steps"] = row["predict_ms"] / row["train_step_ms"]
    print(f"  validation of {N} sequences on the device, {M} model{'s' if M > 1 else ''}: "
          f"{row['predict_ms']:.2f} ms = {row['training_steps']:.1f} training steps "
          f"({row['predict_ms'] / M:.2f} ms a model, outputs on the host)", flush=True)
    return row


# ---------------------------------------------------------------- report


def variants(args, default) -> list[tuple[int, int, bool, int, bool]]:
    """(rows_per_thread, tile_rows, resident, parts, clusters) of the other tilings to time, the
    designs never timed on a GPU first (``by_novelty``; a --budget may cut the rest): every
    --rows-per-thread with its default tile and every --tile-rows, less the default
    ensemble's own, tiles larger than the batch and tiles smaller than the rows a thread
    takes (which would compute the same row several times); with --resident each also with
    R resident in registers, where its layout allows (one line says where it does not);
    with --parts, each tile spread over that many blocks (ablate.cuda.tiles) at every
    --rows-per-thread: for one model its whole batch (the design for one model on many
    SMs), with --resident also each block holding its units' share of R at the largest tile
    that layout takes (``spread_tile``); for an ensemble only so, R resident in the blocks,
    and only where its models' sets of blocks all fit the GPU's SMs at once (a model's
    share of R stays on chip; more blocks than SMs would wait in waves). With --clusters
    each spread tiling of at most ``cluster.PORTABLE`` blocks is also timed with its blocks
    a thread-block cluster (ablate.cuda.cluster), just before it."""
    from ablate.cuda.device import default_tiling, resident_layout

    chosen, refused = [], set()
    for rows_per_thread in args.rows_per_thread:
        for tile_rows in [None, *args.tile_rows]:
            if tile_rows is not None and not rows_per_thread <= tile_rows <= default.B:
                continue
            tile = tile_rows or default_tiling(default.B, default.H, rows_per_thread)[0]
            for resident in (False, True) if args.resident else (False,):
                if resident:
                    try:
                        resident_layout(CELL, default.H, resident_threads(), tile,
                                        default.dtype, rows_per_thread)
                    except ValueError as error:
                        refused.add(str(error))
                        continue
                key = (rows_per_thread, tile, resident, 1, False)
                if key != (default.rows_per_thread, default.tile_rows, False, 1, False) and (
                        key not in chosen):
                    chosen.append(key)
    one_model = default.M == 1
    for parts in args.parts:
        if not one_model and (not args.resident or default.M * parts > sm_count()):
            continue
        for rows_per_thread in args.rows_per_thread:
            if rows_per_thread > default.B:
                continue
            if one_model:
                chosen += [(rows_per_thread, default.B, False, parts, clusters)
                           for clusters in as_clusters(args, parts)]
            if args.resident:
                try:
                    tile = spread_tile(default.B, default.H, default.dtype, rows_per_thread,
                                       parts, True)
                except ValueError as error:
                    refused.add(str(error))
                    continue
                chosen += [(rows_per_thread, tile, True, parts, clusters)
                           for clusters in as_clusters(args, parts)]
    for words in sorted(refused):
        print(f"    not timed: {words}", flush=True)
    return sorted(chosen, key=by_novelty)


def as_clusters(args, parts: int) -> tuple[bool, ...]:
    """The ways to time a tile spread over ``parts`` blocks: as a thread-block cluster too
    where --clusters asks and the cluster is portable (ablate.cuda.cluster.PORTABLE)."""
    from ablate.cuda.cluster import PORTABLE

    return (True, False) if args.clusters and parts <= PORTABLE else (False,)


def by_novelty(variant: tuple[int, int, bool, int, bool]) -> int:
    """Sort key of a variant: R resident in spread blocks first, then spread blocks, then R
    resident in one block, then the plain tilings (the first GPU run timed those). A sort
    by it keeps the order within each: a cluster tiling stays just before its twin meeting
    in global memory, so a --budget cut keeps the pairs that compare the two barriers."""
    _, _, resident, parts, _ = variant
    return (0 if resident else 1) if parts > 1 else (2 if resident else 3)


def sm_count() -> int:
    """The GPU's SMs; an H100 SXM's (132, as an H200's) under the simulator."""
    from ablate.cuda.occupancy import H100_SXM

    if simulator.active():
        return H100_SXM.sm_count
    from numba import cuda

    return cuda.get_current_device().MULTIPROCESSOR_COUNT


def spread_tile(B: int, H: int, dtype, rows_per_thread: int, parts: int,
                resident: bool) -> int:
    """The tile of one model spread over ``parts`` blocks: its whole batch, or with R
    resident the largest of B, ⌈B/2⌉, ⌈B/4⌉, … (at least rows_per_thread) whose layout
    fits (every block stages its tile's h and da in shared memory: H 128 takes 16 rows);
    ValueError, the last layout's, where none does."""
    from ablate.cuda.device import resident_layout

    if not resident:
        return B
    tile, error = B, None
    while tile >= rows_per_thread:
        try:
            resident_layout(CELL, H, resident_threads(), tile, dtype, rows_per_thread, parts)
            return tile
        except ValueError as refused:
            error = refused
        if tile == 1:
            break
        tile = (tile + 1) // 2
    raise error or ValueError(f"no tile of at least {rows_per_thread} rows in a batch of {B}")


def resident_threads() -> int:
    """Threads a block with R resident in registers: the largest block on a GPU (the
    fewest weights a thread), one warp under the simulator (which runs every thread as a
    Python thread; its sizes need no more)."""
    from ablate.cuda.device import MAX_THREADS

    return 32 if simulator.active() else MAX_THREADS


def clusters_at_once(ens) -> dict | None:
    """The clusters of ``ens``'s launches the GPU runs at once, forward and backward, by
    cuda.core's ``max_active_clusters`` (a cluster needs all its blocks' SMs in one GPC at
    once, so fewer may fit than blocks a wave suggests); None, with one printed line, where
    this cuda.core cannot say."""
    try:
        from cuda.core import Device, LaunchConfig

        config = LaunchConfig(grid=ens.grid[0] // ens.parts, cluster=(ens.parts, 1, 1),
                              block=ens.threads)
        stream = Device().default_stream  # what cuda.core's docs say to pass: no launch
        found = {}
        for role in ("forward", "backward"):
            compiled = next(iter(getattr(ens.kernels, role).overloads.values()))
            kernel = compiled._codelibrary.get_cufunc().kernel
            found[role] = int(kernel.occupancy.max_active_clusters(config, stream=stream))
        return found
    except Exception as error:  # a diagnostic: never lose the measurement for it
        print(f"    (clusters at once not read: {type(error).__name__}: {error})", flush=True)
        return None


def occupancy_words(ens, occupancy: dict | None) -> str:
    """'tile_rows 4, 1 row a thread, 256 threads a block[, 1024 blocks, an SM holds 1 (fwd)
    1 (bwd), 7.76 waves]' (the bracket only on a GPU)."""
    rows = ens.rows_per_thread
    text = (f"tile_rows {ens.tile_rows}, {rows} row{'s' if rows > 1 else ''} a thread, "
            f"{ens.threads} threads a block")
    if ens.resident is not None:
        text += ", R resident in registers"
    if ens.parts > 1:
        text += f", a tile over {ens.parts} blocks" + (" (a cluster)" if ens.clusters else "")
    if occupancy is None:
        return text
    per_sm, waves = occupancy["blocks_per_sm"], occupancy["waves"]
    text = (f"{text}, {occupancy['blocks']} blocks, an SM holds {per_sm['forward']} (fwd) "
            f"{per_sm['backward']} (bwd), {'—' if waves is None else f'{waves:.2f}'} waves")
    at_once = occupancy.get("clusters_at_once")
    if at_once:
        text += (f", {occupancy['clusters']} clusters, {at_once['forward']} (fwd) "
                 f"{at_once['backward']} (bwd) at once")
    return text


def fmt(value, spec: str, suffix: str = "") -> str:
    return "—" if value is None else f"{value:{spec}}{suffix}"


def print_tables(single: list[dict], ensembles: list[dict]) -> None:
    print("\n| H | B | T | ablate step ms | ablate µs / time step "
          "| ablate fwd+bwd µs / time step | cuDNN step ms | cuDNN µs / time step "
          "| cuDNN fwd+bwd µs / time step | cuDNN / ablate |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in single:
        print(f"| {r['H']} | {r['B']} | {r['T']} | {r['ablate_step_ms']:.3f} "
              f"| {r['ablate_us_per_time_step']:.1f} | {r['ablate_fwd_bwd_us_per_time_step']:.1f} "
              f"| {fmt(r['cudnn_step_ms'], '.3f')} | {fmt(r['cudnn_us_per_time_step'], '.1f')} "
              f"| {fmt(r['cudnn_fwd_bwd_us_per_time_step'], '.1f')} "
              f"| {fmt(r['cudnn_over_ablate'], '.2f', '×')} |")
    print("\n| models | H | B | T | ablate step ms | ablate model-steps/s "
          "| cuDNN one after another: step ms | cuDNN model-steps/s | cuDNN / ablate |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in ensembles:
        print(f"| {r['models']} | {r['H']} | {r['B']} | {r['T']} | {r['ablate_step_ms']:.3f} "
              f"| {r['ablate_model_steps_per_second']:.0f} | {fmt(r['cudnn_step_ms'], '.3f')} "
              f"| {fmt(r['cudnn_model_steps_per_second'], '.0f')} "
              f"| {fmt(r['cudnn_over_ablate'], '.2f', '×')} |")


def waves_words(small: dict, large: dict) -> str:
    """' (waves 0.97 and 7.76)': the grids against what the GPU holds at once, or ''."""
    found = [(row.get("occupancy") or {}).get("waves") for row in (small, large)]
    if None in found:
        return ""
    return f" (waves {found[0]:.2f} and {found[1]:.2f})"


def judge(single: list[dict], ensembles: list[dict]) -> list[dict]:
    """Each target of issue 7: met (True), missed (False) or not measured (None)."""
    small, large = ensembles
    scaling = large["ablate_step_ms"] / small["ablate_step_ms"]
    worst = max(r["ablate_fwd_bwd_us_per_time_step"] for r in single)
    per_t = ", ".join(f"T{r['T']} {r['ablate_fwd_bwd_us_per_time_step']:.1f} µs "
                      f"(whole step {r['ablate_us_per_time_step']:.1f} µs)" for r in single)
    speedups = [r["cudnn_over_ablate"] for r in ensembles]
    targets = [
        {"target": f"one model ≤ {TARGET_US_PER_TIME_STEP:.0f} µs per time step (forward + "
                   f"backward), H{single[0]['H']}",
         "met": worst <= TARGET_US_PER_TIME_STEP, "value": worst, "detail": per_t},
        {"target": f"≥ {TARGET_MODEL_STEPS:,.0f} model-steps/s at {small['models']} × "
                   f"(H{small['H']}, B{small['B']}, T{small['T']})",
         "met": small["ablate_model_steps_per_second"] >= TARGET_MODEL_STEPS,
         "value": small["ablate_model_steps_per_second"],
         "detail": f"{small['ablate_model_steps_per_second']:,.0f} model-steps/s"},
        {"target": f"{large['models']} models within {TARGET_SCALING}× the "
                   f"{small['models']}-model step time",
         "met": scaling <= TARGET_SCALING, "value": scaling,
         "detail": f"{large['ablate_step_ms']:.3f} ms / {small['ablate_step_ms']:.3f} ms = "
                   f"{scaling:.2f}×{waves_words(small, large)}"},
    ]
    if any(row["variants"] for row in single):
        fastest = [min([r["ablate_fwd_bwd_us_per_time_step"]]
                       + [v["fwd_bwd_us_per_time_step"] for v in r["variants"]]) for r in single]
        words = []
        for r, best in zip(single, fastest, strict=True):
            chosen = next((v for v in r["variants"] if v["fwd_bwd_us_per_time_step"] == best),
                          {"tile_rows": r["tile_rows"], "rows_per_thread": r["rows_per_thread"]})
            words.append(f"T{r['T']} {best:.1f} µs ({variant_words(chosen)})")
        targets.insert(1, {
            "target": "the same at each T's fastest tiling measured",
            "met": max(fastest) <= TARGET_US_PER_TIME_STEP, "value": max(fastest),
            "detail": ", ".join(words)})
    if any(row["variants"] for row in ensembles):
        small_best, large_best = (fastest_tiling(row) for row in ensembles)
        best_scaling = large_best["step_ms"] / small_best["step_ms"]
        targets.append({
            "target": "the same two targets at each size's fastest tiling measured",
            "met": (small_best["model_steps_per_second"] >= TARGET_MODEL_STEPS
                    and best_scaling <= TARGET_SCALING),
            "value": best_scaling,
            "detail": f"{small['models']} models {small_best['model_steps_per_second']:,.0f} "
                      f"model-steps/s ({variant_words(small_best)}); {large['models']} models "
                      f"{large_best['step_ms']:.3f} ms ({variant_words(large_best)}) / "
                      f"{small_best['step_ms']:.3f} ms = {best_scaling:.2f}×"})
    shared = one_tiling_for_both(small, large)
    if shared is not None:
        tiling, small_rate, shared_scaling = shared
        targets.append({
            "target": "the same two targets at one tiling for both sizes (what a default "
                      "for --backend cuda would give)",
            "met": small_rate >= TARGET_MODEL_STEPS and shared_scaling <= TARGET_SCALING,
            "value": shared_scaling,
            "detail": f"{variant_words(tiling)}: {small['models']} models {small_rate:,.0f} "
                      f"model-steps/s, {large['models']} models / {small['models']} "
                      f"{shared_scaling:.2f}×"})
    if None in speedups:
        targets.append({"target": f"≥ {TARGET_VS_CUDNN:.0f}× cuDNN models one after another",
                        "met": None, "value": None, "detail": "not measured (no torch CUDA)"})
    else:
        targets.append({
            "target": f"≥ {TARGET_VS_CUDNN:.0f}× cuDNN models one after another",
            "met": min(speedups) >= TARGET_VS_CUDNN, "value": min(speedups),
            "detail": ", ".join(f"{r['models']} models {r['cudnn_over_ablate']:.1f}×"
                                for r in ensembles)})
    return targets


def default_variant(row: dict) -> dict:
    """An ensemble row's default tiling in the form of its variants."""
    return {"tile_rows": row["tile_rows"], "rows_per_thread": row["rows_per_thread"],
            "resident": False, "parts": 1, "clusters": False, "step_ms": row["ablate_step_ms"],
            "model_steps_per_second": row["ablate_model_steps_per_second"]}


def one_tiling_for_both(small: dict, large: dict) -> tuple[dict, float, float] | None:
    """(tiling, small ensemble's model-steps/s, large step time / small) at the tiling timed
    at both sizes that comes nearest the two targets together: the least of the larger
    shortfall, TARGET_MODEL_STEPS / rate or scaling / TARGET_SCALING (≤ 1: both met); None
    where the sizes share no tiling beyond the default (the targets above judge that)."""
    def key(v: dict) -> tuple:
        return (v["tile_rows"], v["rows_per_thread"], v["resident"], v["parts"],
                v.get("clusters", False))

    at_large = {key(v): v for v in [default_variant(large), *large["variants"]]}
    both = [(v, at_large[key(v)]) for v in [default_variant(small), *small["variants"]]
            if key(v) in at_large]
    if len(both) < 2:
        return None

    def shortfall(pair: tuple[dict, dict]) -> float:
        few, many = pair
        return max(TARGET_MODEL_STEPS / few["model_steps_per_second"],
                   many["step_ms"] / few["step_ms"] / TARGET_SCALING)

    few, many = min(both, key=shortfall)
    return few, few["model_steps_per_second"], many["step_ms"] / few["step_ms"]


def fastest_tiling(row: dict) -> dict:
    """The fastest of an ensemble's tilings measured, the default included."""
    return max([default_variant(row), *row["variants"]],
               key=lambda v: v["model_steps_per_second"])


def variant_words(variant: dict) -> str:
    parts = variant.get("parts", 1)
    return (f"tile_rows {variant['tile_rows']}, {variant['rows_per_thread']} row(s) a thread"
            + (", R resident" if variant.get("resident") else "")
            + (f", a tile over {parts} blocks" if parts > 1 else "")
            + (" (a cluster)" if variant.get("clusters") else ""))


def print_targets(targets: list[dict], simulated: bool) -> None:
    print("\ntargets (issue 7, on an H100/H200):")
    if simulated:
        print("  (simulator run: tiny sizes, timings mean nothing; only the code paths count)")
    words = {True: "met", False: "missed", None: "n/a"}
    for t in targets:
        print(f"  {words[t['met']]:<6} {t['target']}: {t['detail']}")


# ---------------------------------------------------------------- main


def device_line() -> str:
    from numba import cuda

    device = cuda.get_current_device()
    name = getattr(device, "name", "Numba CUDA simulator")
    name = name.decode() if isinstance(name, bytes) else name
    major, minor = device.compute_capability
    return f"{name} (compute capability {major}.{minor})"


def version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def unusable(script: str, simulate: bool) -> str | None:
    """One line on why ``script`` cannot run here (no numba-cuda or GPU, or --simulate
    without the simulator switch or the switch without --simulate), or None."""
    from ablate import cuda as ablate_cuda

    try:
        ablate_cuda.require()
    except ablate_cuda.CudaUnavailable as error:
        hint = " (--simulate needs NUMBA_ENABLE_CUDASIM=1 exported)" if simulate else ""
        return f"{script}: {error}{hint}"
    if simulator.active() == simulate:
        return None
    return f"{script}: " + ("--simulate needs NUMBA_ENABLE_CUDASIM=1 exported" if simulate else
                            "NUMBA_ENABLE_CUDASIM=1 is set: pass --simulate to check the code "
                            "paths, or unset it to use the GPU")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="5 steps, 2 repeats, 10 s a case (under a minute on an H100)")
    parser.add_argument("--steps", type=int, help="training steps a repeat (default 20)")
    parser.add_argument("--repeats", type=int, help="timed repeats, the best counts (default 3)")
    parser.add_argument("--tf32", action="store_true",
                        help="let cuDNN and torch matmuls use TF32 (default: plain float32)")
    parser.add_argument("--simulate", action="store_true",
                        help="tiny sizes under the CUDA simulator (export "
                             "NUMBA_ENABLE_CUDASIM=1): checks the code paths, times nothing")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    parser.add_argument("--tile-rows", default="",
                        help="comma-separated batch rows per block to time the ensembles with "
                             "as well (ablate only), e.g. 1,8,32; default: only the default")
    parser.add_argument("--rows-per-thread", default="1",
                        help="comma-separated rows a thread computes at once (1, 2, 4, 8) to "
                             "time the ensembles with, each at its default tile and every "
                             "--tile-rows (ablate only); default 1")
    parser.add_argument("--resident", action="store_true",
                        help="time every tiling also with R resident in registers "
                             "(ablate.cuda.resident), where its layout allows")
    parser.add_argument("--budget", type=float,
                        help="seconds for all cases: each times its other tilings (the new "
                             "designs first) only within its share, its default always; "
                             "default: no limit")
    parser.add_argument("--parts", default="",
                        help="comma-separated numbers of blocks to spread a batch tile "
                             "over (ablate.cuda.tiles), e.g. 8,16: the one-model cases at "
                             "every --rows-per-thread with each, and with --resident the "
                             "ensembles whose blocks then fit the SMs (ablate only)")
    parser.add_argument("--clusters", action="store_true",
                        help="with --parts, time each spread tiling of at most 8 blocks also "
                             "as a thread-block cluster meeting at its hardware barrier "
                             "(ablate.cuda.cluster; sm_90), just before it")
    args = parser.parse_args(argv)
    from ablate.cuda.device import MAX_PARTS, ROWS_PER_THREAD

    for option, allowed in (("tile_rows", None), ("rows_per_thread", ROWS_PER_THREAD),
                            ("parts", range(2, MAX_PARTS + 1))):
        flag = "--" + option.replace("_", "-")
        try:
            values = [int(v) for v in getattr(args, option).split(",") if v.strip()]
        except ValueError:
            parser.error(f"{flag} takes integers, got {getattr(args, option)!r}")
        if any(v < 1 for v in values) or (allowed and any(v not in allowed for v in values)):
            within = (f"in {allowed.start}..{allowed.stop - 1}" if isinstance(allowed, range)
                      else f"among {allowed}")
            parser.error(f"{flag} must be " + (within if allowed else "positive"))
        setattr(args, option, values)
    defaults = (2, 1, 60.0) if args.simulate else (5, 2, 10.0) if args.quick else (20, 3, 30.0)
    args.steps = args.steps or defaults[0]
    args.repeats = args.repeats or defaults[1]
    args.case_seconds = defaults[2] if not args.simulate else float("inf")
    if min(args.steps, args.repeats) < 1:
        parser.error("--steps and --repeats must be positive")
    if args.budget is not None and not args.budget >= 0:
        parser.error(f"--budget must be seconds, 0 or more, got {args.budget}")

    problem = unusable("bench/gpu.py", args.simulate)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    simulated = args.simulate

    import numba

    sizes = SIMULATED if simulated else FULL
    torch, torch_words = torch_status(args.tf32)
    print(f"# GPU benchmark: {CELL}, float32, copy task, {args.steps} steps a repeat, best of "
          f"{args.repeats} repeat(s)")
    print(f"device {device_line()}; python {platform.python_version()}, numba "
          f"{numba.__version__}, numba-cuda {version('numba-cuda')}, numpy {np.__version__}; "
          f"{torch_words}")
    if simulated:
        print("SIMULATOR RUN (NUMBA_ENABLE_CUDASIM=1): tiny sizes, every timing below means "
              "nothing; this only checks that the script's code paths work")
    print(flush=True)
    single, ensembles, at_once, evaluation = [], [], [], {}

    def save_partial() -> None:
        """The rows measured so far, should a later case hang or the run be cut short (the
        GPU session has one try); the finished run overwrites it."""
        if args.json:
            args.json.write_text(json.dumps({"device": device_line(), "simulated": simulated,
                                             "complete": False, "single": single,
                                             "ensembles": ensembles,
                                             "groups_at_once": at_once,
                                             "evaluation": evaluation}, indent=2))

    args.save_partial = save_partial
    args.budget = Budget(args.budget, len(sizes.single_gaps) + len(sizes.models) + 1)
    single_rows(args, sizes, torch, single)
    ensemble_rows(args, sizes, torch, ensembles)
    *sized, group = ensembles  # the targets' sizes, then the shape group's
    print_tables(single, [group, *sized])
    fastest = fastest_tiling(group)
    plural = "s" if group["models"] != 1 else ""
    print(f"\na shape group of {group['models']} model{plural} (one run_suite.py ensemble): "
          f"{group['ablate_model_steps_per_second']:,.0f} model-steps/s at the default tiling, "
          f"{fastest['model_steps_per_second']:,.0f} at the fastest ({variant_words(fastest)})")
    print(f"\nshape groups at once on threads (run_suite.py --backend cuda --workers K), "
          f"{variant_words(fastest)}:", flush=True)
    groups_at_once_rows(args, sizes, group, at_once)
    evaluation.update(evaluation_row(args, sizes, group))
    args.save_partial()
    small, large = sized
    scaling = large["ablate_step_ms"] / small["ablate_step_ms"]
    print(f"\nablate step time, {large['models']} models / {small['models']} models: "
          f"{scaling:.2f}×")
    if torch is None:
        print(f"cuDNN columns empty: {torch_words}")
    diverged = [r for r in single + sized if r["diverged"]]
    if diverged:
        print(f"warning: {sum(r['diverged'] for r in diverged)} model(s) diverged; their "
              "steps after that return at once, so those timings are too short")
    targets = judge(single, sized)
    print_targets(targets, simulated)
    if args.json:
        args.json.write_text(json.dumps({
            "device": device_line(), "simulated": simulated,
            "versions": {"python": platform.python_version(), "numba": numba.__version__,
                         "numba-cuda": version("numba-cuda"), "numpy": np.__version__,
                         "torch": torch_words},
            "steps": args.steps, "repeats": args.repeats, "tf32": args.tf32,
            "complete": True, "single": single, "ensembles": sized, "group": group,
            "groups_at_once": at_once, "evaluation": evaluation,
            "scaling": scaling,
            "targets": targets}, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
