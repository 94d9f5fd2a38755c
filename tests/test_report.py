"""Tests of ablate.report: statistics, the evaluation protocol, the tables, and whole reports
built from constructed ledgers (no training). The claims have their own file,
test_report_claims.py; the builders are in test_report_fixtures.py."""

from __future__ import annotations

import json
import math

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from test_report_fixtures import frame, ledger, result, sweep

from ablate.report import build_report, claims, figures, markdown, select, stats, tables
from ablate.results import RunSpec
from ablate.store import load

# ---------------------------------------------------------------- statistics

# Wilson 95% intervals, computed independently with
#   scipy.stats.binomtest(k, n).proportion_ci(0.95, method="wilson")   (scipy 1.17)
# and checked by hand against the closed form (p̂ + z²/2n ± z·sqrt(p̂q̂/n + z²/4n²)) / (1 + z²/n):
WILSON_95 = {
    (0, 3): (0.0, 0.5614970317550454),
    (3, 3): (0.4385029682449546, 1.0),
    (5, 10): (0.236593090512564, 0.7634069094874361),
    (1, 4): (0.04558726080970055, 0.6993581574175981),
    (4, 4): (0.5101091635454027, 1.0),
}


@pytest.mark.parametrize("k,n", sorted(WILSON_95))
def test_wilson_matches_known_values(k, n):
    low, high = stats.wilson(k, n)
    assert low == pytest.approx(WILSON_95[k, n][0], abs=1e-12)
    assert high == pytest.approx(WILSON_95[k, n][1], abs=1e-12)


def test_wilson_matches_scipy_over_a_grid():
    binomtest = pytest.importorskip("scipy.stats").binomtest
    for n in (1, 2, 5, 17, 100):
        for k in range(n + 1):
            ref = binomtest(k, n).proportion_ci(0.95, method="wilson")
            assert stats.wilson(k, n) == pytest.approx((ref.low, ref.high), abs=1e-12)


def test_wilson_edge_cases():
    assert all(math.isnan(v) for v in stats.wilson(0, 0))
    with pytest.raises(ValueError, match="successes"):
        stats.wilson(4, 3)
    # 3 seeds can never separate total failure from total success; 4 can
    assert not stats.below(stats.wilson(0, 3), stats.wilson(3, 3))
    assert stats.below(stats.wilson(0, 4), stats.wilson(4, 4))


def test_decay_fit_recovers_an_exponential_and_ignores_the_loss_step():
    distance = np.arange(50)
    norm = 3.0 * np.exp(-0.2 * distance)
    norm[0] = 100.0  # d = 0 is the readout's own gradient, not the memory's
    fit = stats.decay_fit(distance, norm)
    assert fit.rate == pytest.approx(-0.2) and fit.intercept == pytest.approx(math.log(3.0))
    assert fit.r2 == pytest.approx(1.0) and fit.points == 49
    assert stats.attenuation(fit.rate, 10) == pytest.approx(math.exp(-2.0))
    assert stats.decay_fit([0, 1], [1.0, 0.5]) is None  # one usable point
    # underflowed (0) and missing (None) norms are skipped, not fitted as log(0)
    fit = stats.decay_fit(range(5), [1.0, 0.5, 0.25, 0.0, None])
    assert fit.rate == pytest.approx(math.log(0.5)) and fit.points == 2
    # the fit ends at the first exact 0: what returns further back (through other paths)
    # is not the decay of the signal that left the loss
    head = 3.0 * np.exp(-0.4 * distance)
    returned = np.where(distance < 20, head, 1e-3 * np.exp(0.05 * distance))
    returned[20:23] = 0.0
    fit = stats.decay_fit(distance, returned)
    assert fit.rate == pytest.approx(-0.4) and fit.points == 19
    missing = head.tolist()
    missing[5] = None  # a missing value is skipped, it does not end the fit
    assert stats.decay_fit(distance, missing).points == 48


