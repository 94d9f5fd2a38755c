"""Tests of ablate.suite: suite files expand to the documented grid, and every mistake in one
is a single-line SuiteError naming the file, the key path and what is allowed. No training."""

from __future__ import annotations

import dataclasses
import itertools
import re
from pathlib import Path

import pytest

import ablate.suite as suite_module
from ablate import cells, tasks
from ablate.results import RunSpec
from ablate.suite import PROTOCOLS, Suite, SuiteError, load_suite, parse_suite

ROOT = Path(__file__).resolve().parent.parent
SUITES = ROOT / "suites"
LABEL = "suites/x.toml"

HEAD = 'cells = ["lstm", "gru"]\nseeds = 2\nlearning_rates = [0.01]\n'
TV = "[tasks.tv]\ngaps = [5]\n"


def parse(text: str) -> Suite:
    return parse_suite(text, "x", Path(LABEL))


# (id, suite text, key path (None: the top level), a fragment the message must hold)
MALFORMED = [
    # unknown keys at every level, with the closest name suggested
    ("top-key-typo", "learning_rate = [0.1]\n" + HEAD + TV, None,
     "unknown key 'learning_rate' (did you mean 'learning_rates'?); allowed: cells, description"),
    ("training-key-typo", HEAD + "[training]\nbudgett = 10\n" + TV, "training",
     "unknown key 'budgett' (did you mean 'budget'?); allowed: batch_size, budget"),
    ("evaluation-key-typo", HEAD + "[evaluation]\nprotocl = 'pooled'\n" + TV, "evaluation",
     "did you mean 'protocol'?"),
    ("task-key-typo", HEAD + "[tasks.tv]\ngap = [5]\n", "tasks.tv",
     "unknown key 'gap' (did you mean 'gaps'?)"),
    ("top-key-inside-table", HEAD + "[training]\nbudget = 10\nhidden_sizes = [8]\n" + TV,
     "training", "top-level keys go above the first [table]"),
    ("task-option-typo", HEAD + "[tasks.tv]\ngaps = [5]\noptions = { n_class = 3 }\n",
     "tasks.tv.options", "unknown option 'n_class' (did you mean 'n_classes'?); allowed:"),
    ("task-option-none", HEAD + "[tasks.timing]\ngaps = [5]\noptions = { n = 3 }\n",
     "tasks.timing.options", "unknown option 'n'; allowed: none"),
    # unknown names
    ("unknown-cell", HEAD.replace('"gru"', '"lstn"') + TV, "cells[1]",
     "unknown cell 'lstn' (did you mean 'lstm'?); allowed: lstm, "),
    ("unknown-cell-in-task", HEAD + TV + 'cells = ["gur"]\n', "tasks.tv.cells[0]",
     "did you mean 'gru'?"),
    ("unknown-task", HEAD + "[tasks.cpy]\ngaps = [5]\n", "tasks.cpy",
     "unknown task 'cpy' (did you mean 'copy'?); allowed: copy, adding"),
    ("unknown-protocol", HEAD + "[evaluation]\nprotocol = 'best'\n" + TV, "evaluation.protocol",
     "unknown protocol 'best' (did you mean 'best_lr'?); allowed: best_lr, pooled"),
    ("unknown-dtype", HEAD + "[training]\ndtype = 'float16'\n" + TV, "training.dtype",
     "allowed: float32, float64"),
    ("bad-option-value", HEAD + "[tasks.tv]\ngaps = [5]\noptions = { n_classes = 1 }\n",
     "tasks.tv.options", "tv: option n_classes must be an integer >= 2"),
    ("bad-option-combination",
     HEAD + "[tasks.continual]\ngaps = [5]\noptions = { n_episodes = 40 }\n",
     "tasks.continual.options", "eval_episodes must be an integer > n_episodes"),
    # wrong types
    ("string-for-int", HEAD + "[training]\nbudget = \"2000\"\n" + TV, "training.budget",
     'expected an integer >= 1, got "2000" (a string)'),
    ("float-for-int", HEAD + "[training]\nbudget = 2000.0\n" + TV, "training.budget",
     "got 2000.0 (a float)"),
    ("bool-for-int", HEAD + "[training]\nbatch_size = true\n" + TV, "training.batch_size",
     "got true (a boolean)"),
    ("bool-for-number", HEAD + "[training]\nclip = false\n" + TV, "training.clip",
     "expected a finite number >= 0, got false (a boolean)"),
    ("string-forget-bias", HEAD + "[training]\nforget_bias = \"3\"\n" + TV,
     "training.forget_bias", 'expected a finite number, got "3" (a string)'),
    ("zero-solve-patience", HEAD + "[training]\nsolve_patience = 0\n" + TV,
     "training.solve_patience", "expected an integer >= 1, got 0"),
    ("float-solve-patience", HEAD + "[tasks.tv]\ngaps = [5]\nsolve_patience = 2.5\n",
     "tasks.tv.solve_patience", "expected an integer >= 1, got 2.5 (a float)"),
    ("bool-seeds", HEAD.replace("seeds = 2", "seeds = true") + TV, "seeds",
     "got true (a boolean)"),
    ("float-seed", HEAD.replace("seeds = 2", "seeds = [0, 1.5]") + TV, "seeds[1]",
     "expected an integer >= 0, got 1.5 (a float)"),
    ("string-cells", HEAD.replace('["lstm", "gru"]', '"lstm"') + TV, "cells",
     'expected a non-empty list of cells, got "lstm" (a string); write ["lstm"]'),
    ("non-string-cell", HEAD.replace('"gru"', "3") + TV, "cells[1]",
     "expected a cell name, got 3 (an integer)"),
    ("scalar-learning-rates", HEAD.replace("[0.01]", "0.01") + TV, "learning_rates",
     "write [0.01]"),
    ("string-learning-rate", HEAD.replace("[0.01]", '["0.01"]') + TV, "learning_rates[0]",
     "expected a finite number > 0"),
    ("eval-batch-float", HEAD + "[evaluation]\ntest_batch = 1e3\n" + TV, "evaluation.test_batch",
     "got 1000.0 (a float)"),
    ("multi-line-description", 'description = """a\nb"""\n' + HEAD + TV, "description",
     "expected one line of text"),
    # a non-table where a table is expected
    ("training-not-table", "training = 5\n" + HEAD + TV, "training",
     "expected a table ([training] or { ... }), got 5 (an integer)"),
    ("tasks-list", HEAD + 'tasks = ["tv"]\n', "tasks", "expected tables [tasks.<name>]"),
    ("task-not-table", HEAD + "[tasks]\ntv = [5]\n", "tasks.tv", "expected a table"),
    ("options-not-table", HEAD + "[tasks.tv]\ngaps = [5]\noptions = 2\n", "tasks.tv.options",
     "expected a table"),
    # empty grids and missing keys
    ("empty-cells", HEAD.replace('["lstm", "gru"]', "[]") + TV, "cells",
     "empty list; expected a non-empty list of cells"),
    ("empty-gaps", HEAD + "[tasks.tv]\ngaps = []\n", "tasks.tv.gaps", "empty list"),
    ("empty-seeds", HEAD.replace("seeds = 2", "seeds = []") + TV, "seeds", "empty list"),
    ("zero-seeds", HEAD.replace("seeds = 2", "seeds = 0") + TV, "seeds",
     "expected a count n >= 1"),
    ("empty-task-cells", HEAD + TV + "cells = []\n", "tasks.tv.cells", "empty list"),
    ("no-tasks", HEAD, "tasks", "missing; every suite needs at least one table [tasks.<name>]"),
    ("empty-tasks", HEAD + "[tasks]\n", "tasks", "no tasks; add a table [tasks.<name>]"),
    ("missing-cells", HEAD.replace('cells = ["lstm", "gru"]\n', "") + TV, "cells", "missing"),
    ("missing-gaps", HEAD + "[tasks.tv]\nbudget = 10\n", "tasks.tv.gaps", "missing"),
    # values out of range
    ("negative-gap", HEAD + "[tasks.copy]\ngaps = [10, -5]\n", "tasks.copy.gaps[1]",
     "-5 is not a valid gap (copy: gap must be an integer >= 1)"),
    ("zero-gap", HEAD + "[tasks.tv]\ngaps = [0]\n", "tasks.tv.gaps[0]", "0 is not a valid gap"),
    ("float-gap", HEAD + "[tasks.tv]\ngaps = [5.0]\n", "tasks.tv.gaps[0]",
     "expected an integer gap, got 5.0 (a float)"),
    ("bool-gap", HEAD + "[tasks.tv]\ngaps = [true]\n", "tasks.tv.gaps[0]", "(a boolean)"),
    ("zero-learning-rate", HEAD.replace("[0.01]", "[0.01, 0]") + TV, "learning_rates[1]",
     "expected a finite number > 0, got 0"),
    ("inf-learning-rate", HEAD.replace("[0.01]", "[inf]") + TV, "learning_rates[0]",
     "got inf (a float)"),
    ("negative-clip", HEAD + TV + "clip = -1.0\n", "tasks.tv.clip",
     "expected a finite number >= 0"),
    ("zero-hidden", HEAD + "hidden_sizes = [0]\n" + TV, "hidden_sizes[0]",
     "expected an integer >= 1, got 0"),
    ("negative-eval-seed", HEAD + "[evaluation]\nseed = -1\n" + TV, "evaluation.seed",
     "expected an integer >= 0"),
    # duplicates
    ("duplicate-cell", HEAD.replace('"gru"', '"lstm"') + TV, "cells[1]",
     '"lstm" repeats cells[0]; each value may appear once'),
    ("duplicate-gap", HEAD + "[tasks.tv]\ngaps = [5, 10, 5]\n", "tasks.tv.gaps[2]",
     "5 repeats tasks.tv.gaps[0]"),
    ("duplicate-learning-rate", HEAD.replace("[0.01]", "[0.01, 1e-2]") + TV,
     "learning_rates[1]", "repeats learning_rates[0]"),
    ("duplicate-seed", HEAD.replace("seeds = 2", "seeds = [3, 3]") + TV, "seeds[1]", "repeats"),
    # TOML syntax
    ("toml-unclosed-table", HEAD + "[tasks.tv\ngaps = [5]\n", None,
     "invalid TOML: Expected ']' at the end of a table declaration (at line 4, column 10)"),
    ("toml-no-value", HEAD + "budget =\n" + TV, None, "invalid TOML: Invalid value (at line 4"),
    ("toml-duplicate-table", HEAD + TV + TV, None, "invalid TOML"),
]


