"""What the replay measures, as plain functions and small running tallies.

A judged interaction has one held-out title (the one the viewer went on to
enjoy) and four lists made before it was published: the model's snapshot, the
popularity baseline (most positives so far), the trending baseline (most
positives lately: counts that halve every ``TRENDING_HALF_LIFE`` positives) and
the random baseline.

>>> hit_and_ndcg(["a", "b", "c"], "b")
(1.0, 0.6309297535714575)
>>> hit_and_ndcg(["a", "b"], "z")
(0.0, 0.0)
>>> intra_list_diversity(["a", "b"], {"a": frozenset({"drama"}), "b": frozenset({"drama", "crime"})})
0.5
"""

from __future__ import annotations

import bisect
import math
import random
from collections import Counter
from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "AGES",
    "KINDS",
    "TRENDING_HALF_LIFE",
    "ListAges",
    "Popularity",
    "Tally",
    "Trending",
    "hit_and_ndcg",
    "intra_list_diversity",
    "jaccard_distance",
    "novelty",
    "random_list",
]

K = 10
KINDS = ("model", "popularity", "trending", "random")
#: Positive interactions (of all viewers) after which a positive counts half for the trending baseline.
TRENDING_HALF_LIFE = 1000.0


def hit_and_ndcg(items: Sequence[str], target: str, k: int = K) -> tuple[float, float]:
    """HR@k and NDCG@k of one list for one held-out title (one relevant title: the ideal DCG is 1)."""
    top = list(items[:k])
    if target not in top:
        return 0.0, 0.0
    return 1.0, 1.0 / math.log2(top.index(target) + 2)


def jaccard_distance(a: frozenset[str], b: frozenset[str]) -> float:
    """1 - |a & b| / |a | b|; two empty sets are identical."""
    union = len(a | b)
    return 1.0 - len(a & b) / union if union else 0.0


def intra_list_diversity(items: Sequence[str], genres: Mapping[str, frozenset[str]]) -> float | None:
    """Mean genre distance over the pairs of a list; None for a list with fewer than two titles."""
    sets = [genres.get(i, frozenset()) for i in items]
    pairs = [(a, b) for n, a in enumerate(sets) for b in sets[n + 1 :]]
    if not pairs:
        return None
    return sum(jaccard_distance(a, b) for a, b in pairs) / len(pairs)


def novelty(items: Sequence[str], counts: Mapping[str, int], total: int, catalog_size: int) -> float | None:
    """Mean -log2 of each title's share of the interactions so far, with add-one smoothing.

    >>> novelty(["a"], {"a": 1}, total=2, catalog_size=2)  # (1 + 1) / (2 + 2)
    1.0
    """
    if not items:
        return None
    denominator = total + catalog_size
    return sum(-math.log2((counts.get(i, 0) + 1) / denominator) for i in items) / len(items)


def _head(ranked: Iterable[str], order: Iterable[str], counted: Container[str], exclude: set[str], k: int) -> list[str]:
    """The first ``k`` of ``ranked`` not in ``exclude``, then titles of ``order`` never ``counted``."""
    out: list[str] = []
    for item in ranked:
        if len(out) == k:
            return out
        if item not in exclude:
            out.append(item)
    for item in order:
        if len(out) == k:
            break
        if item not in exclude and item not in counted:
            out.append(item)
    return out


