"""Suite files: a declarative TOML grid of runs, checked strictly and expanded to RunSpecs.

A suite (``suites/<name>.toml``, format in ``suites/README.md``) names cells × tasks × gaps
× seeds × learning rates × hidden sizes, the training budget and the evaluation protocol::

    suite = load_suite("suites/why_gates.toml")
    suite.specs      # every RunSpec, in a fixed order (see ``Suite``)
    suite.groups()   # the specs that share shapes, i.e. can train as one ensemble

Suites are written by hand, so every mistake in one is reported as exactly one
``SuiteError`` whose message is a single line: the file, the key path inside it
(``tasks.copy.gaps[2]``), what is wrong and what is allowed, with the closest known name
where a name is unknown. Nothing is silently ignored or coerced: an unknown key, ``true``
for a number or ``2000.0`` for a step count is an error, because a typo that quietly falls
back to a default produces a sweep that looks right and measures something else.
"""

from __future__ import annotations

import difflib
import json
import math
import numbers
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ablate import cells, tasks
from ablate.results import DTYPES, RunSpec

PROTOCOLS = ("best_lr", "pooled")

TOP_KEYS = ("description", "cells", "seeds", "learning_rates", "hidden_sizes", "training",
            "evaluation", "tasks")
TRAINING_KEYS = ("budget", "batch_size", "eval_every", "clip", "dtype", "forget_bias",
                 "solve_patience")  # = RunSpec fields; forget_bias only reaches cells with f
EVALUATION_KEYS = {"protocol": None, "validation_batch": "eval_batch",
                   "test_batch": "test_batch", "seed": "eval_seed"}  # suite key -> RunSpec field
AXIS_KEYS = ("cells", "seeds", "learning_rates", "hidden_sizes")
TASK_EVALUATION_KEYS = ("validation_batch", "test_batch")  # may differ per task
TASK_KEYS = ("gaps", "options") + TRAINING_KEYS + TASK_EVALUATION_KEYS + AXIS_KEYS
DEFAULT_HIDDEN_SIZES = [32]


class SuiteError(ValueError):
    """A mistake in a suite; the message is one line: ``<file>: <key path>: <problem>``."""


