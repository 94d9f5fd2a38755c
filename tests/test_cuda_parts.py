"""A batch tile spread over several blocks (``parts``, ablate.cuda.tiles): the blocks of a
(model, tile) act as one block and meet at a barrier of their own.

Under the simulator the blocks of such a launch run at once, each on a thread
(ablate.cuda.simulator.blocks_at_once), so the barrier is exercised for real: without it
the blocks read each other's states before they are written (a gru gradient then misses
by 500×, seen while writing this). With ABLATE_TEST_GPU=1 the same tests run on the GPU.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest

pytest.importorskip("numba.cuda")
from numba import cuda  # noqa: E402  (a module global: the simulator swaps it in launches)
from test_cuda import (  # noqa: E402
    SPILLING_BESIDE_R,
    bench_module,
    cpu_train,
    random_problem,
    small_specs,
    trains_like_the_cpu_engine,
)

from ablate import loss_and_grad  # noqa: E402
from ablate.cuda.tiles import barrier as real_barrier  # noqa: E402
from ablate.kernels.driver import LOSS_CODES  # noqa: E402

ON_GPU = os.environ.get("ABLATE_TEST_GPU") == "1"
SPREAD_CELLS = ["lstm", "fgr", "single_net", "net_readout", "use_gate", "gru",
                "minlstm"]  # every barrier and sum path of both families' kernels


def spread_loss_and_grad(cell, params, x, target, mask, H, O, tile_rows, threads,
                         rows_per_thread, parts, dtype=np.float32, resident=False,
                         clusters=False):
    """(loss per row [M,B], grad [M,P], sync) of one xent step at ``parts`` blocks a tile
    (``clusters``: the blocks a thread-block cluster)."""
    from ablate.cuda.device import DeviceEnsemble

    M, T, B, n_in = x.shape
    ens = DeviceEnsemble(cell, dtype, M, T, B, n_in, H, O, 1, tile_rows, threads,
                         rows_per_thread, resident=resident, parts=parts, clusters=clusters)
    ens.set_params(params)
    ens.load_interval(x[:, None], target[:, None], np.zeros((M, T, B, 0), dtype)[:, None],
                      mask[:, None], np.ones(M, np.int64), np.ones(M, np.int64),
                      np.full(M, 1e-3), np.zeros(M))
    ens.loss_and_grad(0, LOSS_CODES["xent"])
    ens.fetch_progress()  # raises if a barrier gave up
    return (ens.loss_rows.copy_to_host(), ens.grad_tiles.copy_to_host().sum(axis=1),
            ens.sync.copy_to_host())


def equal_the_cpu_kernels(cell, params, x, target, mask, H, O, losses, grads, sync, parts,
                          setting, clusters=False):
    """The loss and gradients of each model are the CPU kernels' (float32 rounding), and
    every barrier of every set was met by all its blocks; the tickets start again at 0
    (clusters: neither tickets nor counts were used)."""
    for k in range(len(params)):
        expected_loss, expected = loss_and_grad(cell, params[k], x[k], target[k], mask[k],
                                                "xent", H, O)
        error = np.abs(grads[k] - expected).max() / np.abs(expected).max()
        assert error < 1e-4, (setting, k, error)
        assert abs(losses[k].sum() - expected_loss) < 1e-4 * abs(expected_loss)
    counts = sync[2:]
    if clusters:
        assert not sync.any(), sync
        return
    assert sync[0] == 0 and sync[1] == 0 and (counts > 0).all() and (counts % parts == 0).all()


@pytest.mark.parametrize("cell", SPREAD_CELLS)
def test_spread_tiles_give_the_cpu_gradients_and_one_blocks_bits(cell):
    """Random parts, tiles (ragged), block sizes and rows a thread: the CPU kernels' loss
    and gradients, and exactly the numbers of one block a tile (each sum keeps its order,
    only the blocks that compute it change)."""
    from ablate.cuda.device import ROWS_PER_THREAD

    rng = np.random.default_rng(sum(map(ord, cell)) + 7)
    params, x, target, mask, H, O = random_problem(cell, "xent", rng, np.float32)
    B = x.shape[2]
    tile_rows = int(rng.integers(1, B + 1))
    threads = int(rng.choice([1, 5, 8]))  # the simulator's cost grows with the threads
    rows_per_thread = int(rng.choice(ROWS_PER_THREAD))
    parts = int(rng.integers(2, 5))
    losses, grads, sync = spread_loss_and_grad(cell, params, x, target, mask, H, O,
                                               tile_rows, threads, rows_per_thread, parts)
    one_losses, one_grads, _ = spread_loss_and_grad(cell, params, x, target, mask, H, O,
                                                    tile_rows, threads, rows_per_thread, 1)
    setting = (cell, tile_rows, threads, rows_per_thread, parts)
    np.testing.assert_array_equal(grads, one_grads, err_msg=str(setting))
    np.testing.assert_array_equal(losses, one_losses, err_msg=str(setting))
    equal_the_cpu_kernels(cell, params, x, target, mask, H, O, losses, grads, sync, parts,
                          setting)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_spread_tiles_in_float64_equal_the_cpu_kernels(cell):
    rng = np.random.default_rng(sum(map(ord, cell)) + 8)
    params, x, target, mask, H, O = random_problem(cell, "xent", rng, np.float64)
    _, grads, _ = spread_loss_and_grad(cell, params, x, target, mask, H, O, x.shape[2], 7, 1,
                                       3, np.float64)
    for k in range(len(params)):
        _, expected = loss_and_grad(cell, params[k], x[k], target[k], mask[k], "xent", H, O)
        assert np.abs(grads[k] - expected).max() < 1e-10 * np.abs(expected).max()


def test_training_with_spread_tiles_is_one_blocks_training(cell="lstm", tile_rows=5,
                                                           parts=2):
    """A whole training (Adam between steps, the device's validation, a model stopping
    before the other: its blocks leave at once) gives the parameters and curves of one
    block a tile to the bit, and the CPU engine's up to float32 rounding."""
    from ablate.cuda.engine import train_ensemble

    specs = small_specs(cell)
    cpu = cpu_train(specs, diagnostics=False)
    one = train_ensemble(specs, diagnostics=False, tile_rows=tile_rows, block_threads=4)
    spread = train_ensemble(specs, diagnostics=False, tile_rows=tile_rows, block_threads=4,
                            parts=parts)
    for a, b, c in zip(cpu.results, one.results, spread.results, strict=True):
        assert (a.steps, a.stop_reason) == (c.steps, c.stop_reason) == (b.steps, b.stop_reason)
        for key in ("train_loss", "grad_norm", "val_loss", "val_metric"):
            np.testing.assert_array_equal(b.curve[key], c.curve[key])
        np.testing.assert_allclose(a.curve["val_loss"], c.curve["val_loss"], rtol=1e-4)
    for a, b, c in zip(cpu.params, one.params, spread.params, strict=True):
        np.testing.assert_array_equal(b, c)
        assert np.abs(a - c).max() < 1e-5 * np.abs(a).max()


