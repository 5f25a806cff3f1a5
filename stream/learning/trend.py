"""Decayed counts per title, shared by the deployment: what viewers like right now, and what they start.

The deployment's model (:mod:`stream.learning.shared`) keeps two: the *trend*, one count per
finish or like anywhere (any partition, any worker), and *popularity*, one per start. The
counts decay with the number learned: one weighs half after ``half_life`` more (kept as a
growing unit, rescaled now and then), so they follow what viewers do *now* however fast
events come. The trend's half-life is :data:`HALF_LIFE`; a count :data:`WINDOW` counts old
weighs less than one part in a million.

The feature (:meth:`SharedTrend.array`) is each title's count as a share of the top title's,
log-scaled (``log1p(1000 x share) / log1p(1000)``): the top titles at 1, a title counted a
thousandth as often still well above 0.

The trend also draws titles in proportion to their counts (:meth:`SharedTrend.draw`), in O(1):
a count is the sum of ``2 ** (-age / half_life)`` over the title's positives, so drawing one
of the last 20 half-lives of positives with that weight by its age and taking its title draws
titles by count (but for the counts older than that, which weigh less than 2**-20). The choice
learner draws the titles a chosen one competed with this way (:mod:`stream.learning.choice`).

>>> t = SharedTrend()
>>> for item in ["a", "a", "b"]:
...     t.learn(item)
>>> [round(float(v), 2) for v in t.array(["a", "b", "c"])]
[1.0, 0.9, 0.0]
>>> round(t.probability("a"), 2), t.probability("c")
(0.67, 0.0)
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["HALF_LIFE", "WINDOW", "SharedTrend"]

#: Finishes and likes after which one weighs half in the trend (the replay's trending baseline uses
#: 1,000 positives too).
HALF_LIFE = 1000.0
#: Counts after which one weighs less than 2**-20 in the trend.
WINDOW = 20 * int(HALF_LIFE)
#: The trend's log scale: a title liked this much less often than the top one is at half.
_SCALE = 1000.0
_RESCALE = 2.0**40
#: Fewer rows than this asked for between counts are scaled alone.
FEW = 2000


class SharedTrend:
    """``scale``: the feature is ``log1p(scale x share) / log1p(scale)``; None: ``log1p(count) /
    log1p(top count)``, the decayed counts themselves log-scaled (a title counted once is near 0
    however few the counts are)."""

    def __init__(self, half_life: float = HALF_LIFE, scale: float | None = _SCALE) -> None:
        self.half_life = half_life
        self.scale = scale
        self.counts: dict[str, float] = {}
        #: The sum of the counts.
        self.total = 0.0
        #: The titles of the last positives, oldest first: what :meth:`draw` draws from.
        self.recent: deque[str] = deque(maxlen=20 * int(half_life))
        #: Counts learned.
        self.learned = 0
        self._unit = 1.0
        self._top = 0.0  # the largest count: counts only grow, but for a rescale that divides them all
        # The counts gathered along the last ``ids`` asked for (a catalog's id list), kept up to date
        # title by title: a ranking pass then pays one vectorised scaling, not a look-up per title.
        self._ids: tuple[int, int] | None = None  # (id of the list, its length)
        self._rows: dict[str, int] = {}
        self._gathered = np.zeros(0, dtype=np.float64)
        self._changed: set[str] = set()
        self._cache: tuple[int, np.ndarray] | None = None  # (learned, feature) for that list

    def learn(self, item: str) -> None:
        """Count ``item`` once more."""
        self.learned += 1
        self._unit *= 2.0 ** (1.0 / self.half_life)
        if self._unit > _RESCALE:
            for k in self.counts:
                self.counts[k] /= self._unit
            self._top /= self._unit
            self.total /= self._unit
            self._unit = 1.0
            self._ids = None  # every gathered count changed
        count = self.counts[item] = self.counts.get(item, 0.0) + self._unit
        self.total += self._unit
        self._top = max(self._top, count)
        self._changed.add(item)
        self.recent.append(item)

    def draw(self, rng: random.Random) -> str | None:
        """A title drawn with :meth:`probability` (but for counts older than the window's), None before any."""
        n = len(self.recent)
        if not n:
            return None
        # an age k < n with weight r ** k (r = 2 ** (-1 / half_life)): the inverse of its distribution
        r = 2.0 ** (-1.0 / self.half_life)
        k = int(math.log1p(-rng.random() * (1.0 - r**n)) / math.log(r))
        return self.recent[n - 1 - min(k, n - 1)]

    def probability(self, item: str) -> float:
        """``item``'s share of all the counts: how likely :meth:`draw` is to draw it."""
        return self.counts.get(item, 0.0) / self.total if self.total > 0 else 0.0

    def array(self, ids: Sequence[str], rows: np.ndarray | None = None) -> np.ndarray:
        """Per title of ``ids`` (of its ``rows`` only, if given): the feature (cached until the next count;
        a few rows asked for between counts are scaled alone, not the whole catalog)."""
        key = (id(ids), len(ids))
        if self._ids != key:
            counts = self.counts
            self._rows = {item: row for row, item in enumerate(ids)}
            self._gathered = np.fromiter((counts.get(i, 0.0) for i in ids), dtype=np.float64, count=len(ids))
            self._ids, self._cache = key, None
        elif self._changed:
            index, gathered, counts = self._rows, self._gathered, self.counts
            for item in self._changed:
                row = index.get(item)
                if row is not None:
                    gathered[row] = counts[item]
        self._changed.clear()
        if self._cache is not None and self._cache[0] == self.learned:
            return self._cache[1] if rows is None else self._cache[1][rows]
        if rows is not None and len(rows) < FEW:
            return self._scaled(self._gathered[rows])
        out = self._scaled(self._gathered)
        self._cache = (self.learned, out)
        if rows is not None:
            return out[rows]
        return out

    def _scaled(self, gathered: np.ndarray) -> np.ndarray:
        """The feature of stored counts."""
        if self._top <= 0:
            return np.zeros(len(gathered), dtype=np.float32)
        if self.scale is None:
            unit = self._unit
            return (np.log1p(gathered / unit) / math.log1p(self._top / unit)).astype(np.float32)
        return (np.log1p(gathered / self._top * self.scale) / math.log1p(self.scale)).astype(np.float32)

    def value(self, item: str, less: float = 0.0) -> float:
        """The feature of ``item`` (as :meth:`array` gives it) with ``less`` of its most recent counts taken out."""
        stored = max(0.0, self.counts.get(item, 0.0) - less * self._unit)
        return float(self._scaled(np.asarray([stored]))[0])

    def share(self, item: str) -> float:
        return self.counts.get(item, 0.0) / self._top if self._top > 0 else 0.0

    def to_state(self) -> dict[str, Any]:
        """The counts exactly as they are (JSON; it refers to the live counts: serialise it at once)."""
        return {
            "half_life": self.half_life, "scale": self.scale, "counts": self.counts, "total": self.total,
            "recent": list(self.recent), "learned": self.learned, "unit": self._unit, "top": self._top,
        }  # fmt: skip

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> SharedTrend:
        scale = state["scale"]
        trend = cls(float(state["half_life"]), None if scale is None else float(scale))
        trend.counts = {str(k): float(v) for k, v in state["counts"].items()}
        trend.total, trend._unit, trend._top = float(state["total"]), float(state["unit"]), float(state["top"])
        trend.recent.extend(str(i) for i in state["recent"])
        trend.learned = int(state["learned"])
        return trend
