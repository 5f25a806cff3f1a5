"""Cohorts: viewers grouped online by taste, and what each group plays, by context.

The deployment's model (:mod:`stream.learning.shared`) clusters viewers' genre tastes with
River's incremental k-means (one update per taste a delta carries: each viewer's, every
:data:`LEARN_EVERY` of its events), and counts what the viewers of each cohort finished or
liked, in two kinds of bucket: the cohort as a whole, and the cohort on one device in one
daypart ("viewers like you on TV in the evening"). A viewer with a couple of events already
has a cohort, so its list borrows what viewers of similar taste play; a known viewer on a
device or at an hour it has no history for borrows the cohort's habits there. Which cohort
each viewer is in is about the viewer, so each partition remembers its own
(:class:`ViewerCohorts`); the centres and counts are the deployment's.

Counts fade like popularity (by the deployment's starts: a unit grown instead of every count
decayed), and each bucket keeps only its ``BUCKET_CAP`` strongest titles, so a replica stays
small however large the catalog.

>>> c = Cohorts()
>>> drama, comedy = {"drama": 1.0}, {"comedy": 1.0}
>>> for _ in range(20):
...     _ = c.learn(drama), c.learn(comedy)
>>> c.assign(drama) != c.assign(comedy)
True
>>> c.assign({"drama": 0.9, "horror": 1.0}) == c.learn({"drama": 0.9, "horror": 1.0})  # what learning it would give
True
"""

from __future__ import annotations

import math
from typing import Any

from river import cluster

from stream.learning.profile import DAYPARTS

__all__ = ["BUCKET_CAP", "COHORTS", "LEARN_EVERY", "Cohorts", "ViewerCohorts", "bucket_label"]

#: Cohorts of the deployment.
COHORTS = 8
#: Titles kept per bucket (the rest of a bucket's counts are dropped when it doubles).
BUCKET_CAP = 60
#: A taste this far (squared Euclidean) from every cohort seeded so far seeds the next one.
SEED_DISTANCE = 0.5
#: A viewer's taste is learned again (and its cohort reassessed) after this many of its events.
LEARN_EVERY = 4
#: Viewers whose latest cohort is remembered between batches (in memory only), per partition.
REMEMBERED = 200_000
#: A context bucket is used once its cohort finished or liked this many titles there (faded count).
MIN_CONTEXT_COUNT = 15.0
_DEVICE_NAMES = {"tv": "TV", "mobile": "mobile", "tablet": "tablet", "web": "the web", "other": "other devices"}


def bucket_label(key: str) -> str:
    """Readable context of a bucket key: ``"3|tv|2"`` -> ``"on TV in the evening"``; cohort-wide: ``""``."""
    parts = key.split("|")
    if len(parts) != 3:
        return ""
    device, part = parts[1], int(parts[2])
    when = "at night" if DAYPARTS[part] == "night" else f"in the {DAYPARTS[part]}"
    return f"on {_DEVICE_NAMES.get(device, device)} {when}"


class _TasteKMeans(cluster.KMeans):
    """River's incremental k-means, with the nearest centre found in O(tastes' genres) per centre.

    River's ``predict_one`` walks the union of a centre's and the input's keys: with every
    genre of the catalog in each centre, that is most of a cohort's cost. For the squared
    Euclidean distance, ``|c - x|^2 = |c|^2 + sum over x's genres of (x_g^2 - 2 c_g x_g)``, so
    with each centre's squared norm kept (refreshed when the centre moves) only the viewer's
    own genres are visited.
    """

    def __init__(self, n_clusters: int, halflife: float, sigma: float, seed: int) -> None:
        super().__init__(n_clusters=n_clusters, halflife=halflife, sigma=sigma, seed=seed)
        self.norms = [0.0] * n_clusters

    def refresh(self, c: int) -> None:
        self.norms[c] = sum(v * v for v in self.centers[c].values())

    def predict_one(self, x: dict[str, float]) -> int:  # type: ignore[override]
        def distance(c: int) -> float:
            get = self.centers[c].get  # .get: no random start drawn for a genre it lacks
            return self.norms[c] + sum(v * v - 2.0 * get(g, 0.0) * v for g, v in x.items())

        return min(self.centers, key=distance)

    def learn_predict_one(self, x: dict[str, float]) -> int:
        """Move the nearest centre towards ``x`` (River's rule), over every genre it holds."""
        closest = self.predict_one(x)
        center = self.centers[closest]
        for g in center.keys() | x.keys():
            center[g] += self.halflife * (x.get(g, 0.0) - center[g])
        self.refresh(closest)
        return closest


