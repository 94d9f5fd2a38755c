"""Every claim of ablate.report.claims on constructed ledgers where it must come out SUPPORTED,
REFUTED, INCONCLUSIVE and NOT RUN. Plans map gap -> solved seeds (of 5 unless stated): with 5
seeds 0/5 and 5/5 separate ([0, 0.43] and [0.57, 1]); with 3 seeds nothing separates."""

from __future__ import annotations

import pytest
from test_report_fixtures import frame, result, sweep

from ablate.report import claims

SUPPORTED, REFUTED, INCONCLUSIVE, NOT_RUN = claims.VERDICTS
ALL = {10: 5, 30: 5, 100: 5}


def verdict(tmp_path, claim_id: str, results, protocol: str = "best_lr") -> claims.Verdict:
    found = claims.get(claim_id).evaluate(frame(tmp_path, results), protocol)
    assert found.verdict in claims.VERDICTS
    assert found.explanation
    return found


def test_registry():
    ids = [claim.id for claim in claims.CLAIMS]
    assert len(ids) == len(set(ids))
    for needed in ("seed-q1-single-net", "seed-q2-net-readout", "seed-answer-error-flow",
                   "seed-sigmoid-only-adds", "gap-insensitive", "gru-comparable",
                   "peepholes-timing", "greff-forget-output-activation",
                   "greff-cifg-no-peepholes", "gers2000-nfg-continual", "hs97-adding"):
        claim = claims.get(needed)
        assert claim.statement and claim.source and claim.comparison
    with pytest.raises(ValueError, match="unknown claim"):
        claims.get("nope")


# ---------------------------------------------------------------- "A fails at a shorter gap"

SHORTER = [  # (claim, A, B, task)
    ("seed-q1-single-net", "single_net", "lstm", "tv"),
    ("seed-q2-net-readout", "net_readout", "lstm", "copy"),
    ("peepholes-timing", "lstm", "lstm_peephole", "timing"),
    ("gers2000-nfg-continual", "nfg", "lstm", "continual"),
]


@pytest.mark.parametrize("claim_id,a,b,task", SHORTER)
def test_shorter_reach_claims(tmp_path, claim_id, a, b, task):
    def case(plan_a, plan_b, seeds=5):
        return verdict(tmp_path, claim_id, sweep(a, task, plan_a, seeds=seeds)
                       + sweep(b, task, plan_b, seeds=seeds))

    found = case({10: 5, 30: 0, 100: 0}, ALL)
    assert found.verdict == SUPPORTED
    assert found.numbers[f"{task}.{a}.reach"] == 10 and found.numbers[f"{task}.{b}.reach"] == 100
    assert found.numbers[f"{task}.{a}@100"] == "0/5 [0.00, 0.43]"
    assert found.numbers[f"{task}.{b}@100"] == "5/5 [0.57, 1.00]"
    # A reaches as far as B, and B's limit is inside the tested gaps
    found = case({10: 5, 30: 5, 100: 1}, {10: 5, 30: 5, 100: 2})
    assert found.verdict == REFUTED and found.numbers[f"{task}.{a}.reach"] == 30
    # B reaches further but 2/5 and 5/5 overlap at B's reach
    assert case({10: 5, 30: 2, 100: 0}, {10: 5, 30: 5, 100: 0}).verdict == INCONCLUSIVE
    # 3 seeds cannot separate 0/3 from 3/3
    assert case({10: 0, 30: 0, 100: 0}, ALL | {100: 3}, seeds=3).verdict == INCONCLUSIVE
    # fewer than 3 seeds
    found = case({10: 0, 30: 0, 100: 0}, {10: 2, 30: 2, 100: 2}, seeds=2)
    assert found.verdict == INCONCLUSIVE and "fewer than 3" in found.explanation
    # both solve every gap: the limits lie beyond the range
    assert case(ALL, ALL).verdict == INCONCLUSIVE
    # only B was run
    found = verdict(tmp_path, claim_id, sweep(b, task, ALL))
    assert found.verdict == NOT_RUN and found.numbers == {}