# ---------------------------------------------------------------- protocol


def test_task_label_names_only_options_that_differ_from_the_defaults():
    assert select.task_label("adding", "{}") == "adding"
    assert select.task_label("adding", '{"variant": "1997"}') == "adding"
    assert select.task_label("adding", '{"variant": "arjovsky"}') == "adding (variant=arjovsky)"
    assert select.task_label("temporal_order", {"variant": "6b"}) == "temporal_order (variant=6b)"


def test_best_lr_picks_the_rate_with_the_best_mean_validation_metric(tmp_path):
    good = [result("lstm", "tv", 10, s, lr=3e-3, solved=True, val_peak=0.995) for s in range(3)]
    bad = [result("lstm", "tv", 10, s, lr=1e-2, solved=s == 0, val_peak=0.9) for s in range(3)]
    # at gap 30 both rates tie: the smaller one is reported
    tie = [result("lstm", "tv", 30, s, lr=lr, solved=lr == 1e-3, val_peak=0.8)
           for s in range(3) for lr in (1e-3, 1e-2)]
    loaded = frame(tmp_path, good + bad + tie)
    chosen = select.select(loaded, "best_lr")
    assert sorted(chosen.loc[chosen["gap"] == 10, "lr"].unique()) == [3e-3]
    assert sorted(chosen.loc[chosen["gap"] == 30, "lr"].unique()) == [1e-3]
    assert len(chosen) == 6
    rates = select.learning_rates(select.done_runs(select.prepare(loaded)))
    at10 = rates.loc[rates["gap"] == 10].set_index("lr")
    assert at10.loc[3e-3, "chosen"] and not at10.loc[1e-2, "chosen"]
    assert at10.loc[3e-3, "mean_best_val_metric"] == pytest.approx(0.995)
    assert at10.loc[1e-2, "mean_best_val_metric"] == pytest.approx(0.9)
    assert len(select.select(loaded, "pooled")) == 12
    table = tables.success(chosen)
    assert list(table["lr"]) == ["0.003", "0.001"]
    assert list(table["solved"]) == [3, 3]
    with pytest.raises(ValueError, match="protocol"):
        select.select(loaded, "best")


def test_only_done_rows_count(tmp_path):
    done = sweep("lstm", "tv", {10: 2}, seeds=3)
    failed = [RunSpec("lstm", "tv", 10, seed=3, n_hidden=8, budget=400, eval_batch=64,
                      test_batch=128)]
    pending = [RunSpec("lstm", "tv", 10, seed=4, n_hidden=8, budget=400, eval_batch=64,
                       test_batch=128)]
    loaded = frame(tmp_path, done, failed=failed, pending=pending)
    assert sorted(loaded["status"]) == ["done"] * 3 + ["failed", "pending"]
    table = tables.success(select.select(loaded, "best_lr"))
    assert table[["runs", "solved"]].values.tolist() == [[3, 2]]  # not 2 of 5


def test_headline_rule():
    def points(rates):
        return pd.DataFrame({"gap": [10, 30, 100, 300], "success_rate": rates})

    assert tables.longest_solved(points([1.0, 0.5, 0.2, 1.0])) == 30  # 300 is not counted
    assert math.isnan(tables.longest_solved(points([0.4, 1.0, 1.0, 1.0])))
    assert tables.longest_solved(points([1.0, 1.0, 1.0, 0.6])) == 300
    row = {"longest_solved_gap": 300.0, "solved_every_gap": True, "shortest_gap": 10}
    assert tables.headline_text(row) == "≥ 300"
    assert tables.headline_text({**row, "solved_every_gap": False}) == "300"
    assert tables.headline_text({**row, "longest_solved_gap": math.nan}) == "< 10"


# ---------------------------------------------------------------- whole reports