@pytest.mark.parametrize(
    "text, key, fragment", [case[1:] for case in MALFORMED], ids=[case[0] for case in MALFORMED]
)
def test_malformed_suite_is_one_line_error(text: str, key: str | None, fragment: str) -> None:
    with pytest.raises(SuiteError) as caught:
        parse(text)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{LABEL}: {key}: " if key else f"{LABEL}: "), message
    assert fragment in message, message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_malformed_table_covers_enough() -> None:
    assert len(MALFORMED) >= 25
    assert len({case[0] for case in MALFORMED}) == len(MALFORMED)


GRID = """
description = "two tasks, one with overrides"
cells = ["gru", "lstm", "rnn"]
seeds = [4, 1]
learning_rates = [0.01, 0.003]
hidden_sizes = [16, 8]

[training]
budget = 300
clip = 0.5

[evaluation]
protocol = "pooled"
validation_batch = 64
test_batch = 96
seed = 7

[tasks.tv]
gaps = [20, 5]
options = { n_classes = 3 }

[tasks.copy]
gaps = [3]
cells = ["rnn", "lstm"]
learning_rates = [0.1]
budget = 50
dtype = "float64"
"""


def test_grid_expands_to_the_product_in_the_documented_order() -> None:
    suite = parse(GRID)
    shared = dict(clip=0.5, eval_batch=64, test_batch=96, eval_seed=7)
    expected = [
        RunSpec(cell=cell, task="tv", gap=gap, n_hidden=h, lr=lr, seed=seed, budget=300,
                task_options={"n_classes": 3}, **shared)
        for gap, cell, h, lr, seed in itertools.product(
            [20, 5], ["gru", "lstm", "rnn"], [16, 8], [0.01, 0.003], [4, 1])
    ] + [
        RunSpec(cell=cell, task="copy", gap=3, n_hidden=h, lr=0.1, seed=seed, budget=50,
                dtype="float64", **shared)
        for cell, h, seed in itertools.product(["rnn", "lstm"], [16, 8], [4, 1])
    ]
    assert len(suite.specs) == 2 * 3 * 2 * 2 * 2 + 2 * 2 * 2 == 56
    assert list(suite.specs) == expected  # membership, count and order
    assert len({spec.key for spec in suite.specs}) == len(suite.specs)
    # the copy overrides did not leak into tv
    tv = [spec for spec in suite.specs if spec.task == "tv"]
    assert {spec.budget for spec in tv} == {300} and {spec.dtype for spec in tv} == {"float32"}
    assert {spec.lr for spec in tv} == {0.01, 0.003}
    assert suite.protocol == "pooled"
    assert suite.description == "two tasks, one with overrides"
    assert suite.name == "x" and suite.path == Path(LABEL) and suite.text == GRID


