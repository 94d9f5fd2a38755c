"""Tests of ablate.tasks: contract, seeding, where the information is, chance, solvers, errors.

Every task configuration below runs through every test; a newly registered task must be
added to CONFIGS (test_every_task_is_tested fails otherwise).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import ablate.tasks as tasks
from ablate.tasks.solvers import solve
from ablate.tasks.task import CUE, DISTRACTOR, FILLER, MARKER

CONFIGS = [
    ("copy", {}),
    ("copy", {"loss_on": "all"}),
    ("adding", {}),
    ("adding", {"variant": "arjovsky"}),
    ("temporal_order", {}),
    ("temporal_order", {"variant": "6b"}),
    ("tv", {}),
    ("tv", {"n_classes": 3, "cues_per_class": 2, "noise_rate": 0.5}),
    ("continual", {"n_episodes": 3, "eval_episodes": 6}),
    ("timing", {}),
    ("mqar", {}),
]
IDS = [name + "".join(f"-{k}={v}" for k, v in options.items()) for name, options in CONFIGS]
each_config = pytest.mark.parametrize("name, options", CONFIGS, ids=IDS)


def expected_steps(task: tasks.Task, gap: int, stream: str) -> int:
    """T as each task's docstring defines it."""
    o = task.options
    if task.name == "copy":
        return gap + 20
    if task.name == "adding":
        return max(gap, 2) if o["variant"] == "arjovsky" else max(gap, 3, 11 * gap // 10)
    if task.name == "temporal_order":
        return max(11 * gap // 10, gap, 4 if o["variant"] == "6a" else 5)
    if task.name == "tv":
        return o["max_prefix"] + gap + 2
    if task.name == "continual":
        episodes = o["n_episodes"] if stream == "train" else o["eval_episodes"]
        return episodes * (o["max_prefix"] + gap + 2)
    if task.name == "timing":
        return 4 * gap + 1
    if task.name == "mqar":
        return 3 * o["n_pairs"] + gap
    raise AssertionError(f"no expected length for {task.name}")


def answers(task: tasks.Task, y: np.ndarray, batch: tasks.Batch) -> np.ndarray:
    """What an output says at the masked steps: classes (xent) or values (mse)."""
    steps, rows = np.nonzero(batch.mask)
    if task.loss == "xent":
        return np.argmax(y[steps, rows], axis=-1)
    return y[steps, rows, 0]


def targets(task: tasks.Task, batch: tasks.Batch) -> np.ndarray:
    steps, rows = np.nonzero(batch.mask)
    return batch.target[steps, rows] if task.loss == "xent" else batch.target[steps, rows, 0]


# ------------------------------------------------------------------------ registry, contract


def test_every_task_is_tested():
    assert set(tasks.names()) == {name for name, _ in CONFIGS}
    assert tasks.names() == (
        "copy",
        "adding",
        "temporal_order",
        "tv",
        "continual",
        "timing",
        "mqar",
    )


def test_unknown_task_suggests_the_closest_and_lists_all():
    with pytest.raises(ValueError, match="did you mean 'copy'") as error:
        tasks.get("cpy")
    for name in tasks.names():
        assert name in str(error.value)


def test_unknown_option_names_the_allowed_ones():
    with pytest.raises(ValueError, match="unknown option 'gaps'.*n_classes, cues_per_class"):
        tasks.get("tv", gaps=3)
    with pytest.raises(ValueError, match="timing: unknown option 'x'; allowed options: none"):
        tasks.get("timing", x=1)


@pytest.mark.parametrize(
    "name, options, message",
    [
        ("copy", {"loss_on": "some"}, "loss_on must be 'recall' or 'all', got 'some'"),
        ("adding", {"variant": 1997}, "variant must be '1997' or 'arjovsky', got 1997"),
        ("tv", {"n_classes": 1}, "n_classes must be an integer >= 2"),
        ("tv", {"noise_rate": 1.5}, r"noise_rate must be a number in \[0, 1\]"),
        ("continual", {"n_episodes": 8, "eval_episodes": 8}, "eval_episodes must be .* > n_e"),
        ("mqar", {"n_pairs": 20}, r"n_keys must be an integer >= n_pairs \(20\), got 16"),
    ],
)
def test_bad_option_values_are_named(name, options, message):
    with pytest.raises(ValueError, match=message):
        tasks.get(name, **options)


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"gap": 0}, "gap must be an integer >= 1, got 0"),
        ({"gap": -5}, "gap must be an integer >= 1, got -5"),
        ({"gap": 10.0}, "gap must be an integer >= 1, got 10.0"),
        ({"gap": "10"}, "gap must be an integer >= 1, got '10'"),
        ({"gap": True}, "gap must be an integer >= 1, got True"),
        ({"batch_size": 0}, "batch_size must be an integer >= 1, got 0"),
        ({"seed": -1}, "seed must be an integer >= 0 and < 18446744073709551616, got -1"),
        ({"index": 1.5}, "index must be an integer >= 0"),
        ({"stream": "tset"}, "unknown stream 'tset'; allowed: train, validation, test"),
    ],
)
def test_bad_batch_arguments_raise_one_clear_error(arguments, message):
    call = {"gap": 5, "batch_size": 2, "seed": 0, "stream": "train", "index": 0, **arguments}
    for name in tasks.names():
        with pytest.raises(ValueError, match=f"^{name}: {message}"):
            tasks.get(name).batch(**call)