def _suite() -> list:
    """A small suite: 4 cells × 2 tasks × 3 gaps × 3 seeds, two learning rates on tv."""
    results = []
    plans = {"lstm": {10: 3, 30: 3, 100: 2}, "rnn": {10: 3, 30: 1, 100: 0},
             "gru": {10: 3, 30: 3, 100: 1}, "nfg": {10: 3, 30: 2, 100: 0}}
    for cell, plan in plans.items():
        results += sweep(cell, "tv", plan, seeds=3, lr=1e-2, dc_rate=-0.002,
                         growth=4.0 if cell == "nfg" else 1.1)
        results += sweep(cell, "tv", {g: 0 for g in plan}, seeds=3, lr=1e-3, val_peak=0.6)
        results += sweep(cell, "continual", plan, seeds=3, growth=4.0 if cell == "nfg" else 1.1)
    # one diverged run (counted as unsolved), at the chosen rate
    results[1] = result("lstm", "tv", 10, 1, lr=1e-2, solved=False, diverged=True)
    return results


FAILED = [RunSpec("gru", "tv", 100, seed=7, n_hidden=8, budget=400, eval_batch=64,
                  test_batch=128)]
EXPECTED_FIGURES = ["success_vs_gap", "success_heatmap", "learning_curves",
                    "error_flow_tv", "error_flow_continual", "error_decay", "keep_gate",
                    "retention", "state_drift"]