def test_defaults_are_runspec_defaults() -> None:
    suite = parse('cells = ["lstm"]\nseeds = 1\nlearning_rates = [0.01]\n' + TV)
    (spec,) = suite.specs
    assert spec == RunSpec(cell="lstm", task="tv", gap=5, seed=0, lr=0.01)
    assert spec.n_hidden == 32
    assert suite.protocol == "best_lr" and suite.description == ""


def test_seed_count_equals_seed_list() -> None:
    counted = parse(HEAD.replace("seeds = 2", "seeds = 3") + TV)
    listed = parse(HEAD.replace("seeds = 2", "seeds = [0, 1, 2]") + TV)
    assert counted.specs == listed.specs
    assert [spec.seed for spec in counted.specs[:3]] == [0, 1, 2]


def test_groups_partition_specs_by_shape_key() -> None:
    suite = parse(GRID)
    groups = suite.groups()
    assert sorted((s for g in groups for s in g), key=suite.specs.index) == list(suite.specs)
    assert sum(len(group) for group in groups) == len(suite.specs)
    keys = [group[0].shape_key() for group in groups]
    assert len(set(keys)) == len(keys)
    assert all(spec.shape_key() == group[0].shape_key() for group in groups for spec in group)
    firsts = [suite.specs.index(group[0]) for group in groups]
    assert firsts == sorted(firsts)  # first-appearance order
    # learning rates and seeds share an ensemble; gaps, cells and sizes do not
    assert len(groups) == 2 * 3 * 2 + 2 * 2 and all(len(g) == 4 for g in groups[:12])


