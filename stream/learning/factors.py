"""Item factors: a latent-factor model of which titles viewers choose, learned per finish or like.

Each title has two vectors of :data:`DIM` numbers: ``p``, what having finished or liked it says
about a viewer, and ``q``, what choosing it takes. A viewer is the recency-weighted mean of its
recent positives' ``p`` (newest first, each one further back weighing :data:`RECENCY` as much:
the item-to-item factor model of Kabbur et al.'s FISM), so nothing about a viewer is learned or
shared, and a replica holds titles only. A title ``c``'s *factor* feature for a viewer ``u`` is
``q_c . u``.

Each finish or like is one step of the sampled softmax of :mod:`stream.learning.choice`, over the
same competitors (the titles listed above the chosen one, and titles drawn uniformly or by the
trend, each with its sampling correction). A title's logit is ``q . u + b``: the bias ``b`` takes
up how often a title is chosen at all, so the vectors learn what differs between viewers (the
feature leaves it out: popularity and the trend are features of their own). The step moves the
chosen and competing titles' ``q`` and ``b`` and the history's ``p`` (with a little weight decay
on the rows it touches, so vectors of titles chosen for years stay bounded).

A title's ``p`` starts at 0 (a title no viewer went on from says nothing about a viewer who
finished it), its ``q`` from a generator seeded by the title's id; every
replica applies the same deltas in the same order (:mod:`stream.learning.shared`), so every
worker holds the same factors. Offline on MovieTweetings (prequential, seen titles left out,
this model alone, uniform competitors) HR@10 reached 0.186 where a most-popular list gave 0.142.

>>> f = ItemFactors(dim=4)
>>> for _ in range(200):  # viewers who finished "a" go on to "b", never to "c"
...     f.learn("b", ["a"], ["c"], [0.0])
>>> u = f.viewer(["a"])
>>> b_, c_, unknown = f.scores(u, ["b", "c", "unknown"]).tolist()
>>> b_ > 0 > c_, unknown
(True, 0.0)
>>> f.viewer(["never seen"]) is None
True
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from stream.learning.cowatch import HISTORY  # the recent positives a delta carries and a viewer's vector is made of

__all__ = ["DIM", "INIT", "RATE", "RECENCY", "ItemFactors"]

#: Numbers per vector.
DIM = 32
#: The step size of the sampled softmax.
RATE = 0.1
#: Weight decay of the rows a step touches (per step, times RATE).
DECAY = 0.01
#: The spread of a title's first ``q``.
INIT = 0.1
#: How much a positive one further back in the viewer's history counts.
RECENCY = 0.8
_WEIGHTS = RECENCY ** np.arange(HISTORY, dtype=np.float32)


class ItemFactors:
    def __init__(self, dim: int = DIM, rate: float = RATE, decay: float = DECAY) -> None:
        self.dim = dim
        self.rate = rate
        self.decay = decay
        #: title -> its row of :attr:`p`, :attr:`q` and :attr:`b`
        self.index: dict[str, int] = {}
        self._names: list[str] = []  # by row
        self.p = np.zeros((0, dim), dtype=np.float32)
        self.q = np.zeros((0, dim), dtype=np.float32)
        self.b = np.zeros(0, dtype=np.float32)
        #: Steps learned.
        self.learned = 0
        # catalog rows -> factor rows (see :meth:`rows_of`)
        self._key: tuple[int, int] | None = None
        self._catalog_rows: dict[str, int] = {}
        self._map = np.zeros(0, dtype=np.int64)
        self._mapped = 0  # titles of :attr:`index` already in the map

    def _row(self, item: str) -> int:
        row = self.index.get(item)
        if row is None:
            row = self.index[item] = len(self.index)
            self._names.append(item)
            if row == len(self.b):  # grow by half again
                size = max(64, row + row // 2)
                self.p = _grown(self.p, size)
                self.q = _grown(self.q, size)
                self.b = np.concatenate([self.b, np.zeros(size - row, dtype=np.float32)])
            self.q[row] = np.random.default_rng(zlib.crc32(item.encode())).normal(0.0, INIT, self.dim)
        return row

    def _history(self, history: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """The known titles of ``history`` (newest first, the first :data:`HISTORY`): their rows and weights
        (summing to 1)."""
        index, taken = self.index, set[int]()
        found = []
        for k, h in enumerate(history[:HISTORY]):
            row = index.get(h)
            if row is not None and row not in taken:
                taken.add(row)
                found.append((row, _WEIGHTS[k]))
        rows = np.asarray([r for r, _ in found], dtype=np.int64)
        weights = np.asarray([w for _, w in found], dtype=np.float32)
        return rows, weights / weights.sum() if len(weights) else weights

    def viewer(self, history: Sequence[str]) -> np.ndarray | None:
        """The vector of a viewer whose recent positives are ``history`` (newest first); None if none is known."""
        rows, weights = self._history(history)
        if not len(rows):
            return None
        return weights @ self.p[rows]

    def learn(
        self, item: str, history: Sequence[str], competitors: Sequence[str], corrections: Sequence[float]
    ) -> None:
        """One choice: ``item`` finished or liked by a viewer whose recent positives were ``history`` (newest
        first), over ``competitors`` (each with its sampling correction, as the choice learner's)."""
        self.learned += 1
        rows = np.asarray([self._row(item), *map(self._row, competitors)], dtype=np.int64)
        for h in history[:HISTORY]:
            self._row(h)
        hist, weights = self._history(history)
        u = weights @ self.p[hist] if len(hist) else np.zeros(self.dim, dtype=np.float32)
        q = self.q[rows]
        logits = q @ u + self.b[rows]
        logits[1:] -= np.asarray(corrections, dtype=np.float32)
        e = np.exp(logits - logits.max())
        g = -e / e.sum()  # d log(chance of the chosen) / d logit
        g[0] += 1.0
        rate, shrink = self.rate, 1.0 - self.rate * self.decay
        if len(hist):
            self.p[hist] = shrink * self.p[hist] + rate * weights[:, None] * (g @ q)[None, :]
        self.q[rows] = shrink * q + rate * g[:, None] * u[None, :]
        self.b[rows] += rate * g

    def scores(self, u: np.ndarray, items: Sequence[str]) -> np.ndarray:
        """``q . u`` of each of ``items`` (0 for a title never learned)."""
        index = self.index
        rows = np.asarray([index.get(i, -1) for i in items], dtype=np.int64)
        return self._dot(u, rows)

    def rows_of(self, ids: Sequence[str]) -> np.ndarray:
        """For each catalog row of ``ids``, its row here (-1: never learned). Cached: a catalog's map is
        built once, then only titles learned since are added."""
        key = (id(ids), len(ids))
        if self._key != key:
            self._key, self._mapped = key, 0
            self._catalog_rows = {item: row for row, item in enumerate(ids)}
            self._map = np.full(len(ids), -1, dtype=np.int64)
        if self._mapped < len(self.index):
            catalog_rows, mapped = self._catalog_rows, self._map
            for row, item in enumerate(self._names[self._mapped :], self._mapped):
                at = catalog_rows.get(item)
                if at is not None:
                    mapped[at] = row
            self._mapped = len(self.index)
        return self._map

    def catalog_scores(self, u: np.ndarray, ids: Sequence[str], rows: np.ndarray | None = None) -> np.ndarray:
        """``q . u`` of the catalog's titles ``ids`` (of its ``rows`` only, if given)."""
        mapped = self.rows_of(ids)
        return self._dot(u, mapped if rows is None else mapped[rows])

    def catalog_scores_many(self, tastes: np.ndarray, ids: Sequence[str]) -> np.ndarray:
        """(viewers, titles): ``q . u`` of every catalog title ``ids`` for each viewer vector of ``tastes``
        (one product over the titles learned, then laid out by catalog row)."""
        mapped = self.rows_of(ids)
        if not self.index:
            return np.zeros((len(tastes), len(ids)), dtype=np.float32)
        product = tastes.astype(np.float32, copy=False) @ self.q[: len(self.index)].T
        out = product[:, np.maximum(mapped, 0)]
        out[:, mapped < 0] = 0.0
        return out

    def _dot(self, u: np.ndarray, rows: np.ndarray) -> np.ndarray:
        if not len(self.b):
            return np.zeros(len(rows), dtype=np.float32)
        out = self.q[np.maximum(rows, 0)] @ u.astype(np.float32, copy=False)
        out[rows < 0] = 0.0
        return out

    def strongest(self, history: Sequence[str], item: str) -> str | None:
        """Which of ``history`` (the viewer's recent positives, newest first) gives ``item``'s feature most
        (None: none gives it anything)."""
        row = self.index.get(item)
        rows, weights = self._history(history)
        if row is None or not len(rows):
            return None
        parts = weights * (self.p[rows] @ self.q[row])
        best = int(np.argmax(parts))
        return self._names[int(rows[best])] if parts[best] > 0 else None

    def nbytes(self) -> int:
        return int(self.p.nbytes + self.q.nbytes + self.b.nbytes)

    def to_state(self) -> dict[str, Any]:
        """The factors exactly as they are (the vectors as numpy arrays: a copy, the rows in use)."""
        n = len(self.index)
        return {
            "dim": self.dim, "rate": self.rate, "decay": self.decay, "learned": self.learned,
            "titles": list(self._names), "p": self.p[:n].copy(), "q": self.q[:n].copy(), "b": self.b[:n].copy(),
        }  # fmt: skip

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ItemFactors:
        """The factors of a :meth:`to_state`; ValueError if the arrays do not fit the titles."""
        factors = cls(int(state["dim"]), float(state["rate"]), float(state["decay"]))
        names = [str(t) for t in state["titles"]]
        n, dim = len(names), factors.dim
        p, q, b = (np.array(state[k], dtype=np.float32) for k in ("p", "q", "b"))  # copies: learning writes
        if p.shape != (n, dim) or q.shape != (n, dim) or b.shape != (n,):
            raise ValueError(f"factors: expected {n} titles' vectors of {dim}")
        factors.p, factors.q, factors.b = p, q, b
        factors._names = names
        factors.index = {t: row for row, t in enumerate(names)}
        factors.learned = int(state["learned"])
        return factors


def _grown(a: np.ndarray, size: int) -> np.ndarray:
    out = np.zeros((size, a.shape[1]), dtype=a.dtype)
    out[: len(a)] = a
    return out