def test_numpy_integers_are_accepted():
    task = tasks.get("copy")
    batch = task.batch(np.int64(3), np.int32(2), np.uint64(7), "test", np.int16(1))
    assert batch.x.shape == (23, 2, 10)


@each_config
@pytest.mark.parametrize("gap", [1, 2, 37])
@pytest.mark.parametrize("stream", ["train", "test"])
def test_batch_contract(name, options, gap, stream):
    task = tasks.get(name, **options)
    assert task.n_in(gap) == task.n_in(1) and task.n_out(gap) == task.n_out(1)
    batch, notes = task.annotated_batch(gap, 5, seed=3, stream=stream, index=2)
    n_steps = expected_steps(task, gap, stream)
    assert batch.x.shape == (n_steps, 5, task.n_in(gap)) and batch.x.dtype == np.float32
    assert batch.mask.shape == (n_steps, 5) and batch.mask.dtype == np.float32
    assert set(np.unique(batch.mask)) <= {0.0, 1.0}
    assert np.all(batch.mask.sum(axis=0) >= 1)
    assert np.all(np.isfinite(batch.x))
    assert notes.role.shape == notes.link.shape == (n_steps, 5)
    if task.loss == "xent":
        assert batch.target.shape == (n_steps, 5) and batch.target.dtype == np.int64
        assert batch.target.min() >= 0 and batch.target.max() < task.n_out(gap)
    else:
        assert task.loss == "mse"
        assert batch.target.shape == (n_steps, 5, task.n_out(gap))
        assert batch.target.dtype == np.float32
    if name not in ("adding", "timing"):  # one-hot symbols, all-zero padding
        ones = batch.x.sum(axis=-1)
        assert np.all((ones == 1) | (notes.role == FILLER))


def test_padding_carries_nothing():
    """adding, temporal_order: after each sequence's end, inputs, target and mask are 0."""
    for name in ("adding", "temporal_order"):
        task = tasks.get(name)
        batch, notes = task.annotated_batch(200, 64, seed=1)
        end = np.argmax(batch.mask, axis=0)
        assert len(set(end)) > 5  # lengths really vary
        after = np.arange(batch.mask.shape[0])[:, None] > end[None, :]
        assert not batch.x[after].any() and not batch.target[after].any()
        assert not batch.mask[after].any() and np.all(notes.role[after] == FILLER)


# ------------------------------------------------------------------------------- seeding


@each_config
def test_same_seed_same_bytes(name, options):
    task = tasks.get(name, **options)
    first = task.batch(20, 8, seed=11, stream="validation", index=4)
    again = task.batch(20, 8, seed=11, stream="validation", index=4)
    for a, b in zip(first, again, strict=True):
        assert a.tobytes() == b.tobytes()
    other = task.batch(20, 8, seed=11, stream="validation", index=5)
    assert first.x.tobytes() != other.x.tobytes()


@each_config
def test_sequence_does_not_depend_on_batch_size(name, options):
    task = tasks.get(name, **options)
    small = task.batch(20, 3, seed=5, index=1)
    large = task.batch(20, 17, seed=5, index=1)
    for a, b in zip(small, large, strict=True):
        assert np.array_equal(a, b[:, :3])


