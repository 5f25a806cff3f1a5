"""Which interaction the replay may publish next, and what it is judged against.

The rules, as plain code (no Kafka), so they can be tested on their own:

1. A viewer's interactions go out in the log's order, one at a time: the next
   one is released only when the snapshot whose ``trigger.event_id`` is the
   previous interaction's last event has arrived (or after ``wait_s``, counted
   as a time-out, so one lost snapshot cannot stall a run).
2. Among the viewers free to go, the interaction with the earliest time stamp
   goes first, and at most ``parallel`` viewers wait for a snapshot at once.
3. An interaction is judged against the newest snapshot of its viewer received
   before its first event is published. That snapshot cannot reflect it; as a
   second line of defence, a snapshot that claims more applied events than
   were published before the interaction is refused (``leaks_refused``).

>>> from loadtest.replay_formats import Interaction
>>> ev = lambda i, n: [{"event_id": f"e{i}.{k}"} for k in range(n)]
>>> log = [Interaction(0, "u1", "a", 0, ev(0, 2)), Interaction(1, "u1", "b", 5, ev(1, 2))]
>>> pacer = Pacer(log, parallel=4)
>>> [r.interaction.index for r in pacer.release(now=0.0)]  # u1's second waits for the first's snapshot
[0]
>>> pacer.release(now=0.0)
[]
>>> snap = {"user_id": "u1", "version": 1, "events_applied": 2, "trigger": {"event_id": "e0.1"},
...         "items": [{"item_id": "b"}]}
>>> pacer.on_snapshot(snap, now=0.1)
True
>>> [(r.interaction.index, r.items, r.sent_before) for r in pacer.release(now=0.1)]
[(1, ['b'], 2)]
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .replay_formats import Interaction

__all__ = ["Pacer", "Release", "reflects"]


@dataclass
class Release:
    interaction: Interaction
    #: The model's list (title ids, best first) this interaction is judged against; None: no snapshot yet.
    items: list[str] | None
    #: Events of this viewer published before this interaction.
    sent_before: int
    #: ``events_applied`` and ``version`` of the snapshot judged against (None without one).
    snapshot_applied: int | None = None
    snapshot_version: int | None = None


def reflects(snapshot: dict[str, Any], sent_before: int, event_ids: Iterable[str]) -> bool:
    """Whether ``snapshot`` could reflect an interaction whose events are not yet published.

    It could if it claims more applied events than were published before the
    interaction, or if its trigger is one of the interaction's own events.

    >>> reflects({"events_applied": 3, "trigger": {"event_id": "x"}}, 3, ["e1"])
    False
    >>> reflects({"events_applied": 4, "trigger": {"event_id": "x"}}, 3, ["e1"])
    True
    >>> reflects({"events_applied": 3, "trigger": {"event_id": "e1"}}, 3, ["e1"])
    True
    """
    trigger = (snapshot.get("trigger") or {}).get("event_id")
    return int(snapshot.get("events_applied", 0)) > sent_before or trigger in set(event_ids)


class Pacer:
    def __init__(self, interactions: Iterable[Interaction], parallel: int = 64, wait_s: float = 30.0) -> None:
        if parallel < 1:
            raise ValueError(f"parallel: expected at least 1; got {parallel}")
        self.parallel = parallel
        self.wait_s = wait_s
        self.queues: dict[str, deque[Interaction]] = {}
        for item in sorted(interactions, key=lambda i: (i.ts, i.index)):
            self.queues.setdefault(item.user_id, deque()).append(item)
        #: Heads of the viewers free to go: (ts, index, viewer).
        self._ready = [(q[0].ts, q[0].index, user) for user, q in self.queues.items()]
        heapq.heapify(self._ready)
        #: Viewer -> (event id awaited, when its interaction was released).
        self.awaiting: dict[str, tuple[str, float]] = {}
        self.latest: dict[str, dict[str, Any]] = {}
        self.sent: dict[str, int] = {}
        self.released = 0
        self.timeouts = 0
        self.leaks_refused = 0
        self.total = sum(len(q) for q in self.queues.values())

    @property
    def done(self) -> bool:
        """Every interaction released and every awaited snapshot in (or timed out)."""
        return self.released == self.total and not self.awaiting

    def on_snapshot(self, snapshot: dict[str, Any], now: float) -> bool:
        """Take a snapshot in; True when it frees its viewer for the next interaction."""
        user = snapshot["user_id"]
        known = self.latest.get(user)
        if known is None or snapshot["version"] > known["version"]:
            self.latest[user] = snapshot
        waiting = self.awaiting.get(user)
        if waiting is not None and (snapshot.get("trigger") or {}).get("event_id") == waiting[0]:
            self._free(user)
            return True
        return False

    def _free(self, user: str) -> None:
        del self.awaiting[user]
        queue = self.queues[user]
        if queue:
            heapq.heappush(self._ready, (queue[0].ts, queue[0].index, user))

    def expire(self, now: float) -> int:
        """Free the viewers that waited longer than ``wait_s``; returns how many."""
        late = [user for user, (_, since) in self.awaiting.items() if now - since > self.wait_s]
        for user in late:
            self._free(user)
        self.timeouts += len(late)
        return len(late)

    def release(self, now: float) -> list[Release]:
        """The interactions to publish now, earliest first, each with what it is judged against."""
        self.expire(now)
        out: list[Release] = []
        while self._ready and len(self.awaiting) < self.parallel:
            _, _, user = heapq.heappop(self._ready)
            interaction = self.queues[user].popleft()
            sent_before = self.sent.get(user, 0)
            snapshot = self.latest.get(user)
            ids = [e["event_id"] for e in interaction.events]
            if snapshot is not None and reflects(snapshot, sent_before, ids):
                self.leaks_refused += 1
                snapshot = None
            items = [i["item_id"] for i in snapshot["items"]] if snapshot is not None else None
            out.append(
                Release(
                    interaction,
                    items,
                    sent_before,
                    snapshot["events_applied"] if snapshot is not None else None,
                    snapshot["version"] if snapshot is not None else None,
                )
            )
            self.sent[user] = sent_before + len(ids)
            self.awaiting[user] = (ids[-1], now)
            self.released += 1
        return out