EXPECTED_TABLES = ["success", "headline", "best_lr", "claims", "failures", "diverged",
                   "training"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("results") / "constructed"
    ledger(root / "ledger.sqlite", _suite(), failed=FAILED,
           error="Traceback (most recent call last):\n  ...\nRuntimeError: worker died")
    report = build_report(root)
    return root, report


def _check_png(path):
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    assert path.stat().st_size > 20_000, path
    pixels = matplotlib.image.imread(path)
    assert pixels.shape[0] > 300 and pixels.shape[1] > 400, path
    assert pixels[..., :3].std() > 0.05, f"{path} is nearly blank"


def test_report_writes_every_figure_and_table(built):
    root, report = built
    assert report == root / "report.md"
    for name in EXPECTED_FIGURES:
        _check_png(root / "figures" / f"{name}.png")
        assert not pd.read_csv(root / "figures" / f"{name}.csv").empty, name
    for name in EXPECTED_TABLES:
        assert (root / "tables" / f"{name}.csv").is_file(), name
    assert sorted(p.stem for p in (root / "figures").glob("*.png")) == sorted(EXPECTED_FIGURES)
    text = report.read_text()
    for name in EXPECTED_FIGURES:
        assert f"](figures/{name}.png)" in text and f"](figures/{name}.csv)" in text
    for name in EXPECTED_TABLES:
        assert f"](tables/{name}.csv)" in text


def test_report_text(built):
    root, report = built
    text = report.read_text()
    assert text.startswith("# Why does the LSTM need its gates? — suite `constructed`")
    # counts: 4 cells × 2 tasks × 3 gaps × 3 seeds + tv's second rate; 1 failed; 1 diverged
    n_done = 4 * 3 * 3 * 3
    assert f"| {n_done + 1} | {n_done} | 1 | 0 | 1 | {n_done - 36} |" in text
    assert "RuntimeError: worker died" in text and "gru-tv-gap100-h8-lr0.01-s7" in text
    assert "Rule: a cell solves a gap when at least 50%" in text
    # the headline: lstm solves tv at 10 with 2 of 3 (one diverged), 30, and 100 (2 of 3)
    assert "| `lstm` | ≥ 100 | ≥ 100 |" in text
    assert "| `rnn` | 10 | 10 |" in text and "| `nfg` | 30 | 30 |" in text
    for claim in claims.CLAIMS:
        assert f"### {claim.id}" in text
    assert "**NOT RUN**" in text  # e.g. hs97-adding: no adding runs here
    assert "| **NOT RUN** | run by `suites/hochreiter97.toml` |" in text  # where its runs are
    assert 'description = "constructed"' in text  # the suite's TOML
    assert "0123456789abcdef" in text and "cpu" in text  # commit and backend
    assert "Protocol `best_lr`" in text


def test_tables_reload_to_the_same_numbers(built):
    root, _ = built
    frame_ = select.prepare(load(root / "ledger.sqlite"))
    runs = select.select(frame_, "best_lr")
    success = tables.success(runs)
    reloaded = pd.read_csv(root / "tables" / "success.csv", dtype={"lr": str})
    pd.testing.assert_frame_equal(reloaded, success, check_dtype=False)
    assert success.loc[(success["cell"] == "lstm") & (success["task_label"] == "tv")
                       & (success["gap"] == 10), "solved"].item() == 2
    pd.testing.assert_frame_equal(pd.read_csv(root / "figures" / "success_vs_gap.csv",
                                              dtype={"lr": str}), success, check_dtype=False)
    headline = tables.headline(success)
    pd.testing.assert_frame_equal(pd.read_csv(root / "tables" / "headline.csv"), headline,
                                  check_dtype=False)
    rates = select.learning_rates(select.done_runs(frame_))
    pd.testing.assert_frame_equal(pd.read_csv(root / "tables" / "best_lr.csv"), rates,
                                  check_dtype=False)
    verdicts = claims.evaluate_all(frame_)
    saved = pd.read_csv(root / "tables" / "claims.csv")
    assert list(saved["verdict"]) == list(verdicts["verdict"])
    assert [json.loads(n) for n in saved["numbers"]] == list(verdicts["numbers"])
    assert [tuple(str(n).split()) if isinstance(n, str) else () for n in saved["suites"]] == list(
        verdicts["suites"])
    failures = pd.read_csv(root / "tables" / "failures.csv")
    assert list(failures["run_id"]) == ["gru-tv-gap100-h8-lr0.01-s7"]
    assert list(failures["error"]) == ["RuntimeError: worker died"]
    diverged = pd.read_csv(root / "tables" / "diverged.csv")
    assert list(diverged["run_id"]) == ["lstm-tv-gap10-h8-lr0.01-s1"]


def test_training_table_states_how_each_task_was_trained(built, tmp_path):
    root, report = built
    table = pd.read_csv(root / "tables" / "training.csv", dtype=str).set_index("task")
    assert table.loc["tv", "budget (steps)"] == "400" and table.loc["tv", "batch"] == "32"
    assert table.loc["tv", "sequences seen at most"] == "12800"
    assert table.loc["tv", "learning rates"] == "0.001, 0.01"
    assert table.loc["tv", "seeds"] == "4"  # 0-2 done, 7 failed: the ledger's runs
    assert table.loc["continual", "learning rates"] == "0.01"
    assert table.loc["tv", "forget-gate bias at init"] == "each cell's own"
    assert table.loc["tv", "evaluations in a row to stop as solved"] == "1"
    assert "## Training" in report.read_text() and "not solved within this budget" in (
        report.read_text())
    runs = [result("lstm", "tv", 10, s, solved=True, forget_bias=5.0, budget=300)
            for s in range(2)]
    runs += [result("noaf", "tv", 10, 0, solved=True, forget_bias=5.0),
             result("gru", "tv", 10, 0, solved=True, budget=300)]
    biased = tables.training(select.prepare(frame(tmp_path, runs)))
    assert biased.iloc[0]["forget-gate bias at init"] == "+5: `lstm`, `noaf`"
    assert biased.iloc[0]["budget (steps)"] == "300, 400"


def test_figure_data_reloads_to_the_same_numbers(built):
    root, _ = built
    runs = select.select(load(root / "ledger.sqlite"), "best_lr")
    # error flow: the median over the 3 runs of lstm on tv at gap 100, recomputed
    flow = pd.read_csv(root / "figures" / "error_flow_tv.csv")
    assert set(flow["gap"]) == {100}
    mine = runs.loc[(runs["cell"] == "lstm") & (runs["task_label"] == "tv") & (runs["gap"] == 100)]
    norms = np.array([r["diagnostics"]["final"]["error_flow"]["dc_norm"] for r in mine["result"]])
    expected = np.median(norms, axis=0)
    got = flow.loc[(flow["cell"] == "lstm") & (flow["moment"] == "final")
                   & (flow["quantity"] == "c")].sort_values("distance")
    np.testing.assert_allclose(got["median_norm"], expected, rtol=1e-12)
    assert (got["runs"] == 3).all()
    # decay rates: every run's fitted rate, the trained lstm ones near the constructed −0.002
    decay = pd.read_csv(root / "figures" / "error_decay.csv")
    trained = decay.loc[(decay["cell"] == "lstm") & (decay["moment"] == "final")
                        & (decay["task_label"] == "tv")]
    assert len(trained) == 8  # 9 runs, one diverged (its final diagnostics were skipped)
    np.testing.assert_allclose(trained["rate"], -0.002, atol=2e-3)
    # learning curves: the median of the stored curves at step 0
    curves = pd.read_csv(root / "figures" / "learning_curves.csv")
    assert curves.loc[curves["step"] == 0, "median_val_metric"].tolist() == pytest.approx(
        [0.5] * int((curves["step"] == 0).sum()))
    # state drift: nfg's trained norm grows 4× along the stream, lstm's stays ~level
    drift = pd.read_csv(root / "figures" / "state_drift.csv")
    for cell, growth in (("nfg", 4.0), ("lstm", 1.1)):
        line = drift.loc[(drift["cell"] == cell) & (drift["task_label"] == "continual")]
        line = line.sort_values("segment")["median"].to_numpy()
        assert line[-1] / line[0] == pytest.approx(growth)
    keep = pd.read_csv(root / "figures" / "keep_gate.csv")
    assert set(keep["cell"]) == {"lstm", "gru", "nfg"}  # rnn has no keep gate
    assert (keep.loc[keep["cell"] == "nfg", "keep_gap_mean"] == 1.0).all()


def test_report_is_rebuilt_without_stale_files(built, tmp_path):
    root, _ = built
    (root / "figures" / "old_figure.png").write_bytes(b"stale")
    build_report(root)
    assert not (root / "figures" / "old_figure.png").exists()


def test_empty_ledger_reports_that_nothing_ran(tmp_path):
    root = tmp_path / "empty"
    ledger(root / "ledger.sqlite", [])
    text = build_report(root).read_text()
    assert "Nothing has run yet" in text
    assert "| 0 | 0 | 0 | 0 | 0 | 0 |" in text
    assert text.count("**NOT RUN**") == len(claims.CLAIMS)
    assert "No figures" in text and not list((root / "figures").glob("*.png"))
    for name in EXPECTED_TABLES:
        assert (root / "tables" / f"{name}.csv").is_file()


def test_ledger_with_only_failed_and_pending_runs(tmp_path):
    root = tmp_path / "nothing_done"
    specs = [RunSpec("lstm", "tv", 10, seed=s, n_hidden=8) for s in range(3)]
    ledger(root / "ledger.sqlite", [], failed=specs[:2], pending=specs[2:])
    text = build_report(root).read_text()
    assert "Nothing has run yet" in text and "| 3 | 0 | 2 | 1 | 0 | 0 |" in text
    assert "2 run(s) failed" in text


def test_figures_skip_what_has_no_data(tmp_path):
    runs = select.select(frame(tmp_path, sweep("rnn", "tv", {10: 3}, seeds=3,
                                                with_diagnostics=False)), "best_lr")
    drawn = figures.render_all(runs, tables.success(runs), tmp_path / "figures", "best_lr")
    assert [f.name for f in drawn] == ["success_vs_gap", "success_heatmap", "learning_curves"]


def test_the_error_flow_figure_shows_the_longest_gap_lstm_solves(tmp_path):
    """Where the error-carousel claim reads it: gap 30 here, not 100 (lstm fails there);
    on a task lstm solves at no gap, the gap most cells were run at."""
    results = (sweep("lstm", "tv", {10: 5, 30: 5, 100: 0})
               + sweep("rnn", "tv", {10: 5, 30: 0, 100: 0})
               + sweep("lstm", "adding", {10: 0, 30: 0}) + sweep("rnn", "adding", {10: 0, 30: 0}))
    runs = select.select(select.prepare(frame(tmp_path, results)), "best_lr")
    drawn = {figure.name: figure for figure in figures.error_flow(runs, tmp_path / "figures")}
    tv, adding = drawn["error_flow_tv"], drawn["error_flow_adding"]
    assert "gap 30 (the longest gap lstm solves)" in tv.title
    assert set(pd.read_csv(tv.csv)["gap"]) == {30}
    assert "gap 30 (lstm solves no gap here)" in adding.title


def test_a_cell_state_no_error_reaches_is_said_so_in_its_panel(tmp_path):
    """nfg and sigmoid_input saturate their memory read (tanh(c) = ±1) after training, so
    ‖∂L/∂c_t‖ is 0 next to the loss (a little returns further back, through h into the
    gates) and no decay can be fitted: the panel says so."""
    results = sweep("lstm", "tv", {10: 5}) + sweep("nfg", "tv", {10: 0})
    for run in results:
        if run.spec.cell == "nfg":
            flow = run.diagnostics["final"]["error_flow"]
            flow["dc_norm"] = [0.0 if d < 6 else 1e-20 * math.exp(0.1 * d)
                               for d in flow["distance"]]
    runs = select.select(select.prepare(frame(tmp_path, results)), "best_lr")
    (figure,) = figures.error_flow(runs, tmp_path / "figures")
    data = pd.read_csv(figure.csv)
    nfg = data.loc[(data["cell"] == "nfg") & (data["quantity"] == "c")
                   & (data["moment"] == "final")]
    assert (nfg.loc[nfg["distance"] < 6, "median_norm"] == 0).all()  # nothing to draw
    notes = data.groupby("cell")["panel_note"].first()
    assert notes["nfg"] == "trained ∂c = 0 next to the loss"
    assert notes["lstm"].startswith("trained ∂c: ") and notes["lstm"].endswith(" left")
    # its decay rate is −inf with nothing left (not a missing row), drawn on the floor line
    decay = pd.read_csv(figures.error_decay(runs, tmp_path / "figures").csv)
    zero = decay.loc[(decay["cell"] == "nfg") & (decay["moment"] == "final")]
    assert len(zero) == 5 and (zero["quantity"] == "c").all()  # one per seed
    assert (zero["rate"] == -math.inf).all() and (zero["left_after_gap"] == 0).all()
    assert matplotlib.image.imread(figure.png).std() > 0.05


def test_an_exploding_error_gets_its_own_axis_and_leaves_the_others_theirs(tmp_path):
    """noaf's unbounded h = o·c makes its gradient grow to 1e19 going back in time; on one
    shared axis its top would set the floor (30 decades down) and cut rnn's decay at 1e-11.
    It is drawn on its own y axis instead, said in its axis label and the caption."""
    results = (sweep("lstm", "tv", {10: 5}) + sweep("rnn", "tv", {10: 0})
               + sweep("noaf", "tv", {10: 0}))
    for run in results:
        flow = run.diagnostics["final"]["error_flow"]
        if run.spec.cell == "noaf":
            flow["dc_norm"] = [1e19 ** (d / max(flow["distance"])) for d in flow["distance"]]
            flow["dh_norm"] = list(flow["dc_norm"])
        elif run.spec.cell == "rnn":
            flow["dh_norm"] = [1e-15 ** (d / max(flow["distance"])) for d in flow["distance"]]
    runs = select.select(select.prepare(frame(tmp_path, results)), "best_lr")
    (figure,) = figures.error_flow(runs, tmp_path / "figures")
    data = pd.read_csv(figure.csv)
    axes = data.groupby("cell")[["own_y_axis", "y_floor", "y_top"]].first()
    assert axes["own_y_axis"].to_dict() == {"lstm": False, "noaf": True, "rnn": False}
    assert axes.loc["noaf", "y_top"] == pytest.approx(1e19)
    assert axes.loc["lstm", "y_top"] == axes.loc["rnn", "y_top"] < 1e3
    # rnn's trained decay down to 1e-15 stays above the shared floor: drawn to its end
    assert axes.loc["rnn", "y_floor"] <= 1e-15 * 1.0001
    assert "noaf: an error norm more than 1e+06 times the median cell's" in figure.caption
    assert matplotlib.image.imread(figure.png).std() > 0.05


@pytest.mark.parametrize("n_zero", [1, 3])
def test_a_panel_counts_the_runs_no_error_reaches(tmp_path, n_zero):
    """Where only some runs keep no error at all in c, the curve drawn is the others' and
    the note says how many runs are 0: beside the median run's rate when it has one, alone
    when the median run keeps nothing (most runs 0)."""
    results = sweep("lstm", "tv", {10: 5}) + sweep("nfg", "tv", {10: 0})
    nfg = [run for run in results if run.spec.cell == "nfg"]
    for run in nfg[:n_zero]:
        flow = run.diagnostics["final"]["error_flow"]
        flow["dc_norm"] = [0.0] * len(flow["dc_norm"])
    runs = select.select(select.prepare(frame(tmp_path, results)), "best_lr")
    (figure,) = figures.error_flow(runs, tmp_path / "figures")
    note = pd.read_csv(figure.csv).groupby("cell")["panel_note"].first()["nfg"]
    if 2 * n_zero > len(nfg):
        assert note == f"trained ∂c = 0 next to the loss in {n_zero} of {len(nfg)} runs"
    else:
        assert note.startswith("trained ∂c: ")
        assert note.endswith(f" left; 0 in {n_zero} of {len(nfg)} runs")


def test_points_solved_on_validation_but_not_on_test_are_listed():
    """Runs stop at the first evaluation that meets the criterion on validation, so they sit
    at its edge: where most did so but fewer than half pass on test, the report says so."""
    def runs(cell, gap, metrics, validated):
        return pd.DataFrame(dict(
            cell=cell, task_label="adding", n_hidden=32, gap=gap, lr=1e-3, score=0.9,
            diverged=False, metric=metrics, solved=[m >= 0.99 for m in metrics],
            steps_to_solve=[1000.0 if v else math.nan for v in validated]))
    table = tables.success(pd.concat([
        runs("lstm", 10, [0.981, 0.997, 0.986, 0.988], [True] * 4),  # the edge: listed
        runs("lstm", 100, [0.995, 0.991, 0.985, 0.993], [True] * 4),  # 3/4 pass: solved
        runs("rnn", 10, [0.2, 0.3, 0.25, 0.991], [False, False, False, True]),  # never near
    ]))
    lstm10 = table.loc[(table["cell"] == "lstm") & (table["gap"] == 10)].iloc[0]
    assert (lstm10["validated"], lstm10["solved"]) == (4, 1)
    assert (lstm10["test_metric_min"], lstm10["test_metric_max"]) == (0.981, 0.997)
    edge = tables.edge_of_criterion(table)
    assert list(zip(edge["cell"], edge["gap"], strict=True)) == [("lstm", 10)]
    text = " ".join(markdown._edge(table))
    assert "`lstm` on adding at gap 10 (validation 4/4, test 1/4, test metric 0.981–0.997)" in text
    assert markdown._edge(table.loc[table["cell"] == "rnn"]) == []