def identical_pairs(a: tasks.Batch, b: tasks.Batch) -> int:
    """How many (i, j) have sequence i of a equal to sequence j of b (over common steps)."""
    n_steps = min(a.x.shape[0], b.x.shape[0])
    left = {a.x[:n_steps, i].tobytes() for i in range(a.x.shape[1])}
    return sum(b.x[:n_steps, j].tobytes() in left for j in range(b.x.shape[1]))


@each_config
def test_streams_are_independent(name, options):
    task = tasks.get(name, **options)
    draw = {s: task.batch(30, 128, seed=2, stream=s) for s in ("train", "validation", "test")}
    # what chance alone gives: two batches of the same stream
    baseline = identical_pairs(draw["train"], task.batch(30, 128, seed=2, index=1))
    for first, second in (("train", "validation"), ("train", "test"), ("validation", "test")):
        assert draw[first].x.tobytes() != draw[second].x.tobytes()
        assert identical_pairs(draw[first], draw[second]) <= 2 * baseline + 5
    # and seeds are streams too
    assert identical_pairs(draw["train"], task.batch(30, 128, seed=3)) <= 2 * baseline + 5


# ------------------------------------------------------------- solvers and solved criteria


@each_config
@pytest.mark.parametrize("gap, batch_size", [(1, 1), (2, 7), (13, 64), (2000, 3)])
def test_hand_written_solver_meets_the_criterion(name, options, gap, batch_size):
    task = tasks.get(name, **options)
    for stream in ("train", "test"):
        batch = task.batch(gap, batch_size, seed=9, stream=stream)
        y = solve(task, batch.x)
        assert y.shape == batch.x.shape[:2] + (task.n_out(gap),)
        if task.loss == "xent":
            assert np.array_equal(answers(task, y, batch), targets(task, batch))
        else:
            assert np.allclose(answers(task, y, batch), targets(task, batch), atol=1e-5)
        assert task.metric(y, batch) == 1.0
        assert task.solved(task.metric(y, batch))


@each_config
def test_metric_counts_diverged_outputs_wrong(name, options):
    task = tasks.get(name, **options)
    batch = task.batch(9, 16, seed=0, stream="test")
    y = np.full(batch.x.shape[:2] + (task.n_out(9),), np.nan, dtype=np.float32)
    assert task.metric(y, batch) == 0.0
    with pytest.raises(ValueError, match="y must have shape"):
        task.metric(y[:, :, :1] if task.n_out(9) > 1 else y[:-1], batch)


@each_config
def test_scored_trials_are_the_sequences_but_continual_counts_its_late_queries(name, options):
    task = tasks.get(name, **options)
    batch = task.batch(9, 16, seed=0, stream="validation")
    if name != "continual":
        assert task.scored(batch) == 16  # answers within a sequence share its state
        return
    episode = np.cumsum(batch.mask, axis=0) - 1
    late = (batch.mask > 0) & (episode >= task.options["n_episodes"])
    assert task.scored(batch) == late.sum() > 16
    y = solve(task, batch.x)
    steps, rows = np.nonzero(late)
    y[steps[0], rows[0]] = np.roll(y[steps[0], rows[0]], 1)  # one late query wrong
    assert task.metric(y, batch) == pytest.approx(1 - 1 / task.scored(batch))


@pytest.mark.parametrize("right, scored, sure", [
    (381, 381, True),     # n / (n + z²) = 0.990018: the fewest trials that can stop a run
    (380, 380, False),    # 0.989993
    (511, 512, False),    # one wrong in 512 is already too many
    (997, 1000, True),    # Wilson lower bound 0.99126
    (995, 1000, False),   # 0.98836, though 99.5% right
    (2048, 2048, True),
])
def test_surely_solved_is_the_wilson_lower_bound_at_99_percent(right, scored, sure):
    task = tasks.get("tv")
    assert task.surely_solved(right / scored, scored) is sure
    assert task.solved(right / scored)  # every case meets the bare criterion


def test_surely_solved_refuses_nothing_scored_and_non_finite_metrics():
    task = tasks.get("tv")
    assert not task.surely_solved(1.0, 0)
    assert not task.surely_solved(float("nan"), 1000)


