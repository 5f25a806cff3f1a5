"""Content velocity: what is catching on right now, and a budget for trying new releases.

:class:`Trending` counts, per title, what viewers did with it in tumbling
event-time windows of ``WINDOW_MS`` (starts and finishes up, early skips and
thumbs-down down, by more than their start), keeps the last ``WINDOWS`` of them, and weighs each window
by its age (halving per window). A title that catches on rises within a window
or two; one that viewers start and abandon falls as fast.

:class:`Exploration` gives every new release (out for less than
``NEW_DAYS``) a bounded number of impressions per cohort in an exploration
slot, so it is tried across viewer segments before it has any plays; once the
budget is spent it stands on its own score, which by then includes what its
plays and skips taught popularity and trending.

>>> t = Trending()
>>> for n in range(5):
...     t.record("hit", 1_767_225_600_000 + n, 1.0)
>>> t.record("flop", 1_767_225_600_000, 1.0); t.record("flop", 1_767_225_600_001, -2.0)
>>> t.of("hit") == 1.0, t.of("flop") < 0
(True, True)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["NEW_DAYS", "WINDOWS", "WINDOW_MS", "Exploration", "Trending"]

WINDOW_MS = 10 * 60_000
WINDOWS = 6
#: A title released less than this many days ago is a new release.
NEW_DAYS = 7.0
#: Longest the normalised trending values are reused while new counts arrive.
REFRESH_S = 0.5
#: Titles kept per closed window (the most active).
WINDOW_CAP = 500
#: Explored titles remembered per model (the oldest entries go first).
EXPLORED_CAP = 4000


class Trending:
    def __init__(self) -> None:
        #: window start (epoch ms) -> title -> net activity in that window.
        self.windows: dict[int, dict[str, float]] = {}
        self.newest = 0
        self._values: dict[str, float] | None = None
        self._at = 0.0
        self._array: tuple[int, int, np.ndarray] | None = None
        self._version = 0
        self._dirty = False
        self._rows: dict[str, int] = {}  # row of each title of the id list last ranked
        self._rows_of = 0  # which list (its id)
        #: Longest the values are reused while new counts arrive (0: always current).
        self.refresh_s = REFRESH_S
        #: Seconds, for ``refresh_s``: the wall clock in a worker; an offline replay gives one that counts
        #: its events, so what it measures does not depend on how fast the machine runs it.
        self.clock: Callable[[], float] = time.monotonic

    def record(self, item_id: str, ts: int, value: float) -> None:
        """Add ``value`` (+1 a start or finish, -3 an early skip) to the title's window of ``ts``."""
        start = ts - ts % WINDOW_MS
        if start <= self.newest - WINDOWS * WINDOW_MS:
            return  # older than every window kept
        if start > self.newest:
            self.newest = start
            for old in [w for w in self.windows if w <= start - WINDOWS * WINDOW_MS]:
                del self.windows[old]
            for closed in self.windows.values():
                if len(closed) > WINDOW_CAP:
                    keep = sorted(closed.items(), key=lambda kv: -abs(kv[1]))[:WINDOW_CAP]
                    closed.clear()
                    closed.update(keep)
        window = self.windows.setdefault(start, {})
        window[item_id] = window.get(item_id, 0.0) + value
        self._dirty = True

    def values(self) -> dict[str, float]:
        """Each active title's trend, -1..1: signed, log-scaled, weighed by window age."""
        if self._values is not None and not (self._dirty and self.clock() - self._at >= self.refresh_s):
            return self._values
        net: dict[str, float] = {}
        for start, window in self.windows.items():
            weight = 0.5 ** ((self.newest - start) / WINDOW_MS)
            for item, value in window.items():
                net[item] = net.get(item, 0.0) + weight * value
        top = max((abs(v) for v in net.values()), default=0.0)
        scale = math.log1p(top) if top > 0 else 1.0
        self._values = {i: math.copysign(math.log1p(abs(v)) / scale, v) for i, v in net.items() if v}
        self._at = self.clock()
        self._dirty = False
        self._version += 1
        return self._values

    def of(self, item_id: str) -> float:
        return self.values().get(item_id, 0.0)

    # -- River's protocol: x names the title (and, to learn, the event time) --------

    def learn_one(self, x: dict[str, Any], y: float) -> None:
        """:meth:`record` ``y`` for ``x["item_id"]`` at ``x["ts"]``."""
        self.record(str(x["item_id"]), int(x["ts"]), float(y))

    def predict_one(self, x: dict[str, Any]) -> float:
        """The trend of ``x["item_id"]``, -1..1 (:meth:`values`); changes nothing the state holds."""
        return self.of(str(x["item_id"]))

    def array(self, ids: list[str]) -> np.ndarray:
        """:meth:`values` by catalog row (``ids``: the catalog's title id per row, a list that only grows)."""
        values = self.values()
        cached = self._array
        if cached is not None and cached[0] == self._version and cached[1] == len(ids):
            return cached[2]
        out = np.zeros(len(ids), dtype=np.float32)
        if values:
            rows = self._index(ids)
            for item, value in values.items():
                row = rows.get(item)
                if row is not None:
                    out[row] = value
        self._array = (self._version, len(ids), out)
        return out

    def _index(self, ids: list[str]) -> dict[str, int]:
        """The row of each title of ``ids``, kept from call to call: only rows appended since are added
        (a pass over a 100,000-title catalog at every refresh cost 57 ms)."""
        rows, known = self._rows, len(self._rows)
        if self._rows_of != id(ids) or known > len(ids) or (known and rows.get(ids[known - 1]) != known - 1):
            rows = self._rows = {}
            self._rows_of = id(ids)
        if len(rows) < len(ids):
            rows.update((ids[row], row) for row in range(len(rows), len(ids)))
        return rows

    def to_state(self) -> dict[str, Any]:
        return {
            "newest": self.newest,
            "windows": {str(w): vs for w, vs in self.windows.items()},
        }

    @classmethod
    def from_state(cls, state: dict[str, Any] | None) -> Trending:
        trending = cls()
        if state:
            trending.newest = state["newest"]
            trending.windows = {int(w): {str(i): float(v) for i, v in vs.items()} for w, vs in state["windows"].items()}
        return trending


class Exploration:
    """Impressions each new release had in exploration slots, per cohort."""

    def __init__(self) -> None:
        self.shown: dict[str, int] = {}  # "cohort|item_id" -> impressions

    def left(self, cohort: int, item_id: str, budget: int, pending: int = 0) -> bool:
        """Whether ``item_id`` has impressions left in ``cohort`` (``pending``: more not yet spent here)."""
        return self.shown.get(f"{cohort}|{item_id}", 0) + pending < budget

    def spend(self, cohort: int, item_id: str) -> None:
        key = f"{cohort}|{item_id}"
        self.shown[key] = self.shown.pop(key, 0) + 1  # re-inserted: the oldest entries are the stalest
        if len(self.shown) > EXPLORED_CAP:
            for stale in list(self.shown)[: len(self.shown) - EXPLORED_CAP]:
                del self.shown[stale]

    def to_state(self) -> dict[str, int]:
        return dict(self.shown)

    @classmethod
    def from_state(cls, state: dict[str, int]) -> Exploration:
        exploration = cls()
        exploration.shown = {str(k): int(n) for k, n in state.items()}  # in order: the oldest first
        return exploration