def relay_kernel():
    """Each round every block does uneven work (block p: (P − p) × 300 adds, so the first
    is the slowest), posts the round on a board, meets the others at the barrier, and
    counts the posts of this round it sees; a second barrier keeps the next round's posts
    from overtaking the count."""
    from ablate.cuda.tiles import barrier

    @cuda.jit
    def relay(sync, board, seen, busy, rounds):
        part = cuda.blockIdx.x
        parts = cuda.gridDim.x
        for k in range(rounds):
            acc = 0.0
            for i in range((parts - part) * 300):
                acc += i * 0.5
            busy[part] = acc
            if cuda.threadIdx.x == 0:
                board[part] = k
            barrier(sync, 0, parts)
            if cuda.threadIdx.x == 0:
                for q in range(parts):
                    if board[q] == k:
                        seen[part, k] += 1
            barrier(sync, 0, parts)

    return relay


def run_relay(parts: int, rounds: int, blocks: int | None = None):
    from ablate.cuda import simulator
    from ablate.cuda.tiles import sync_size

    relay = relay_kernel()
    sync = cuda.to_device(np.zeros(sync_size(1, 1), np.int64))
    board = cuda.to_device(np.full(parts, -1, np.int64))
    seen = cuda.to_device(np.zeros((parts, rounds), np.int64))
    busy = cuda.to_device(np.zeros(parts))
    with simulator.turn(), simulator.blocks_at_once():
        relay[blocks or parts, 4](sync, board, seen, busy, rounds)
    return sync.copy_to_host(), seen.copy_to_host()


