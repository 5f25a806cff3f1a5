"""What the whole deployment likes right now: finishes and likes per title, decayed by count.

Every finish or like anywhere (any partition, any worker) is one *delta* ``(source partition,
offset, title)``. The counts decay with the number of deltas learned: a delta weighs half
after :data:`HALF_LIFE` more (kept as a growing unit, rescaled now and then), so the trend
follows what viewers like *now* however fast events come, and a delta :data:`WINDOW` deltas
old weighs less than one part in a million. That bounds what a replica needs: the last
:data:`WINDOW` deltas rebuild it, with no snapshot (a starting worker reads more, for the
co-watch counts: :data:`stream.learning.shared.WINDOW`).

A delta is applied once: one delivered again (a worker re-publishes what it learned before a
crash) is recognised by its source partition and offset among the last :data:`WINDOW`.

The feature (:meth:`SharedTrend.array`) is each title's count as a share of the top title's,
log-scaled (``log1p(1000 x share) / log1p(1000)``): the top titles at 1, a title liked a
thousandth as often still well above 0.

>>> t = SharedTrend()
>>> [t.apply(0, o, item) for o, item in enumerate(["a", "a", "b"])] + [t.apply(0, 1, "a")]
[True, True, True, False]
>>> [round(float(v), 2) for v in t.array(["a", "b", "c"])]
[1.0, 0.9, 0.0]
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence

import numpy as np

__all__ = ["HALF_LIFE", "WINDOW", "SharedTrend"]

#: Deltas after which one weighs half (the replay's trending baseline uses 1,000 positives too).
HALF_LIFE = 1000.0
#: Deltas a replica remembers (to recognise a repeat) and needs (older ones weigh < 2**-20).
WINDOW = 20 * int(HALF_LIFE)
#: The log scale of the feature: a title liked this much less often than the top one is at half.
_SCALE = 1000.0
_RESCALE = 2.0**40


class SharedTrend:
    def __init__(self, half_life: float = HALF_LIFE, window: int = WINDOW) -> None:
        self.half_life = half_life
        self.window = window
        self.counts: dict[str, float] = {}
        #: Deltas applied (each once).
        self.learned = 0
        self._unit = 1.0
        self._top = 0.0  # the largest count: counts only grow, but for a rescale that divides them all
        self._recent: deque[tuple[int, int]] = deque()
        self._seen: set[tuple[int, int]] = set()
        # The counts gathered along the last ``ids`` asked for (a catalog's id list), kept up to date
        # title by title: a ranking pass then pays one vectorised scaling, not a look-up per title.
        self._ids: tuple[int, int] | None = None  # (id of the list, its length)
        self._rows: dict[str, int] = {}
        self._gathered = np.zeros(0, dtype=np.float64)
        self._changed: set[str] = set()
        self._cache: tuple[int, np.ndarray] | None = None  # (learned, feature) for that list

    def apply(self, partition: int, offset: int, item: str) -> bool:
        """Fold in one delta; False (and nothing changes) if it was applied before."""
        key = (partition, offset)
        if key in self._seen:
            return False
        self._seen.add(key)
        self._recent.append(key)
        if len(self._recent) > self.window:
            self._seen.discard(self._recent.popleft())
        self.learn(item)
        return True

    def learn(self, item: str) -> None:
        """One more finish or like of ``item`` (no repeat check: for in-process use)."""
        self.learned += 1
        self._unit *= 2.0 ** (1.0 / self.half_life)
        if self._unit > _RESCALE:
            for k in self.counts:
                self.counts[k] /= self._unit
            self._top /= self._unit
            self._unit = 1.0
            self._ids = None  # every gathered count changed
        count = self.counts[item] = self.counts.get(item, 0.0) + self._unit
        self._top = max(self._top, count)
        self._changed.add(item)

    def array(self, ids: Sequence[str]) -> np.ndarray:
        """Per title of ``ids``: the log-scaled share of the top title's count (cached until the next delta)."""
        key = (id(ids), len(ids))
        if self._ids != key:
            counts = self.counts
            self._rows = {item: row for row, item in enumerate(ids)}
            self._gathered = np.fromiter((counts.get(i, 0.0) for i in ids), dtype=np.float64, count=len(ids))
            self._ids, self._cache = key, None
        elif self._changed:
            rows, gathered, counts = self._rows, self._gathered, self.counts
            for item in self._changed:
                row = rows.get(item)
                if row is not None:
                    gathered[row] = counts[item]
        self._changed.clear()
        if self._cache is not None and self._cache[0] == self.learned:
            return self._cache[1]
        share = self._gathered / self._top if self._top > 0 else self._gathered
        out = (np.log1p(share * _SCALE) / math.log1p(_SCALE)).astype(np.float32)
        self._cache = (self.learned, out)
        return out

    def share(self, item: str) -> float:
        return self.counts.get(item, 0.0) / self._top if self._top > 0 else 0.0
