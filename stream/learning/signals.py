"""What each playback event means: the one place where behaviour becomes a signal.

A :class:`Signal` is the viewer's revealed interest in the title, from -1
(strongly not for me) to +1 (strongly for me), with a label that explanations
and tests use. Whether the title is then excluded from that viewer's lists is
decided here too.

>>> from stream.contracts.validation import PlaybackEvent
>>> e = PlaybackEvent("e1", "u1", "t1", "skip", 1767225600000, position_s=30, duration_s=3600)
>>> interpret(e, paused_item=None)
Signal(value=-1.0, label='skipped early', exclude=True, finished=False, learns=True)
>>> e = PlaybackEvent("e2", "u1", "t1", "stop", 1767225600000, position_s=1800, duration_s=3600)
>>> interpret(e, paused_item="t1").label
'paused then stopped'
"""

from __future__ import annotations

from typing import NamedTuple

from stream.contracts.validation import PlaybackEvent

__all__ = ["EARLY", "NEARLY_DONE", "Signal", "interpret"]

#: A skip or stop before this share of the title is "early".
EARLY = 0.10
#: Past this share a title counts as watched.
NEARLY_DONE = 0.90


class Signal(NamedTuple):
    value: float
    label: str
    exclude: bool = False
    #: The viewer watched the title to (nearly) the end.
    finished: bool = False
    #: Whether the model learns from it: only from what tells how a title went, not from a
    #: start or a pause alone (a start's outcome follows; learning both would teach the model
    #: that a good match is worth only what a start is).
    learns: bool = True


#: A signal worth at least this (a thumbs up, an add to the list) is a like (see :func:`liked`).
LIKED = 0.6


def liked(signal: Signal) -> bool:
    """A finish, a thumbs up or an add to the list: what a viewer chose and was glad of."""
    return signal.finished or signal.value >= LIKED


COMPLETED = Signal(1.0, "completed", exclude=True, finished=True)
SKIPPED_EARLY = Signal(-1.0, "skipped early", exclude=True)
THUMBS_UP = Signal(1.0, "thumbs up")
THUMBS_DOWN = Signal(-1.0, "thumbs down", exclude=True)
ADDED = Signal(0.6, "added to list")
REWOUND = Signal(0.4, "rewound")
RESUMED = Signal(0.3, "paused then resumed")
DOUBT = Signal(-0.3, "paused then stopped")
PLAYED = Signal(0.1, "started", learns=False)
PAUSED = Signal(0.0, "paused", learns=False)


#: Event types whose meaning does not depend on where the viewer was.
FIXED = {
    "complete": COMPLETED,
    "rewind": REWOUND,
    "pause": PAUSED,
    "play": PLAYED,
    "thumbs_up": THUMBS_UP,
    "thumbs_down": THUMBS_DOWN,
    "add_to_list": ADDED,
}


def _skip(progress: float | None, after_pause: bool) -> Signal:
    if progress is None or progress < EARLY:
        return SKIPPED_EARLY
    if progress >= NEARLY_DONE:
        return Signal(0.5, "skipped the credits", exclude=True, finished=True)
    return Signal(-0.4, "skipped midway", exclude=True)


def _stop(progress: float | None, after_pause: bool) -> Signal:
    if after_pause:
        return DOUBT
    if progress is None or progress < EARLY:
        return Signal(-0.6, "stopped early")
    if progress >= NEARLY_DONE:
        return Signal(0.8, "watched nearly all", exclude=True, finished=True)
    return Signal(round(0.6 * (progress - 0.5), 3), "stopped midway")


def _resume(progress: float | None, after_pause: bool) -> Signal:
    return RESUMED if after_pause else Signal(0.1, "resumed")


#: Event types whose meaning depends on how far in the viewer was and on a pause before.
BY_PROGRESS = {"skip": _skip, "stop": _stop, "resume": _resume}


def interpret(event: PlaybackEvent, paused_item: str | None) -> Signal:
    """The signal of ``event``, given the title the viewer last paused (if any).

    A pause is neutral on its own: what follows decides. Resuming the paused
    title is engagement; stopping it is doubt.
    """
    kind = event.type
    fixed = FIXED.get(kind)
    if fixed is not None:
        return fixed
    judge = BY_PROGRESS.get(kind)
    if judge is not None:
        return judge(event.progress, paused_item == event.item_id)
    if kind == "seek":
        return Signal(0.3, "seeked back") if (event.offset_s or 0.0) < 0 else Signal(-0.2, "seeked forward")
    raise ValueError(f"event type: expected one of the schema's types; got {kind!r}")