class _Bad(Exception):
    """A mistake found at ``key`` (a key path, "" for the top level); the file is added later."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(key, problem)
        self.key, self.problem = key, problem


@dataclass(frozen=True)
class Suite:
    """A loaded suite. ``specs`` is ordered by task (file order), then gap, cell (the suite's
    order), hidden size, learning rate and seed, each axis in the order the file lists it."""

    name: str  # the file stem, e.g. "why_gates"
    path: Path
    description: str
    protocol: str  # "best_lr" or "pooled" (see PROTOCOLS and suites/README.md)
    specs: tuple[RunSpec, ...]
    text: str  # the TOML source, verbatim (stored with the results)

    def groups(self) -> list[list[RunSpec]]:
        """The specs grouped by ``RunSpec.shape_key()``, groups in order of first appearance."""
        groups: dict[tuple, list[RunSpec]] = {}
        for spec in self.specs:
            groups.setdefault(spec.shape_key(), []).append(spec)
        return list(groups.values())


def load_suite(path: str | Path) -> Suite:
    """Read and check the suite file at ``path``; any mistake raises one SuiteError."""
    path = Path(path)
    if path.is_dir():
        raise SuiteError(f"{path}: is a directory, not a suite file{_suites_in(path, '')}")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        others = _suites_in(path.parent, path.name)
        raise SuiteError(f"{path}: no such suite file{others}") from None
    except UnicodeDecodeError as error:
        raise SuiteError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    except OSError as error:
        raise SuiteError(f"{path}: cannot read it ({error.strerror or error})") from None
    return parse_suite(text, path.stem, path)


def parse_suite(text: str, name: str, path: Path | None = None) -> Suite:
    """The suite in ``text``, called ``name``; errors name ``path`` (default ``<name>.toml``)."""
    path = Path(path) if path is not None else Path(f"{name}.toml")
    try:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise _Bad("", f"invalid TOML: {error}") from None
        description, protocol, specs = _read(data)
    except _Bad as bad:
        where = f"{bad.key}: " if bad.key else ""
        raise SuiteError(_one_line(f"{path}: {where}{bad.problem}")) from None
    return Suite(name=name, path=path, description=description, protocol=protocol,
                 specs=specs, text=text)


# --------------------------------------------------------------------------- the file


_REQUIRED_WHY = {
    "cells": "a list of cells, e.g. cells = [\"lstm\", \"gru\"]",
    "seeds": "seeds: a count (seeds = 3 means 0, 1, 2) or a list of seeds",
    "learning_rates": "a list of learning rates, e.g. learning_rates = [1e-2, 3e-3]",
    "tasks": f"at least one table [tasks.<name>]; allowed: {', '.join(tasks.names())}",
}


def _read(data: dict) -> tuple[str, str, tuple[RunSpec, ...]]:
    """(description, protocol, specs) of a decoded suite; raises _Bad."""
    _check_keys(data, "", TOP_KEYS)
    for key in ("cells", "seeds", "learning_rates", "tasks"):
        if key not in data:
            raise _Bad(key, f"missing; every suite needs {_REQUIRED_WHY[key]}")
    description = data.get("description", "")
    if not isinstance(description, str) or "\n" in description:
        raise _Bad("description", f"expected one line of text, got {_got(description)}")
    axes = {key: _AXES[key](data[key], key) for key in AXIS_KEYS if key in data}
    axes.setdefault("hidden_sizes", DEFAULT_HIDDEN_SIZES)

    training = _table(data.get("training", {}), "training", TRAINING_KEYS)
    training = {key: _TRAINING[key](value, f"training.{key}") for key, value in training.items()}

    evaluation = _table(data.get("evaluation", {}), "evaluation", tuple(EVALUATION_KEYS))
    protocol = _name(evaluation.pop("protocol", "best_lr"), "evaluation.protocol", "protocol",
                     PROTOCOLS)
    shared = {EVALUATION_KEYS[key]: _integer(value, f"evaluation.{key}", 0 if key == "seed" else 1)
              for key, value in evaluation.items()}

    task_tables = data["tasks"]
    if not isinstance(task_tables, dict):
        raise _Bad("tasks", f"expected tables [tasks.<name>], got {_got(task_tables)}")
    if not task_tables:
        raise _Bad("tasks", f"no tasks; add a table [tasks.<name>]; allowed: {_known_tasks()}")
    specs = []
    for task_name, table in task_tables.items():
        specs += _task_specs(task_name, table, axes, {**shared, **training})
    return description, protocol, tuple(specs)


def _task_specs(name: str, table: Any, axes: dict, fields: dict) -> list[RunSpec]:
    """The RunSpecs of one [tasks.<name>] table; ``axes`` and ``fields`` are the file's."""
    where = f"tasks.{name}"
    if name not in tasks.names():
        raise _Bad(where, f"unknown task {name!r}{_hint(name, tasks.names())}; "
                          f"allowed: {_known_tasks()}")
    table = _table(table, where, TASK_KEYS)
    options = _table(table.get("options", {}), f"{where}.options",
                     tuple(tasks.TASKS[name].options_spec), what="option")
    try:
        task = tasks.get(name, **options)
    except (ValueError, TypeError) as error:  # a bad value or combination: the task's words
        raise _Bad(f"{where}.options", str(error)) from None
    if "gaps" not in table:
        raise _Bad(f"{where}.gaps", "missing; every task needs a list of gaps, e.g. [10, 100]")
    gaps = _distinct_list(table["gaps"], f"{where}.gaps", "gaps", lambda v, w: _gap(task, v, w))
    # a key in the task table replaces the file-level value for this task only
    axes = {**axes, **{key: _AXES[key](table[key], f"{where}.{key}")
                       for key in AXIS_KEYS if key in table}}
    fields = {**fields, **{key: _TRAINING[key](table[key], f"{where}.{key}")
                           for key in TRAINING_KEYS if key in table},
              **{EVALUATION_KEYS[key]: _integer(table[key], f"{where}.{key}", 1)
                 for key in TASK_EVALUATION_KEYS if key in table}}
    specs = []
    for gap in gaps:
        for cell in axes["cells"]:
            # a suite-wide forget_bias concerns the cells that have a forget gate only
            cell_fields = fields if "f" in cells.get(cell).gates else {
                key: value for key, value in fields.items() if key != "forget_bias"}
            for n_hidden in axes["hidden_sizes"]:
                for lr in axes["learning_rates"]:
                    for seed in axes["seeds"]:
                        try:
                            specs.append(RunSpec(cell=cell, task=name, gap=gap, seed=seed, lr=lr,
                                                 n_hidden=n_hidden, task_options=options,
                                                 **cell_fields))
                        except ValueError as error:  # not caught above: say which run
                            raise _Bad(where, f"run cell={cell} gap={gap} h={n_hidden} lr={lr:g}"
                                              f" seed={seed}: {error}") from None
    return specs


# ------------------------------------------------------------------- values and lists


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _gap(task: tasks.Task, value: Any, where: str) -> int:
    if not _is_int(value):
        raise _Bad(where, f"expected an integer gap, got {_got(value)}")
    try:
        return task.check_gap(value)
    except ValueError as error:  # the task's own rule, without repeating the value
        reason = str(error).removesuffix(f", got {value!r}")
        raise _Bad(where, f"{value} is not a valid gap ({reason})") from None


def _integer(value: Any, where: str, minimum: int) -> int:
    # TOML `true` is a Python int and `2000.0` a float: both are refused, never coerced
    if not _is_int(value) or value < minimum:
        raise _Bad(where, f"expected an integer >= {minimum}, got {_got(value)}")
    return int(value)