class Popularity:
    """The titles with most positive interactions so far (ties: more interactions, then catalog order).

    Titles stay sorted by their counts, so a top-k reads from the front, skipping what the
    viewer touched: O(k + excluded), not O(titles seen).

    >>> p = Popularity(["a", "b", "c"])
    >>> for item, positive in [("a", False), ("b", True), ("a", True), ("a", False)]:
    ...     p.record(item, positive)
    >>> p.top(exclude=set(), k=3), p.top(exclude={"a"}, k=2)
    (['a', 'b', 'c'], ['b', 'c'])
    """

    def __init__(self, catalog_ids: Sequence[str]) -> None:
        self.order = {item: n for n, item in enumerate(catalog_ids)}
        self.positives: Counter[str] = Counter()
        self.interactions: Counter[str] = Counter()
        self.total = 0
        #: (-positives, -interactions, catalog position, id) of every title interacted with, best first.
        self.ranked: list[tuple[int, int, int, str]] = []

    def _key(self, item_id: str) -> tuple[int, int, int, str]:
        position = self.order.get(item_id, len(self.order))
        return (-self.positives[item_id], -self.interactions[item_id], position, item_id)

    def record(self, item_id: str, positive: bool) -> None:
        if item_id in self.interactions:
            del self.ranked[bisect.bisect_left(self.ranked, self._key(item_id))]
        self.interactions[item_id] += 1
        self.total += 1
        if positive:
            self.positives[item_id] += 1
        bisect.insort(self.ranked, self._key(item_id))

    def top(self, exclude: set[str], k: int = K) -> list[str]:
        """The ``k`` most popular titles not in ``exclude``; titles never seen follow in catalog order."""
        return _head((key[-1] for key in self.ranked), self.order, self.interactions, exclude, k)


class Trending:
    """The titles with most positive interactions lately: each positive multiplies the older counts by
    ``2 ** (-1 / half_life)`` (ties: catalog order; titles with none follow in catalog order).

    The counts fade by a growing unit (as :meth:`stream.learning.model.PartitionModel.record_start`
    does): a positive adds the unit, and the unit grows by ``2 ** (1 / half_life)``, so a
    positive is O(log n) and every count still compares as its decayed value. Titles stay
    sorted by stored count, so a top-k reads from the front, skipping what the viewer touched:
    O(k + excluded), not O(catalog).

    >>> t = Trending(["a", "b", "c"], half_life=1.0)
    >>> for item in ["a", "a", "b"]:
    ...     t.record(item, positive=True)
    >>> t.count("a"), t.count("b")  # a: 1/4 + 1/2; b: 1
    (0.75, 1.0)
    >>> t.top(exclude=set(), k=3)
    ['b', 'a', 'c']
    """

    def __init__(self, catalog_ids: Sequence[str], half_life: float = TRENDING_HALF_LIFE) -> None:
        if not half_life > 0:
            raise ValueError(f"--trending-half-life: expected a positive number of positives; got {half_life}")
        self.order = {item: n for n, item in enumerate(catalog_ids)}
        self.growth = 2.0 ** (1.0 / half_life)
        self.unit = 1.0
        #: Stored count per title with a positive: its decayed count times ``unit``.
        self.stored: dict[str, float] = {}
        #: (-stored, catalog position, id) of every title with a positive, best first.
        self.ranked: list[tuple[float, int, str]] = []

    def _key(self, item_id: str) -> tuple[float, int, str]:
        return (-self.stored[item_id], self.order.get(item_id, len(self.order)), item_id)

    def record(self, item_id: str, positive: bool) -> None:
        """Count one interaction; only a positive one moves the counts."""
        if not positive:
            return
        if item_id in self.stored:
            del self.ranked[bisect.bisect_left(self.ranked, self._key(item_id))]
        self.unit *= self.growth
        self.stored[item_id] = self.stored.get(item_id, 0.0) + self.unit
        bisect.insort(self.ranked, self._key(item_id))
        if self.unit > 1e12:  # scaling every count alike keeps their order: the list stays sorted
            self.stored = {k: v / self.unit for k, v in self.stored.items()}
            self.ranked = sorted((-self.stored[i], n, i) for _, n, i in self.ranked)  # rounding may tie two
            self.unit = 1.0

    def count(self, item_id: str) -> float:
        """The decayed count of positives of ``item_id`` now (1 for a positive just recorded)."""
        return self.stored.get(item_id, 0.0) / self.unit

    def top(self, exclude: set[str], k: int = K) -> list[str]:
        """The ``k`` trending titles not in ``exclude``; titles never positive follow in catalog order."""
        return _head((key[-1] for key in self.ranked), self.order, self.stored, exclude, k)