def test_tasks_that_disagree_are_inconclusive(tmp_path):
    results = (sweep("single_net", "tv", {10: 5, 30: 0}) + sweep("lstm", "tv", {10: 5, 30: 5})
               + sweep("single_net", "copy", {10: 5, 30: 0}) + sweep("lstm", "copy",
                                                                      {10: 5, 30: 0}))
    found = verdict(tmp_path, "seed-q1-single-net", results)
    assert found.verdict == INCONCLUSIVE and "tasks disagree" in found.explanation
    # one task decides, another's intervals overlap: the decided task carries the claim and
    # the explanation says which task decided what
    results = (sweep("single_net", "tv", {10: 5, 30: 0}) + sweep("lstm", "tv", {10: 5, 30: 5})
               + sweep("single_net", "copy", {10: 5, 30: 2}) + sweep("lstm", "copy",
                                                                      {10: 5, 30: 5}))
    found = verdict(tmp_path, "seed-q1-single-net", results)
    assert found.verdict == SUPPORTED
    assert found.explanation.startswith("per task: SUPPORTED on tv; INCONCLUSIVE on copy")
    # a task that only one cell ran does not count, either way
    results = sweep("single_net", "tv", {10: 5, 30: 0}) + sweep("lstm", "tv", {10: 5, 30: 5})
    results += sweep("lstm", "copy", {10: 0, 30: 0})
    assert verdict(tmp_path, "seed-q1-single-net", results).verdict == SUPPORTED


def test_a_task_variant_is_a_task_of_its_own(tmp_path):
    """A general claim is decided on a variant (copy with 3 symbols to recall, as why_gates
    runs it) and listed under its label; a variant and the default disagreeing make the claim
    INCONCLUSIVE; a claim about a named task reads that task's variants."""
    copy3 = {"n_recall": 3}
    fails_early = {10: 5, 30: 0, 100: 0}
    results = (sweep("lstm", "copy", ALL, options=copy3)
               + sweep("single_net", "copy", fails_early, options=copy3))
    found = verdict(tmp_path, "seed-q1-single-net", results)
    assert found.verdict == SUPPORTED and "copy (n_recall=3)" in found.explanation
    results += sweep("lstm", "copy", fails_early) + sweep("single_net", "copy", ALL)
    found = verdict(tmp_path, "seed-q1-single-net", results)
    assert found.verdict == INCONCLUSIVE and "tasks disagree" in found.explanation
    continual = {"n_episodes": 4}
    results = (sweep("lstm", "continual", ALL, options=continual)
               + sweep("nfg", "continual", fails_early, options=continual))
    found = verdict(tmp_path, "gers2000-nfg-continual", results)
    assert found.verdict == SUPPORTED and "continual (n_episodes=4)" in found.explanation


def test_the_1997_adding_claims_read_the_1997_variant_only_and_the_protocol(tmp_path):
    variant = {"variant": "arjovsky"}
    results = sweep("lstm", "adding", {100: 5, 500: 5, 1000: 5}, options=variant,
                    with_diagnostics=False)
    assert verdict(tmp_path, "hs97-adding-lstm", results).verdict == NOT_RUN
    # single_net fails at lr 1e-2 but solves at 3e-3, which best_lr picks on validation
    results = (sweep("lstm", "tv", ALL)
               + sweep("single_net", "tv", {10: 5, 30: 0, 100: 0}, lr=1e-2, val_peak=0.7)
               + sweep("single_net", "tv", ALL, lr=3e-3))
    assert verdict(tmp_path, "seed-q1-single-net", results).verdict == INCONCLUSIVE
    assert verdict(tmp_path, "seed-q1-single-net", results, "pooled").verdict == INCONCLUSIVE


# ---------------------------------------------------------------- error flow


