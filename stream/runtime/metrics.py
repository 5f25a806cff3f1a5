"""The worker's Prometheus metrics, served at ``GET /metrics`` in the text exposition format.

Every metric lives in the app's own registry (several apps in one process keep theirs
apart). No label names a viewer or a title: labels are topics, partitions, bounded
reason categories, command kinds, routes and status codes.

>>> from prometheus_client.parser import text_string_to_metric_families
>>> m = Metrics()
>>> m.dead_letter("playback-events", "item_id: expected a title published on the catalog topic; got 'x'")
>>> m.dead_letter("playback-events", "value: expected valid JSON; got ...")
>>> families = {f.name: f for f in text_string_to_metric_families(m.exposition().decode())}
>>> sorted((s.labels["reason"], s.value) for s in families["stream_dead_letters"].samples if s.name.endswith("_total"))
[('item_id', 1.0), ('value', 1.0)]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from stream.contracts.topics import TOPICS_DIR, load_schema

__all__ = ["CATEGORIES", "CONTENT_TYPE", "Metrics", "gauge", "reason_of"]

#: The text exposition format (UTF-8, its default charset; aiohttp takes no charset here).
CONTENT_TYPE = "text/plain; version=0.0.4"


def _fields(schema: Any) -> set[str]:
    names: set[str] = set()
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key == "properties" and isinstance(value, dict):
                names.update(value)
            names |= _fields(value)
    elif isinstance(schema, list):
        for value in schema:
            names |= _fields(value)
    return names


#: What a reason may be labelled by: a field of a message schema, or a phrase the code writes.
CATEGORIES = frozenset(
    set().union(*(_fields(load_schema(f"schemas/{path.name}")) for path in (TOPICS_DIR / "schemas").glob("*.json")))
    | {"key", "value", "processing failed"}
)


def reason_of(error: str) -> str:
    """The bounded category of a dead letter's reason: the field (or fixed phrase) before its first
    colon when it is one of :data:`CATEGORIES`, else ``other``, so no value ever becomes a label.

    >>> reason_of("item_id: expected a title published on the catalog topic; got 'nope' (unknown)")
    'item_id'
    >>> reason_of("processing failed: ZeroDivisionError: float division by zero (a defect ...)")
    'processing failed'
    >>> reason_of("u1-3: something"), reason_of("no colon here")
    ('other', 'other')
    """
    head, colon, _ = error.partition(":")
    return head if colon and head in CATEGORIES else "other"


class _Callback(Collector):
    """Gauges read when scraped (consumer lag, what the models learned)."""

    def __init__(self, read: Callable[[], Iterable[GaugeMetricFamily]]) -> None:
        self.read = read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield from self.read()


class Metrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.applied = Counter("stream_events_applied", "Playback events that changed state", registry=r)
        self.duplicates = Counter(
            "stream_duplicates", "Playback events seen before (redelivered or published twice)", registry=r
        )
        self.dead_letters = Counter(
            "stream_dead_letters", "Messages sent to a dead-letter topic", ["topic", "reason"], registry=r
        )
        self.commands = Counter("stream_commands", "Viewer commands applied, by kind", ["kind"], registry=r)
        self.ignored = Counter(
            "stream_events_ignored",
            "Playback events that changed nothing: personalisation off, or from before a forget",
            registry=r,
        )
        self.snapshots = Counter("stream_snapshots", "Recommendation snapshots published", registry=r)
        self.refreshed = Counter(
            "stream_snapshots_refreshed", "Snapshots re-ranked because they had aged (no new event)", registry=r
        )
        self.failed = Counter(
            "stream_events_failed", "Valid events whose processing raised (dead-lettered)", registry=r
        )
        self.unranked = Counter("stream_viewers_unranked", "Changed viewers whose list could not be made", registry=r)
        self.catalog_waits = Counter(
            "stream_catalog_waits", "Fetches that waited for the catalog reader (they named unknown titles)", registry=r
        )
        self.batch_events = Histogram(
            "stream_batch_events",
            "Messages (playback events and commands) per batch step",
            buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000),
            registry=r,
        )
        self.latency = Histogram(
            "stream_event_to_snapshot_seconds",
            "From a playback event's record timestamp to its viewer's snapshot being sent",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=r,
        )
        self.staleness = Histogram(
            "stream_model_staleness_seconds",
            "From a model delta's publication to its application in this worker's replica",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=r,
        )
        self.http = Counter(
            "stream_http_requests", "HTTP requests served, by route and status", ["route", "status"], registry=r
        )

    def dead_letter(self, topic: str, error: str) -> None:
        self.dead_letters.labels(topic=topic, reason=reason_of(error)).inc()

    def watch(self, read: Callable[[], Iterable[GaugeMetricFamily]]) -> None:
        """Gauges computed at each scrape by ``read``."""
        self.registry.register(_Callback(read))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def gauge(name: str, documentation: str, labels: list[str], samples: Iterable[tuple[list[str], float]]) -> Any:
    """A gauge family for a :meth:`Metrics.watch` reader."""
    family = GaugeMetricFamily(name, documentation, labels=labels)
    for values, value in samples:
        family.add_metric(values, value)
    return family
