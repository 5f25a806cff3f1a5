"""The pure batch step: one fetch's raw messages and the state they touch in; changes and outputs out.

Following one fetch through it::

    plan = processor.plan([(partition, messages), ...])   # decode and validate; what to prefetch
    #   the runtime reads plan.viewers' stored profile rows, and waits for plan.unknown_titles(catalog)
    results = processor.step(plan, rows, models)          # one BatchResult per partition

In :meth:`Processor.step`, per partition and in offset order, each valid event is
learned by its partition's model (predict, then learn: :meth:`PartitionModel.learn_event`)
and folded into its viewer's profile (:meth:`Profile.apply`); rejects become dead letters.
Then every changed viewer of the fetch is ranked in one pass (:func:`stream.ranking.rank`,
which changes nothing), and the step applies what the lists spend (exploration
impressions) and notes each list in its profile. What comes back is data for the
runtime to write: profile rows, snapshots, dead letters, counts; the models were
changed in place, through their own methods, and the runtime checkpoints them.

No Kafka, no Faust, no callbacks: the whole pipeline is tested without a broker.
"""

from __future__ import annotations

import heapq
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, cast

import numpy as np
import orjson

from stream.contracts.deadletter import RawMessage, dead_letter, pseudonym
from stream.contracts.validation import InvalidMessage, PlaybackEvent, UserCommand, decode_command, decode_event
from stream.learning.artwork import Context
from stream.learning.catalog import Catalog
from stream.learning.choice import competitors
from stream.learning.cowatch import HISTORY
from stream.learning.features import FEATURES, ViewerTerms, pair_parts
from stream.learning.model import PartitionModel, liked
from stream.learning.profile import Profile, daypart
from stream.learning.shared import Bucket, Competitors, Delta, Lesson, Pairs, SharedModel
from stream.learning.signals import LIKED, Signal, interpret
from stream.ranking.ranker import Memo, Ranked, RankedItem, rank

__all__ = [
    "BatchResult",
    "Decoded",
    "Other",
    "Plan",
    "Processor",
    "RawMessage",
    "dead_letter",
    "due",
    "in_order",
    "prefetch_hint",
    "split_held",
]

log = logging.getLogger(__name__)

#: A message as decoded: a valid event or command, or why it is not one.
Decoded = PlaybackEvent | UserCommand | InvalidMessage

#: What one valid event did to its viewer's profile (:meth:`Processor._step`).
APPLIED, COPY, SEEN = 0, 1, 2

#: Top titles with several artworks whose impressions the artwork bandit learns from, per snapshot.
SHOWN_ARTWORK = 3

#: Stored profile rows by viewer id, as the runtime prefetched them (None or absent: a new viewer).
Rows = Mapping[str, bytes | None]
#: A viewer to list: (its partition's result, its profile, what the list is made from, model, cohort).
Listing = tuple["BatchResult", Profile, Profile, PartitionModel, int | None]


@dataclass
class BatchResult:
    #: Profiles the batch changed or noted a duplicate in, by viewer id: each is written once.
    profiles: dict[str, Profile] = field(default_factory=dict)
    #: Viewers forgotten (``forget``), each with (its partition's events read through, the command's
    #: offset): their profile and snapshot get tombstones, written before this result's rows and snapshots.
    erased: dict[str, tuple[int, int]] = field(default_factory=dict)
    #: (viewer id, snapshot JSON): one per viewer whose state changed.
    snapshots: list[tuple[str, bytes]] = field(default_factory=list)
    #: (original key, dead-letter JSON) for each rejected message.
    dead_letters: list[tuple[bytes | None, bytes]] = field(default_factory=list)
    applied: int = 0
    duplicates: int = 0
    #: Events that changed nothing because personalisation was off, or their viewer was forgotten since.
    ignored: int = 0
    #: Commands applied, by kind.
    commands: dict[str, int] = field(default_factory=dict)
    #: The newest offset of the partition's events the model learned from (-1: none).
    learned_through: int = -1
    #: What the deployment-wide model learns from this batch, for the runtime to publish to the
    #: model topic (see ``Processor.share_deltas``).
    deltas: list[Delta] = field(default_factory=list)
    #: (viewer, title) of this batch's deltas (starts; finishes and likes): sent with the batch, so not
    #: in the replica yet when the batch's later events are learned.
    unsent: tuple[set[tuple[str, str]], set[tuple[str, str]]] = field(default_factory=lambda: (set(), set()))
    #: Per viewer, its newest event applied in this batch: (offset, title, time). What its list teaches
    #: the deployment (its taste, an exploration impression) goes with that event's delta.
    newest: dict[str, tuple[int, str, int]] = field(default_factory=dict)
    #: Offset -> position of its delta in ``deltas``.
    delta_at: dict[int, int] = field(default_factory=dict)
    #: Valid events whose processing raised (a defect of the worker): dead-lettered, state as before.
    failed: int = 0
    #: Viewers whose state changed but whose snapshot could not be made (a defect of ranking).
    unranked: int = 0