def test_every_cell_and_task_name_is_accepted() -> None:
    names = ", ".join(f'"{name}"' for name in cells.names())
    text = f"cells = [{names}]\nseeds = 1\nlearning_rates = [0.01]\n"
    text += "".join(f"[tasks.{name}]\ngaps = [4]\n" for name in tasks.names())
    suite = parse(text)
    assert len(suite.specs) == len(cells.names()) * len(tasks.names())
    assert PROTOCOLS == ("best_lr", "pooled")


def test_runspec_error_becomes_suite_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(**fields):
        raise ValueError("refused\nfor the test")

    monkeypatch.setattr(suite_module, "RunSpec", refuse)
    with pytest.raises(SuiteError, match=r"^suites/x.toml: tasks.tv: run cell=lstm gap=5 .*"
                                         r"refused for the test$"):
        parse(HEAD + TV)


def readme_examples() -> list[str]:
    text = (SUITES / "README.md").read_text(encoding="utf-8")
    return re.findall(r"^```toml\n(.*?)^```", text, flags=re.S | re.M)


def test_readme_example_parses() -> None:
    (example,) = readme_examples()
    suite = parse_suite(example, "readme")
    by_task = {name: [s for s in suite.specs if s.task == name]
               for name in ("tv", "copy", "adding")}
    assert [len(by_task[name]) for name in by_task] == [162, 36, 48]  # as the README counts
    assert len(suite.specs) == 246
    assert {s.budget for s in by_task["copy"]} == {5000}
    assert {s.budget for s in by_task["tv"] + by_task["adding"]} == {2000}
    assert {s.cell for s in by_task["adding"]} == {"lstm", "nfg"}
    assert {s.seed for s in by_task["adding"]} == {10, 11}


def suite_files() -> list[Path]:
    return sorted(SUITES.glob("*.toml"))


@pytest.mark.parametrize("path", suite_files(), ids=lambda path: path.name)
def test_repository_suite_loads(path: Path) -> None:
    suite = load_suite(path)
    assert suite.name == path.stem and suite.specs
    assert suite.text == path.read_text(encoding="utf-8")


