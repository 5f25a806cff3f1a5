"""What viewers watch together: item-to-item co-occurrence of positive outcomes, learned per event.

Every finish or like of a title ``i`` by a viewer whose recent positives were ``h1, h2, ...``
(newest first) is one *delta*: ``i`` follows each ``h`` (weight 1, less the further back ``h``
is: :data:`RECENCY` per step) and goes with it the other way round (:data:`BACK` of that).
Counts decay with the number of deltas learned (a half-life of :data:`HALF_LIFE` deltas, kept
as a growing unit, like popularity). Each title keeps only its :data:`KEEP` largest co-counts
(pruned when it has twice as many), so a replica stays small. (Pruning by the normalised
score instead keeps rare titles seen together once: on MovieTweetings HR@10 fell from 0.168 to
0.115.)

A viewer's *co-watch* feature for a title ``c`` is ``sum_h r(h) co[h][c] / sqrt(count[c])``
over its recent positives ``h`` (``r``: the recency weight), as a share of its best title's
(0 to 1: comparable across viewers, like the other features); the ``h`` that gave ``c`` most
is what the reason names ("because you finished Night Shift"). Offline (prequential, seen
titles excluded) on MovieTweetings this alone gave HR@10 0.168 where a most-popular list
gave 0.142 (with a recency weight of 0.8).

Deltas are what a deployment shares: in a worker they come back from the model topic and
every worker folds the same ones (:mod:`stream.learning.shared`).

>>> cw = CoWatch()
>>> cw.learn("b", ["a"]); cw.learn("c", ["a"]); cw.learn("b", ["x"])
>>> {c: (round(v, 2), h) for c, (v, h) in sorted(cw.related(["a"]).items())}  # b goes with more: it counts less
{'b': (0.71, 'a'), 'c': (1.0, 'a')}
"""

from __future__ import annotations

import itertools
import math
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["BACK", "HALF_LIFE", "HISTORY", "KEEP", "RECENCY", "CoWatch"]

#: Deltas after which a co-count weighs half.
HALF_LIFE = 20_000.0
#: Neighbours each title keeps (pruned back to this when twice as many).
KEEP = 40
#: How much a positive one further back in the viewer's history counts. What a viewer liked last
#: says most about what it likes next: on the real sessions log of the README (read-judged HR@10),
#: 0.9 gave 0.175, 0.8 0.1815, 0.7 0.1855, 0.6 0.1868, 0.5 0.1857, 0.4 0.1841.
RECENCY = 0.6
#: "Goes with" the other way round weighs this much of "follows".
BACK = 0.5
#: Most recent positives a delta carries and a viewer's feature reads.
HISTORY = 10
_RESCALE = 2.0**40
#: Histories whose related titles are remembered between two deltas.
_MEMO = 4096