class Taught(NamedTuple):
    """What one event teaches the deployment-wide model, to go with its delta (see :class:`Delta`)."""

    pairs: Pairs | None = None
    competitors: Competitors | None = None
    outcome: Lesson | None = None
    trending: float = 0.0
    cohort: Bucket | None = None
    away: bool = False  # the pairs are the choice of a viewer back after a while


def trending_count(event: PlaybackEvent, signal: Signal) -> float:
    """What an event adds to its title's trending window: a start or a finish 1; an early skip or stop,
    or a thumbs-down, -3 (it outweighs the start)."""
    count = 1.0 if event.type == "play" else 0.0
    if signal.finished:
        count += 1.0
    elif signal.value <= -LIKED:  # as strong against as a like is for
        count -= 3.0
    return count


@dataclass(frozen=True)
class Plan:
    """One fetch decoded, by partition: what :meth:`Processor.step` will read, known before it runs."""

    batches: list[tuple[int, Sequence[RawMessage], list[Decoded]]]

    @property
    def viewers(self) -> set[str]:
        """The viewers whose stored profiles the step reads."""
        return {e.user_id for _, _, items in self.batches for e in items if isinstance(e, (PlaybackEvent, UserCommand))}

    def unknown_titles(self, catalog: Catalog) -> set[str]:
        """Titles valid events name that the catalog has not (yet) published; retired ones excluded."""
        return {
            e.item_id
            for _, _, events in self.batches
            for e in events
            if isinstance(e, PlaybackEvent) and catalog.index_of(e.item_id) is None and not catalog.retired(e.item_id)
        }


def split_held(plan: Plan, catalog: Catalog, held: set[str]) -> tuple[Plan, Plan]:
    """A plan in two, each partition's messages in order: those to apply now, and those to hold until
    the catalog reader catches up.

    Held: a valid event naming a title the catalog has not published (nor retired), and every
    later message of the same viewer, or of a viewer in ``held`` (whose earlier messages are held
    already; updated in place). Everything else goes on: one producer's unknown titles never
    hold up another viewer.
    """
    now: list[tuple[int, Sequence[RawMessage], list[Decoded]]] = []
    later: list[tuple[int, Sequence[RawMessage], list[Decoded]]] = []
    for partition, messages, items in plan.batches:
        go: tuple[list[RawMessage], list[Decoded]] = ([], [])
        wait: tuple[list[RawMessage], list[Decoded]] = ([], [])
        for message, item in zip(messages, items, strict=True):
            viewer = item.user_id if isinstance(item, (PlaybackEvent, UserCommand)) else None
            unknown = (
                isinstance(item, PlaybackEvent)
                and catalog.index_of(item.item_id) is None
                and not catalog.retired(item.item_id)
            )
            side = go
            if viewer is not None and (unknown or viewer in held):
                held.add(viewer)
                side = wait
            side[0].append(message)
            side[1].append(item)
        if go[0]:
            now.append((partition, *go))
        if wait[0]:
            later.append((partition, *wait))
    return Plan(now), Plan(later)


def in_order(*partitions: Sequence[RawMessage]) -> list[RawMessage]:
    """Co-partitioned topics' messages of one partition (each in offset order) merged in the order they
    were published: by record timestamp, each topic's own order kept, the earlier-listed topic first on
    a tie.

    >>> e = [RawMessage(b"u", b"", "events", 0, o, ts) for o, ts in [(0, 10), (1, 30)]]
    >>> c = [RawMessage(b"u", b"", "commands", 0, 0, 20)]
    >>> [(m.topic, m.offset) for m in in_order(e, c)]
    [('events', 0), ('commands', 0), ('events', 1)]
    """
    keyed = [[((m.timestamp_ms or 0), rank, m) for m in messages] for rank, messages in enumerate(partitions)]
    return [m for _, _, m in heapq.merge(*keyed, key=lambda x: (x[0], x[1]))]


@dataclass(frozen=True)
class Other:
    """What a partition's other topic has shown: the newest record timestamp read from it (None: none
    yet), and the answer time (epoch ms) of the newest fetch if that fetch showed it read to its end
    (None: it did not, or it was not fetched yet)."""

    newest_ms: int | None
    at_end_ms: int | None


