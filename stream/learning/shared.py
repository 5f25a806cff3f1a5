"""The deployment-wide model: what every partition and worker learns from every viewer's positives.

One *delta* per finish or like applied anywhere: ``(source partition, offset, title, the
viewer's recent positives before it, the choice pairs)``. A replica folds each delta into
the shared trend (:mod:`stream.learning.trend`), the co-watch counts
(:mod:`stream.learning.cowatch`) and the choice learner (:mod:`stream.learning.choice`:
what the score's features are worth, learned from which titles viewers finish over those they
passed), once: a delta delivered again is recognised by its source partition and offset.
The model topic has one partition, so every replica applies the same deltas in the same
order: every worker ranks with the same weights, however many partitions feed them.

In a worker the deltas come back from the model topic, so every worker's replica learns
every partition's deltas (:mod:`stream.runtime.app`); offline, the processor learns them at
once (:meth:`SharedModel.learn`).

>>> m = SharedModel()
>>> [m.apply(0, 1, "b", ["a"]), m.apply(0, 1, "b", ["a"]), m.apply(3, 1, "c", ["b", "a"])]
[True, False, True]
>>> m.learned, sorted(m.cowatch.related(["a"]))
(2, ['b', 'c'])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from stream.learning.choice import Choice
from stream.learning.cowatch import HALF_LIFE as COWATCH_HALF_LIFE
from stream.learning.cowatch import CoWatch
from stream.learning.features import FEATURES
from stream.learning.trend import SharedTrend

__all__ = ["WINDOW", "Delta", "Pairs", "SharedModel", "delta_document", "delta_pairs"]

#: What a finish or like teaches the choice learner: the chosen title's features less each passed
#: title's (a row each, FEATURES order), and what the rest of the score gives each difference.
Pairs = tuple[np.ndarray, np.ndarray]

#: Deltas a starting worker reads back: the co-watch counts' older ones weigh less than 2**-5 (the
#: trend's far less), so a replica is ready in seconds however long the deployment has run.
WINDOW = 5 * int(COWATCH_HALF_LIFE)


class Delta(NamedTuple):
    """One finish or like a partition applied, as the deployment-wide model learns it."""

    offset: int  # the event's, in its partition
    item_id: str
    history: list[str]  # the viewer's recent positives before it, newest first
    pairs: Pairs | None  # what it teaches the choice learner (None: nothing)


def delta_document(partition: int, delta: Delta) -> dict[str, Any]:
    """A delta of ``partition`` as the model topic carries it (schemas/model-delta.json)."""
    doc: dict[str, Any] = {"partition": partition, "offset": delta.offset, "item_id": delta.item_id}
    if delta.history:
        doc["history"] = delta.history
    if delta.pairs is not None and len(delta.pairs[0]):
        diffs, offsets = delta.pairs
        doc["pairs"] = np.round(diffs, 4).tolist()
        doc["offsets"] = np.round(offsets, 4).tolist()
    return doc


def delta_pairs(doc: dict[str, Any]) -> Pairs | None:
    """The choice pairs of a delta's document (None: none); ValueError if they do not fit the features."""
    if "pairs" not in doc:
        return None
    diffs = np.asarray(doc["pairs"], dtype=np.float64)
    offsets = np.asarray(doc["offsets"], dtype=np.float64)
    if diffs.ndim != 2 or diffs.shape[1] != len(FEATURES) or offsets.shape != (len(diffs),):
        raise ValueError(f"pairs: expected rows of {len(FEATURES)} features and one offset per row")
    if not (np.isfinite(diffs).all() and np.isfinite(offsets).all()):
        raise ValueError("pairs: expected finite numbers")
    return diffs, offsets


class SharedModel:
    def __init__(self) -> None:
        self.trend = SharedTrend()
        self.cowatch = CoWatch()
        self.choice = Choice()

    @property
    def learned(self) -> int:
        """Deltas applied (each once)."""
        return self.trend.learned

    def apply(
        self, partition: int, offset: int, item: str, history: Sequence[str] = (), pairs: Pairs | None = None
    ) -> bool:
        """Fold in one delta; False (and nothing changes) if it was applied before."""
        if not self.trend.apply(partition, offset, item):
            return False
        self._learn_rest(item, history, pairs)
        return True

    def learn(self, item: str, history: Sequence[str] = (), pairs: Pairs | None = None) -> None:
        """One more finish or like (no repeat check: for in-process use)."""
        self.trend.learn(item)
        self._learn_rest(item, history, pairs)

    def _learn_rest(self, item: str, history: Sequence[str], pairs: Pairs | None) -> None:
        self.cowatch.learn(item, history)
        if pairs is not None and len(pairs[0]):
            self.choice.learn_many(*pairs)
