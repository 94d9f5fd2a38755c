"""Continual TV: ``tv`` episodes back to back with no state reset (after Gers et al. 2000).

Gers, Schmidhuber & Cummins 2000 ("Learning to forget") fed the embedded Reber grammar as one
endless stream: with no external reset, a cell must learn to overwrite what it no longer
needs. Here the stream is ``tv`` episodes (see ``ablate.tasks.tv`` for the symbols and the
episode layout, T_episode = max_prefix + gap + 2) concatenated with nothing in between: each
new cue animal overrides the last, and every episode's canine query is a target.

Training streams hold ``n_episodes`` episodes; validation and test streams hold
``eval_episodes`` (more), so evaluation runs longer than any training stream:
    T = n_episodes · (max_prefix + gap + 2)      stream "train"
    T = eval_episodes · (max_prefix + gap + 2)   streams "validation", "test"

Worked example, defaults, gap = 2, max_prefix = 1 (T_episode = 5), n_episodes = 3:

    step    0    1    2    3       4  | 5     6  7  8       9  | 10 11    12 13  14
    x       bear u    n3   canine  u  | gold  u  u  canine  n1 | u  bear  u  n2  canine
    target  wolf at 3, dog at 8, wolf at 14 (mask 1 there only)

Metric: accuracy over the late episodes, those with index >= n_episodes (beyond the longest
training stream), on a stream longer than n_episodes; on a stream no longer than that (a
training batch), over all its episodes. Chance: 1/n_classes; chance loss ln n_classes.
Solved: >= 99% accuracy over the late episodes of the longer evaluation streams.
"""

from __future__ import annotations

import numpy as np

from ablate.tasks.task import Batch, Option, integer_at_least, masked_accuracy
from ablate.tasks.tv import TV, TV_OPTIONS


class Continual(TV):
    name = "continual"
    metric_name = "accuracy over episodes beyond the training length"
    options_spec = {
        **TV_OPTIONS,
        "n_episodes": Option(8, integer_at_least(1), "an integer >= 1"),
        "eval_episodes": Option(32, integer_at_least(2), "an integer > n_episodes"),
    }

    def _check_options(self) -> None:
        if self.options["eval_episodes"] <= self.options["n_episodes"]:
            raise ValueError(
                f"{self.name}: option eval_episodes must be an integer > n_episodes "
                f"({self.options['n_episodes']}), got {self.options['eval_episodes']!r}"
            )

    def episodes(self, stream: str) -> int:
        """Episodes per stream: n_episodes to train on, eval_episodes to evaluate on."""
        return self.options["n_episodes" if stream == "train" else "eval_episodes"]

    def metric(self, y: np.ndarray, batch: Batch) -> float:
        return masked_accuracy(self.check_output(y, batch), batch, where=self._late(batch))

    def scored(self, batch: Batch) -> int:
        return int(np.count_nonzero(self._late(batch)))

    def _late(self, batch: Batch) -> np.ndarray:
        """The queries scored: those of episodes beyond the training length, where a batch
        has any (a test stream), else every query."""
        n_train = self.options["n_episodes"]
        # the k-th masked step of a sequence is the query of its episode k
        episode = np.cumsum(batch.mask, axis=0) - 1
        return batch.mask * (episode >= n_train) if episode.max() >= n_train else batch.mask
