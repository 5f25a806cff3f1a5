"""A viewer's profile: what the processor knows of one viewer, updated per event.

Profiles are the per-viewer state kept in the changelog-backed ``profiles``
table, so they are small (well under 2 KB serialised) and plain data.

>>> from stream.learning.signals import interpret
>>> from stream.contracts.validation import CatalogEntry, PlaybackEvent, UserCommand
>>> title = CatalogEntry("t1", "Night Shift", ("drama",), ("hospital",), 3000.0)
>>> p = Profile("u1")
>>> e = PlaybackEvent("e1", "u1", "t1", "complete", 1767225600000, position_s=3000, duration_s=3000, device="tv")
>>> p.apply(e, interpret(e, p.paused), title, offset=0)
True
>>> p.genres["drama"] > 0, p.excluded, p.applied
(True, ['t1'], 1)
>>> Profile.loads(p.dumps()) == p
True
"""

from __future__ import annotations

import base64
import hashlib
import math
from dataclasses import dataclass, field
from typing import Any

import orjson

from stream.contracts.validation import CatalogEntry, PlaybackEvent, UserCommand
from stream.learning.cowatch import HISTORY
from stream.learning.signals import LIKED, Signal

__all__ = ["AWAY_MS", "DAYPARTS", "Profile", "context_keys", "daypart", "weekend"]

MAX_TAGS = 20
MAX_HISTORY = 10
#: Titles a viewer finished or liked lately, remembered for what goes with them: as many as the
#: co-watch and item-factor models read.
MAX_POSITIVES = HISTORY
MAX_EXCLUDED = 48
MAX_RECENT_IDS = 12
#: Genres kept per context (device, daypart, weekday or weekend): the strongest, by magnitude.
MAX_CONTEXT_GENRES = 4
#: Titles of the newest list remembered (the top), and titles passed over for a chosen one.
MAX_LISTED = 10
MAX_PASSED = 3
#: A viewer with no event for this long is *back* when it next comes, not in the same visit: a night or a
#: working day away. Its list is ranked, and a title it then starts is learned, with the choice
#: learner's weights for viewers back after a while (see :mod:`stream.learning.choice`).
AWAY_MS = 12 * 3_600_000
#: Void offset ranges kept (opted-out periods): older ones are behind every commit.
MAX_VOID = 4
_ID_DIGEST = 6  # bytes of blake2b kept per recent event id: a false match is ~1 in 2**48
#: Morning 5-12, afternoon 12-17, evening 17-22, night 22-5 (UTC hours: events carry no time zone).
DAYPARTS = ("morning", "afternoon", "evening", "night")


