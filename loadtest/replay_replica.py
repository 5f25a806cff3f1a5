"""An in-process replica of the pipeline's state, for predicting ratings honestly.

The worker publishes lists, not scores for a given title, so the replay keeps
its own copy of what the workers know, built by the project's own code: the
same :class:`~stream.processing.step.Processor`, one
:class:`~stream.learning.model.PartitionModel` per partition (viewers are assigned to
partitions by Kafka's default partitioner, as the producer does), and the same
profiles, fed the same events in the same per-partition order. Before an
interaction is applied, the model's score for that (viewer, title) is read
from its features (:func:`~stream.learning.features.features`); a River linear regression maps
it to the rating scale (predict, then learn) and River's MAE and RMSE score
that prediction, beside the running mean of the ratings seen so far.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from aiokafka.partitioner import DefaultPartitioner
from river import linear_model, metrics, optim

from stream.contracts.validation import decode_catalog
from stream.learning.catalog import Catalog
from stream.learning.features import ViewerTerms, features
from stream.learning.model import PartitionModel
from stream.learning.profile import Profile
from stream.processing.refresh import Refresher
from stream.processing.step import BatchResult, Processor, RawMessage
from stream.settings import Settings

__all__ = ["EVENTS_PER_S", "RatingScore", "Replica"]

#: The pace the replica's clock assumes (about a worker's on this machine's replays of MovieTweetings).
EVENTS_PER_S = 1000.0


class Replica:
    """The profiles and partition models the workers hold, rebuilt from the events the replay sends."""

    def __init__(self, catalog: Sequence[dict[str, Any]], settings: Settings, topic: str = "replica") -> None:
        self.catalog = Catalog()
        for doc in catalog:
            entry = decode_catalog(str(doc["item_id"]).encode(), orjson.dumps(doc))
            if entry is not None:
                self.catalog.upsert(entry)
        s = settings
        self.processor = Processor(
            self.catalog, s.top_k, s.max_event_bytes, s.half_life_days, s.diversity, s.exploration
        )
        self.partitions = list(range(settings.partitions))
        self.models = [PartitionModel() for _ in self.partitions]
        self.offsets = [0 for _ in self.partitions]
        #: Each viewer's profile as the worker's table keeps it: serialised (rounded) between batches.
        self.rows: dict[str, bytes] = {}
        self.topic = topic
        self._partitioner = DefaultPartitioner()
        #: Events applied. The caches a worker refreshes by the wall clock (the trending windows' values,
        #: every ``REFRESH_S``) go by this instead, as if a worker applied :data:`EVENTS_PER_S` a second:
        #: the same log and code then give the same lists however fast the machine runs the replay.
        self.events_applied = 0
        self.processor.shared.trending.clock = lambda: self.events_applied / EVENTS_PER_S
        #: Aged lists are re-ranked as the workers' are (``STREAM_REFRESH_AFTER_S``), by the newest event applied.
        self.refresher = Refresher.of(s)
        self.clock_ms = 0
        self.refreshed = 0

    def partition(self, user_id: str) -> int:
        return int(self._partitioner(user_id.encode(), self.partitions, self.partitions))

    def score(self, user_id: str, item_id: str, now_ms: int) -> float | None:
        """The model's score for the pair before the interaction (None for a title not in the catalog)."""
        idx = self.catalog.index_of(item_id)
        if idx is None:
            return None
        model = self.models[self.partition(user_id)]
        raw = self.rows.get(user_id)
        profile = Profile.loads(raw) if raw else Profile(user_id)
        x = features(ViewerTerms.of(profile, model, self.catalog, now_ms), self.catalog, idx)
        return float(model.predict_one(x))

    def read_list(self, user_id: str, now_ms: int) -> list[str]:
        """The viewer's list made at ``now_ms`` from its stored profile (what ``?fresh=true`` answers)."""
        raw = self.rows.get(user_id)
        if not raw:
            return []
        listed = self.processor.read_list(raw, self.models[self.partition(user_id)], now_ms)
        return [item["item_id"] for item in orjson.loads(listed)["items"]]

    def apply(self, user_id: str, events: Sequence[dict[str, Any]]) -> list[str]:
        """Apply one interaction's events as the worker does; returns the replica's list after them."""
        p = self.partition(user_id)
        key = user_id.encode()
        messages = []
        for doc in events:
            messages.append(RawMessage(key, orjson.dumps(doc), self.topic, p, self.offsets[p]))
            self.offsets[p] += 1
        self.events_applied += len(messages)
        result = self.processor.process(messages, self.rows, self.models[p], now_ms=int(events[-1]["ts"]))
        self._keep(p, result, None)
        if not result.snapshots:
            return []
        return [item["item_id"] for item in orjson.loads(result.snapshots[-1][1])["items"]]

    def refresh(self) -> dict[str, list[str]]:
        """Re-rank the lists that aged by the newest event applied, as a worker does between batches;
        returns each refreshed viewer's new list."""
        if self.refresher is None:
            return {}
        lists: dict[str, list[str]] = {}
        for p in self.refresher.partitions():
            due = self.refresher.due(p, self.clock_ms, len(self.rows))
            rows = {u: row for u in due if (row := self.rows.get(u))}
            if not rows:
                continue
            result = self.processor.refresh(rows, self.models[p], self.clock_ms, self.clock_ms)
            self._keep(p, result, self.clock_ms)
            self.refreshed += len(result.snapshots)
            for user, doc in result.snapshots:
                lists[user] = [item["item_id"] for item in orjson.loads(doc)["items"]]
        return lists

    def _keep(self, partition: int, result: BatchResult, ranked_ms: int | None) -> None:
        """Store the profiles a step wrote; advance the clock; schedule the lists' refreshes."""
        for user, profile in result.profiles.items():
            self.rows[user] = profile.dumps()
        if self.refresher is not None:
            self.clock_ms = max(self.clock_ms, self.refresher.note(partition, result, ranked_ms))


