"""Which viewers' lists have aged: the schedule of snapshot refreshes.

A viewer's snapshot is ranked when its events arrive, with the trend, the co-watch counts and
the item factors as they are then. A viewer who comes back days later would read a list ranked
for a catalog that has moved on: last week's trend. So a worker re-ranks a viewer's list once it
is ``after_ms`` old in event time (the deployment's clock: the newest event applied, never ahead
of the wall clock), as long as the viewer's newest event is at most ``active_ms`` old; a viewer
gone for longer gets one every ``idle_ms`` instead, until that event is :data:`IDLE_UNTIL_MS` old,
which bounds the work (at most ``active_ms / after_ms + IDLE_UNTIL_MS / idle_ms`` refreshes for
each spell of activity). The first refresh after an event comes ``lead_ms`` early, so that the
refreshes fall a little before the hour of day the viewer was last active: one back at its usual
hour reads a list ranked hours before, not one about to come up.

Per partition, a heap of (due, viewer); a viewer listed again before its entry comes up
just moves its due time (the old entry is skipped when it surfaces, and the heap is rebuilt
from the live entries once the skipped ones outnumber them). Revoking a partition
drops its schedule; the partition's next owner schedules its viewers from the snapshots it
recovers (:meth:`seed`).

>>> r = Refresher(after_ms=100, active_ms=250)
>>> r.listed(0, "ann", ranked_ms=1000, last_event_ms=1000)
>>> r.listed(0, "bob", ranked_ms=1050, last_event_ms=1050)
>>> r.due(0, clock_ms=1120, limit=10)
['ann']
>>> r.listed(0, "ann", ranked_ms=1120, last_event_ms=1000)  # ann's list refreshed at 1120
>>> r.due(0, clock_ms=1300, limit=10)  # bob's came up at 1150, ann's next at 1220
['bob', 'ann']
>>> r.listed(0, "ann", ranked_ms=1300, last_event_ms=1000)  # at 1400 her newest event is 400 old: no more
>>> r.pending(0)
0
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from typing import TYPE_CHECKING

import orjson

if TYPE_CHECKING:
    from stream.processing.step import BatchResult
    from stream.settings import Settings

__all__ = [
    "COMPACT_SLACK",
    "IDLE_UNTIL_MS",
    "REFRESH_EVERY_S",
    "REFRESH_MAX",
    "REFRESH_PASS",
    "SEED_CHUNK",
    "Refresher",
]

#: Skipped entries a partition's heap may hold beyond twice its live ones before it is rebuilt.
COMPACT_SLACK = 1024
#: How often a worker looks for aged lists; at most REFRESH_MAX lists a round, REFRESH_PASS in one ranking pass
#: (the worker's lock is released between passes, so a round never holds the events' batches up for long).
REFRESH_EVERY_S = 0.5
REFRESH_MAX = 500
REFRESH_PASS = 50
#: Stored snapshots a worker taking partitions over reads between two turns of its event loop (see Refresher.seed).
SEED_CHUNK = 2000
#: A viewer past the active window is refreshed at the idle pace until its newest event is this old (a year).
IDLE_UNTIL_MS = 365 * 86_400_000


class Refresher:
    """Per partition, when each viewer's list comes up for a refresh (event-time ms)."""

    def __init__(self, after_ms: int, active_ms: int, lead_ms: int = 0, idle_ms: int = 0) -> None:
        if after_ms <= 0:
            raise ValueError(f"after_ms: expected more than 0; got {after_ms}")
        if not 0 <= lead_ms < after_ms:
            raise ValueError(f"lead_ms: expected at least 0 and less than after_ms ({after_ms}); got {lead_ms}")
        self.after_ms = after_ms
        self.active_ms = active_ms
        self.lead_ms = lead_ms
        self.idle_ms = idle_ms
        self._heaps: dict[int, list[tuple[int, str]]] = {}
        self._due: dict[int, dict[str, int]] = {}  # partition -> viewer -> its live entry's due time

    @classmethod
    def of(cls, settings: Settings) -> Refresher | None:
        """The schedule ``STREAM_REFRESH_AFTER_S``, ``_ACTIVE_S``, ``_LEAD`` and ``_IDLE_S`` ask for (None: none)."""
        if settings.refresh_after_s <= 0:
            return None
        after = int(settings.refresh_after_s * 1000)
        active, idle = int(settings.refresh_active_s * 1000), int(settings.refresh_idle_s * 1000)
        return cls(after, active, int(after * settings.refresh_lead), idle)

    def listed(self, partition: int, user_id: str, ranked_ms: int, last_event_ms: int) -> None:
        """The viewer's list was ranked at ``ranked_ms``: it comes up ``after_ms`` later (``after_ms - lead_ms``
        after a list its newest event brought, so that the refreshes fall ``lead_ms`` before each whole
        ``after_ms`` since that event), unless the viewer's newest event will be more than ``active_ms`` old by then:
        then ``idle_ms`` later (0: never), while that event is at most :data:`IDLE_UNTIL_MS` old.

        >>> r = Refresher(after_ms=100, active_ms=1000, lead_ms=20)
        >>> r.listed(0, "ann", ranked_ms=1000, last_event_ms=1000)  # comes up at 1080
        >>> r.due(0, clock_ms=1079, limit=10), r.due(0, clock_ms=1080, limit=10)
        ([], ['ann'])
        >>> r.listed(0, "ann", ranked_ms=1080, last_event_ms=1000)  # refreshed then: next at 1180
        >>> r.due(0, clock_ms=1179, limit=10), r.due(0, clock_ms=1180, limit=10)
        ([], ['ann'])
        >>> idle = Refresher(after_ms=100, active_ms=250, idle_ms=300)
        >>> idle.listed(0, "bob", ranked_ms=1200, last_event_ms=1000)  # 1300 is past the window: 1500
        >>> idle.due(0, clock_ms=1499, limit=10), idle.due(0, clock_ms=1500, limit=10)
        ([], ['bob'])
        >>> idle.listed(0, "bob", ranked_ms=1000 + IDLE_UNTIL_MS - 299, last_event_ms=1000)  # then a year: no more
        >>> idle.pending(0)
        0
        """
        due = ranked_ms + self.after_ms - (self.lead_ms if ranked_ms <= last_event_ms else 0)
        live = self._due.setdefault(partition, {})
        if due - last_event_ms > self.active_ms:
            due = ranked_ms + self.idle_ms
            if self.idle_ms <= 0 or due - last_event_ms > IDLE_UNTIL_MS:
                live.pop(user_id, None)  # an entry left in the heap is skipped when it surfaces
                return
        live[user_id] = due
        heap = self._heaps.setdefault(partition, [])
        heapq.heappush(heap, (due, user_id))
        if len(heap) > 2 * len(live) + COMPACT_SLACK:
            heap[:] = [(at, user) for user, at in live.items()]
            heapq.heapify(heap)

    def seed(self, partition: int, snapshot: bytes) -> None:
        """Schedule a viewer from its stored snapshot, as a worker taking its partition over finds it (ranked at
        its ``refreshed_at``, else at its trigger); a viewer already scheduled since keeps its entry.

        >>> r = Refresher(after_ms=100, active_ms=1000)
        >>> r.seed(0, b'{"user_id": "ann", "personalised": true, "trigger": {"ts": 50}, "refreshed_at": 500}')
        >>> r.seed(0, b'{"user_id": "out", "personalised": false, "trigger": {"ts": 50}}')
        >>> r.due(0, clock_ms=599, limit=10), r.due(0, clock_ms=600, limit=10)  # "out": not personalised
        ([], ['ann'])
        """
        doc = orjson.loads(snapshot)
        user_id, last = doc["user_id"], (doc.get("trigger") or {}).get("ts")
        if not doc.get("personalised") or not isinstance(last, int) or user_id in self._due.get(partition, {}):
            return
        self.listed(partition, user_id, int(doc.get("refreshed_at", last)), last)

    def note(self, partition: int, result: BatchResult, ranked_ms: int | None = None) -> int:
        """Schedule each personalised list of a step's result (ranked at ``ranked_ms``; None: at its viewer's
        newest event, as a batch of events ranks); returns the newest event time of the viewers it wrote."""
        newest = 0
        for profile in result.profiles.values():
            newest = max(newest, profile.last_ts)
        for user_id, _ in result.snapshots:
            written = result.profiles.get(user_id)
            if written is not None and written.personalised:
                ranked = ranked_ms if ranked_ms is not None else written.last_ts
                self.listed(partition, user_id, ranked, written.last_ts)
        return newest

    def due(self, partition: int, clock_ms: int, limit: int) -> list[str]:
        """Up to ``limit`` viewers whose lists are due at ``clock_ms``, the longest due first; each leaves
        the schedule (:meth:`listed` puts it back once its list is refreshed)."""
        heap, live = self._heaps.get(partition, []), self._due.get(partition, {})
        out: list[str] = []
        while heap and len(out) < limit and heap[0][0] <= clock_ms:
            due, user_id = heapq.heappop(heap)
            if live.get(user_id) == due:
                del live[user_id]
                out.append(user_id)
        return out

    def pending(self, partition: int) -> int:
        """Viewers of the partition with a refresh to come."""
        return len(self._due.get(partition, {}))

    def partitions(self) -> list[int]:
        return sorted(self._due)

    def drop(self, partitions: Iterable[int]) -> None:
        """Forget the schedule of partitions this worker no longer holds."""
        for p in partitions:
            self._heaps.pop(p, None)
            self._due.pop(p, None)
