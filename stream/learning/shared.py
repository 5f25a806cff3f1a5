"""The deployment-wide model: what every partition and worker learns about titles from every viewer's events.

One *delta* per event applied anywhere that teaches it something: a start, a finish or like,
or an outcome (an early skip, a rewind). Each carries ``(source partition, offset, title)``,
the event's time and what it adds to the title's trending windows; one that teaches an outcome,
the pair's features and the outcome, which the outcome regression learns
(:mod:`stream.learning.outcome`); a finish or like, the viewer's recent positives before it and
the choice pairs. A replica counts each delta's trending in the last hour's windows
(:class:`~stream.learning.velocity.Trending`), folds the starts into the deployment's
popularity, and each finish or like into
the shared trend (both :class:`~stream.learning.trend.SharedTrend`: decayed counts), the
co-watch counts (:mod:`stream.learning.cowatch`), the item factors
(:mod:`stream.learning.factors`) and the choice learner (:mod:`stream.learning.choice`: what
the score's features are worth, learned from which titles viewers finish over those they
passed; the factors learn from the same choice, by the competitors' ids the delta carries),
once: a delta delivered again is recognised
by its source partition and offset. The model topic has one partition, so every replica
applies the same deltas in the same order: every worker ranks with the same counts and
weights, however many partitions feed them (with popularity counted per partition, each of
32 partitions knew a thirty-second of what is popular).

The taste cohorts are the deployment's too (:mod:`stream.learning.cohorts`): a finish or like
carries its viewer's cohort, device and daypart, which the cohorts' counts learn; and the delta
of a viewer's newest event in a batch carries what its list taught, its taste (for the centres)
and an exploration impression it spent (for the budgets). Deltas name a cohort by id, so the
centres must be the same in every replica: each worker publishes its cohorts' state
(:meth:`SharedModel.cohort_state`) and every replica adopts it (:meth:`SharedModel.adopt`).

In a worker the deltas come back from the model topic, so every worker's replica learns
every partition's deltas (:mod:`stream.runtime.app`); offline, the processor learns them at
once (:meth:`SharedModel.learn_delta`). A worker that starts takes a snapshot of a replica
(:meth:`SharedModel.to_state`, written to ``model-snapshots`` by one worker every few minutes:
:mod:`stream.contracts.snapshots`) and reads the model topic after the snapshot's offset.

>>> m = SharedModel()
>>> [m.apply(0, 1, "b", ["a"]), m.apply(0, 1, "b", ["a"]), m.apply(3, 1, "c", ["b", "a"])]
[True, False, True]
>>> m.apply(3, 2, "c", start=True)
True
>>> m.learned, sorted(m.cowatch.related(["a"])), round(m.popularity.share("c"), 2)
(3, ['b', 'c'], 1.0)
>>> m.apply(3, 3, "d", ["c"], competitors=(["b"], [0.0])), sorted(m.factors.index)
(True, ['b', 'c', 'd'])
>>> m.apply(3, 4, "d", positive=False, ts=1_767_225_600_000, trending=-3.0, outcome=([0.5] * 10, -1.0))
True
>>> m.outcome.learned, m.trending.of("d"), m.learned
(1, -1.0, 5)
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from typing import Any, NamedTuple, TypeGuard

import numpy as np

from stream.learning.choice import Choice
from stream.learning.cohorts import Cohorts
from stream.learning.cowatch import HALF_LIFE as COWATCH_HALF_LIFE
from stream.learning.cowatch import CoWatch
from stream.learning.factors import ItemFactors
from stream.learning.features import FEATURES
from stream.learning.outcome import PRIOR, Outcome
from stream.learning.trend import SharedTrend
from stream.learning.velocity import Exploration, Trending

__all__ = [
    "COHORT_HALF_LIFE",
    "KEPT_LESSONS",
    "POPULARITY_HALF_LIFE",
    "REPEATS",
    "SNAPSHOT_FORMAT",
    "WINDOW",
    "Bucket",
    "Competitors",
    "Delta",
    "Lesson",
    "Pairs",
    "SharedModel",
    "delta_cohorts",
    "delta_competitors",
    "delta_document",
    "delta_lesson",
    "delta_pairs",
]

#: What a finish or like teaches the choice learner: the chosen title's features less each passed
#: title's (a row each, FEATURES order), and what the rest of the score gives each difference.
Pairs = tuple[np.ndarray, np.ndarray]
#: The titles a finished or liked title competed with (ids), and each one's sampling correction
#: (see :func:`stream.learning.choice.competitors`): what the item factors learn the choice from.
Competitors = tuple[list[str], list[float]]
#: What an event teaches the outcome regression: the pair's features (FEATURES order) and the outcome.
Lesson = tuple[list[float], float]
#: Where a finish or like counts among the cohorts': (cohort, device or None, daypart 0-3).
Bucket = tuple[int, str | None, int]

#: Starts after which one counts half for popularity: over the whole deployment, what one partition
#: counted when each partition had its own (its 5,000 starts); a replay with one partition, the
#: same then, showed no loss on either kind of log.
POPULARITY_HALF_LIFE = 5000.0
#: Starts after which a cohort's count of a title weighs half (as popularity: what one partition's
#: counts had when each partition counted its own viewers' likes per cohort, over its 5,000 starts).
COHORT_HALF_LIFE = 5000.0
#: Deltas a starting worker reads back. About a third are finishes or likes (the rest are starts and
#: outcomes such as early skips), so the co-watch counts' older ones weigh about 2**-3 or less,
#: popularity's, the trend's and the hour's trending windows' far less: a replica is ready in
#: seconds however long the deployment has run.
WINDOW = 10 * int(COWATCH_HALF_LIFE)
#: Tastes and exploration impressions a replica keeps (with their model-topic offsets), to apply
#: again after taking the cohorts' state published a moment before (see :meth:`SharedModel.adopt`).
KEPT_LESSONS = 5000
#: Deltas among which a repeat is recognised: those a worker that took over a crashed one's
#: partitions publishes again come within seconds of the first.
REPEATS = 100_000
#: The version of :meth:`SharedModel.to_state`'s layout; a snapshot of another is not read.
SNAPSHOT_FORMAT = 1


_POPULARITY, _TREND, _FACTOR = FEATURES.index("popularity"), FEATURES.index("trend"), FEATURES.index("factor")


class Delta(NamedTuple):
    """One event a partition applied, as the deployment-wide model learns it."""

    offset: int  # the event's, in its partition
    item_id: str
    history: list[str]  # the viewer's recent positives before it, newest first
    pairs: Pairs | None  # what it teaches the choice learner (None: nothing)
    start: bool = False  # a start (popularity), not a finish or like
    competitors: Competitors | None = None  # what it teaches the item factors (None: nothing)
    positive: bool = True  # a finish or like (unless a start)
    ts: int = 0  # the event's time (epoch ms)
    trending: float = 0.0  # what it adds to the title's trending window of ``ts``
    outcome: Lesson | None = None  # what it teaches the outcome regression (None: nothing)
    cohort: Bucket | None = None  # a finish or like: the viewer's cohort and context, which count it
    taste: dict[str, float] | None = None  # the viewer's taste, for the cohorts' centres to learn
    explored: tuple[int, str] | None = None  # an exploration impression the viewer's list spent: (cohort, title)
    away: bool = False  # the pairs are the choice of a viewer back after a while


def delta_document(partition: int, delta: Delta) -> dict[str, Any]:
    """A delta of ``partition`` as the model topic carries it (schemas/model-delta.json)."""
    doc: dict[str, Any] = {"partition": partition, "offset": delta.offset, "item_id": delta.item_id}
    if delta.start:
        doc["start"] = True
    elif not delta.positive:
        doc["positive"] = False
    if delta.ts:
        doc["ts"] = delta.ts
    if delta.trending:
        doc["trending"] = delta.trending
    if delta.outcome is not None:
        doc["x"] = [round(v, 4) for v in delta.outcome[0]]
        doc["y"] = delta.outcome[1]
    if delta.history:
        doc["history"] = delta.history
    if delta.pairs is not None and len(delta.pairs[0]):
        diffs, offsets = delta.pairs
        doc["pairs"] = np.round(diffs, 4).tolist()
        doc["offsets"] = np.round(offsets, 4).tolist()
        if delta.away:
            doc["away"] = True
    if delta.competitors is not None and delta.competitors[0]:
        ids, corrections = delta.competitors
        doc["competitors"] = ids
        doc["corrections"] = [round(c, 4) for c in corrections]
    _cohort_fields(doc, delta)
    return doc


def _cohort_fields(doc: dict[str, Any], delta: Delta) -> None:
    if delta.cohort is not None:
        doc["cohort"] = list(delta.cohort)
    if delta.taste:
        doc["taste"] = {g: round(v, 4) for g, v in delta.taste.items()}
    if delta.explored is not None:
        doc["explored"] = list(delta.explored)


def delta_cohorts(doc: dict[str, Any]) -> tuple[Bucket | None, dict[str, float] | None, tuple[int, str] | None]:
    """The cohort bucket, taste and exploration impression of a delta's document (each None: none);
    ValueError if malformed."""
    bucket, taste, explored = doc.get("cohort"), doc.get("taste"), doc.get("explored")
    if bucket is not None:
        if not (isinstance(bucket, list) and len(bucket) == 3 and _index(bucket[0]) and _index(bucket[2], 4)):
            raise ValueError("cohort: expected [cohort, device or null, daypart 0-3]")
        if bucket[1] is not None and not _title(bucket[1]):
            raise ValueError("cohort: expected a device name or null")
        bucket = (bucket[0], bucket[1], bucket[2])
    if taste is not None:
        if not isinstance(taste, dict) or not all(_number(v) and abs(v) <= 1.0 for v in taste.values()):
            raise ValueError("taste: expected genre -> a number from -1 to 1")
        taste = {str(g): float(v) for g, v in taste.items()}
    if explored is not None:
        if not (isinstance(explored, list) and len(explored) == 2 and _index(explored[0]) and _title(explored[1])):
            raise ValueError("explored: expected [cohort, title id]")
        explored = (explored[0], explored[1])
    return bucket, taste, explored


def _number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _title(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


def _index(value: Any, below: int | None = None) -> bool:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
    return ok and (below is None or value < below)


def delta_pairs(doc: dict[str, Any]) -> Pairs | None:
    """The choice pairs of a delta's document (None: none); ValueError if they do not fit the features."""
    if "pairs" not in doc:
        return None
    diffs = np.asarray(doc["pairs"], dtype=np.float64)
    offsets = np.asarray(doc["offsets"], dtype=np.float64)
    if diffs.ndim == 2 and diffs.shape[1] == len(FEATURES) - 1:  # written before the factor feature: 0
        diffs = np.insert(diffs, _FACTOR, 0.0, axis=1)
    if diffs.ndim != 2 or diffs.shape[1] != len(FEATURES) or offsets.shape != (len(diffs),):
        raise ValueError(f"pairs: expected rows of {len(FEATURES)} features and one offset per row")
    if not (np.isfinite(diffs).all() and np.isfinite(offsets).all()):
        raise ValueError("pairs: expected finite numbers")
    return diffs, offsets