def test_the_barrier_holds_every_block_until_all_have_arrived():
    sync, seen = run_relay(parts=4, rounds=3)
    assert (seen == 4).all(), seen
    assert sync[1] == 0 and sync[2] == 4 * 3 * 2  # 2 barriers a round, 4 blocks each


@pytest.mark.skipif(ON_GPU, reason="shortens the wait by patching the simulated module")
def test_a_barrier_short_of_a_block_gives_up_and_the_host_says_so(monkeypatch):
    """Three blocks where the barrier counts on four: they give up after SPIN_LIMIT polls
    and raise FAILED (instead of hanging the GPU), and an ensemble whose sync says so
    refuses its results with one message."""
    from ablate.cuda import simulator, tiles
    from ablate.cuda.device import DeviceEnsemble

    monkeypatch.setattr(tiles, "SPIN_LIMIT", 2048)

    @cuda.jit
    def three_of_four(sync):
        tiles.barrier(sync, 0, 4)

    sync = cuda.to_device(np.zeros(tiles.sync_size(1, 1), np.int64))
    with simulator.turn(), simulator.blocks_at_once():
        three_of_four[3, 2](sync)
    assert sync.copy_to_host()[tiles.FAILED] == 1

    ens = DeviceEnsemble("lstm", np.float32, 1, 2, 2, 1, 2, 2, 1, parts=2)
    ens.load_interval(np.zeros((1, 1, 2, 2, 1)), np.zeros((1, 1, 2, 2), np.int64),
                      np.zeros((1, 1, 2, 2, 0)), np.ones((1, 1, 2, 2)), np.ones(1, np.int64),
                      np.ones(1, np.int64), np.full(1, 1e-3), np.zeros(1))
    flagged = np.zeros(ens.sync.shape, np.int64)
    flagged[1] = 1
    ens.sync.copy_to_device(flagged)
    with pytest.raises(RuntimeError, match=r"the 2 blocks of a tile could not all run at "
                                           r"once .* results are void"):
        ens.fetch_progress()


@pytest.mark.parametrize("parts, H, resident, message", [
    (0, 2, False, r"parts \(blocks a tile is spread over\) must be an integer in 1\.\.32, got 0"),
    (33, 2, False, r"must be an integer in 1\.\.32, got 33"),
    (1.5, 2, False, r"must be an integer in 1\.\.32, got 1\.5"),
    (4, 128, True, r"a block's share of R, 16384 weights \(128 gate rows × H 128 of R over 4 "
                   r"blocks\), is more than 256 threads hold at 32 each in float32; use the "
                   r"default kernels \(resident=False\) or more parts"),
    (2, 20, True, r"a thread for each of its 40 gate rows \(R over 2 blocks\); got 32 threads"),
])
def test_a_bad_parts_is_one_clear_error(parts, H, resident, message):
    from ablate.cuda.device import DeviceEnsemble

    threads = 32 if H == 20 else None
    with pytest.raises(ValueError, match=message):
        DeviceEnsemble("lstm", np.float32, 1, 2, 2, 1, H, 2, 1, threads=threads,
                       resident=resident, parts=parts)


