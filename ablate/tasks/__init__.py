"""Synthetic memory tasks, each with a ``gap`` knob; registered by name.

    task = ablate.tasks.get("copy", **options)
    batch = task.batch(gap=100, batch_size=64, seed=0, stream="train", index=0)
    batch.x [T,B,I] float32, batch.target, batch.mask [T,B] float32
    task.metric(y, batch) -> fraction right;  task.solved(value) -> at least 99% right
    task.scored(batch) -> the independent trials the metric rests on (sequences);
    task.surely_solved(value, scored) -> 99% at 95% confidence (the early stop)
    task.chance(gap), task.chance_loss(gap): what an input-blind predictor scores

One file per task; its docstring gives the definition, its source, a worked example, the
chance level and the solved criterion. ``ablate/tasks/task.py`` holds the common interface.
"""

from __future__ import annotations

import difflib
from typing import Any

from ablate.tasks.adding import Adding
from ablate.tasks.continual import Continual
from ablate.tasks.copy import Copy
from ablate.tasks.mqar import MQAR
from ablate.tasks.task import Annotation, Batch, Task
from ablate.tasks.temporal_order import TemporalOrder
from ablate.tasks.timing import Timing
from ablate.tasks.tv import TV

TASKS: dict[str, type[Task]] = {
    cls.name: cls for cls in (Copy, Adding, TemporalOrder, TV, Continual, Timing, MQAR)
}

__all__ = ["Annotation", "Batch", "Task", "TASKS", "get", "names"]


def names() -> tuple[str, ...]:
    """The registered task names, in the order of DESIGN.md §4."""
    return tuple(TASKS)


def get(name: str, **options: Any) -> Task:
    """The task ``name`` with its options; unknown names and options raise ValueError."""
    if name not in TASKS:
        close = difflib.get_close_matches(str(name), TASKS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown task {name!r}{hint} known tasks: {', '.join(TASKS)}")
    return TASKS[name](**options)