class Cohorts:
    def __init__(self, n: int = COHORTS, halflife: float = 0.05, seed: int = 11) -> None:
        self.n = n
        self.halflife = halflife
        self.seed = seed
        self.kmeans = _TasteKMeans(n, halflife, sigma=0.05, seed=seed)
        #: Centres placed on a viewer's taste so far (see :meth:`learn`).
        self.seeded = 0
        #: bucket key -> title -> finishes and likes, in the owner's growing unit (see SharedModel.unit).
        self.counts: dict[str, dict[str, float]] = {}
        self._max: dict[str, float] = {}
        self._total: dict[str, float] = {}

    @staticmethod
    def taste(genres: dict[str, float]) -> dict[str, float]:
        """A viewer's genre affinities scaled so the strongest is +-1: the clustering's input."""
        top = max((abs(v) for v in genres.values()), default=0.0)
        return {g: v / top for g, v in genres.items()} if top > 0 else {}

    def _known(self, taste: dict[str, float]) -> dict[str, float]:
        # A genre new to the centres starts at 0 in each, in a fixed order (River would draw a
        # random start for it in set order, which varies from process to process).
        centers = self.kmeans.centers
        new = taste.keys() - centers[0].keys()
        for genre in sorted(new):
            for center in centers.values():
                center[genre] = 0.0
        return taste

    def assign(self, taste: dict[str, float]) -> int:
        """The cohort :meth:`learn` would put this taste in now; changes nothing."""
        if self.seeded < self.n and taste and self._nearest_seeded(taste) > SEED_DISTANCE:
            return self.seeded
        return int(self.kmeans.predict_one(taste))

    def _nearest_seeded(self, taste: dict[str, float]) -> float:
        """The squared distance from ``taste`` to the nearest centre seeded so far (inf: none is)."""
        kmeans = self.kmeans
        if not self.seeded:
            return math.inf
        return min(
            kmeans.norms[c] + sum(v * v - 2.0 * kmeans.centers[c].get(g, 0.0) * v for g, v in taste.items())
            for c in range(self.seeded)
        )

    # -- River's protocol: a clusterer of tastes ------------------------------------

    def learn_one(self, x: dict[str, float], y: None = None) -> None:
        """Learn one taste (:meth:`taste` of a viewer's genres)."""
        self.learn(x)

    def predict_one(self, x: dict[str, float]) -> int:
        """The cohort of a taste; changes nothing."""
        return self.assign(x)

    def learn(self, taste: dict[str, float]) -> int:
        """Move the nearest centre towards this viewer's taste; returns its cohort.

        Until every centre is in use, a taste far from all centres in use takes the next
        one as it is: sequential k-means from random starts lets one centre drift between
        two tastes and win both, leaving the rest unused.
        """
        x = self._known(taste)
        kmeans = self.kmeans
        if self.seeded < self.n and taste and self._nearest_seeded(x) > SEED_DISTANCE:
            center = kmeans.centers[self.seeded]
            for g in center:
                center[g] = x.get(g, 0.0)
            kmeans.refresh(self.seeded)
            self.seeded += 1
            return self.seeded - 1
        return int(kmeans.learn_predict_one(x))

    def record(self, item_id: str, cohort: int, device: str | None, part: int, unit: float) -> None:
        """Count one finish or like of ``item_id`` by a viewer of ``cohort`` (``unit``: the owner's current unit)."""
        self._add(str(cohort), item_id, unit)
        if device is not None:
            self._add(f"{cohort}|{device}|{part}", item_id, unit)

    def _add(self, key: str, item_id: str, unit: float) -> None:
        counts = self.counts.get(key)
        if counts is None:
            counts = self.counts[key] = {}
        value = counts[item_id] = counts.get(item_id, 0.0) + unit
        self._max[key] = max(self._max.get(key, 0.0), value)
        self._total[key] = self._total.get(key, 0.0) + unit
        if len(counts) > 2 * BUCKET_CAP:
            keep = sorted(counts.items(), key=lambda kv: -kv[1])[:BUCKET_CAP]
            self.counts[key] = dict(keep)

    def bucket(self, cohort: int, device: str | None, part: int, unit: float) -> str:
        """The bucket a viewer borrows from: its cohort in this context when that has enough starts."""
        if device is not None:
            key = f"{cohort}|{device}|{part}"
            if self._total.get(key, 0.0) / unit >= MIN_CONTEXT_COUNT:
                return key
        return str(cohort)

    def share(self, key: str, item_id: str, unit: float) -> float:
        """A title's log-scaled (faded) start count in a bucket, 0..1 (1: the bucket's most started)."""
        top = self._max.get(key, 0.0)
        if top <= 0:
            return 0.0
        return math.log1p(self.counts[key].get(item_id, 0.0) / unit) / math.log1p(top / unit)

    def items(self, key: str, unit: float) -> tuple[list[str], list[float]]:
        """The titles of a bucket and their :meth:`share`, for vectorised ranking."""
        counts = self.counts.get(key)
        top = self._max.get(key, 0.0)
        if not counts or top <= 0:
            return [], []
        scale = math.log1p(top / unit)
        return list(counts), [math.log1p(v / unit) / scale for v in counts.values()]

    def rescale(self, factor: float) -> None:
        """Divide every count by ``factor`` (the owner's unit was reset), dropping what is negligible."""
        self.counts = {k: {i: v / factor for i, v in vs.items() if v / factor > 1e-3} for k, vs in self.counts.items()}
        self._recount()

    def _recount(self) -> None:
        self._max = {k: max(vs.values(), default=0.0) for k, vs in self.counts.items()}
        self._total = {k: sum(vs.values()) for k, vs in self.counts.items()}

    # -- checkpoint --------------------------------------------------------------

    def to_state(self, unit: float = 1.0) -> dict[str, Any]:
        """The centres and counts (``unit``: the owner's current count unit, see SharedModel.unit; 1.0:
        exactly as stored). JSON; it refers to the live centres: serialise it at once."""
        return {
            "seeded": self.seeded,
            "centers": {str(c): center for c, center in self.kmeans.centers.items()},
            "counts": {k: {i: v / unit for i, v in vs.items()} for k, vs in self.counts.items()},
            "max": {k: v / unit for k, v in self._max.items()},
            "total": {k: v / unit for k, v in self._total.items()},
        }

    @classmethod
    def from_state(cls, state: dict[str, Any] | None) -> Cohorts:
        cohorts = cls()
        if not state:
            return cohorts
        cohorts.seeded = int(state.get("seeded", cohorts.n))
        for c, center in state["centers"].items():
            cohorts.kmeans.centers[int(c)].update((str(g), float(v)) for g, v in center.items())
            cohorts.kmeans.refresh(int(c))
        cohorts.counts = {str(k): {str(i): float(v) for i, v in vs.items()} for k, vs in state["counts"].items()}
        cohorts._recount()
        # a count pruned away still counts in its bucket's total and top (see _add)
        cohorts._max.update((str(k), float(v)) for k, v in state.get("max", {}).items())
        cohorts._total.update((str(k), float(v)) for k, v in state.get("total", {}).items())
        return cohorts