# Both barrier paths of the resident kernels: the sums through R read by the block's own
# units only (lstm, net_readout, gru, rnn), or beside sums across the tile (fgr, single_net)
RESIDENT_SPREAD_CELLS = ["lstm", "fgr", "single_net", "net_readout", "gru", "rnn"]


@pytest.mark.parametrize("cell", RESIDENT_SPREAD_CELLS)
def test_resident_weights_spread_over_blocks_give_the_cpu_gradients(cell):
    """R held in registers by the blocks of a spread tile, each its run of units' rows and
    columns (ablate.cuda.resident): random H, parts, tiles (ragged), block sizes and rows a
    thread; the CPU kernels' loss and gradients."""
    from ablate.cuda.device import ROWS_PER_THREAD, resident_layout

    rng = np.random.default_rng(sum(map(ord, cell)) + 9)
    # H 8–12: a block's share of R has several weights a lane, rows over several lanes, and
    # the blocks' runs of units differ
    params, x, target, mask, H, O = random_problem(cell, "xent", rng, np.float32,
                                                   int(rng.integers(8, 13)))
    B = x.shape[2]
    # at most 2 tiles and 3 parts: the simulator runs every thread of the launch at once
    tile_rows = int(rng.integers((B + 1) // 2, B + 1))
    threads = 32  # more would leave each lane one weight at these H
    rows_per_thread = int(rng.choice([1] if cell in SPILLING_BESIDE_R else ROWS_PER_THREAD))
    parts = int(rng.integers(2, 4))
    shape = resident_layout(cell, H, threads, tile_rows, np.float32, rows_per_thread, parts)
    setting = (cell, H, tile_rows, threads, rows_per_thread, parts, shape)
    # a share of R; several weights a lane or a row over lanes; a column over lanes
    assert shape.units < H and (shape.HS > 1 or shape.SF > 1) and shape.SB > 1, setting
    losses, grads, sync = spread_loss_and_grad(cell, params, x, target, mask, H, O, tile_rows,
                                               threads, rows_per_thread, parts,
                                               resident=True)
    equal_the_cpu_kernels(cell, params, x, target, mask, H, O, losses, grads, sync, parts,
                          setting)


def test_resident_weights_spread_over_blocks_in_float64(cell="gru", H=7, parts=3):
    rng = np.random.default_rng(31)
    params, x, target, mask, H, O = random_problem(cell, "xent", rng, np.float64, H)
    _, grads, _ = spread_loss_and_grad(cell, params, x, target, mask, H, O, x.shape[2], 32, 1,
                                       parts, np.float64, resident=True)
    for k in range(len(params)):
        _, expected = loss_and_grad(cell, params[k], x[k], target[k], mask[k], "xent", H, O)
        assert np.abs(grads[k] - expected).max() < 1e-10 * np.abs(expected).max()


def test_training_with_resident_weights_spread_over_blocks_equals_the_cpu_engine(
        cell="lstm", parts=2):
    """Adam updates R between steps and each launch's blocks load their shares again: the
    CPU engine's steps, curves and parameters up to float32 rounding."""
    trains_like_the_cpu_engine(small_specs(cell), tile_rows=5, block_threads=32,
                               resident=True, parts=parts)


def test_barrier_benchmark_counts_no_violation_with_the_barrier(tmp_path):
    """bench/barrier_cost.py: each block's count, written before the barrier, is seen by
    its set after it (under the simulator its blocks run at once; on a GPU, for real)."""
    bench = bench_module("barrier_cost", "barrier_cost.py")
    out = tmp_path / "barrier.json"
    flags = ["--steps", "200", "--repeats", "1"] if ON_GPU else ["--simulate"]
    assert bench.main([*flags, "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    sms = bench_module("gpu_sms").sm_count()  # cases with more blocks than SMs are not run
    cases = bench.CASES if ON_GPU else bench.SIMULATED_CASES
    assert [(r["sets"], r["parts"]) for r in rows] == [(n, p) for n, p in cases if n * p <= sms]
    assert all(r["violations"] == 0 and not r["gave_up"] for r in rows)


@cuda.jit(device=True)
def second_block_slow(parts):
    if cuda.blockIdx.x % parts == 1 and cuda.threadIdx.x == 0:
        time.sleep(0.05)


@cuda.jit(device=True)
def slow_then_the_barrier(sync, group, parts):
    second_block_slow(parts)
    real_barrier(sync, group, parts)


@cuda.jit(device=True)
def slow_then_the_block_only(sync, group, parts):
    second_block_slow(parts)
    cuda.syncthreads()


@pytest.mark.skipif(ON_GPU, reason="simulated device functions that sleep")
@pytest.mark.parametrize("meet, broken", [(slow_then_the_barrier, False),
                                          (slow_then_the_block_only, True)])
def test_barrier_benchmark_sees_a_barrier_that_does_not_wait(monkeypatch, meet, broken):
    """With the second block of the set 50 ms late at every barrier, the barrier keeps the
    others waiting for its count (no violation); a block barrier in its place lets them
    read counts a step old, which the benchmark's check counts."""
    from ablate.cuda import tiles

    bench = bench_module("barrier_cost_slow", "barrier_cost.py")
    monkeypatch.setattr(tiles, "barrier", meet)
    row = bench.run_case(bench.make_kernel(), sets=1, parts=3, threads=2, steps=6, repeats=1)
    assert (row["violations"] > 0) == broken and not row["gave_up"]


def test_a_cluster_launch_counts_its_grid_in_clusters():
    """ablate.cuda.cluster makes numba's launches cluster launches where the launching
    thread asks: numba gives the grid in blocks, cuda.core's LaunchConfig counts it in
    clusters once a cluster shape is given; a grid that is not whole clusters is refused
    before any launch; a launch that did not ask, or from another thread, is left alone."""
    import threading

    from ablate.cuda import cluster

    made = []
    config = cluster.cluster_config(lambda **options: made.append(options) or "config")
    with cluster.asking(8):
        assert config(grid=(16, 1, 1), block=(256, 1, 1), shmem_size=0) == "config"
        with pytest.raises(ValueError, match="a grid of 12 blocks is not whole clusters of 8"):
            config(grid=(12, 1, 1), block=(256, 1, 1))
        other = threading.Thread(target=config, kwargs={"grid": (12, 1, 1), "block": (4,)})
        other.start()
        other.join()
    config(grid=(16, 1, 1), block=(256, 1, 1))
    assert made == [{"grid": (2, 1, 1), "cluster": (8, 1, 1), "block": (256, 1, 1),
                     "shmem_size": 0},
                    {"grid": (12, 1, 1), "block": (4,)},
                    {"grid": (16, 1, 1), "block": (256, 1, 1)}]


# Both families and both kinds of barrier site: sums across the tile (fgr, single_net) and
# the block's own units (lstm, gru), and a cell without R (minlstm)
CLUSTER_CELLS = ["lstm", "fgr", "single_net", "gru", "minlstm"]


@pytest.mark.parametrize("cell", CLUSTER_CELLS)
def test_spread_tiles_as_clusters_give_one_blocks_bits(cell):
    """The blocks of each tile as a thread-block cluster (place from blockIdx, the cluster's
    barrier; under the simulator a barrier of Python threads that every thread of the
    cluster must reach): random parts, tiles, block sizes and rows a thread, several models
    and tiles (several clusters a launch); one block a tile's numbers to the bit, the CPU
    kernels' up to float32 rounding, and no ticket or count used."""
    from ablate.cuda.device import ROWS_PER_THREAD

    rng = np.random.default_rng(sum(map(ord, cell)) + 17)
    params, x, target, mask, H, O = random_problem(cell, "xent", rng, np.float32)
    B = x.shape[2]
    tile_rows = int(rng.integers(1, B + 1))
    threads = int(rng.choice([1, 5, 8]))
    rows_per_thread = int(rng.choice(ROWS_PER_THREAD))
    parts = int(rng.integers(2, 5))
    setting = (cell, tile_rows, threads, rows_per_thread, parts)
    losses, grads, sync = spread_loss_and_grad(cell, params, x, target, mask, H, O,
                                               tile_rows, threads, rows_per_thread, parts,
                                               clusters=True)
    one_losses, one_grads, _ = spread_loss_and_grad(cell, params, x, target, mask, H, O,
                                                    tile_rows, threads, rows_per_thread, 1)
    np.testing.assert_array_equal(grads, one_grads, err_msg=str(setting))
    np.testing.assert_array_equal(losses, one_losses, err_msg=str(setting))
    equal_the_cpu_kernels(cell, params, x, target, mask, H, O, losses, grads, sync, parts,
                          setting, clusters=True)


@pytest.mark.skipif(ON_GPU, reason="replaces the simulated cluster barrier")
def test_a_cluster_barrier_that_holds_only_the_block_is_seen(monkeypatch):
    """The test above sees the cluster barrier: with each block waiting only for its own
    threads at every cluster barrier, a gru gradient is wrong."""
    import threading

    from ablate.cuda import cluster

    monkeypatch.setattr(cluster._SimulatedClusters, "sync",
                        lambda self: threading.current_thread().syncthreads())
    rng = np.random.default_rng(5)
    params, x, target, mask, H, O = random_problem("gru", "xent", rng, np.float32)
    _, grads, _ = spread_loss_and_grad("gru", params, x, target, mask, H, O, x.shape[2], 4, 1,
                                       3, clusters=True)
    _, expected = loss_and_grad("gru", params[0], x[0], target[0], mask[0], "xent", H, O)
    # off by more than 1e-3 of its size, or NaN (memory read before any block wrote it)
    assert not np.abs(grads[0] - expected).max() <= 1e-3 * np.abs(expected).max()


def test_resident_weights_spread_over_a_cluster_give_the_cpu_gradients(cell="lstm"):
    """R held by the blocks of a cluster, each its units' rows and columns: the CPU
    kernels' loss and gradients."""
    rng = np.random.default_rng(41)
    params, x, target, mask, H, O = random_problem(cell, "xent", rng, np.float32, 10)
    B = x.shape[2]
    tile_rows, parts = (B + 1) // 2, 3
    losses, grads, sync = spread_loss_and_grad(cell, params, x, target, mask, H, O, tile_rows,
                                               32, 1, parts, resident=True, clusters=True)
    equal_the_cpu_kernels(cell, params, x, target, mask, H, O, losses, grads, sync, parts,
                          (cell, H, tile_rows, parts), clusters=True)


def test_training_with_spread_tiles_as_clusters_is_one_blocks_training(cell="gru"):
    """A whole training with each tile a cluster of 2 blocks (Adam between steps, the
    device's validation, a model stopping first): one block a tile's parameters and curves
    to the bit."""
    from ablate.cuda.engine import train_ensemble

    specs = small_specs(cell)
    one = train_ensemble(specs, diagnostics=False, tile_rows=5, block_threads=4)
    clustered = train_ensemble(specs, diagnostics=False, tile_rows=5, block_threads=4,
                               parts=2, clusters=True)
    for b, c in zip(one.results, clustered.results, strict=True):
        assert (b.steps, b.stop_reason) == (c.steps, c.stop_reason)
        for key in ("train_loss", "grad_norm", "val_loss", "val_metric"):
            np.testing.assert_array_equal(b.curve[key], c.curve[key])
    for b, c in zip(one.params, clustered.params, strict=True):
        np.testing.assert_array_equal(b, c)


@pytest.mark.parametrize("parts, message", [
    (1, r"a tile spread over a cluster needs parts in 2\.\.8 \(clusters of more blocks "
        r"need an opt-in not made here\), got 1"),
    (9, r"needs parts in 2\.\.8 .*got 9"),
])
def test_a_cluster_of_a_bad_size_is_one_clear_error(parts, message):
    from ablate.cuda.device import DeviceEnsemble

    with pytest.raises(ValueError, match=message):
        DeviceEnsemble("lstm", np.float32, 1, 2, 2, 1, 4, 2, 1, parts=parts, clusters=True)


def test_the_cluster_barrier_assembles_for_sm90():
    """The cluster barrier's kernel is inline PTX the simulator cannot run: its PTX for sm_90
    has the barrier with release and acquire and the cluster's special registers, and ptxas
    takes it without spills."""
    import subprocess
    import sys

    from test_cuda import ROOT

    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "0"}  # the simulator compiles no PTX
    result = subprocess.run([sys.executable, "bench/cluster_barrier.py"], env=env,
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    for instruction in ("barrier.cluster.arrive.release;", "barrier.cluster.wait.acquire;",
                        "mov.u32 %r3, %cluster_nctarank;", "%cluster_ctarank;",
                        "%clusterid.x;"):
        assert any(instruction in line for line in lines), instruction
    assert "spill_stores=0, spill_loads=0" in lines[-1]


@pytest.mark.skipif(not ON_GPU, reason="inline PTX and cluster launches need a GPU")
def test_the_cluster_barrier_on_the_gpu(monkeypatch):
    """On a GPU of compute capability 9.0: the launch comes out as clusters of the size asked
    (every block ran and saw it) and each block's count is seen by its cluster after the
    barrier."""
    from test_cuda import ROOT

    bench = bench_module("barrier_cost_on_clusters", "barrier_cost.py")
    monkeypatch.syspath_prepend(str(ROOT / "bench"))  # it imports cluster_barrier
    meet = bench_module("cluster_barrier", "cluster_barrier.py").make_kernel()
    for clusters, parts in ((1, 2), (3, 4)):
        row = bench.run_cluster_case(meet, clusters, parts, threads=64, steps=200, repeats=1)
        assert row["clustered"] and row["violations"] == 0, row


def test_a_cluster_case_the_gpu_refuses_is_one_line_and_the_rest_still_run(
        monkeypatch, capsys):
    """barrier_cost.run_clusters: an error in one cluster case (a launch the API or the GPU
    refuses) is printed as one line naming it, the other cases are timed, and a launch that
    came out without clusters is flagged rather than passed off as a barrier."""
    import sys
    import types

    from test_cuda import ROOT

    bench = bench_module("barrier_cost_clusters", "barrier_cost.py")
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    fake = types.ModuleType("cluster_barrier")
    fake.make_kernel = lambda: "kernel"

    def run_case(meet, clusters, parts, threads, steps, repeats):
        if parts == 16:
            raise RuntimeError("CUDA_ERROR_INVALID_CLUSTER_SIZE")
        clustered = parts != 2
        return {"clusters": clusters, "parts": parts, "us_per_barrier": 0.25,
                "launch_us": 3.0, "violations": 0, "blocks_ran": clusters * parts,
                "cluster_size_seen": parts if clustered else 1, "clustered": clustered}

    monkeypatch.setattr(bench, "run_cluster_case", run_case)
    monkeypatch.setitem(sys.modules, "cluster_barrier", fake)
    rows = bench.run_clusters(threads=32, steps=10, repeats=1)
    assert [(r["clusters"], r["parts"]) for r in rows] == [
        (n, p) for n, p in bench.CLUSTER_CASES if p != 16]
    lines = capsys.readouterr().out.splitlines()
    assert ("  1 cluster(s) of 16 blocks: not run: RuntimeError: "
            "CUDA_ERROR_INVALID_CLUSTER_SIZE") in lines
    assert any("1 cluster(s) of 2 blocks" in line and "NOT CLUSTERED" in line
               for line in lines)
    assert not any("8 blocks" in line and "NOT CLUSTERED" in line for line in lines)