def daypart(ts_ms: int) -> int:
    hour = (ts_ms // 3_600_000) % 24
    if 5 <= hour < 12:
        return 0
    if 12 <= hour < 17:
        return 1
    if 17 <= hour < 22:
        return 2
    return 3


def weekend(ts_ms: int) -> bool:
    """Saturday or Sunday (UTC). Day 0 of the epoch was a Thursday."""
    return (ts_ms // 86_400_000 + 3) % 7 >= 5


def context_keys(device: str | None, ts_ms: int) -> list[str]:
    """The contexts an event at ``ts_ms`` on ``device`` belongs to: device, daypart, weekday/weekend.

    >>> context_keys("tv", 1767225600000 + 20 * 3_600_000)  # Thursday 2026-01-01, 20:00 UTC
    ['tv', 'p2', 'wd']
    >>> context_keys(None, 1767225600000 + 2 * 86_400_000)  # Saturday, midnight
    ['p3', 'we']
    """
    keys = [device] if device else []
    keys.append(f"p{daypart(ts_ms)}")
    keys.append("we" if weekend(ts_ms) else "wd")
    return keys


def _decay(values: dict[str, float], factor: float) -> None:
    if factor < 1.0:
        for key in values:
            values[key] *= factor


def _trim(values: dict[str, float], keep: int) -> None:
    if len(values) > keep:
        for key in sorted(values, key=lambda k: abs(values[k]))[: len(values) - keep]:
            del values[key]


@dataclass(slots=True)
class Profile:
    user_id: str
    #: Snapshots emitted for this viewer.
    version: int = 0
    #: Events that changed this viewer's state.
    applied: int = 0
    #: Offset (in this viewer's partition) of the newest event applied; older redeliveries are skipped.
    offset: int = -1
    #: Event time of the newest event applied, epoch ms; affinities decay from it.
    last_ts: int = 0
    genres: dict[str, float] = field(default_factory=dict)
    tags: dict[str, float] = field(default_factory=dict)
    devices: dict[str, float] = field(default_factory=dict)
    dayparts: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0, 0.0])
    #: Decayed genre affinities per context (see :func:`context_keys`), the strongest few of each.
    contexts: dict[str, dict[str, float]] = field(default_factory=dict)
    #: The device of the newest event that named one: the viewer's current context.
    device: str | None = None
    #: Recent signals, oldest first: [item_id, signal value, 1 if finished else 0].
    history: list[list[Any]] = field(default_factory=list)
    #: Titles the viewer finished or liked lately, oldest first, each once (see :meth:`positives`).
    liked: list[str] = field(default_factory=list)
    #: Titles never to recommend again (finished, skipped early, thumbs down), oldest first.
    excluded: list[str] = field(default_factory=list)
    #: The title paused and not yet resumed or stopped.
    paused: str | None = None
    #: Decayed counts of starts, finishes and early skips.
    starts: float = 0.0
    finishes: float = 0.0
    early_skips: float = 0.0
    #: Digests of the newest event ids applied (a producer's duplicate is recognised by its id).
    recent_ids: list[bytes] = field(default_factory=list)
    #: Offsets of recent records skipped as a producer's copies (rare; usually empty).
    duplicate_offsets: list[int] = field(default_factory=list)
    #: The newest event reflected: [event_id, type, ts].
    trigger: list[Any] | None = None
    #: [item_id, artwork_id] of the top titles with several artworks in the newest snapshot:
    #: the impressions the artwork bandit learns from at the viewer's next play.
    shown: list[list[str]] = field(default_factory=list)
    #: The new release in the newest snapshot's exploration slot: one impression however
    #: many consecutive snapshots show it.
    explored: str | None = None
    #: The top titles of the newest snapshot, in rank order.
    listed: list[str] = field(default_factory=list)
    #: The titles listed above the one the viewer started last ("skip-above": passed over for it);
    #: learned from as its competitors if the viewer finishes or likes it.
    passed: list[str] = field(default_factory=list)
    #: The viewer started that title back after a while (its event before was :data:`AWAY_MS` or more
    #: earlier): a finish or like of it teaches the choice learner what viewers back after a while choose.
    away: bool = False
    #: Personalisation is off (``opt_out``) for this viewer's events after this offset; None: on.
    opted_out: int | None = None
    #: Offset ranges ``[after, through]`` of events never to apply (an opted-out period, or events
    #: from before a ``forget``), newest last: a redelivery of one changes nothing.
    void: list[list[int]] = field(default_factory=list)
    #: Genres the viewer asked to see more of, and never to see (``set_preferences``; lower case).
    likes: list[str] = field(default_factory=list)
    dislikes: list[str] = field(default_factory=list)
    #: Offset of the newest command applied (in ``user-commands``, this viewer's partition).
    commands: int = -1

    @classmethod
    def after_forget(cls, user_id: str, events_through: int, command_offset: int) -> Profile:
        """The fresh profile of a viewer forgotten when its partition's events were read through
        ``events_through``: those events, redelivered, are void; so are commands up to ``command_offset``."""
        return cls(user_id, void=[[-1, events_through]], commands=command_offset)

    def voided(self, offset: int) -> bool:
        """Whether the event at ``offset`` must change nothing: personalisation was off, or it was forgotten.

        >>> p = Profile("u1", opted_out=20, void=[[4, 9]])
        >>> p.voided(4), p.voided(9), p.voided(15), p.voided(21)
        (False, True, False, True)
        """
        if self.opted_out is not None and offset > self.opted_out:
            return True
        return any(after < offset <= through for after, through in self.void)

    def command(self, command: UserCommand, offset: int, events_through: int) -> bool:
        """Apply ``opt_out``, ``opt_in`` or ``set_preferences`` (at ``offset`` in the commands topic), taking
        effect between the events read through ``events_through`` and the next; False if applied before.

        ``forget`` replaces the profile (:meth:`after_forget`) and is not applied here.
        """
        if offset <= self.commands:
            return False
        self.commands = offset
        if command.command == "opt_out" and self.opted_out is None:
            self.opted_out = events_through
        elif command.command == "opt_in" and self.opted_out is not None:
            if events_through > self.opted_out:
                self.void.append([self.opted_out, events_through])
                del self.void[:-MAX_VOID]
            self.opted_out = None
        elif command.command == "set_preferences":
            self.likes = _genres(command.likes)
            self.dislikes = _genres(command.dislikes)
        return True

    @property
    def personalised(self) -> bool:
        return self.opted_out is None

    def impersonal(self, trigger: list[Any] | None) -> Profile:
        """What a list may use of a viewer whose personalisation is off: its stated preferences, and the
        moment (``trigger``: the newest event [id, type, ts]), nothing learned from its events."""
        ts = trigger[2] if trigger and trigger[2] is not None else self.last_ts
        return Profile(
            self.user_id, self.version, self.applied, last_ts=ts, trigger=trigger, opted_out=self.opted_out,
            likes=list(self.likes), dislikes=list(self.dislikes),
        )  # fmt: skip

    def seen(self, event: PlaybackEvent, offset: int) -> bool:
        """Whether this event was applied already (redelivered, or published twice)."""
        return offset <= self.offset or _digest(event.event_id) in self.recent_ids

    def redelivered(self, offset: int) -> bool:
        """Whether a seen record is one applied before, read again (not a producer's copy).

        >>> p = Profile("u1", offset=9, duplicate_offsets=[8])
        >>> p.redelivered(7), p.redelivered(8), p.redelivered(12)
        (True, False, False)
        """
        return offset <= self.offset and offset not in self.duplicate_offsets

    def note_duplicate(self, offset: int) -> bool:
        """Remember that the record at ``offset`` was a producer's copy; False if known already."""
        if offset in self.duplicate_offsets:
            return False
        self.duplicate_offsets.append(offset)
        del self.duplicate_offsets[:-MAX_RECENT_IDS]
        return True

    def apply(
        self,
        event: PlaybackEvent,
        signal: Signal,
        title: CatalogEntry,
        offset: int,
        half_life_ms: float = 14 * 86_400_000,
    ) -> bool:
        """Fold one event into the profile; return False when it was applied before."""
        if self.seen(event, offset):
            return False
        if event.ts > self.last_ts and self.last_ts:
            self._fade(0.5 ** ((event.ts - self.last_ts) / half_life_ms))
        if signal.value:
            self._learn_taste(event, signal.value, signal.finished, title)
        self._count(event, signal)
        self._follow(event, offset)
        return True

    def _fade(self, factor: float) -> None:
        """Everything decayed counts less as time passes (affinities, habits, counts)."""
        _decay(self.genres, factor)
        _decay(self.tags, factor)
        _decay(self.devices, factor)
        for values in self.contexts.values():
            _decay(values, factor)
        self.dayparts = [v * factor for v in self.dayparts]
        self.starts *= factor
        self.finishes *= factor
        self.early_skips *= factor

    def _learn_taste(self, event: PlaybackEvent, value: float, finished: bool, title: CatalogEntry) -> None:
        """The signal moves the title's genres and tags, overall and in the event's contexts."""
        share = value / math.sqrt(len(title.genres))
        for genre in title.genres:
            self.genres[genre] = self.genres.get(genre, 0.0) + share
        if title.tags:
            tag_share = value / math.sqrt(len(title.tags))
            for tag in title.tags:
                self.tags[tag] = self.tags.get(tag, 0.0) + tag_share
            _trim(self.tags, MAX_TAGS)
        for key in context_keys(event.device, event.ts):
            values = self.contexts.setdefault(key, {})
            for genre in title.genres:
                values[genre] = values.get(genre, 0.0) + share
            _trim(values, MAX_CONTEXT_GENRES)
        self.history.append([event.item_id, value, int(finished)])
        del self.history[:-MAX_HISTORY]
        if event.item_id in self.liked and (value <= -LIKED or finished or value >= LIKED):
            self.liked.remove(event.item_id)  # liked again: newest; skipped or thumbed down: no longer
        if finished or value >= LIKED:
            self.liked.append(event.item_id)
            del self.liked[:-MAX_POSITIVES]

    def _count(self, event: PlaybackEvent, signal: Signal) -> None:
        """Starts (by device and daypart), finishes, early skips, and what is never shown again."""
        if event.type == "play":
            self.shown = []  # the last list's artwork impressions are learned from at this play: once
            above = self.listed.index(event.item_id) if event.item_id in self.listed else 0
            self.passed = self.listed[:above][:MAX_PASSED]
            self.away = self.back_at(event.ts)
            self.starts += 1.0
            if event.device is not None:
                self.devices[event.device] = self.devices.get(event.device, 0.0) + 1.0
            self.dayparts[daypart(event.ts)] += 1.0
        if signal.finished:
            self.finishes += 1.0
        if signal.label == "skipped early":
            self.early_skips += 1.0
        if signal.exclude and event.item_id not in self.excluded:
            self.excluded.append(event.item_id)
            del self.excluded[:-MAX_EXCLUDED]

    def back_at(self, ts_ms: int) -> bool:
        """Whether the viewer, coming at ``ts_ms``, is back after a while: it had an event, its newest
        :data:`AWAY_MS` or more before.

        >>> p = Profile("u", last_ts=1_000)
        >>> p.back_at(1_000 + AWAY_MS - 1), p.back_at(1_000 + AWAY_MS), Profile("new").back_at(AWAY_MS)
        (False, True, False)
        """
        return self.last_ts > 0 and ts_ms - self.last_ts >= AWAY_MS

    def _follow(self, event: PlaybackEvent, offset: int) -> None:
        """Where the viewer is now (device, a paused title) and what the profile reflects."""
        if event.device is not None:
            self.device = event.device
        if event.type == "pause":
            self.paused = event.item_id
        elif self.paused is not None and (event.type != "seek" or self.paused != event.item_id):
            self.paused = None
        self.applied += 1
        self.offset = max(self.offset, offset)
        self.last_ts = max(self.last_ts, event.ts)
        self.recent_ids.append(_digest(event.event_id))
        del self.recent_ids[:-MAX_RECENT_IDS]
        self.trigger = [event.event_id, event.type, event.ts]

    def note_list(self, shown: list[list[str]], explored: str | None, listed: list[str] | None = None) -> int:
        """A list was made for this viewer: count its version; remember its top titles, artwork impressions
        and explored title. Returns the list's version."""
        self.version += 1
        self.shown = shown
        self.explored = explored
        self.listed = (listed or [])[:MAX_LISTED]
        return self.version

    def positives(self) -> list[str]:
        """The titles the viewer finished or liked lately (as :func:`~stream.learning.signals.liked` judges a
        signal; at most :data:`MAX_POSITIVES`, and none it turned against since), newest first, each once.

        Kept apart from :attr:`history`, whose :data:`MAX_HISTORY` signals hold only a few positives
        (a title started and given up on leaves two or three of them)."""
        return self.liked[::-1]

    def not_listed(self) -> list[str]:
        """Titles the viewer's list leaves out: those never to be shown again (:attr:`excluded`: finished,
        skipped, thumbed down) and those of its recent history (:data:`MAX_HISTORY` events), each once.
        A title the viewer just started and left is one it knows: what it goes back to belongs in a
        continue-watching row, not among the titles it is offered to discover."""
        return list(dict.fromkeys([*self.excluded, *(item for item, _, _ in self.history)]))

    def finished_titles(self) -> list[str]:
        """Titles this viewer finished, newest first."""
        return [item for item, _, finished in reversed(self.history) if finished]

    # -- serialisation: short keys keep a profile well under 2 KB -------------------

    def dumps(self) -> bytes:
        r4 = _round
        return orjson.dumps(
            {
                "u": self.user_id,
                "v": self.version,
                "n": self.applied,
                "o": self.offset,
                "t": self.last_ts,
                "g": {k: r4(v) for k, v in self.genres.items()},
                "tg": {k: r4(v) for k, v in self.tags.items()},
                "d": {k: r4(v) for k, v in self.devices.items()},
                "dp": [r4(v) for v in self.dayparts],
                "c": {k: {g: r4(v) for g, v in vs.items()} for k, vs in self.contexts.items()},
                "cd": self.device,
                "h": [[i, r4(v), f] for i, v, f in self.history],
                "lk": self.liked,
                "x": self.excluded,
                "p": self.paused,
                "s": [r4(self.starts), r4(self.finishes), r4(self.early_skips)],
                "r": base64.b64encode(b"".join(self.recent_ids)).decode("ascii"),
                "dx": self.duplicate_offsets,
                "tr": self.trigger,
                "sh": self.shown,
                "xp": self.explored,
                "l": self.listed,
                "pa": self.passed,
                "aw": self.away,
                "oo": self.opted_out,
                "vd": self.void,
                "pl": self.likes,
                "pd": self.dislikes,
                "co": self.commands,
            }
        )

    @classmethod
    def loads(cls, raw: bytes) -> Profile:
        d = orjson.loads(raw)
        starts, finishes, early = d["s"]
        return cls(
            user_id=d["u"],
            version=d["v"],
            applied=d["n"],
            offset=d["o"],
            last_ts=d["t"],
            genres=d["g"],
            tags=d["tg"],
            devices=d["d"],
            dayparts=d["dp"],
            contexts=d.get("c", {}),  # rows written before contexts existed have none
            device=d.get("cd"),
            history=d["h"],
            liked=d["lk"] if "lk" in d else _liked(d["h"]),
            excluded=d["x"],
            paused=d["p"],
            starts=starts,
            finishes=finishes,
            early_skips=early,
            recent_ids=_split(base64.b64decode(d["r"])),
            duplicate_offsets=d.get("dx", []),  # rows written before this field existed have none
            trigger=d["tr"],
            shown=d.get("sh", []),
            explored=d.get("xp"),
            listed=d.get("l", []),  # rows written before these fields existed have none
            passed=d.get("pa", []),
            away=d.get("aw", False),
            opted_out=d.get("oo"),  # rows written before commands were acted on have none
            void=d.get("vd", []),
            likes=d.get("pl", []),
            dislikes=d.get("pd", []),
            commands=d.get("co", -1),
        )


def _genres(names: tuple[str, ...] | list[str] | None) -> list[str]:
    """Genre names as preferences keep them: lower case, each once, in the order given."""
    return list(dict.fromkeys(name.strip().lower() for name in names or () if name.strip()))


def _liked(history: list[list[Any]]) -> list[str]:
    """The titles a history finished or liked, oldest first, each once (rows written before ``liked`` existed)."""
    newest = (item for item, value, finished in reversed(history) if finished or value >= LIKED)
    return list(dict.fromkeys(newest))[::-1]


def _round(value: float) -> float:
    return round(value, 4)


def _digest(event_id: str) -> bytes:
    return hashlib.blake2b(event_id.encode(), digest_size=_ID_DIGEST).digest()


def _split(packed: bytes) -> list[bytes]:
    return [packed[i : i + _ID_DIGEST] for i in range(0, len(packed), _ID_DIGEST)]