def _flow_runs(lstm_rates, rnn_rates, gaps=(10, 30), lstm_solves=(10, 30)):
    out = []
    for gap in gaps:
        out += [result("lstm", "tv", gap, seed, solved=gap in lstm_solves, dc_rate=rate)
                for seed, rate in enumerate(lstm_rates)]
        out += [result("rnn", "tv", gap, seed, solved=False, dh_rate=rate)
                for seed, rate in enumerate(rnn_rates)]
    return out


def test_error_flow_claim(tmp_path):
    claim = "seed-answer-error-flow"
    found = verdict(tmp_path, claim, _flow_runs([-0.001] * 3, [-0.5] * 3))
    assert found.verdict == SUPPORTED
    assert found.numbers["tv.gap"] == 30  # the longest gap lstm solves, 3 runs of each
    assert found.numbers["tv.lstm.reach"] == 30
    assert found.numbers["tv.lstm.dc_rate_trained"] == pytest.approx(-0.001, abs=2e-3)
    assert found.numbers["tv.rnn.dh_rate_trained"] == pytest.approx(-0.5, abs=2e-3)
    assert found.numbers["tv.lstm.dc_rate_init"] == pytest.approx(-0.31, abs=2e-3)
    assert found.numbers["tv.lstm.dc_left_after_gap"] == pytest.approx(0.97, abs=0.07)
    # the gated cell's error decays too: exp(-0.1 · 30) = 0.05 < 1/2
    assert verdict(tmp_path, claim, _flow_runs([-0.1] * 3, [-0.5] * 3)).verdict == REFUTED
    # the rnn's does not decay: exp(-0.01 · 30) = 0.74 > 1/10
    assert verdict(tmp_path, claim, _flow_runs([-0.001] * 3, [-0.01] * 3)).verdict == REFUTED
    # seeds disagree
    found = verdict(tmp_path, claim, _flow_runs([-0.001, -0.1, -0.001], [-0.5] * 3))
    assert found.verdict == INCONCLUSIVE and "seeds disagree" in found.explanation
    # 2 runs of each
    assert verdict(tmp_path, claim, _flow_runs([-0.001] * 2, [-0.5] * 2)).verdict == INCONCLUSIVE
    # measured where lstm learned: at gap 10 (F = 0.91 ≥ 1/2), not at 100, which it fails
    # (exp(-0.01 · 100) = 0.37 would refute)
    found = verdict(tmp_path, claim, _flow_runs([-0.01] * 3, [-0.5] * 3, gaps=(10, 100),
                                                lstm_solves=(10,)))
    assert found.verdict == SUPPORTED and found.numbers["tv.gap"] == 10
    found = verdict(tmp_path, claim, _flow_runs([-0.001] * 3, [-0.5] * 3, lstm_solves=()))
    assert found.verdict == INCONCLUSIVE and "solves no gap" in found.explanation
    assert found.numbers["tv.lstm.reach"] == "< 10"
    # an lstm whose trained cell state receives no error at all keeps nothing: REFUTED, not
    # left out of the comparison
    runs = _flow_runs([-0.001] * 3, [-0.5] * 3)
    for run in runs:
        if run.spec.cell == "lstm":
            flow = run.diagnostics["final"]["error_flow"]
            flow["dc_norm"] = [0.0] * len(flow["dc_norm"])
    found = verdict(tmp_path, claim, runs)
    assert found.verdict == REFUTED and found.numbers["tv.lstm.dc_left_after_gap"] == 0
    # runs without diagnostics
    found = verdict(tmp_path, claim, sweep("lstm", "tv", ALL, with_diagnostics=False)
                    + sweep("rnn", "tv", ALL, with_diagnostics=False))
    assert found.verdict == INCONCLUSIVE and "no error-flow diagnostics" in found.explanation
    assert verdict(tmp_path, claim, sweep("lstm", "tv", ALL)).verdict == NOT_RUN


# ---------------------------------------------------------------- sigmoid only adds