class CoWatch:
    def __init__(self, half_life: float = HALF_LIFE, keep: int = KEEP) -> None:
        self.half_life = half_life
        self.keep = keep
        #: title -> its neighbours' co-counts (in the current unit)
        self.co: dict[str, dict[str, float]] = {}
        #: title -> its count of positives (in the current unit)
        self.count: dict[str, float] = {}
        #: Deltas learned.
        self.learned = 0
        self._unit = 1.0
        # related() by history, while no delta changes the counts: a viewer's events between two of
        # its positives (plays, pauses, seeks) read the same titles, as do its list and its learning
        self._memo: dict[tuple[str, ...], dict[str, tuple[float, str]]] = {}
        self._memo_at = 0

    def learn(self, item: str, history: Sequence[str]) -> None:
        """Fold in one delta: ``item`` finished or liked by a viewer whose recent positives were ``history``
        (newest first)."""
        self.learned += 1
        self._unit *= 2.0 ** (1.0 / self.half_life)
        if self._unit > _RESCALE:
            self._rescale()
        item = sys.intern(item)  # one string per title, however many neighbour lists name it
        self.count[item] = self.count.get(item, 0.0) + self._unit
        weight = self._unit
        for h in history[:HISTORY]:
            if h != item:
                h = sys.intern(h)
                self._add(h, item, weight)
                self._add(item, h, weight * BACK)
            weight *= RECENCY

    def _add(self, a: str, b: str, w: float) -> None:
        neighbours = self.co.get(a)
        if neighbours is None:
            neighbours = self.co[a] = {}
        neighbours[b] = neighbours.get(b, 0.0) + w
        if len(neighbours) > 2 * self.keep:
            self.co[a] = dict(sorted(neighbours.items(), key=lambda kv: -kv[1])[: self.keep])

    def _rescale(self) -> None:
        unit = self._unit
        self.co = {a: {b: v / unit for b, v in nb.items()} for a, nb in self.co.items()}
        self.count = {k: v / unit for k, v in self.count.items()}
        self._unit = 1.0

    def to_state(self) -> dict[str, Any]:
        """The co-counts exactly as they are, by column (numpy arrays: a title's neighbours as indices into
        ``titles``, their counts as float64), which a snapshot stores in a fraction of the JSON's bytes and
        time. Reads only: safe beside :meth:`related`, not beside :meth:`learn`."""
        index: dict[str, int] = {}
        for title in itertools.chain(self.co, self.count):  # every neighbour is one of these (see _add)
            index.setdefault(title, len(index))
        co, sizes = self.co.values(), np.fromiter(map(len, self.co.values()), np.int32, len(self.co))
        total, position = int(sizes.sum()), index.__getitem__
        return {
            "half_life": self.half_life, "keep": self.keep, "learned": self.learned, "unit": self._unit,
            "titles": list(index),
            "sources": np.fromiter(map(position, self.co), np.int32, len(self.co)),
            "sizes": sizes,
            "neighbours": np.fromiter(itertools.chain.from_iterable(map(position, nb) for nb in co), np.int32, total),
            "co": np.fromiter(itertools.chain.from_iterable(nb.values() for nb in co), np.float64, total),
            "counted": np.fromiter(map(position, self.count), np.int32, len(self.count)),
            "count": np.fromiter(self.count.values(), np.float64, len(self.count)),
        }  # fmt: skip

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> CoWatch:
        """The co-counts of a :meth:`to_state`; ValueError if its columns do not fit together."""
        cw = cls(float(state["half_life"]), int(state["keep"]))
        titles = [sys.intern(str(t)) for t in state["titles"]]  # one string per title, as learn() keeps them
        sources, sizes, neighbours, co = (np.asarray(state[k]) for k in ("sources", "sizes", "neighbours", "co"))
        counted, count = np.asarray(state["counted"]), np.asarray(state["count"])
        fits = (
            len(sources) == len(sizes) and int(sizes.sum()) == len(neighbours) == len(co) and len(counted) == len(count)
        )
        if not fits or any(len(a) and (a.min() < 0 or a.max() >= len(titles)) for a in (sources, neighbours, counted)):
            raise ValueError("cowatch: the columns do not fit together")
        names, values, start = [titles[i] for i in neighbours.tolist()], co.tolist(), 0
        for source, end in zip(sources.tolist(), np.cumsum(sizes).tolist(), strict=True):
            cw.co[titles[source]] = dict(zip(names[start:end], values[start:end], strict=True))
            start = end
        cw.count = dict(zip([titles[i] for i in counted.tolist()], count.tolist(), strict=True))
        cw.learned, cw._unit = int(state["learned"]), float(state["unit"])
        return cw

    def related(self, history: Sequence[str]) -> dict[str, tuple[float, str]]:
        """Titles that go with the viewer's recent positives ``history`` (newest first): title ->
        (feature, the positive that gave it most). The viewer's own positives are left out.

        The answer is shared by later calls with the same history until the next delta: do not change it."""
        key = tuple(history)
        if self._memo_at != self.learned or len(self._memo) > _MEMO:
            self._memo.clear()
            self._memo_at = self.learned
        found = self._memo.get(key)
        if found is None:
            found = self._memo[key] = self._related(history)
        return found

    def _related(self, history: Sequence[str]) -> dict[str, tuple[float, str]]:
        scores: dict[str, float] = {}
        best: dict[str, tuple[float, str]] = {}
        count = self.count
        weight = 1.0
        for h in history[:HISTORY]:
            for c, v in self.co.get(h, {}).items():
                s = weight * v / math.sqrt(count.get(c, v))
                scores[c] = scores.get(c, 0.0) + s
                if s > best.get(c, (0.0, ""))[0]:
                    best[c] = (s, h)
            weight *= RECENCY
        for h in history:
            scores.pop(h, None)
        top = max(scores.values(), default=0.0)
        if top <= 0:
            return {}
        return {c: (s / top, best[c][1]) for c, s in scores.items()}