def random_list(rng: random.Random, catalog_ids: Sequence[str], exclude: set[str], k: int = K) -> list[str]:
    """``k`` titles drawn without replacement from those not in ``exclude``."""
    if len(exclude) * 2 < len(catalog_ids):  # draw and reject: cheap while most titles are allowed
        out: list[str] = []
        chosen: set[str] = set()
        want = min(k, len(catalog_ids) - len(exclude))
        while len(out) < want:
            item = catalog_ids[rng.randrange(len(catalog_ids))]
            if item not in exclude and item not in chosen:
                chosen.add(item)
                out.append(item)
        return out
    allowed = [i for i in catalog_ids if i not in exclude]
    return rng.sample(allowed, min(k, len(allowed)))


@dataclass
class Tally:
    """Running sums for one kind of list (model, popularity, trending or random)."""

    judged: int = 0
    hits: float = 0.0
    ndcg: float = 0.0
    diversity_sum: float = 0.0
    diversity_n: int = 0
    novelty_sum: float = 0.0
    novelty_n: int = 0
    distinct: set[str] = field(default_factory=set)
    #: Per judged interaction: (hit, ndcg), for the curves.
    trace: list[tuple[float, float]] = field(default_factory=list)

    def add(
        self,
        items: Sequence[str],
        target: str,
        genres: Mapping[str, frozenset[str]],
        counts: Mapping[str, int],
        total: int,
        catalog_size: int,
    ) -> None:
        hit, gain = hit_and_ndcg(items, target)
        self.judged += 1
        self.hits += hit
        self.ndcg += gain
        self.trace.append((hit, gain))
        top = list(items[:K])
        self.distinct.update(top)
        spread = intra_list_diversity(top, genres)
        if spread is not None:
            self.diversity_sum += spread
            self.diversity_n += 1
        new = novelty(top, counts, total, catalog_size)
        if new is not None:
            self.novelty_sum += new
            self.novelty_n += 1

    def summary(self, catalog_size: int) -> dict[str, Any]:
        return {
            "hr_at_10": self.hits / self.judged if self.judged else None,
            "ndcg_at_10": self.ndcg / self.judged if self.judged else None,
            "coverage": len(self.distinct) / catalog_size if catalog_size else None,
            "diversity": self.diversity_sum / self.diversity_n if self.diversity_n else None,
            "novelty": self.novelty_sum / self.novelty_n if self.novelty_n else None,
            "judged": self.judged,
        }


#: The ages of a judged list :class:`ListAges` tells apart: (name, below this many ms; None: any older).
AGES = (("under 1 h", 3_600_000), ("1-6 h", 21_600_000), ("6-24 h", 86_400_000), ("over 24 h", None))


@dataclass
class ListAges:
    """Where the lists a viewer is judged on lose to lists made at the moment: per age of the judged list
    (event time from its ranking to the interaction) and per kind (made after the viewer's own event, or
    a refresh of an aged one), how many were judged, and the hits of that list and of one made then.

    >>> ages = ListAges()
    >>> ages.add(7_200_000, refreshed=False, listed=["a", "b"], fresh=["c", "a"], target="c")
    >>> ages.add(90_000_000, refreshed=True, listed=["c"], fresh=["c"], target="c")
    >>> ages.summary()["event 1-6 h"]
    {'judged': 1, 'hr_at_10': 0.0, 'made_then_hr_at_10': 1.0}
    >>> ages.summary()["refreshed over 24 h"]["hr_at_10"]
    1.0
    """

    #: "<kind> <age>" -> [judged, hits of the judged list, hits of a list made at the interaction's time]
    counts: dict[str, list[int]] = field(default_factory=dict)

    def add(self, age_ms: int, refreshed: bool, listed: Sequence[str], fresh: Sequence[str], target: str) -> None:
        name = next(n for n, below in AGES if below is None or age_ms < below)
        row = self.counts.setdefault(f"{'refreshed' if refreshed else 'event'} {name}", [0, 0, 0])
        row[0] += 1
        row[1] += int(hit_and_ndcg(listed, target)[0])
        row[2] += int(hit_and_ndcg(fresh, target)[0])

    def summary(self) -> dict[str, dict[str, float | int]]:
        return {
            name: {"judged": n, "hr_at_10": hits / n, "made_then_hr_at_10": then / n}
            for name, (n, hits, then) in sorted(self.counts.items())
        }
