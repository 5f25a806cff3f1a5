"""Which titles viewers choose: a pairwise (BPR-style) correction to the score's weights.

The regression of :class:`~stream.learning.model.PartitionModel` learns how a chosen title
goes (a finish, an early skip). It cannot learn which titles get chosen: on a log where
viewers pick popular or trending titles, and those go no better than others once picked,
it learns nothing in their favour, and a most-popular list beats the model. This learner
fills that gap. When a viewer finishes or likes a title, the title is compared with titles
the viewer passed over (titles listed above it in the viewer's last list, the "skip-above"
evidence impression-aware rankers use, and titles drawn from the catalog), and the weights
move so that the chosen title outscores them: for the difference ``x`` of the two titles'
features, ``w += rate * (1 - sigmoid(offset + w.x)) * x``, where ``offset`` is the part of
the score the other weights already give the difference (Rendle et al.'s BPR, on the
score's features instead of latent factors).

Its weights add to the prior and the regression's (:attr:`PartitionModel.weights`), so what
a feature is worth is learned from both what viewers choose and how it goes.

>>> c = Choice()
>>> for _ in range(300):  # viewers keep choosing the more popular of two otherwise equal titles
...     c.learn_one({"popularity": 0.6}, 1.0)
>>> c.weights["popularity"] > 1.0
True
>>> round(c.predict_one({"popularity": 0.0}), 3)
0.5
"""

from __future__ import annotations

import math
import random
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from stream.learning.catalog import Catalog
from stream.learning.features import FEATURES

__all__ = ["SAMPLED", "Choice", "competitors"]

#: Titles drawn from the catalog as competitors of each chosen title, beside those it was listed below.
SAMPLED = 3


def competitors(catalog: Catalog, idx: int, passed: Sequence[str], event_id: str, sampled: int = SAMPLED) -> list[int]:
    """Catalog rows a chosen title (row ``idx``) is learned against: the titles it was listed below
    (``passed``), then ``sampled`` drawn from the catalog; active titles only, never ``idx``.

    The draws are seeded by the event's id, so an event read again after a crash teaches the
    same pairs.

    >>> from stream.contracts.validation import CatalogEntry
    >>> cat = Catalog()
    >>> for n in range(5):
    ...     cat.upsert(CatalogEntry(f"t{n}", f"T{n}", ("drama",), (), None))
    >>> rows = competitors(cat, 0, ["t3", "nope", "t0"], "e1", sampled=2)
    >>> rows[0], 0 in rows, len(rows)
    (3, False, 3)
    >>> rows == competitors(cat, 0, ["t3", "nope", "t0"], "e1", sampled=2)
    True
    """
    active = catalog.matrices().active
    out = [row for row in map(catalog.index_of, passed) if row is not None and row != idx and active[row]]
    wanted = len(out) + sampled
    n = len(catalog.ids)
    draws = random.Random(zlib.crc32(event_id.encode()))
    for _ in range(4 * sampled):  # a few tries: the catalog may be mostly retired
        if len(out) >= wanted or n < 2:
            break
        row = draws.randrange(n)
        if row != idx and active[row] and row not in out:
            out.append(row)
    return out


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))


class Choice:
    """Pairwise logistic weights over :data:`~stream.learning.features.FEATURES`, River's protocol.

    ``x``: a chosen title's features minus a passed-over title's, by name; ``y``: 1.0 (the
    first was chosen) or 0.0; ``offset``: what the rest of the score already gives ``x``.
    """

    def __init__(self, learning_rate: float = 0.05) -> None:
        self.learning_rate = learning_rate
        self.w = np.zeros(len(FEATURES), dtype=np.float64)  # in FEATURES order
        self.learned = 0

    @property
    def weights(self) -> dict[str, float]:
        return dict(zip(FEATURES, self.w.tolist(), strict=True))

    def _vector(self, x: dict[str, float]) -> np.ndarray:
        return np.asarray([x.get(f, 0.0) for f in FEATURES], dtype=np.float64)

    def predict_one(self, x: dict[str, float], offset: float = 0.0) -> float:
        """The probability that the first title of the pair is chosen over the second."""
        return _sigmoid(offset + float(self.w @ self._vector(x)))

    def learn_one(self, x: dict[str, float], y: float = 1.0, offset: float = 0.0) -> None:
        self.learn_many(self._vector(x)[None, :], np.asarray([offset]), y)

    def learn_many(self, diffs: np.ndarray, offsets: np.ndarray, y: float = 1.0) -> None:
        """:meth:`learn_one` for each row of ``diffs`` ((pairs, features), FEATURES order), in order."""
        w, rate = self.w, self.learning_rate
        for diff, offset in zip(diffs, offsets.tolist(), strict=True):
            w += rate * (y - _sigmoid(offset + float(w @ diff))) * diff
        self.learned += len(diffs)

    def to_state(self) -> dict[str, Any]:
        return {"lr": self.learning_rate, "w": {f: round(v, 6) for f, v in self.weights.items()}, "n": self.learned}

    @classmethod
    def from_state(cls, state: dict[str, Any] | None) -> Choice:
        choice = cls()
        if state:
            choice = cls(state["lr"])
            choice.w = np.asarray([state["w"].get(f, 0.0) for f in FEATURES], dtype=np.float64)
            choice.learned = state["n"]
        return choice