def test_adding_counts_a_sequence_right_only_within_0_04():
    task = tasks.get("adding")
    batch = task.batch(50, 400, seed=0, stream="test")
    y = solve(task, batch.x)
    sign = np.where(np.arange(400) % 2 == 0, 1.0, -1.0)[None, :, None]
    assert task.metric(y + 0.039 * sign, batch) == 1.0
    assert task.metric(y + 0.041 * sign, batch) == 0.0
    assert task.metric(y + 0.041 * sign * (np.arange(400) < 5)[None, :, None], batch) == 0.9875
    assert not task.solved(0.9875)


def test_timing_pulse_must_be_at_the_step_and_alone_in_the_window():
    task = tasks.get("timing")
    batch = task.batch(10, 50, seed=0, stream="test")
    y = solve(task, batch.x)
    go = 30
    assert task.metric(y, batch) == 1.0
    extra = y.copy()
    extra[go + 1 : go + 11, :2, 0] += 0.6  # two sequences pulse all over the window
    assert task.metric(extra, batch) == 0.96
    weak = y.copy()
    weak[:, :5, 0] *= 0.5  # a pulse of exactly 0.5 does not exceed the threshold
    assert task.metric(weak, batch) == 0.9
    late = np.roll(y, 1, axis=0)  # every pulse one step late
    assert task.metric(late, batch) == 0.0
    outside = y.copy()
    outside[: go + 1, :, 0] = 1.0  # pulses before the window are not judged
    assert task.metric(outside, batch) == 1.0


def test_continual_scores_only_episodes_beyond_the_training_length():
    task = tasks.get("continual", n_episodes=3, eval_episodes=6)
    evaluation = task.batch(5, 40, seed=0, stream="validation")
    y = solve(task, evaluation.x)
    episode = np.cumsum(evaluation.mask, axis=0) - 1
    early = (evaluation.mask > 0) & (episode < 3)
    broken = y.copy()
    broken[early] = np.roll(broken[early], 1, axis=-1)  # every early answer wrong
    assert task.metric(broken, evaluation) == 1.0
    late = (evaluation.mask > 0) & (episode == 5)
    broken[late] = np.roll(broken[late], 1, axis=-1)  # the last episode wrong too
    assert task.metric(broken, evaluation) == pytest.approx(2 / 3)
    training = task.batch(5, 40, seed=0, stream="train")  # no late episodes: all count
    assert training.mask.sum(axis=0).max() == 3
    y = solve(task, training.x)
    y[training.mask > 0] = np.roll(y[training.mask > 0], 1, axis=-1)
    assert task.metric(y, training) == 0.0


# ------------------------------------------------------------------------------- chance


def blind_predictions(task, estimate: tasks.Batch, shape) -> tuple[np.ndarray, np.ndarray]:
    """The best input-blind predictors, fitted on ``estimate``: (for the loss, for the metric).

    Blind to the input, they may use the step t: per-step class frequencies (xent), the
    per-step mean (mse loss), the per-step median (adding's metric: the target is unimodal
    and symmetric) or one pulse where a pulse is likeliest (timing's metric).
    """
    n_steps, batch_size, n_out = shape
    weight = estimate.mask[:, :, None]
    if task.loss == "xent":
        onehot = np.eye(n_out)[estimate.target] * weight
        counts = onehot.sum(axis=1) + 1e-3
        logits = np.log(counts / counts.sum(axis=1, keepdims=True))
        y = np.broadcast_to(logits[:, None, :], shape)
        return y, y
    total = weight.sum(axis=1)
    mean = (estimate.target * weight).sum(axis=1) / np.maximum(total, 1)
    for_loss = np.broadcast_to(mean[:, None, :], shape)
    if task.name == "timing":
        pulse = np.zeros(n_steps)
        pulse[np.argmax(mean[:, 0])] = 1.0
        return for_loss, np.broadcast_to(pulse[:, None, None], shape)
    masked = estimate.mask > 0
    median = np.array(
        [
            np.median(estimate.target[t, masked[t], 0]) if masked[t].any() else 0.0
            for t in range(n_steps)
        ]
    )
    return for_loss, np.broadcast_to(median[:, None, None], shape)


def per_step_losses(task, y: np.ndarray, batch: tasks.Batch) -> np.ndarray:
    steps, rows = np.nonzero(batch.mask)
    if task.loss == "xent":
        logits = y[steps, rows]
        log_p = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
        return -log_p[np.arange(steps.size), batch.target[steps, rows]]
    return np.mean((y[steps, rows] - batch.target[steps, rows]) ** 2, axis=-1)