def test_sigmoid_only_adds(tmp_path):
    claim = "seed-sigmoid-only-adds"

    def case(growths, plan=None):
        out = sweep("lstm", "continual", ALL)
        plan = plan or {10: 5, 30: 0, 100: 0}
        for gap, solved in plan.items():
            out += [result("sigmoid_input", "continual", gap, seed, solved=seed < solved,
                           growth=growths[seed]) for seed in range(5)]
        return verdict(tmp_path, claim, out)

    found = case([8.0] * 5)
    assert found.verdict == SUPPORTED
    assert found.numbers["continual.sigmoid_input.c_growth_median"] == pytest.approx(8.0)
    assert found.numbers["continual.sigmoid_input.c_growth_runs"] == 15
    assert case([1.0] * 5).verdict == REFUTED  # its memory stays level
    assert case([8.0] * 5, plan=ALL).verdict == INCONCLUSIVE  # both solve everything
    assert case([8.0, 8.0, 1.5, 8.0, 8.0]).verdict == INCONCLUSIVE  # one run grows 1.5×
    assert case([1.0] * 5, plan=ALL).verdict == REFUTED  # a refuted part refutes the claim
    found = verdict(tmp_path, claim, sweep("sigmoid_input", "tv", ALL) + sweep("lstm", "tv", ALL))
    assert found.verdict == NOT_RUN


# ---------------------------------------------------------------- gap insensitivity


def test_gap_insensitive(tmp_path):
    claim = "gap-insensitive"

    def case(plan, seeds=5):
        return verdict(tmp_path, claim, sweep("lstm", "tv", plan, seeds=seeds,
                                              with_diagnostics=False))

    found = case({10: 5, 100: 5, 1000: 4})
    assert found.verdict == SUPPORTED and found.numbers["tv.lstm@1000"] == "4/5 [0.38, 0.96]"
    assert case({8: 5, 100: 5, 1500: 5}).verdict == SUPPORTED  # end points within a factor 2
    found = case({10: 5, 100: 5, 1000: 0})
    assert found.verdict == REFUTED and "drops" in found.explanation
    assert case({10: 5, 100: 5, 1000: 2}).verdict == INCONCLUSIVE  # below 50%, overlapping
    assert case({10: 5, 100: 5, 300: 5}).verdict == NOT_RUN  # no gap near 1000
    assert case({10: 3, 100: 3, 1000: 2}, seeds=3).verdict == SUPPORTED  # 2/3 is ≥ 50%
    assert case({10: 2, 1000: 2}, seeds=2).verdict == INCONCLUSIVE  # fewer than 3 seeds


# ---------------------------------------------------------------- GRU and LSTM


def test_gru_comparable(tmp_path):
    def case(gru, lstm):
        return verdict(tmp_path, "gru-comparable", sweep("gru", "tv", gru) + sweep("lstm", "tv",
                                                                                  lstm))

    found = case({10: 5, 30: 4, 100: 0}, {10: 5, 30: 5, 100: 1})
    assert found.verdict == SUPPORTED and found.numbers["tv.gru.reach"] == 30
    found = case({10: 5, 30: 0, 100: 0}, ALL)
    assert found.verdict == REFUTED and found.numbers["tv.gru@30"] == "0/5 [0.00, 0.43]"
    assert case(ALL, {10: 5, 30: 0, 100: 0}).verdict == REFUTED  # either direction
    assert case({10: 5, 30: 5, 100: 2}, ALL).verdict == INCONCLUSIVE
    assert case({10: 0, 30: 0, 100: 0}, {10: 1, 30: 0, 100: 0}).verdict == INCONCLUSIVE
    assert verdict(tmp_path, "gru-comparable", sweep("lstm", "tv", ALL)).verdict == NOT_RUN


# ---------------------------------------------------------------- Greff et al. 2017


