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

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import cast

import numpy as np
import orjson

from stream.contracts.deadletter import RawMessage, dead_letter
from stream.contracts.validation import InvalidMessage, PlaybackEvent, decode_event
from stream.learning.artwork import Context
from stream.learning.catalog import Catalog
from stream.learning.choice import competitors
from stream.learning.features import FEATURES, ViewerTerms, pair_parts
from stream.learning.model import PartitionModel, liked
from stream.learning.profile import Profile, daypart
from stream.learning.signals import Signal, interpret
from stream.ranking.ranker import Memo, Ranked, RankedItem, rank

__all__ = ["BatchResult", "Decoded", "Plan", "Processor", "RawMessage", "dead_letter", "prefetch_hint"]

log = logging.getLogger(__name__)

#: A message as decoded: a valid event, or why it is not one.
Decoded = PlaybackEvent | InvalidMessage

#: What one valid event did to its viewer's profile (:meth:`Processor._step`).
APPLIED, COPY, SEEN = 0, 1, 2

#: Top titles with several artworks whose impressions the artwork bandit learns from, per snapshot.
SHOWN_ARTWORK = 3

#: Stored profile rows by viewer id, as the runtime prefetched them (None or absent: a new viewer).
Rows = Mapping[str, bytes | None]


@dataclass
class BatchResult:
    #: Profiles the batch changed or noted a duplicate in, by viewer id: each is written once.
    profiles: dict[str, Profile] = field(default_factory=dict)
    #: (viewer id, snapshot JSON): one per viewer whose state changed.
    snapshots: list[tuple[str, bytes]] = field(default_factory=list)
    #: (original key, dead-letter JSON) for each rejected message.
    dead_letters: list[tuple[bytes | None, bytes]] = field(default_factory=list)
    applied: int = 0
    duplicates: int = 0
    #: Valid events whose processing raised (a defect of the worker): dead-lettered, state as before.
    failed: int = 0
    #: Viewers whose state changed but whose snapshot could not be made (a defect of ranking).
    unranked: int = 0