def due(queued: Sequence[tuple[RawMessage, int]], other: Other, first_on_a_tie: bool) -> int:
    """How many of a partition's records read from one topic (in offset order, each with the epoch ms
    at which its fetch was answered) may be applied now; the rest wait, keeping their order.

    A co-partitioned topic's records go between the other topic's records published before them
    and those after (:func:`in_order`), so a record waits while the other topic may still hold
    unread records published before it: until a record of the other topic stamped later has been
    read (stamped the same, when this topic goes first on a tie), or a fetch answered after this
    record's showed the other topic read to its end. Kafka Streams aligns a task's inputs in the
    same way. Reading either topic ahead would otherwise reorder a ``forget`` and the events
    around it: events published after it but read first would be erased by it, and events
    published before it but read after it would be applied to the fresh profile.

    >>> c = [(RawMessage(b"u", b"", "commands", 0, o, ts), 5) for o, ts in [(0, 10), (1, 30), (2, 20)]]
    >>> due(c, Other(25, None), False), due(c, Other(30, None), False), due(c, Other(None, 5), False)
    (1, 1, 3)
    >>> e = [(RawMessage(b"u", b"", "events", 0, 0, 30), 5)]
    >>> due(e, Other(30, None), True), due(e, Other(29, 4), True), due(e, Other(None, 6), True)
    (1, 0, 1)
    """
    for n, (message, read_at) in enumerate(queued):
        if other.at_end_ms is not None and other.at_end_ms >= read_at:
            continue
        stamp, newest = message.timestamp_ms or 0, other.newest_ms
        if newest is not None and (stamp < newest or (first_on_a_tie and stamp == newest)):
            continue
        return n
    return len(queued)


def prefetch_hint(profile: Profile, items: Sequence[RankedItem], catalog: Catalog) -> dict[str, str] | None:
    """The title this viewer is most likely to start next, for a client to prefetch.

    A title paused and not yet resumed or stopped comes first (viewers mostly come back to
    what they paused); otherwise the top of the list.
    """
    if profile.paused is not None and catalog.index_of(profile.paused) is not None:
        return {"item_id": profile.paused, "why": "paused, likely to resume"}
    if items:
        return {"item_id": items[0].item_id, "why": "top of the list"}
    return None