def test_greff_forget_gate_and_output_activation_hurt_most(tmp_path):
    claim = "greff-forget-output-activation"

    def case(nfg, noaf, cifg=ALL, vanilla=ALL):
        return verdict(tmp_path, claim, sweep("lstm_peephole", "tv", vanilla)
                       + sweep("nfg", "tv", nfg) + sweep("noaf", "tv", noaf)
                       + sweep("cifg", "tv", cifg))

    found = case({10: 5, 30: 0, 100: 0}, {10: 0, 30: 0, 100: 0})
    assert found.verdict == SUPPORTED
    assert found.numbers["tv.noaf.reach"] == "< 10" and found.numbers["tv.nfg.reach"] == 10
    # cifg is worse than nfg
    found = case({10: 5, 30: 5, 100: 0}, {10: 0, 30: 0, 100: 0}, cifg={10: 0, 30: 0, 100: 0})
    assert found.verdict == REFUTED and "cifg" in found.explanation
    # nfg goes as far as vanilla, whose limit is inside the range
    found = case({10: 5, 30: 5, 100: 0}, {10: 0, 30: 0, 100: 0}, cifg={10: 5, 30: 5, 100: 0},
                 vanilla={10: 5, 30: 5, 100: 0})
    assert found.verdict == REFUTED and "nfg reaches as far as vanilla" in found.explanation
    # nfg's 3/5 at 100 overlaps vanilla's 5/5
    assert case({10: 5, 30: 5, 100: 3}, {10: 0, 30: 0, 100: 0}).verdict == INCONCLUSIVE
    found = verdict(tmp_path, claim, sweep("lstm_peephole", "tv", ALL) + sweep("nfg", "tv", ALL))
    assert found.verdict == NOT_RUN  # no noaf


def test_greff_cifg_and_no_peepholes_do_not_hurt(tmp_path):
    claim = "greff-cifg-no-peepholes"

    def case(cifg, lstm=ALL, vanilla=ALL):
        return verdict(tmp_path, claim, sweep("lstm_peephole", "tv", vanilla)
                       + sweep("cifg", "tv", cifg) + sweep("lstm", "tv", lstm))

    assert case(ALL).verdict == SUPPORTED
    found = case({10: 5, 30: 0, 100: 0})
    assert found.verdict == REFUTED and found.numbers["tv.cifg@30"] == "0/5 [0.00, 0.43]"
    assert case({10: 5, 30: 5, 100: 2}).verdict == INCONCLUSIVE
    assert case(ALL, vanilla={10: 0, 30: 0, 100: 0}).verdict == INCONCLUSIVE
    found = verdict(tmp_path, claim, sweep("lstm_peephole", "tv", ALL) + sweep("lstm", "tv", ALL))
    assert found.verdict == NOT_RUN  # no cifg


# ---------------------------------------------------------------- Hochreiter & Schmidhuber 1997


@pytest.mark.parametrize("claim_id,cell", [("hs97-adding", "lstm97"), ("hs97-adding-lstm", "lstm")])
def test_adding_solved_at_100_500_1000(tmp_path, claim_id, cell):
    def case(plan, seeds=5, budget=27_000):  # 27,000 steps of 32: 864,000 sequences
        return verdict(tmp_path, claim_id, sweep(cell, "adding", plan, seeds=seeds,
                                                 with_diagnostics=False, budget=budget))

    found = case({100: 5, 500: 5, 1000: 5})
    assert found.verdict == SUPPORTED
    assert found.numbers[f"adding.{cell}@500"] == "5/5 [0.57, 1.00]"
    assert case({100: 5, 500: 5, 1000: 0}).verdict == REFUTED
    assert case({100: 5, 500: 3, 1000: 5}).verdict == INCONCLUSIVE
    assert case({100: 3, 500: 3, 1000: 3}, seeds=3).verdict == INCONCLUSIVE  # 3/3: [0.44, 1]
    found = case({100: 5, 500: 5})
    assert found.verdict == NOT_RUN and "1000" in found.explanation
    assert case({100: 5, 500: 0}).verdict == REFUTED  # a failure decides even with 1000 absent
    other = "lstm" if cell == "lstm97" else "lstm97"
    found = verdict(tmp_path, claim_id, sweep(other, "adding", {100: 5}, with_diagnostics=False))
    assert found.verdict == NOT_RUN