@dataclass(frozen=True)
class Plan:
    """One fetch decoded, by partition: what :meth:`Processor.step` will read, known before it runs."""

    batches: list[tuple[int, Sequence[RawMessage], list[Decoded]]]

    @property
    def viewers(self) -> set[str]:
        """The viewers whose stored profiles the step reads."""
        return {e.user_id for _, _, events in self.batches for e in events if isinstance(e, PlaybackEvent)}

    def unknown_titles(self, catalog: Catalog) -> set[str]:
        """Titles valid events name that the catalog has not (yet) published; retired ones excluded."""
        return {
            e.item_id
            for _, _, events in self.batches
            for e in events
            if isinstance(e, PlaybackEvent) and catalog.index_of(e.item_id) is None and not catalog.retired(e.item_id)
        }


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
    ):
        self.catalog = catalog
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
        """Each message as a valid event, or why it is not one."""
        out: list[Decoded] = []
        for message in messages:
            try:
                out.append(decode_event(message.key, message.value, self.max_event_bytes))
            except InvalidMessage as exc:
                out.append(exc)
        return out

    def process(
        self,
        messages: Sequence[RawMessage],
        rows: Rows,
        model: PartitionModel,
        now_ms: int | None = None,
    ) -> BatchResult:
        """One partition's batch, in offset order: :meth:`plan`, then :meth:`step`."""
        partition = messages[0].partition if messages else 0
        return self.step(self.plan([(partition, messages)]), rows, {partition: model}, now_ms)[0]

    def step(
        self,
        plan: Plan,
        rows: Rows,
        models: Mapping[int, PartitionModel],
        now_ms: int | None = None,
    ) -> list[BatchResult]:
        """Apply a planned fetch: per partition its state changes, then one ranking pass for all its viewers.

        ``rows``: the stored profile rows of ``plan.viewers`` (absent or None: a new viewer);
        ``models``: each partition's model, which learns in place. Returns one result per
        partition of the plan, in its order.
        """
        results: list[BatchResult] = []
        changed: list[tuple[BatchResult, Profile, PartitionModel, int | None]] = []
        for partition, messages, events in plan.batches:
            model = models[partition]
            result = BatchResult()
            results.append(result)
            for profile in self._apply(messages, events, rows, model, result):
                changed.append((result, profile, model, self._learn_cohort(model, profile)))
        if changed:
            self._list(changed, now_ms if now_ms is not None else int(time.time() * 1000))
        return results

    def _list(self, changed: list[tuple[BatchResult, Profile, PartitionModel, int | None]], generated_at: int) -> None:
        """Rank every changed viewer in one pass; each list becomes a snapshot and is noted in its profile."""
        profiles = [profile for _, profile, _, _ in changed]
        models = [model for _, _, model, _ in changed]
        cohorts = [cohort for _, _, _, cohort in changed]
        settings = (self.top_k, max(p.last_ts for p in profiles), self.diversity)
        lists: list[Ranked | None]
        try:
            lists = list(rank(profiles, self.catalog, models, *settings, cohorts, self.exploration, self.memo))
        except Exception:  # a defect of ranking: it costs only the viewers it strikes their snapshot
            log.exception("ranking %d viewers together failed; ranking each alone", len(profiles))
            lists = [self._rank_alone(p, m, c, settings) for p, m, c in zip(profiles, models, cohorts, strict=True)]
        best_art: dict[tuple[int, str, tuple[str, ...]], str | None] = {}  # (model, title, context) -> artwork
        for (result, profile, model, cohort), items in zip(changed, lists, strict=True):
            snapshot = None
            if items is not None:
                try:
                    snapshot = self._snapshot(profile, items, model, cohort, best_art, generated_at)
                except Exception:
                    log.exception("no snapshot for %r: it failed", profile.user_id)
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
    ) -> None:
        device = event.device or profile.device
        x, passed = None, None
        if signal.learns:
            # Predict, then learn: the features are those the viewer had before this event, in
            # the event's context (for a redelivered event, those it has now: the one thing a
            # crash can change). A title finished or liked is also learned against competitors.
            viewer = ViewerTerms.of(profile, model, self.catalog, event.ts, device, cohort)
            rows = [idx]
            if liked(signal):
                rows += competitors(self.catalog, idx, profile.passed, event.event_id)
            parts = pair_parts(viewer, self.catalog, np.asarray(rows, dtype=np.int64))
            x = dict(zip(FEATURES, parts[0].tolist(), strict=True))
            passed = parts[1:].astype(np.float64)
        model.learn_event(x, event, signal, profile.shown, device, cohort, passed)

    def _learn_cohort(self, model: PartitionModel, profile: Profile) -> int | None:
        """The cohorts learn each changed taste once per batch; the list borrows from its cohort."""
        try:
            return model.learn_viewer(profile.user_id, profile.genres, profile.applied)
        except Exception:  # a defect: rank this viewer without a cohort rather than stop
            log.exception("cohorts could not learn %r", profile.user_id)
            return None

    def _rank_alone(
        self,
        profile: Profile,
        model: PartitionModel,
        cohort: int | None,
        settings: tuple[int, int, float],
    ) -> Ranked | None:
        try:
            return rank([profile], self.catalog, [model], *settings, [cohort], self.exploration, self.memo)[0]
        except Exception:
            log.exception("ranking failed for %r", profile.user_id)
            return None

    def _snapshot(
        self,
        profile: Profile,
        items: Ranked,
        model: PartitionModel,
        cohort: int | None,
        best_art: dict[tuple[int, str, tuple[str, ...]], str | None],
        generated_at: int,
    ) -> bytes:
        """The viewer's next snapshot (schema: ``recommendation-snapshot.json``).

        Once it is made, the profile notes the list (version, artwork impressions, explored
        title) and the model spends what showing it costs.
        """
        trigger = profile.trigger or [None, None, None]
        artwork, shown = self._artwork(profile, items, model, cohort, best_art)
        snapshot = orjson.dumps(
            {
                "user_id": profile.user_id,
                "version": profile.version + 1,
                "generated_at": generated_at,
                "events_applied": profile.applied,
                "trigger": {"event_id": trigger[0], "type": trigger[1], "ts": trigger[2]},
                "items": [item.as_dict() | {"artwork_id": art} for item, art in zip(items, artwork, strict=True)],
                "prefetch": prefetch_hint(profile, items, self.catalog),
            }
        )
        profile.note_list(shown, items.explored, [item.item_id for item in items])
        if items.spends and items.explored is not None and cohort is not None:
            model.spend_exploration(cohort, items.explored)
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
        rows: Rows,
        model: PartitionModel,
        result: BatchResult,
    ) -> list[Profile]:
        """Validate, learn and update profiles; returns the profiles whose state changed."""
        touched = result.profiles  # changed: written, and a snapshot each
        quiet: dict[str, Profile] = {}  # only a producer's copy noted: written, no snapshot
        catalog = self.catalog
        learned_to = model.offset  # events at or below it are in the model already
        cohort_of: dict[str, int | None] = {}  # each viewer's cohort as the batch found it
        done: dict[str, list[tuple[PlaybackEvent, int, int]]] = {}  # each viewer's events so far, to restore
        for message, decoded_event in zip(messages, decoded, strict=True):
            rejected = self._rejection(decoded_event)
            if rejected is not None:
                result.dead_letters.append((message.key, dead_letter(message, rejected)))
                continue
            event = cast(PlaybackEvent, decoded_event)
            idx = cast(int, catalog.index_of(event.item_id))
            user_id = event.user_id
            try:
                profile = touched.get(user_id) or quiet.get(user_id)
                if profile is None:
                    profile = _stored(rows, user_id)
                if user_id in cohort_of:
                    cohort = cohort_of[user_id]
                else:
                    cohort = cohort_of[user_id] = model.cohorts.of_viewer(user_id, profile.genres)
                outcome = self._step(profile, event, idx, message.offset, result, model, cohort, learned_to)
            except Exception as exc:  # a defect, not a malformed message: one event fails, not the worker
                log.exception("processing failed: %s[%d]@%d", message.topic, message.partition, message.offset)
                error = (
                    f"processing failed: {type(exc).__name__}: {exc} (a defect of the worker, not of the "
                    "message; the viewer's state is as it was before this event)"
                )
                result.dead_letters.append((message.key, dead_letter(message, error)))
                result.failed += 1
                self._restore(user_id, done.get(user_id, []), rows, touched, quiet)
                continue
            done.setdefault(user_id, []).append((event, idx, message.offset))
            if outcome == APPLIED:
                touched[user_id] = profile
            elif outcome == COPY:
                quiet[user_id] = profile  # written, so a re-read knows it for a copy
        if messages:
            model.learned_through(messages[-1].offset)
        profiles = list(touched.values())
        for user_id, profile in quiet.items():
            touched.setdefault(user_id, profile)
        return profiles

    def _rejection(self, event: Decoded) -> str | None:
        """Why an event goes to the dead-letter topic (None: it is applied)."""
        if isinstance(event, InvalidMessage):
            return str(event)
        catalog = self.catalog
        if catalog.index_of(event.item_id) is None:
            why = "retired" if catalog.retired(event.item_id) else "unknown"
            return f"item_id: expected a title published on the catalog topic; got {event.item_id!r} ({why})"
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
        learned_to: int = -1,
    ) -> int:
        """One valid event: learned by ``model`` (unless None) and folded into ``profile``.

        Returns APPLIED, COPY (a producer's copy, noted in the profile) or SEEN (nothing to write).
        """
        if profile.seen(event, offset):
            result.duplicates += 1
            if not profile.redelivered(offset):
                return COPY if profile.note_duplicate(offset) else SEEN
            if model is not None and offset > learned_to:
                # Read again after a crash: the profile kept it, the model's checkpoint did not.
                self._learn(model, profile, idx, event, interpret(event, profile.paused), cohort)
            return SEEN
        signal = interpret(event, profile.paused)
        if model is not None:
            self._learn(model, profile, idx, event, signal, cohort)
        profile.apply(event, signal, self.catalog.entry(idx), offset, self.half_life_ms)
        result.applied += 1
        return APPLIED

    def _restore(
        self,
        user_id: str,
        done: Sequence[tuple[PlaybackEvent, int, int]],
        rows: Rows,
        touched: dict[str, Profile],
        quiet: dict[str, Profile],
    ) -> None:
        """Put a viewer's profile back as it was before a failed event: as stored, plus the batch's
        events before it (replayed without learning: the model learned them already)."""
        touched.pop(user_id, None)
        quiet.pop(user_id, None)
        if not done:
            return
        try:
            profile = _stored(rows, user_id)
            outcomes = {self._step(profile, event, idx, offset, BatchResult()) for event, idx, offset in done}
        except Exception:  # it succeeded once; if it cannot again, the stored row is what is left
            log.exception("could not restore %r; its stored profile stands", user_id)
            return
        if APPLIED in outcomes:
            touched[user_id] = profile
        elif COPY in outcomes:
            quiet[user_id] = profile


def _stored(rows: Rows, user_id: str) -> Profile:
    """The viewer's profile as stored (a fresh copy each call), or a new one."""
    raw = rows.get(user_id)
    return Profile.loads(raw) if raw else Profile(user_id)