class ViewerCohorts:
    """Which cohort each of a partition's viewers is in, as its taste was last placed: about viewers,
    so kept by the viewers' partition (in memory only: recomputed from a viewer's taste when missing).

    >>> c, v = Cohorts(), ViewerCohorts()
    >>> cohort, taste = v.learn("u1", {"drama": 2.0}, applied=1, cohorts=c)
    >>> cohort, taste  # placed by the deployment's centres; the taste is for the deployment to learn
    (0, {'drama': 1.0})
    >>> v.learn("u1", {"drama": 2.0, "comedy": 1.0}, applied=2, cohorts=c)  # not due again yet
    (0, None)
    """

    def __init__(self) -> None:
        #: viewer id -> (cohort its taste was last placed in, events it had then)
        self.recent: dict[str, tuple[int, int]] = {}

    def of(self, user_id: str, genres: dict[str, float], cohorts: Cohorts) -> int | None:
        """The viewer's cohort as it was last placed (None: no taste yet, so no cohort)."""
        known = self.recent.get(user_id)
        if known is not None:
            return known[0]
        return cohorts.assign(Cohorts.taste(genres)) if genres else None

    def learn(
        self, user_id: str, genres: dict[str, float], applied: int, cohorts: Cohorts
    ) -> tuple[int | None, dict[str, float] | None]:
        """Place a changed taste (every :data:`LEARN_EVERY` of the viewer's events) by the deployment's
        centres and remember its cohort. Returns the cohort, and the taste for the deployment's cohorts
        to learn (None: not due, or no taste).

        A taste moves a little with each event; learning it at every batch would cost a k-means
        step per viewer per batch for almost no change.
        """
        known = self.recent.get(user_id)
        if known is not None and applied - known[1] < LEARN_EVERY:
            return known[0], None
        taste = Cohorts.taste(genres)
        if not taste:
            return None, None
        cohort = cohorts.assign(taste)
        if len(self.recent) >= REMEMBERED:
            self.recent.clear()  # each viewer's cohort is placed again from its taste at its next batch
        self.recent[user_id] = (cohort, applied)
        return cohort, taste

    def forget(self, user_id: str) -> None:
        """Forget which cohort the viewer was in (the centres and counts it moved identify nobody)."""
        self.recent.pop(user_id, None)