class Processor:
    """Validate, learn, update profiles and rank: the batch step, configured once per worker."""

    def __init__(
        self,
        catalog: Catalog,
        top_k: int = 10,
        max_event_bytes: int = 16384,
        half_life_days: float = 14.0,
        diversity: float = 0.0,
        exploration: int = 0,
        commands_topic: str = "user-commands",
        shared: SharedModel | None = None,
        share_deltas: bool = False,
    ):
        self.catalog = catalog
        #: The deployment's model (trend, co-watch), which every partition model reads. With
        #: ``share_deltas`` the step leaves learning it to the runtime (``BatchResult.deltas``,
        #: published and folded into every worker's replica); otherwise it learns each finish or
        #: like at once.
        self.shared = shared if shared is not None else SharedModel()
        self.share_deltas = share_deltas
        #: Messages of this topic are viewers' commands; every other message is a playback event.
        self.commands_topic = commands_topic
        self.top_k = top_k
        self.diversity = diversity
        self.exploration = exploration
        self.max_event_bytes = max_event_bytes
        self.half_life_ms = half_life_days * 86_400_000
        #: Derived data ranking passes reuse (candidate indexes, new releases, open exploration sets); never state.
        self.memo = Memo()

    def plan(self, batches: Sequence[tuple[int, Sequence[RawMessage]]]) -> Plan:
        """Decode and validate one fetch's batches ((partition, messages in offset order) each)."""
        return Plan([(partition, messages, self.decode(messages)) for partition, messages in batches])

    def decode(self, messages: Sequence[RawMessage]) -> list[Decoded]:
        """Each message as a valid event or command, or why it is not one."""
        out: list[Decoded] = []
        for message in messages:
            decode = decode_command if message.topic == self.commands_topic else decode_event
            try:
                out.append(decode(message.key, message.value, self.max_event_bytes))
            except InvalidMessage as exc:
                out.append(exc)
        return out

    def process(
        self,
        messages: Sequence[RawMessage],
        rows: Rows,
        model: PartitionModel,
        now_ms: int | None = None,
        forgotten: Mapping[str, tuple[int, int]] | None = None,
    ) -> BatchResult:
        """One partition's batch (events and commands merged in order): :meth:`plan`, then :meth:`step`."""
        partition = messages[0].partition if messages else 0
        return self.step(self.plan([(partition, messages)]), rows, {partition: model}, now_ms, None, forgotten)[0]

    def step(
        self,
        plan: Plan,
        rows: Rows,
        models: Mapping[int, PartitionModel],
        now_ms: int | None = None,
        positions: Mapping[int, int] | None = None,
        forgotten: Mapping[str, tuple[int, int]] | None = None,
    ) -> list[BatchResult]:
        """Apply a planned fetch: per partition its state changes, then one ranking pass for all its viewers.

        ``rows``: the stored profile rows of ``plan.viewers`` (absent or None: a new viewer);
        ``models``: each partition's model, which learns in place; ``positions``: per partition,
        the newest offset of its events processed before this plan, when known (default: just
        before the plan's first event of the partition); ``forgotten``: for viewers without a row that were forgotten,
        (events read through, command offset) when they were. Returns one result per partition
        of the plan, in its order.
        """
        results: list[BatchResult] = []
        listings: list[Listing] = []
        for partition, messages, items in plan.batches:
            model = models[partition]
            model.shared = self.shared
            result = BatchResult()
            results.append(result)
            viewers = _Viewers(rows, forgotten or {})
            self._apply(messages, items, viewers, model, result, self._position(partition, messages, positions))
            result.profiles.update(viewers.written())
            result.erased.update(viewers.erased)
            for profile, trigger in viewers.listed():
                if trigger is None:
                    listings.append((result, profile, profile, model, self._learn_cohort(result, model, profile)))
                else:
                    listings.append((result, profile, profile.impersonal(trigger), model, None))
        if listings:
            self._list(listings, now_ms if now_ms is not None else int(time.time() * 1000))
        return results

    def read_list(self, row: bytes, model: PartitionModel, now_ms: int) -> bytes:
        """A list made at ``now_ms`` from a viewer's stored profile row: what a read asking for a fresh
        list gets (``GET /viewers/{id}/recommendations?fresh=true``).

        The viewer's state is as of its newest event; the models, trending and freshness are as
        they are at ``now_ms``, which an event-time snapshot of long ago no longer reflects.
        Nothing changes: no version, no impression, no exploration slot (that would spend a
        budget), the best-estimated artwork. With personalisation off, the list is impersonal.
        """
        profile = Profile.loads(row)
        model.shared = self.shared
        if profile.personalised:
            view, cohort = profile, model.cohort_of(profile.user_id, profile.genres)
        else:
            view, cohort = profile.impersonal(profile.trigger), None
        [items] = rank([view], self.catalog, [model], self.top_k, now_ms, self.diversity, [cohort], 0, self.memo)
        catalog, bandit = self.catalog, model.artwork
        context = Context(view.device, daypart(view.last_ts), cohort)
        artwork = [
            bandit.best(i.item_id, catalog.entry(catalog.index_of(i.item_id) or 0).artwork, context) for i in items
        ]
        return self._document(profile, view, items, artwork, max(1, profile.version), now_ms, fresh=True)

    def refresh(self, rows: Mapping[str, bytes], model: PartitionModel, at_ms: int, generated_at: int) -> BatchResult:
        """Re-rank aged lists (:mod:`stream.processing.refresh`): each viewer's stored state, ranked with the
        models, trending and freshness as they are at ``at_ms`` (event time), as if it had come back then.

        A refreshed list is the viewer's next snapshot, like one an event brings: a personalised one
        is noted in its profile (version, what it shows; returned to be written), so what the viewer
        passes over on it is what it teaches. Its trigger and ``events_applied`` are those of the list
        before (nothing new was applied) and ``refreshed_at`` says when it was re-ranked. It learns
        nothing: no cohort moves, and it has no exploration slot (no event's delta would carry the cost).
        """
        result = BatchResult()
        model.shared = self.shared
        listings: list[Listing] = []
        for raw in rows.values():
            profile = Profile.loads(raw)
            if profile.personalised:
                listings.append((result, profile, profile, model, model.cohort_of(profile.user_id, profile.genres)))
            else:
                listings.append((result, profile, profile.impersonal(profile.trigger), model, None))
        self._list(listings, generated_at, at_ms, refreshed=True)
        result.profiles = {p.user_id: p for _, p, view, _, _ in listings if view is p}
        return result

    def _document(
        self,
        profile: Profile,
        view: Profile,
        items: Ranked,
        artwork: Sequence[str | None],
        version: int,
        generated_at: int,
        fresh: bool = False,
        refreshed_at: int | None = None,
    ) -> bytes:
        """A snapshot's JSON (schema: ``recommendation-snapshot.json``) of a list made from ``view``."""
        trigger = view.trigger or [None, None, None]
        doc: dict[str, object] = {
            "user_id": profile.user_id,
            "version": version,
            "generated_at": generated_at,
            "events_applied": profile.applied,
            "personalised": profile.personalised,
        }
        if fresh:
            doc["fresh"] = True
        if refreshed_at is not None:
            doc["refreshed_at"] = refreshed_at
        doc["trigger"] = {"event_id": trigger[0], "type": trigger[1], "ts": trigger[2]}
        doc["items"] = [item.as_dict() | {"artwork_id": art} for item, art in zip(items, artwork, strict=True)]
        doc["prefetch"] = prefetch_hint(view, items, self.catalog)
        return orjson.dumps(doc)

    def _position(self, partition: int, messages: Sequence[RawMessage], given: Mapping[int, int] | None) -> int | None:
        if given is not None and partition in given:
            return given[partition]
        events = [m.offset for m in messages if m.topic != self.commands_topic]
        return events[0] - 1 if events else None

    def _list(
        self, listings: list[Listing], generated_at: int, at_ms: int | None = None, refreshed: bool = False
    ) -> None:
        """Rank every listed viewer in one pass, at ``at_ms`` (default: the newest of their events); each list
        becomes a snapshot (a personalised one is noted in its profile). ``refreshed``: lists re-ranked
        without an event, marked so, with no exploration slot (no event's delta would carry its cost)."""
        views = [view for _, _, view, _, _ in listings]
        models = [model for _, _, _, model, _ in listings]
        cohorts = [cohort for _, _, _, _, cohort in listings]
        at = at_ms if at_ms is not None else max(p.last_ts for p in views)
        settings = (self.top_k, at or generated_at, self.diversity, 0 if refreshed else self.exploration)
        lists: list[Ranked | None]
        try:
            lists = list(rank(views, self.catalog, models, *settings[:3], cohorts, settings[3], self.memo))
        except Exception:  # a defect of ranking: it costs only the viewers it strikes their snapshot
            log.exception("ranking %d viewers together failed; ranking each alone", len(views))
            lists = [self._rank_alone(p, m, c, settings) for p, m, c in zip(views, models, cohorts, strict=True)]
        best_art: dict[tuple[int, str, tuple[str, ...]], str | None] = {}  # (model, title, context) -> artwork
        for (result, profile, view, model, cohort), items in zip(listings, lists, strict=True):
            snapshot = None
            if items is not None:
                try:
                    made = (generated_at, at if refreshed else None)
                    snapshot = self._snapshot(result, profile, view, items, model, cohort, best_art, made)
                except Exception:
                    log.exception("no snapshot for viewer %s: it failed", pseudonym(profile.user_id))
            if snapshot is None:
                result.unranked += 1  # the state is written; the next event brings a snapshot
                continue
            result.snapshots.append((profile.user_id, snapshot))

    def _learn(
        self,
        model: PartitionModel,
        profile: Profile,
        idx: int,
        event: PlaybackEvent,
        signal: Signal,
        cohort: int | None,
        unsent: tuple[set[tuple[str, str]], set[tuple[str, str]]],
    ) -> Taught:
        """Learn the event; returns what it teaches the deployment-wide model (the outcome regression and
        the trending windows; for a title finished or liked also the choice learner and the item factors),
        to go with its delta (:meth:`_share`). ``unsent``: see :attr:`BatchResult.unsent`."""
        device = event.device or profile.device
        x, pairs, drawn = None, None, None
        if signal.learns:
            # Predict, then learn: the features are those the viewer had before this event, in
            # the event's context (for a redelivered event, those it has now: the one thing a
            # crash can change). A title finished or liked is also learned against competitors.
            viewer = ViewerTerms.of(profile, model, self.catalog, event.ts, device, cohort)
            rows, corrections = [idx], list[float]()
            if liked(signal):
                others, corrections = competitors(self.catalog, idx, profile.passed, event.event_id, model.shared.trend)
                rows += others
                drawn = ([self.catalog.ids[r] for r in others], corrections)
            parts = pair_parts(viewer, self.catalog, np.asarray(rows, dtype=np.int64))
            # the viewer's own start and earlier finish or like of the title, if the replica counted them
            item, key, (starts, positives) = event.item_id, (profile.user_id, event.item_id), unsent
            started = key not in starts and any(h[0] == item for h in profile.history)
            model.shared.without_viewer(parts[0], item, started, key not in positives and item in profile.positives())
            x = dict(zip(FEATURES, parts[0].tolist(), strict=True))
            if len(rows) > 1:
                pairs = model.choice_pairs(parts[0].astype(np.float64), parts[1:].astype(np.float64), corrections)
        model.learn_event(x, event, signal, profile.shown, device, cohort)
        outcome = None if x is None else (list(x.values()), signal.value)
        bucket = (cohort, device, daypart(event.ts)) if cohort is not None and liked(signal) else None
        return Taught(pairs, drawn, outcome, trending_count(event, signal), bucket, pairs is not None and profile.away)

    def _learn_cohort(self, result: BatchResult, model: PartitionModel, profile: Profile) -> int | None:
        """Each changed taste is placed among the deployment's cohorts once per batch, and learned by them
        (:meth:`_teach`); the list borrows from its cohort."""
        try:
            cohort, taste = model.learn_viewer(profile.user_id, profile.genres, profile.applied)
            if taste is not None:
                self._teach(result, profile, taste=taste)
            return cohort
        except Exception:  # a defect: rank this viewer without a cohort rather than stop
            log.exception("cohorts could not learn viewer %s", pseudonym(profile.user_id))
            return None

    def _teach(
        self,
        result: BatchResult,
        profile: Profile,
        taste: dict[str, float] | None = None,
        explored: tuple[int, str] | None = None,
    ) -> None:
        """What a viewer's list teaches the deployment's model (its taste; an exploration impression): with the
        delta of the viewer's newest event of the batch (one that carries only this, if that event taught
        nothing else), or in-process at once. A list made for a command alone (no event of the batch)
        teaches nothing: its newest event's delta was sent with an earlier batch."""
        if not self.share_deltas:
            self.shared.learn_viewer(taste, explored)
            return
        newest = result.newest.get(profile.user_id)
        if newest is None:
            return
        offset, item, ts = newest
        at = result.delta_at.get(offset)
        if at is None:
            result.delta_at[offset] = len(result.deltas)
            result.deltas.append(Delta(offset, item, [], None, positive=False, ts=ts, taste=taste, explored=explored))
            return
        delta = result.deltas[at]
        result.deltas[at] = delta._replace(taste=taste or delta.taste, explored=explored or delta.explored)

    def _rank_alone(
        self,
        profile: Profile,
        model: PartitionModel,
        cohort: int | None,
        settings: tuple[int, int, float, int],
    ) -> Ranked | None:
        top_k, at, diversity, exploration = settings
        try:
            return rank([profile], self.catalog, [model], top_k, at, diversity, [cohort], exploration, self.memo)[0]
        except Exception:
            log.exception("ranking failed for viewer %s", pseudonym(profile.user_id))
            return None

    def _snapshot(
        self,
        result: BatchResult,
        profile: Profile,
        view: Profile,
        items: Ranked,
        model: PartitionModel,
        cohort: int | None,
        best_art: dict[tuple[int, str, tuple[str, ...]], str | None],
        made: tuple[int, int | None],
    ) -> bytes:
        """The viewer's next snapshot (schema: ``recommendation-snapshot.json``).

        ``view``: what the list was made from (the profile, or what of it an impersonal list may
        use); ``made``: when (wall clock), and for a refreshed list the event time it was re-ranked
        at. A personalised list, once made, is noted in the profile (version, artwork impressions,
        explored title) and the model spends what showing it costs; a list made while
        personalisation is off changes nothing.
        """
        personal = view is profile
        artwork, shown = self._artwork(view, items, model, cohort, best_art)
        generated_at, refreshed_at = made
        snapshot = self._document(profile, view, items, artwork, profile.version + 1, generated_at, False, refreshed_at)
        if personal:
            profile.note_list(shown, items.explored, [item.item_id for item in items])
            if items.spends and items.explored is not None and cohort is not None:
                self._teach(result, profile, explored=(cohort, items.explored))
        return snapshot

    def _artwork(
        self,
        profile: Profile,
        items: Sequence[RankedItem],
        model: PartitionModel,
        cohort: int | None,
        best: dict[tuple[int, str, tuple[str, ...]], str | None],
    ) -> tuple[list[str | None], list[list[str]]]:
        """Each listed title's artwork for this viewer, and the top impressions the bandit will learn from.

        ``best``: the best-estimated artwork by (model, title, context), shared by the viewers of one batch.
        """
        catalog = self.catalog
        variants = [catalog.entry(catalog.index_of(i.item_id) or 0).artwork for i in items]
        context = Context(profile.device, daypart(profile.last_ts), cohort)
        bandit = model.artwork
        # Thompson draws where feedback is taken (the top titles), the best estimate below them
        pairs = [(i.item_id, v) for i, v in zip(items[:SHOWN_ARTWORK], variants, strict=False)]
        chosen = bandit.choose_many(pairs, context, profile.user_id, salt=profile.version)
        for item, v in zip(items[SHOWN_ARTWORK:], variants[SHOWN_ARTWORK:], strict=True):
            if len(v) < 2:
                chosen.append(v[0] if v else None)
                continue
            key = (id(model), item.item_id, context.keys)
            if key not in best:
                best[key] = bandit.best(item.item_id, v, context)
            chosen.append(best[key])
        shown = [
            [i.item_id, a] for i, v, a in zip(items, variants, chosen, strict=True) if len(v) >= 2 and a is not None
        ][:SHOWN_ARTWORK]
        return chosen, shown

    def _apply(
        self,
        messages: Sequence[RawMessage],
        decoded: Sequence[Decoded],
        viewers: _Viewers,
        model: PartitionModel,
        result: BatchResult,
        through: int | None,
    ) -> None:
        """Validate, then apply each event and command in turn (events: learned and folded into profiles).

        ``through``: the newest offset of the partition's events processed before these (None: not known).
        """
        catalog = self.catalog
        done: dict[str, list[tuple[Decoded, int, int, int | None]]] = {}  # each viewer's items so far, to restore
        for message, item in zip(messages, decoded, strict=True):
            if message.topic != self.commands_topic:
                through = message.offset
            rejected = self._rejection(item)
            if rejected is not None:
                result.dead_letters.append((message.key, dead_letter(message, rejected)))
                continue
            valid = cast(PlaybackEvent | UserCommand, item)
            idx = catalog.index_of(valid.item_id) if isinstance(valid, PlaybackEvent) else -1
            try:
                self._item(viewers, valid, cast(int, idx), message.offset, through, result, model)
            except Exception as exc:  # a defect, not a malformed message: one item fails, not the worker
                log.exception("processing failed: %s[%d]@%d", message.topic, message.partition, message.offset)
                error = (
                    f"processing failed: {type(exc).__name__}: {exc} (a defect of the worker, not of the "
                    "message; the viewer's state is as it was before it)"
                )
                result.dead_letters.append((message.key, dead_letter(message, error)))
                result.failed += 1
                self._restore(viewers, valid.user_id, done.get(valid.user_id, []))
                continue
            done.setdefault(valid.user_id, []).append((valid, cast(int, idx), message.offset, through))
        if result.learned_through >= 0:
            model.learned_through(result.learned_through)
        model.settle(m.offset for m in messages if m.topic != self.commands_topic)

    def _item(
        self,
        viewers: _Viewers,
        item: PlaybackEvent | UserCommand,
        idx: int,
        offset: int,
        through: int | None,
        result: BatchResult,
        model: PartitionModel | None,
    ) -> None:
        """One valid event or command, applied to its viewer (learned by ``model`` unless None)."""
        user_id = item.user_id
        profile = viewers.get(user_id)
        if isinstance(item, UserCommand):
            self._command(viewers, profile, item, offset, through, result, model)
            return
        if profile.voided(offset):
            result.ignored += 1  # personalisation is off, or the viewer was forgotten after it
            if not profile.personalised and offset > cast(int, profile.opted_out):
                viewers.list_impersonal(user_id, item)
            return
        cohort = viewers.cohort(user_id, model) if model is not None else None
        outcome = self._step(profile, item, idx, offset, result, model, cohort)
        if outcome == APPLIED:
            viewers.change(user_id)
        elif outcome == COPY:
            viewers.keep(user_id)  # written, so a re-read knows it for a copy

    def _command(
        self,
        viewers: _Viewers,
        profile: Profile,
        command: UserCommand,
        offset: int,
        through: int | None,
        result: BatchResult,
        model: PartitionModel | None,
    ) -> None:
        """A viewer's command, between the events read through ``through`` and the next.

        When where the partition's events stand is not known (a partition just assigned, and no
        event before the command in this batch), the viewer's own newest event marks the spot:
        every event of its applied before the command is at or below it, every later one above.
        """
        if offset <= profile.commands:
            result.duplicates += 1
            return
        if through is None:
            through = profile.offset
        if command.command == "forget":
            viewers.forget(command.user_id, through, offset)
            if model is not None:
                model.forget_viewer(command.user_id)
        else:
            profile.command(command, offset, through)
            viewers.change(command.user_id)
        result.commands[command.command] = result.commands.get(command.command, 0) + 1

    def _rejection(self, item: Decoded) -> str | None:
        """Why a message goes to the dead-letter topic (None: it is applied)."""
        if isinstance(item, InvalidMessage):
            return str(item)
        if isinstance(item, UserCommand):
            return None
        catalog = self.catalog
        if catalog.index_of(item.item_id) is None:
            why = "retired" if catalog.retired(item.item_id) else "unknown"
            return f"item_id: expected a title published on the catalog topic; got {item.item_id!r} ({why})"
        return None

    def _step(
        self,
        profile: Profile,
        event: PlaybackEvent,
        idx: int,
        offset: int,
        result: BatchResult,
        model: PartitionModel | None = None,
        cohort: int | None = None,
    ) -> int:
        """One valid event: learned by ``model`` (unless None) and folded into ``profile``.

        Returns APPLIED, COPY (a producer's copy, noted in the profile) or SEEN (nothing to write).
        """
        if profile.seen(event, offset):
            result.duplicates += 1
            if not profile.redelivered(offset):
                return COPY if profile.note_duplicate(offset) else SEEN
            if model is not None and not model.knows(offset):
                # Read again after a crash: the profile kept it, the model's checkpoint did not.
                signal = interpret(event, profile.paused)
                again = self._learn(model, profile, idx, event, signal, cohort, result.unsent)
                result.learned_through = max(result.learned_through, offset)
                if self.share_deltas:  # replicas skip what was published before
                    self._share(result, offset, profile.user_id, event, signal, profile.positives(), again)
            return SEEN
        signal = interpret(event, profile.paused)
        history = profile.positives() if model is not None and liked(signal) else []
        taught = None
        if model is not None:
            taught = self._learn(model, profile, idx, event, signal, cohort, result.unsent)
            result.learned_through = max(result.learned_through, offset)
        profile.apply(event, signal, self.catalog.entry(idx), offset, self.half_life_ms)
        if taught is not None:
            self._share(result, offset, profile.user_id, event, signal, history, taught)
        result.newest[profile.user_id] = (offset, event.item_id, event.ts)
        result.applied += 1
        return APPLIED

    def _share(
        self,
        result: BatchResult,
        offset: int,
        user_id: str,
        event: PlaybackEvent,
        signal: Signal,
        history: list[str],
        taught: Taught,
    ) -> None:
        """What an applied event teaches the deployment's model (``history``: for a finish or like, the
        viewer's recent positives before it; ``taught``: what :meth:`_learn` found): a delta for the
        runtime to publish (every worker folds it into its replica), or learned at once."""
        item, start, positive = event.item_id, event.type == "play", liked(signal)
        if not (start or positive or taught.outcome is not None or taught.trending):
            return
        recent = [h for h in history if h != item][:HISTORY] if positive else []
        delta = Delta(offset, item, recent, taught.pairs, start, taught.competitors, positive, event.ts,
                      taught.trending, taught.outcome, taught.cohort, away=taught.away)  # fmt: skip
        if not self.share_deltas:
            self.shared.learn_delta(delta)
            return
        result.delta_at[offset] = len(result.deltas)
        result.deltas.append(delta)
        if start:
            result.unsent[0].add((user_id, item))
        if positive:
            result.unsent[1].add((user_id, item))

    def _restore(self, viewers: _Viewers, user_id: str, done: Sequence[tuple[Decoded, int, int, int | None]]) -> None:
        """Put a viewer back as it was before a failed item: as stored, plus the batch's items before it
        (replayed without learning: the model learned them already)."""
        viewers.reset(user_id)
        try:
            for item, idx, offset, through in done:
                self._item(viewers, cast(PlaybackEvent | UserCommand, item), idx, offset, through, BatchResult(), None)
        except Exception:  # it succeeded once; if it cannot again, the stored row is what is left
            log.exception("could not restore viewer %s; its stored profile stands", pseudonym(user_id))
            viewers.reset(user_id)