class RatingScore:
    """Progressive MAE and RMSE of the calibrated model score and of the running mean rating.

    Both predict before they learn. Predictions are clipped to the ratings' range;
    before any rating is seen both predict the middle of that range.

    >>> r = RatingScore(1.0, 5.0)
    >>> for score, rating in [(1.0, 5), (0.0, 1), (1.0, 5), (0.0, 1)]:
    ...     r.update(score, rating)
    >>> r.n, round(r.mean_mae.get(), 2)
    (4, 2.67)
    """

    def __init__(self, low: float, high: float) -> None:
        self.low, self.high = low, high
        middle = (low + high) / 2
        # The intercept starts at the middle of the scale and learns fast; the weight of the score
        # is what the model's score is worth in rating points.
        self.calibrator = linear_model.LinearRegression(
            optimizer=optim.SGD(0.02), intercept_init=middle, intercept_lr=0.02
        )
        self.mae, self.rmse = metrics.MAE(), metrics.RMSE()
        self.mean_mae, self.mean_rmse = metrics.MAE(), metrics.RMSE()
        self._sum, self.n = 0.0, 0
        self._middle = middle
        #: Per rated interaction: (|error| of the model, |error| of the mean), for the curves.
        self.trace: list[tuple[float, float]] = []

    def _clip(self, value: float) -> float:
        return min(self.high, max(self.low, value))

    def update(self, score: float, rating: float) -> None:
        x = {"score": score}
        predicted = self._clip(float(self.calibrator.predict_one(x)))
        mean = self._sum / self.n if self.n else self._middle
        self.mae.update(rating, predicted)
        self.rmse.update(rating, predicted)
        self.mean_mae.update(rating, mean)
        self.mean_rmse.update(rating, mean)
        self.trace.append((abs(rating - predicted), abs(rating - mean)))
        self.calibrator.learn_one(x, rating)
        self._sum += rating
        self.n += 1

    def summary(self) -> dict[str, Any]:
        return {
            "mae": self.mae.get() if self.n else None,
            "rmse": self.rmse.get() if self.n else None,
            "mean_rating_mae": self.mean_mae.get() if self.n else None,
            "mean_rating_rmse": self.mean_rmse.get() if self.n else None,
            "rated": self.n,
            "score_weight": float(self.calibrator.weights.get("score", 0.0)),
            "intercept": float(self.calibrator.intercept),
        }