@pytest.mark.parametrize("claim_id,cell", [("hs97-adding", "lstm97"), ("hs97-adding-lstm", "lstm")])
def test_adding_failure_within_fewer_sequences_than_the_paper_does_not_refute(
        tmp_path, claim_id, cell):
    """The paper's LSTM needed 74,000 / 209,000 / 853,000 sequences at T = 100 / 500 / 1000:
    a run that fails with a smaller budget has not tried as long as the source did."""
    def case(plan, budget):
        return verdict(tmp_path, claim_id, sweep(cell, "adding", plan,
                                                 with_diagnostics=False, budget=budget))

    # 5000 steps of 32 = 160,000 sequences: enough at T = 100 and 500, not at 1000
    found = case({100: 5, 500: 5, 1000: 0}, 5000)
    assert found.verdict == INCONCLUSIVE
    assert "160,000" in found.explanation and "853,000" in found.explanation
    assert found.numbers[f"adding.{cell}@1000.sequences"] == 160_000
    assert found.numbers["adding.source@1000.sequences"] == 853_000
    assert case({100: 0, 500: 5, 1000: 0}, 5000).verdict == REFUTED  # 160,000 ≥ 74,000
    assert case({100: 5, 500: 0, 1000: 0}, 5000).verdict == INCONCLUSIVE  # < 209,000
    # 2000 steps of 32 = 64,000 < 74,000: not even T = 100 can refute
    assert case({100: 0, 500: 0, 1000: 0}, 2000).verdict == INCONCLUSIVE
    found = case({100: 5, 1000: 0}, 5000)  # 500 missing, 1000 under-trained
    assert found.verdict == NOT_RUN
    assert "500" in found.explanation and "853,000" in found.explanation


def test_every_claim_is_not_run_on_an_empty_ledger(tmp_path):
    verdicts = claims.evaluate_all(frame(tmp_path, []))
    assert list(verdicts["verdict"]) == [NOT_RUN] * len(claims.CLAIMS)


# ---------------------------------------------------------------- which suites run a claim

SCIENCE_SUITES = ("why_gates", "greff", "gers2000", "hochreiter97", "zoo")


def _suite_frame(tmp_path, name: str):
    """One constructed run per (cell, task variant, gap) of a bundled suite, at its first
    hidden size: what decides whether a claim is NOT RUN there."""
    from pathlib import Path

    from ablate.suite import load_suite

    suite = load_suite(Path(__file__).resolve().parent.parent / "suites" / f"{name}.toml")
    points = {}
    for spec in suite.specs:
        key = (spec.cell, spec.task, spec.task_options, spec.gap)
        if key not in points and spec.n_hidden == suite.specs[0].n_hidden:
            points[key] = result(spec.cell, spec.task, spec.gap, 0, solved=spec.gap <= 100,
                                 options=dict(spec.task_options), n_hidden=spec.n_hidden)
    return frame(tmp_path, list(points.values())), suite.protocol


def test_each_claim_names_the_bundled_suites_that_run_it(tmp_path):
    """A claim is not NOT RUN on a ledger holding its suites' grid, and NOT RUN on every other
    science suite's; the report points a NOT RUN claim at them."""
    for name in SCIENCE_SUITES:
        ledger_frame, protocol = _suite_frame(tmp_path, name)
        for claim in claims.CLAIMS:
            found = claim.evaluate(ledger_frame, protocol).verdict
            assert (found != NOT_RUN) == (name in claim.suites), (claim.id, name, found)
    assert all(set(claim.suites) <= set(SCIENCE_SUITES) for claim in claims.CLAIMS)