class _Viewers:
    """One batch's viewers: each profile loaded once, changed in place; what to write, list and erase.

    ``changed``: written, and listed; ``kept``: written only (a producer's copy noted);
    ``impersonal``: listed without personal data (personalisation is off), not written;
    ``erased``: forgotten, as (events through, command offset).
    """

    def __init__(self, rows: Rows, forgotten: Mapping[str, tuple[int, int]]) -> None:
        self.rows = rows
        self.forgotten = forgotten
        self.current: dict[str, Profile] = {}
        self.changed: dict[str, None] = {}  # ordered sets
        self.kept: dict[str, None] = {}
        self.impersonal: dict[str, list[Any]] = {}  # viewer -> its newest event [id, type, ts]
        self.erased: dict[str, tuple[int, int]] = {}
        self._cohorts: dict[str, int | None] = {}  # each viewer's cohort as the batch found it

    def get(self, user_id: str) -> Profile:
        profile = self.current.get(user_id)
        if profile is None:
            profile = self.current[user_id] = self._stored(user_id)
        return profile

    def _stored(self, user_id: str) -> Profile:
        """The viewer's profile as stored (a fresh copy each call); else, if it was forgotten, the profile
        that ignores its events from before; else a new one."""
        raw = self.rows.get(user_id)
        if raw:
            return Profile.loads(raw)
        mark = self.forgotten.get(user_id)
        return Profile.after_forget(user_id, *mark) if mark is not None else Profile(user_id)

    def cohort(self, user_id: str, model: PartitionModel) -> int | None:
        if user_id not in self._cohorts:
            self._cohorts[user_id] = model.cohort_of(user_id, self.get(user_id).genres)
        return self._cohorts[user_id]

    def change(self, user_id: str) -> None:
        self.changed[user_id] = None

    def keep(self, user_id: str) -> None:
        self.kept[user_id] = None

    def list_impersonal(self, user_id: str, event: PlaybackEvent) -> None:
        self.impersonal[user_id] = [event.event_id, event.type, event.ts]

    def forget(self, user_id: str, through: int, command_offset: int) -> None:
        self._drop(user_id)
        self.current[user_id] = Profile.after_forget(user_id, through, command_offset)
        self.erased[user_id] = (through, command_offset)

    def reset(self, user_id: str) -> None:
        self._drop(user_id)
        self.erased.pop(user_id, None)

    def _drop(self, user_id: str) -> None:
        for held in (self.current, self.changed, self.kept, self.impersonal, self._cohorts):
            held.pop(user_id, None)

    def written(self) -> dict[str, Profile]:
        """Profiles to write, by viewer."""
        return {u: self.current[u] for u in (*self.changed, *self.kept)}

    def listed(self) -> list[tuple[Profile, list[Any] | None]]:
        """Profiles to list, each with the newest event a list made without personal data reflects
        (None: a personalised list)."""
        out: list[tuple[Profile, list[Any] | None]] = []
        for user_id in dict.fromkeys((*self.changed, *self.impersonal)):
            profile = self.current[user_id]
            if profile.personalised:
                out.append((profile, None))
            else:
                out.append((profile, self.impersonal.get(user_id) or profile.trigger))
        return out