@each_config
def test_chance_levels_match_the_best_blind_predictor(name, options):
    gap = 24
    task = tasks.get(name, **options)
    size = task.batch(gap, 1, seed=0, stream="test").x.size  # T·I of one sequence
    batch_size = int(np.clip(4_000_000 // size, 3000, 100_000))  # ~16 MB per batch
    estimate = task.batch(gap, batch_size, seed=4, stream="validation")
    test = task.batch(gap, batch_size, seed=4, stream="test")
    shape = test.x.shape[:2] + (task.n_out(gap),)
    for_loss, for_metric = blind_predictions(task, estimate, shape)

    losses = per_step_losses(task, for_loss, test)
    standard_error = losses.std() / math.sqrt(losses.size)
    # a predictor fitted on n samples per step pays about (O - 1) / 2n (xent) or
    # variance / n (mse) above the best one: allow that much, one-sided
    samples = estimate.mask.sum(axis=1)
    fewest = samples[samples > 0].min()
    if task.loss == "xent":
        fitting_cost = (task.n_out(gap) - 1) / (2 * fewest)
    else:
        fitting_cost = 2 * task.chance_loss(gap) / fewest
    excess = losses.mean() - task.chance_loss(gap)
    assert -5 * standard_error < excess < 5 * standard_error + 2 * fitting_cost

    chance = task.chance(gap)
    score = task.metric(for_metric, test)
    assert abs(score - chance) < 5 * math.sqrt(chance * (1 - chance) / batch_size) + 1e-9
    assert not task.solved(score)
    assert not task.solved(task.metric(np.zeros(shape), test))  # a constant zero output


def test_stated_chance_values():
    assert tasks.get("copy").chance_loss(100) == pytest.approx(math.log(8))
    everywhere = tasks.get("copy", loss_on="all")
    assert everywhere.chance_loss(100) == pytest.approx(10 * math.log(8) / 120)
    assert tasks.get("copy").arjovsky_chance_loss(100) == pytest.approx(10 * math.log(8) / 120)
    assert tasks.get("adding").chance(1000) == pytest.approx(0.15424)
    assert tasks.get("adding", variant="arjovsky").chance_loss(1000) == pytest.approx(1 / 6)
    assert tasks.get("temporal_order", variant="6b").chance(100) == 1 / 8
    assert tasks.get("tv", n_classes=5).chance(10) == 1 / 5
    assert tasks.get("timing").chance(40) == 1 / 40
    assert tasks.get("mqar", n_values=32).chance(10) == 1 / 32


# ----------------------------------------------------------- where the information is


def test_paper_layouts_at_gap_100():
    """temporal_order at gap 100 is the paper's 6a/6b; adding's X1 and X2 windows too."""
    task = tasks.get("temporal_order")
    _, notes = task.annotated_batch(100, 2000, seed=0)
    cue_steps = np.sort(np.nonzero(notes.role.T == CUE)[1].reshape(2000, 2), axis=1)
    assert cue_steps[:, 0].min() == 10 and cue_steps[:, 0].max() == 20
    assert cue_steps[:, 1].min() == 50 and cue_steps[:, 1].max() == 60
    batch, notes = tasks.get("temporal_order", variant="6b").annotated_batch(100, 2000, seed=0)
    cue_steps = np.sort(np.nonzero(notes.role.T == CUE)[1].reshape(2000, 3), axis=1)
    assert [cue_steps[:, k].min() for k in range(3)] == [10, 33, 66]
    assert [cue_steps[:, k].max() for k in range(3)] == [20, 43, 76]
    assert np.argmax(batch.mask, axis=0).min() == 99 and batch.mask.shape[0] == 110

    batch, notes = tasks.get("adding").annotated_batch(100, 2000, seed=0)
    marked = batch.x[:, :, 1] == 1
    assert np.all(marked.sum(axis=0) == 2) and np.all(notes.role[marked] == CUE)
    first_ten = marked[:10].sum(axis=0)
    assert np.all(first_ten >= 1)  # X1 among the first 10 pairs
    # X2 among the first 100/2 - 1 = 49 pairs still unmarked: never beyond pair 49
    assert not marked[50:].any() and marked[49].any()
    ends = np.argmax(batch.mask, axis=0)
    assert ends.min() == 99 and ends.max() == 109
    rows = np.arange(2000)
    assert np.all(batch.x[ends, rows, 1] == -1)
    assert np.all((batch.x[0, :, 1] == -1) | marked[0])


@each_config
@pytest.mark.parametrize("gap", [1, 6, 150])
def test_earliest_relevant_input_waits_at_least_min_lag(name, options, gap):
    task = tasks.get(name, **options)
    batch, notes = task.annotated_batch(gap, 64, seed=8, stream="test")
    steps, rows = np.nonzero(notes.link >= 0)
    queries = notes.link[steps, rows]
    assert steps.size > 0 and np.all(batch.mask[queries, rows] == 1)  # links reach targets
    earliest = {}  # (query step, row) -> its earliest cue step
    for step, row, query in zip(steps, rows, queries, strict=True):
        earliest[query, row] = min(step, earliest.get((query, row), step))
    lags = [query - step for (query, _), step in earliest.items()]
    assert min(lags) >= task.min_lag(gap)
    variant = options.get("variant")
    if name == "adding" and variant is None:
        assert task.min_lag(gap) >= gap - 10  # X1 among the first 10 pairs (1997)
    elif name == "adding":
        assert task.min_lag(gap) >= gap / 2  # first marker in the first half (Arjovsky)
    elif name == "temporal_order":
        assert task.min_lag(gap) >= 0.79 * gap - 1  # t1 <= 0.2·gap, length >= gap (1997)
    else:
        assert task.min_lag(gap) >= gap


@each_config
def test_distractors_do_not_change_the_answer(name, options):
    """Shuffle every distractor step's input across the whole batch: same answers."""
    task = tasks.get(name, **options)
    batch, notes = task.annotated_batch(30, 64, seed=6, stream="test")
    steps, rows = np.nonzero(notes.role == DISTRACTOR)
    if name in ("copy", "timing"):
        assert steps.size == 0  # nothing but blanks between the cues and the answer
        return
    assert steps.size > 0
    x = batch.x.copy()
    shuffled = np.random.default_rng(0).permutation(steps.size)
    x[steps, rows] = batch.x[steps[shuffled], rows[shuffled]]
    assert not np.array_equal(x, batch.x)
    before = answers(task, solve(task, batch.x), batch)
    after = answers(task, solve(task, x), batch)
    assert np.allclose(before, targets(task, batch), atol=1e-5)
    assert np.array_equal(before, after)


def edit_cue(task, batch, notes, b):
    """Change one cue of sequence b validly; return (x, {masked step: expected answer})."""
    x = batch.x.copy()
    steps = np.nonzero(notes.role[:, b] == CUE)[0]
    old = solver_answers(task, batch.x, batch.mask, b)
    name, o = task.name, task.options
    if name == "copy":  # symbol s -> s + 1 (mod 8)
        t = steps[b % steps.size]
        symbol = np.argmax(x[t, b])
        x[t, b, :] = 0
        x[t, b, symbol % o["n_symbols"] + 1] = 1
        return x, {**old, int(notes.link[t, b]): symbol % o["n_symbols"] + 1}
    if name == "adding":  # move one marked value by 0.5
        t = steps[b % 2]
        shift = 0.5 if x[t, b, 0] < 0.5 else -0.5
        x[t, b, 0] += shift
        end = int(notes.link[t, b])
        return x, {end: old[end] + (shift / 4 if o["variant"] == "1997" else shift)}
    if name == "temporal_order":  # X <-> Y at the k-th relevant position flips bit K-1-k
        k = b % steps.size
        t = steps[k]
        x[t, b, 6:8] = x[t, b, 7:5:-1]
        end = int(notes.link[t, b])
        return x, {end: old[end] ^ (1 << (steps.size - 1 - k))}
    if name in ("tv", "continual"):  # the cue of another class
        t = steps[b % steps.size]
        first_cue = 1 + o["n_noise"]
        cue = np.argmax(x[t, b]) - first_cue
        new_cue = (cue + o["cues_per_class"]) % (o["n_classes"] * o["cues_per_class"])
        x[t, b, :] = 0
        x[t, b, first_cue + new_cue] = 1
        return x, {**old, int(notes.link[t, b]): new_cue // o["cues_per_class"]}
    if name == "mqar":  # change the value of one pair, swap the keys of two others
        n_keys, n_values = o["n_keys"], o["n_values"]
        value_steps = [t for t in steps if np.argmax(x[t, b]) >= n_keys]
        t = value_steps[0]
        value = np.argmax(x[t, b]) - n_keys
        x[t, b, :] = 0
        x[t, b, n_keys + (value + 1) % n_values] = 1
        expected = {**old, int(notes.link[t, b]): (value + 1) % n_values}
        key_1, key_2 = value_steps[1] - 1, value_steps[2] - 1
        x[[key_1, key_2], b] = x[[key_2, key_1], b]
        query_1, query_2 = int(notes.link[key_1, b]), int(notes.link[key_2, b])
        expected[query_1], expected[query_2] = old[query_2], old[query_1]
        return x, expected
    if name == "timing":  # the first pulse one step earlier: one step longer delay
        first, second = steps
        x[first, b, 0], x[first - 1, b, 0] = 0, 1
        window = np.nonzero(batch.mask[:, b])[0]
        delay = second - first + 1
        return x, {int(t): float(t == window[0] - 1 + delay) for t in window}
    raise AssertionError(f"no cue edit for {name}")


def solver_answers(task, x, mask, b) -> dict[int, float]:
    """The solver's answer at each masked step of sequence b: {step: class or value}."""
    y = solve(task, x)
    masked = np.nonzero(mask[:, b])[0]
    values = np.argmax(y[masked, b], axis=-1) if task.loss == "xent" else y[masked, b, 0]
    return {int(t): value for t, value in zip(masked, values, strict=True)}


@each_config
def test_changing_a_cue_changes_the_answer_as_defined(name, options):
    task = tasks.get(name, **options)
    gap = 12
    batch, notes = task.annotated_batch(gap, 40, seed=10, stream="test")
    checked = 0
    for b in range(40):
        if name == "timing":  # room to move the first pulse and keep Δ <= gap
            first, second = np.nonzero(notes.role[:, b] == CUE)[0]
            if first == 0 or second - first == gap:
                continue
        x, expected = edit_cue(task, batch, notes, b)
        before = solver_answers(task, batch.x, batch.mask, b)
        after = solver_answers(task, x, batch.mask, b)
        for step, answer in after.items():  # changed where defined, the same elsewhere
            assert answer == pytest.approx(expected.get(step, before[step]), abs=1e-5), b
        assert after != before
        checked += 1
    assert checked >= 10


@each_config
def test_nothing_but_the_cues_carries_the_answer(name, options):
    """Every non-cue input, their sums and the answer's step are independent of the answer."""
    task = tasks.get(name, **options)
    batch, notes = task.annotated_batch(30, 4000, seed=12, stream="validation")
    not_cue = batch.x * (notes.role != CUE)[:, :, None]  # [T,B,I], cues zeroed
    features = np.concatenate(
        [
            not_cue.transpose(1, 0, 2).reshape(4000, -1),  # each step's input on its own
            not_cue.sum(axis=0),
            np.argmax(batch.mask, axis=0)[:, None],
        ],
        axis=1,
    )
    first = np.argmax(batch.mask, axis=0)
    rows = np.arange(4000)
    answer = batch.target[first, rows] if task.loss == "xent" else batch.target[first, rows, 0]
    features = features[:, features.std(axis=0) > 0]
    if features.shape[1] == 0:
        return
    if task.loss == "xent":
        for label in np.unique(answer):
            inside, outside = features[answer == label], features[answer != label]
            difference = inside.mean(axis=0) - outside.mean(axis=0)
            spread = np.sqrt(inside.var(axis=0) / len(inside) + outside.var(axis=0) / len(outside))
            assert np.all(np.abs(difference) < 5 * spread + 1e-12), label
    else:
        centred = (features - features.mean(axis=0)) / features.std(axis=0)
        target = (answer - answer.mean()) / answer.std()
        correlation = centred.T @ target / len(target)
        assert np.all(np.abs(correlation) * math.sqrt(len(target)) < 5)


def test_roles_are_consistent_with_the_inputs():
    """Markers are the structural symbols; fillers are constant; cues link forward."""
    for name, options in CONFIGS:
        task = tasks.get(name, **options)
        batch, notes = task.annotated_batch(20, 32, seed=0)
        assert set(np.unique(notes.role)) <= {FILLER, DISTRACTOR, MARKER, CUE}
        assert np.all((notes.link >= 0) == (notes.role == CUE))
        filler = batch.x[notes.role == FILLER]
        if filler.size:
            assert len({row.tobytes() for row in filler}) <= 2  # blank and/or all-zero pad