def test_tiny_suite() -> None:
    suite = load_suite(SUITES / "tiny.toml")
    assert "test" in suite.description
    assert len(suite.specs) == 8 and len(suite.groups()) == 2
    assert {(s.cell, s.task, s.gap, s.n_hidden) for s in suite.specs} == {
        ("lstm", "tv", 5, 8), ("rnn", "tv", 5, 8)}
    assert {(s.lr, s.seed) for s in suite.specs} == {(0.01, 0), (0.01, 1), (0.003, 0), (0.003, 1)}
    assert {(s.budget, s.batch_size, s.eval_every, s.eval_batch, s.test_batch)
            for s in suite.specs} == {(60, 16, 20, 64, 128)}


def test_load_suite_file_errors(tmp_path: Path) -> None:
    (tmp_path / "gates.toml").write_text(HEAD + TV)
    assert load_suite(str(tmp_path / "gates.toml")).name == "gates"
    with pytest.raises(SuiteError, match=r"no such suite file \(did you mean 'gates.toml'\?\); "
                                         r"suites in .*: gates.toml$"):
        load_suite(tmp_path / "gate.toml")
    with pytest.raises(SuiteError, match="no such suite file$"):
        load_suite(tmp_path / "nowhere" / "x.toml")
    with pytest.raises(SuiteError, match="is a directory, not a suite file"):
        load_suite(tmp_path)
    (tmp_path / "latin1.toml").write_bytes(b'description = "caf\xe9"\n')
    with pytest.raises(SuiteError, match="latin1.toml: not UTF-8 text"):
        load_suite(tmp_path / "latin1.toml")
    (tmp_path / "broken.toml").write_text(HEAD + TV + "budget = 5.0\n")
    with pytest.raises(SuiteError, match=r"broken.toml: tasks.tv.budget: .* \(a float\)$"):
        load_suite(tmp_path / "broken.toml")


def test_suite_is_frozen() -> None:
    suite = parse(HEAD + TV)
    with pytest.raises(dataclasses.FrozenInstanceError):
        suite.protocol = "pooled"  # type: ignore[misc]


def test_forget_bias_reaches_only_cells_with_a_forget_gate() -> None:
    """A suite-wide forget_bias shifts f where a cell has one; other cells keep their spec."""
    suite = parse('cells = ["lstm", "gru", "nfg", "noaf"]\nseeds = 1\nlearning_rates = [0.01]\n'
                  "[training]\nforget_bias = 3\n[tasks.tv]\ngaps = [5]\n"
                  "[tasks.copy]\ngaps = [5]\nforget_bias = 5.5\n")
    bias = {(spec.task, spec.cell): spec.forget_bias for spec in suite.specs}
    assert bias == {("tv", "lstm"): 3.0, ("tv", "gru"): None, ("tv", "nfg"): None,
                    ("tv", "noaf"): 3.0, ("copy", "lstm"): 5.5, ("copy", "gru"): None,
                    ("copy", "nfg"): None, ("copy", "noaf"): 5.5}
    no_bias = parse('cells = ["gru"]\nseeds = 1\nlearning_rates = [0.01]\n' + TV).specs[0]
    assert no_bias == next(s for s in suite.specs if s.cell == "gru" and s.task == "tv")


def test_solve_patience_reaches_every_run_and_a_task_may_override_it() -> None:
    suite = parse(HEAD + "[training]\nsolve_patience = 3\n" + TV
                  + "[tasks.copy]\ngaps = [5]\nsolve_patience = 1\n")
    patience = {(spec.task, spec.solve_patience) for spec in suite.specs}
    assert patience == {("tv", 3), ("copy", 1)}
    assert parse(HEAD + TV).specs[0].solve_patience == 1


def test_task_table_overrides_the_evaluation_batches() -> None:
    suite = parse(HEAD + "[evaluation]\nvalidation_batch = 100\ntest_batch = 300\n" + TV
                  + "[tasks.continual]\ngaps = [5]\nvalidation_batch = 20\ntest_batch = 40\n")
    sizes = {(spec.task, spec.eval_batch, spec.test_batch) for spec in suite.specs}
    assert sizes == {("tv", 100, 300), ("continual", 20, 40)}
    with pytest.raises(SuiteError, match=r"tasks.tv.test_batch: expected an integer >= 1"):
        parse(HEAD + "[tasks.tv]\ngaps = [5]\ntest_batch = 0\n")