def _number(value: Any, where: str, minimum: float | None, inclusive: bool = True) -> float:
    """``value`` as a float if it is a finite number above ``minimum`` (None: any)."""
    if minimum is None:
        low, too_low = "", False
    else:
        low = f" >= {minimum:g}" if inclusive else f" > {minimum:g}"
        too_low = _is_real(value) and (value < minimum or (value == minimum and not inclusive))
    if not _is_real(value) or not math.isfinite(value) or too_low:
        raise _Bad(where, f"expected a finite number{low}, got {_got(value)}")
    return float(value)


def _name(value: Any, where: str, what: str, known) -> str:
    """``value`` if it is one of the ``known`` names of a ``what`` (cell, dtype, protocol)."""
    allowed = ", ".join(known)
    if not isinstance(value, str):
        raise _Bad(where, f"expected a {what} name, got {_got(value)}; allowed: {allowed}")
    if value not in known:
        raise _Bad(where, f"unknown {what} {value!r}{_hint(value, known)}; allowed: {allowed}")
    return value


def _seeds(value: Any, where: str) -> list[int]:
    if _is_int(value) and value >= 1:
        return list(range(value))
    if not isinstance(value, list):
        raise _Bad(where, "expected a count n >= 1 (seeds 0..n-1) or a non-empty list of "
                          f"distinct integers >= 0, got {_got(value)}")
    return _distinct_list(value, where, "seeds", lambda v, w: _integer(v, w, 0))


def _distinct_list(value: Any, where: str, what: str, check) -> list:
    """A non-empty list without repeats whose items pass ``check(item, key path)``."""
    if not isinstance(value, list):
        wrap = f"; write [{_show(value)}]" if not isinstance(value, dict | list) else ""
        raise _Bad(where, f"expected a non-empty list of {what}, got {_got(value)}{wrap}")
    if not value:
        raise _Bad(where, f"empty list; expected a non-empty list of {what}")
    items: list = []
    for index, item in enumerate(value):
        item = check(item, f"{where}[{index}]")
        if item in items:
            first = items.index(item)
            raise _Bad(f"{where}[{index}]", f"{_show(item)} repeats {where}[{first}]; "
                                             "each value may appear once")
        items.append(item)
    return items


_AXES = {
    "cells": lambda value, where: _distinct_list(
        value, where, "cells", lambda v, w: _name(v, w, "cell", cells.names())),
    "seeds": _seeds,
    "learning_rates": lambda value, where: _distinct_list(
        value, where, "learning rates", lambda v, w: _number(v, w, 0, inclusive=False)),
    "hidden_sizes": lambda value, where: _distinct_list(
        value, where, "hidden sizes", lambda v, w: _integer(v, w, 1)),
}
_TRAINING = {
    "budget": lambda value, where: _integer(value, where, 1),
    "batch_size": lambda value, where: _integer(value, where, 1),
    "eval_every": lambda value, where: _integer(value, where, 1),
    "clip": lambda value, where: _number(value, where, 0, inclusive=True),
    "dtype": lambda value, where: _name(value, where, "dtype", DTYPES),
    "forget_bias": lambda value, where: _number(value, where, None),
    "solve_patience": lambda value, where: _integer(value, where, 1),
}


# ------------------------------------------------------------------------- messages


def _table(value: Any, where: str, allowed: tuple[str, ...], what: str = "key") -> dict:
    """``value`` as a dict (copied) after checking it is a table with only ``allowed`` keys."""
    if not isinstance(value, dict):
        raise _Bad(where, f"expected a table ([{where}] or {{ ... }}), got {_got(value)}")
    _check_keys(value, where, allowed, what)
    return dict(value)


def _check_keys(table: dict, where: str, allowed: tuple[str, ...], what: str = "key") -> None:
    for key in table:
        if key not in allowed:
            listed = ", ".join(sorted(allowed)) or "none"
            hint = _hint(key, allowed)
            if where and not hint and key in TOP_KEYS:  # TOML puts keys after [x] inside x
                hint = f" (top-level keys go above the first [table], not in [{where}])"
            raise _Bad(where, f"unknown {what} {key!r}{hint}; allowed: {listed}")


def _hint(name: Any, known) -> str:
    close = difflib.get_close_matches(str(name), list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _known_tasks() -> str:
    return ", ".join(tasks.names())


def _suites_in(folder: Path, name: str) -> str:
    """"; did you mean ...; suites there: ..." for a suite file that was not found."""
    found = sorted(p.name for p in folder.glob("*.toml")) if folder.is_dir() else []
    if not found:
        return ""
    return f"{_hint(name, found) if name else ''}; suites in {folder}: {', '.join(found)}"


def _kind(value: Any) -> str:
    for kind, name in ((bool, "a boolean"), (int, "an integer"), (float, "a float"),
                       (str, "a string"), (list, "a list"), (dict, "a table")):
        if isinstance(value, kind):
            return name
    return "a date/time"  # the only other TOML value


def _show(value: Any) -> str:
    """``value`` as TOML spells it (true, "text"), shortened to one short line."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float | int):
        return repr(value)
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _got(value: Any) -> str:
    return f"{_show(value)} ({_kind(value)})"


def _one_line(message: str) -> str:
    return " ".join(message.split())