def delta_lesson(doc: dict[str, Any]) -> Lesson | None:
    """The outcome a delta's document teaches (None: none); ValueError if malformed."""
    if "x" not in doc:
        return None
    x, y = doc["x"], doc.get("y")
    if not isinstance(x, list) or len(x) != len(FEATURES):
        raise ValueError(f"x: expected the {len(FEATURES)} features of the pair")
    values = [float(v) for v in x]
    if not _number(y) or not all(math.isfinite(v) for v in values):
        raise ValueError("x, y: expected finite numbers")
    return values, float(y)


def delta_competitors(doc: dict[str, Any]) -> Competitors | None:
    """The competitors of a delta's document (None: none); ValueError if malformed."""
    if "competitors" not in doc:
        return None
    ids, corrections = doc["competitors"], doc.get("corrections")
    if not isinstance(ids, list) or not all(isinstance(i, str) and i for i in ids):
        raise ValueError("competitors: expected a list of title ids")
    if not isinstance(corrections, list) or len(corrections) != len(ids):
        raise ValueError("corrections: expected one number per competitor")
    values = [float(c) for c in corrections]
    if not all(np.isfinite(values)):
        raise ValueError("corrections: expected finite numbers")
    return ids, values


class SharedModel:
    def __init__(self, repeats: int = REPEATS) -> None:
        self.popularity = SharedTrend(POPULARITY_HALF_LIFE, scale=None)
        self.trend = SharedTrend()
        self.cowatch = CoWatch()
        self.factors = ItemFactors()
        # every feature is built so that more of it speaks for a title: no ranking weight (the prior's plus
        # the correction learned) goes below 0 (see Choice's floor and the README's "What a snapshot reflects")
        self.choice = Choice(floor={f: -PRIOR[f] for f in FEATURES})
        self.outcome = Outcome()
        self.trending = Trending()
        #: Viewers' taste cohorts: their centres, and what each cohort finished or liked (by context).
        self.cohorts = Cohorts()
        #: Exploration impressions each new release had, per cohort (see :mod:`stream.learning.velocity`).
        self.exploration = Exploration()
        self._cohort_unit = 1.0
        #: Model-topic offset of the newest record applied (-1: none; offline: unused).
        self.position = -1
        # (offset, taste, explored) of the newest records carrying either, and the offset after which
        # none is missing (a replica that started reading later cannot know the earlier ones)
        self._lessons: deque[tuple[int, dict[str, float] | None, tuple[int, str] | None]] = deque()
        self._lessons_after = -1
        #: Deltas learned (each once).
        self.learned = 0
        self.repeats = repeats
        self._recent: deque[tuple[int, int]] = deque()
        self._seen: set[tuple[int, int]] = set()

    def apply(
        self,
        partition: int,
        offset: int,
        item: str,
        history: Sequence[str] = (),
        pairs: Pairs | None = None,
        start: bool = False,
        competitors: Competitors | None = None,
        positive: bool = True,
        ts: int = 0,
        trending: float = 0.0,
        outcome: Lesson | None = None,
        cohort: Bucket | None = None,
        taste: dict[str, float] | None = None,
        explored: tuple[int, str] | None = None,
        away: bool = False,
    ) -> bool:
        """Fold in one delta (the fields of :class:`Delta`); False (and nothing changes) if it was applied
        before (among the last :attr:`repeats`)."""
        key = (partition, offset)
        if key in self._seen:
            return False
        self._seen.add(key)
        self._recent.append(key)
        if len(self._recent) > self.repeats:
            self._seen.discard(self._recent.popleft())
        fields = (pairs, start, competitors, positive, ts, trending, outcome, cohort, taste, explored, away)
        self.learn_delta(Delta(offset, item, list(history), *fields))
        return True

    def learn_delta(self, delta: Delta) -> None:
        """Fold in one delta (no repeat check: for in-process use, and :meth:`apply`'s)."""
        if delta.start:
            self.learn_start(delta.item_id)
        elif delta.positive:
            self.learn(delta.item_id, delta.history, delta.pairs, delta.competitors, delta.away)
        else:
            self.learned += 1
        if delta.outcome is not None:  # the outcome regression
            x, y = delta.outcome
            self.outcome.learn_one(dict(zip(FEATURES, x, strict=True)), y)
        if delta.trending:
            self.trending.record(delta.item_id, delta.ts, delta.trending)
        if delta.cohort is not None and delta.positive and not delta.start:
            cohort, device, part = delta.cohort
            self.cohorts.record(delta.item_id, cohort, device, part, self._cohort_unit)
        self.learn_viewer(delta.taste, delta.explored)

    def learn_viewer(self, taste: dict[str, float] | None = None, explored: tuple[int, str] | None = None) -> None:
        """What a viewer's list taught, with its delta or (in-process) at once: its taste (``taste``, for
        the cohorts' centres) and an exploration impression spent (``explored``: its cohort, the title)."""
        if taste:
            self.cohorts.learn(taste)
        if explored is not None:
            self.exploration.spend(*explored)

    def apply_document(self, doc: dict[str, Any], position: int | None = None) -> bool:
        """Fold in one delta as the model topic carries it (schemas/model-delta.json), as :meth:`apply`;
        ValueError (and nothing changes) if it is not one. ``position``: its offset in the model topic
        (in a worker), which :meth:`cohort_state` and :meth:`adopt` go by."""
        try:
            partition, offset, item_id = int(doc["partition"]), int(doc["offset"]), str(doc["item_id"])
            history = [str(h) for h in doc.get("history", ())]
            pairs, competitors, outcome = delta_pairs(doc), delta_competitors(doc), delta_lesson(doc)
            start, positive = doc.get("start", False), doc.get("positive", True)
            ts, trending, away = doc.get("ts", 0), doc.get("trending", 0.0), doc.get("away", False)
            cohort, taste, explored = delta_cohorts(doc)
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a model delta: {exc!r}") from exc
        if not all(isinstance(flag, bool) for flag in (start, positive, away)):
            raise ValueError("start, positive, away: expected true or false")
        if not isinstance(ts, int) or isinstance(ts, bool) or ts < 0:
            raise ValueError("ts: expected epoch milliseconds")
        if not _number(trending):
            raise ValueError("trending: expected a number")
        applied = self.apply(
            partition, offset, item_id, history, pairs, start, competitors, positive, ts, float(trending), outcome,
            cohort, taste, explored, away,
        )  # fmt: skip
        if position is not None:
            self.position = position
            if applied and (taste or explored is not None):
                self._keep_lesson(position, taste, explored)
        return applied

    def _keep_lesson(self, position: int, taste: dict[str, float] | None, explored: tuple[int, str] | None) -> None:
        if len(self._lessons) >= KEPT_LESSONS:
            self._lessons_after = self._lessons.popleft()[0]
        self._lessons.append((position, taste, explored))

    def reading_from(self, position: int) -> None:
        """The replica reads the model topic from this offset on (what came before is not known to it)."""
        self.position = position - 1
        self._lessons_after = position - 1

    # -- the cohorts' state: centres and exploration impressions, synced through the model topic ----------

    def cohort_state(self) -> dict[str, Any]:
        """The cohorts' centres and the exploration impressions exactly as they are (``as_of``: the model-topic
        offset of the newest record applied), for every replica to :meth:`adopt` (schemas/model-cohorts.json).

        The cohorts' ids must mean the same in every replica (a delta carries its viewer's cohort by id),
        and a worker that starts learns the centres only from the deltas it reads back: without this,
        its centres (seeded by the first tastes it reads) would not be the others'.
        """
        kmeans = self.cohorts.kmeans
        return {
            "as_of": self.position,
            "seeded": self.cohorts.seeded,
            "centers": [dict(kmeans.centers[c]) for c in range(self.cohorts.n)],
            "explored": list(self.exploration.shown.items()),
        }

    def adopt(self, state: dict[str, Any], position: int) -> bool:
        """Take a :meth:`cohort_state` read at model-topic offset ``position``: the centres and impressions as
        of its ``as_of``, then the tastes and impressions of the records between, again. A replica that holds
        the same ends where it was; one that started later ends where the others are. False (and nothing
        changes) if this replica does not hold every record between (it started reading after ``as_of``)."""
        as_of, seeded = int(state["as_of"]), int(state["seeded"])
        # read whole before anything changes: a malformed state raises and leaves the replica as it was
        centers = [{str(g): float(v) for g, v in center.items()} for center in state["centers"]]
        shown = {str(k): int(n) for k, n in state["explored"]}
        if as_of < self._lessons_after or not 0 <= seeded <= self.cohorts.n or len(centers) != self.cohorts.n:
            return False
        kmeans = self.cohorts.kmeans
        for c, center in enumerate(centers):
            kmeans.centers[c].clear()
            kmeans.centers[c].update(center)
            kmeans.refresh(c)
        self.cohorts.seeded = seeded
        self.exploration.shown = shown
        for at, taste, explored in self._lessons:
            if as_of < at < position:
                self.learn_viewer(taste, explored)
        self.position = position
        return True

    def learn(
        self,
        item: str,
        history: Sequence[str] = (),
        pairs: Pairs | None = None,
        competitors: Competitors | None = None,
        away: bool = False,
    ) -> None:
        """One more finish or like (no repeat check: for in-process use); ``away``: chosen by a viewer back
        after a while."""
        self.learned += 1
        self.trend.learn(item)
        self.cowatch.learn(item, history)
        if competitors is not None and competitors[0]:
            self.factors.learn(item, history, *competitors)
        if pairs is not None and len(pairs[0]):
            self.choice.learn_many(*pairs, away=away)

    def without_viewer(self, parts: np.ndarray, item: str, started: bool, liked: bool) -> None:
        """Take the viewer's own start (``started``) and earlier finish or like (``liked``) of ``item`` out
        of its popularity and trend features (``parts``: its row, FEATURES order), in place.

        What a finish teaches (the outcome regression, the choice pairs) must see the title as the
        viewer chose it: its own start, counted a moment before, would otherwise teach that
        what viewers finish is popular because they started it."""
        if started:
            parts[_POPULARITY] = self.popularity.value(item, less=1.0)
        if liked:
            parts[_TREND] = self.trend.value(item, less=1.0)

    def learn_start(self, item: str) -> None:
        """One more start (no repeat check: for in-process use). The cohorts' counts fade by the starts: the
        unit they are counted in grows (growing it, rather than shrinking every count, keeps this O(1))."""
        self.learned += 1
        self.popularity.learn(item)
        self._cohort_unit *= 2.0 ** (1.0 / COHORT_HALF_LIFE)
        if self._cohort_unit > 1e12:
            self.cohorts.rescale(self._cohort_unit)
            self._cohort_unit = 1.0

    # -- the snapshot: the whole replica, exactly ------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """Everything this replica holds, exactly, as of model-topic offset :attr:`position`: a replica that
        takes it (:meth:`restore`) and applies the records after that offset holds what this one then holds.
        JSON values (every finite float round-trips) and numpy arrays (the item factors, the co-counts by column),
        which :func:`stream.contracts.snapshots.pack` stores as they are.

        It reads only, and refers to the live counts: pack it before the next delta is applied."""
        lessons = [[at, taste, None if explored is None else list(explored)] for at, taste, explored in self._lessons]
        return {
            "format": SNAPSHOT_FORMAT, "position": self.position, "learned": self.learned,
            "popularity": self.popularity.to_state(), "trend": self.trend.to_state(),
            "cowatch": self.cowatch.to_state(), "factors": self.factors.to_state(), "choice": self.choice.to_state(),
            "outcome": self.outcome.to_state(), "trending": self.trending.to_state(),
            "cohorts": self.cohorts.to_state(), "cohort_unit": self._cohort_unit,
            "exploration": self.exploration.to_state(),
            "lessons": lessons, "lessons_after": self._lessons_after,
            "repeats": self.repeats, "recent": [list(key) for key in self._recent],
        }  # fmt: skip

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> SharedModel:
        """The replica of a :meth:`to_state`; ValueError if it is not one (or of another format)."""
        if not isinstance(state, dict) or state.get("format") != SNAPSHOT_FORMAT:
            raise ValueError(f"not a snapshot of the shared model's format {SNAPSHOT_FORMAT}")
        try:
            model = cls(int(state["repeats"]))
            model.position, model.learned = int(state["position"]), int(state["learned"])
            model.popularity = SharedTrend.from_state(state["popularity"])
            model.trend = SharedTrend.from_state(state["trend"])
            model.cowatch = CoWatch.from_state(state["cowatch"])
            model.factors = ItemFactors.from_state(state["factors"])
            model.choice = Choice.from_state(state["choice"], floor=model.choice.floor)  # the code's floor
            model.outcome = Outcome.from_state(state["outcome"])
            model.trending = Trending.from_state(state["trending"])
            model.cohorts = Cohorts.from_state(state["cohorts"])
            model._cohort_unit = float(state["cohort_unit"])
            model.exploration = Exploration.from_state(state["exploration"])
            for at, taste, explored in state["lessons"]:
                kept = None if explored is None else (int(explored[0]), str(explored[1]))
                model._lessons.append((int(at), None if taste is None else dict(taste), kept))
            model._lessons_after = int(state["lessons_after"])
            model._recent.extend((int(p), int(o)) for p, o in state["recent"])
        except (KeyError, TypeError, IndexError, AttributeError) as exc:
            raise ValueError(f"not a snapshot of the shared model: {exc!r}") from exc
        model._seen = set(model._recent)
        return model

    def restore(self, state: dict[str, Any]) -> None:
        """Become the replica of a :meth:`to_state`, in place (partitions and the processor hold this
        object); ValueError, and nothing changes, if it is not one."""
        self.become(SharedModel.from_state(state))

    def become(self, other: SharedModel) -> None:
        """Hold what ``other`` holds, in place (``other`` is not to be used after)."""
        self.__dict__.update(other.__dict__)

    @property
    def unit(self) -> float:
        """What one finish or like adds to a cohort's count now (see :meth:`learn_start`)."""
        return self._cohort_unit
