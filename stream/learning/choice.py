"""Which titles viewers choose: a learned correction to the score's weights (a sampled softmax).

The regression of :class:`~stream.learning.model.PartitionModel` learns how a chosen title
goes (a finish, an early skip). It cannot learn which titles get chosen: on a log where
viewers pick popular or trending titles, and those go no better than others once picked,
it learns nothing in their favour, and a most-popular list beats the model. This learner
fills that gap. When a viewer finishes or likes a title, the weights move so that the title
is more likely to be the one chosen from the whole catalog, with every title's chance
``exp(score)`` (a softmax over the catalog, the choice model of a ranked list).

The catalog is too large to score for every finish, so the chosen title competes with a few
(:func:`competitors`): the titles listed above it in the viewer's last list (the
"skip-above" evidence impression-aware rankers use: each counts once, as in the whole
catalog) and :data:`SAMPLED` titles drawn half uniformly, half by the deployment's trend.
A drawn title stands for the titles it was drawn instead of: its chance is divided by how
often it is drawn, about ``SAMPLED q`` for its probability ``q`` per draw
(:func:`drawn_correction`; the sampling-bias correction of a sampled softmax: Bengio and
Senecal 2008, Yi et al. 2019).
Without it, titles drawn by their trend would teach the weights to rank trending titles
down; with it, the step estimates the whole catalog's. For the differences ``x_i`` of the
chosen title's features and each competitor's, and ``offset_i`` what the rest of the score
gives them plus that correction's log (0 for a listed title): ``w += rate * sum_i p_i x_i``,
where ``p_i`` is competitor ``i``'s chance, ``exp(-offset_i - w.x_i)`` over one plus their sum.
With one competitor that is the pairwise update of Rendle et al.'s BPR.

(Drawn uniformly without the correction, as this learner did before, the competitors were
mostly titles nobody watches: the weights learned what tells a chosen title from those, not
from the titles at the top of a list. On MovieTweetings, judged on read lists, HR@10 went
from 0.213 to 0.224 with this step.)

Its weights add to the prior (:attr:`PartitionModel.weights`).

A viewer back after a while (:data:`~stream.learning.profile.AWAY_MS` without an event) does not
choose as it does in the middle of a visit: on MovieTweetings, lists made for viewers rating again
within the hour beat the trending list by 293 hits, lists for viewers back after a day or more
lost to it by 300. So each weight has two parts, one every choice teaches and one only the choices
of viewers back after a while teach, added to the first for their lists (the "frustratingly easy"
feature augmentation of Daume III 2007: the away weights start as, and learn from, the common ones).
A list a viewer reads when back, such as a refresh of its aged list, is ranked with the sum.

>>> c = Choice()
>>> for _ in range(300):  # viewers keep choosing the more popular of two otherwise equal titles
...     c.learn_one({"popularity": 0.6}, 1.0)
>>> c.weights["popularity"] > 1.0
True
>>> round(c.predict_one({"popularity": 0.0}), 3)
0.5
>>> c, trend = Choice(), FEATURES.index("trend")
>>> chosen = np.zeros((1, len(FEATURES))); chosen[0, trend] = 0.5  # chosen for its trend
>>> for _ in range(100):  # by viewers back after a while only: their lists learn it twice as fast
...     c.learn_many(chosen, np.zeros(1), away=True)
>>> bool(c.total(True)[trend] > c.total(False)[trend] > 0)
True
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
from stream.learning.trend import SharedTrend

__all__ = ["SAMPLED", "UNIFORM", "Choice", "competitors", "drawn_correction"]

#: Titles drawn as competitors of each chosen title, beside those it was listed below.
SAMPLED = 16
#: The share of the draws made uniformly from the catalog; the rest are drawn by the trend.
UNIFORM = 0.5


def competitors(
    catalog: Catalog,
    idx: int,
    passed: Sequence[str],
    event_id: str,
    trend: SharedTrend,
    sampled: int = SAMPLED,
) -> tuple[list[int], list[float]]:
    """The catalog rows a chosen title (row ``idx``) competes with, and each one's sampling correction:
    the titles it was listed below (``passed``; correction 0), then up to ``sampled`` drawn, with
    probability :data:`UNIFORM` uniformly from the active titles and otherwise by ``trend``
    (correction :func:`drawn_correction`: about ``log(sampled q)``, ``q`` the probability of drawing
    the title). Active titles only, never ``idx``, none twice.

    The draws are seeded by the event's id, so an event read again after a crash teaches the
    same pairs (given the same trend).

    >>> from stream.contracts.validation import CatalogEntry
    >>> cat = Catalog()
    >>> for n in range(5):
    ...     cat.upsert(CatalogEntry(f"t{n}", f"T{n}", ("drama",), (), None))
    >>> trend = SharedTrend()
    >>> rows, corrections = competitors(cat, 0, ["t3", "nope", "t0"], "e1", trend, sampled=2)
    >>> rows[0], corrections[0], 0 in rows, len(rows) == len(set(rows)) <= 3
    (3, 0.0, False, True)
    >>> corrections[1] == drawn_correction(1 / 5, 2)  # nothing trends yet: every draw is uniform
    True
    >>> (rows, corrections) == competitors(cat, 0, ["t3", "nope", "t0"], "e1", trend, sampled=2)
    True
    """
    mats = catalog.matrices()
    active = mats.active
    rows = [row for row in map(catalog.index_of, passed) if row is not None and row != idx and active[row]]
    corrections = [0.0] * len(rows)
    n, n_active = len(catalog.ids), mats.n_active
    if n_active < 2:
        return rows, corrections
    uniform = UNIFORM if trend.total > 0 else 1.0
    draws = random.Random(zlib.crc32(event_id.encode()))
    taken = set(rows)
    taken.add(idx)
    for _ in range(sampled):
        row: int | None
        if draws.random() < uniform:
            row = draws.randrange(n)
            row = row if active[row] else None  # retired: this draw is lost (q counts active titles)
        else:
            item = trend.draw(draws)
            row = None if item is None else catalog.index_of(item)
        if row is None or row in taken:
            continue
        taken.add(row)
        q = uniform / n_active + (1.0 - uniform) * trend.probability(catalog.ids[row])
        rows.append(row)
        corrections.append(drawn_correction(q, sampled))
    return rows, corrections


def drawn_correction(q: float, sampled: int) -> float:
    """The sampling correction of a title drawn with probability ``q`` per draw, kept once however often
    it was drawn in ``sampled`` draws: the log of its chance to be among them (about ``log(sampled q)``).

    >>> round(drawn_correction(0.001, 16), 3), round(math.log(16 * 0.001), 3)
    (-4.143, -4.135)
    """
    return math.log(-math.expm1(sampled * math.log1p(-min(q, 1.0 - 1e-12))))


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))


class Choice:
    """Choice weights over :data:`~stream.learning.features.FEATURES`, River's protocol for one pair.

    :meth:`learn_one` and :meth:`predict_one`: ``x``, a chosen title's features minus a passed-over
    title's, by name; ``y``, 1.0 (the first was chosen) or 0.0; ``offset``, what the rest of the
    score already gives ``x``. :meth:`learn_many`: one title chosen over several (the module's
    sampled softmax); ``learned`` counts the choices learned.

    ``floor``: the least each weight may be, by feature (a projected step: a weight the step takes
    below it stays at it; for viewers back after a while, the sum of the two parts); features it leaves
    out have none. :meth:`total` gives the weights for a list, in FEATURES order.
    """

    def __init__(self, learning_rate: float = 0.05, floor: dict[str, float] | None = None) -> None:
        self.learning_rate = learning_rate
        self.w = np.zeros(len(FEATURES), dtype=np.float64)  # in FEATURES order: what every choice teaches
        self.away = np.zeros(len(FEATURES), dtype=np.float64)  # what only viewers back after a while add to it
        self.learned = 0
        self.floor = dict(floor or {})
        self._floor = np.asarray([self.floor.get(f, -np.inf) for f in FEATURES], dtype=np.float64)

    @property
    def weights(self) -> dict[str, float]:
        return dict(zip(FEATURES, self.w.tolist(), strict=True))

    def total(self, away: bool) -> np.ndarray:
        """The weights for a list of a viewer in the middle of a visit, or (``away``) back after a while."""
        return self.w + self.away if away else self.w.copy()

    def _project(self) -> None:
        np.maximum(self.w, self._floor, out=self.w)
        np.maximum(self.away, self._floor - self.w, out=self.away)

    def _vector(self, x: dict[str, float]) -> np.ndarray:
        return np.asarray([x.get(f, 0.0) for f in FEATURES], dtype=np.float64)

    def predict_one(self, x: dict[str, float], offset: float = 0.0) -> float:
        """The probability that the first title of the pair is chosen over the second."""
        return _sigmoid(offset + float(self.w @ self._vector(x)))

    def learn_one(self, x: dict[str, float], y: float = 1.0, offset: float = 0.0) -> None:
        """One pair: ``y`` 1.0 if the first title was chosen over the second, 0.0 if the second was."""
        w = self.w
        diff = self._vector(x)
        w += self.learning_rate * (y - _sigmoid(offset + float(w @ diff))) * diff
        self._project()
        self.learned += 1

    def learn_many(self, diffs: np.ndarray, offsets: np.ndarray, away: bool = False) -> None:
        """One choice: a title chosen over competitors, given as the differences of its features and each
        one's (``diffs``, (competitors, features), FEATURES order) and their ``offsets`` (what the rest of
        the score gives each difference, plus its sampling correction): one step of the sampled softmax.
        ``away``: by a viewer back after a while (the step moves both parts of its weights)."""
        if not len(diffs):
            return
        z = -(offsets + diffs @ self.total(away))  # each competitor's logit against the chosen title's 0
        top = max(0.0, float(z.max()))
        e = np.exp(z - top)
        p = e / (math.exp(-top) + float(e.sum()))
        step = self.learning_rate * (p @ diffs)
        self.w += step
        if away:
            self.away += step
        self._project()
        self.learned += 1

    def to_state(self) -> dict[str, Any]:
        away = dict(zip(FEATURES, self.away.tolist(), strict=True))
        return {"lr": self.learning_rate, "w": self.weights, "away": away, "n": self.learned, "floor": self.floor}

    @classmethod
    def from_state(cls, state: dict[str, Any] | None, floor: dict[str, float] | None = None) -> Choice:
        """A learner from its state; ``floor``, if given, instead of the state's (the code's own)."""
        choice = cls(floor=floor)
        if state:
            kept = {str(f): float(v) for f, v in state.get("floor", {}).items()}
            choice = cls(state["lr"], kept if floor is None else floor)
            choice.w[:] = [state["w"].get(f, 0.0) for f in FEATURES]
            choice.away[:] = [state.get("away", {}).get(f, 0.0) for f in FEATURES]  # none in older states
            choice.learned = state["n"]
        return choice
