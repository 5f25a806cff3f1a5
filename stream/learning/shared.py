"""The deployment-wide model: what every partition and worker learns from every viewer's positives.

One *delta* per finish or like applied anywhere: ``(source partition, offset, title, the
viewer's recent positives before it)``. A replica folds each delta into the shared trend
(:mod:`stream.learning.trend`) and the co-watch counts (:mod:`stream.learning.cowatch`),
once: a delta delivered again is recognised by its source partition and offset.

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

from stream.learning.cowatch import HALF_LIFE as COWATCH_HALF_LIFE
from stream.learning.cowatch import CoWatch
from stream.learning.trend import SharedTrend

__all__ = ["WINDOW", "SharedModel"]

#: Deltas a starting worker reads back: the co-watch counts' older ones weigh less than 2**-5 (the
#: trend's far less), so a replica is ready in seconds however long the deployment has run.
WINDOW = 5 * int(COWATCH_HALF_LIFE)


class SharedModel:
    def __init__(self) -> None:
        self.trend = SharedTrend()
        self.cowatch = CoWatch()

    @property
    def learned(self) -> int:
        """Deltas applied (each once)."""
        return self.trend.learned

    def apply(self, partition: int, offset: int, item: str, history: Sequence[str] = ()) -> bool:
        """Fold in one delta; False (and nothing changes) if it was applied before."""
        if not self.trend.apply(partition, offset, item):
            return False
        self.cowatch.learn(item, history)
        return True

    def learn(self, item: str, history: Sequence[str] = ()) -> None:
        """One more finish or like (no repeat check: for in-process use)."""
        self.trend.learn(item)
        self.cowatch.learn(item, history)
