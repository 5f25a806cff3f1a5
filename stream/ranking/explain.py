"""Why each pick is there, in words: reasons read off the score's largest weighted parts.

Every reason names one of the parts that put the title in the list, and says only what
is true of it: "because you finished Night Shift" names a finished title of the genre
(or tag) that scored; "you watch more drama on TV in the evening" is given only when
the viewer's context lift for that genre is positive.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from stream.contracts.validation import CatalogEntry
from stream.learning.catalog import Catalog, CatalogMatrices
from stream.learning.cohorts import bucket_label
from stream.learning.features import context_lift
from stream.learning.profile import DAYPARTS, Profile, daypart

__all__ = [
    "DIFFERENT",
    "EXPLORING",
    "MAX_REASONS",
    "MIN_REASON",
    "FinishedIndex",
    "context_label",
    "explain",
]

WEEK_MS = 7 * 86_400_000
#: A feature must add at least this much to a score to be given as a reason.
MIN_REASON = 0.05
#: Reasons given per title at most (its strongest contributions).
MAX_REASONS = 3
EXPLORING = "exploring: new release"
DIFFERENT = "something different to try"
_DEVICE_NAMES = {"tv": "TV", "mobile": "mobile", "tablet": "tablet", "web": "the web", "other": "other devices"}


def context_label(device: str | None, ts_ms: int) -> str:
    """``"on TV in the evening"``, ``"at night"``: the current context, in words."""
    part = DAYPARTS[daypart(ts_ms)]
    when = "at night" if part == "night" else f"in the {part}"
    return f"on {_DEVICE_NAMES.get(device, device)} {when}" if device else when


@dataclass(frozen=True, slots=True)
class _Pick:
    """What the reasons for one pick may name."""

    profile: Profile
    entry: CatalogEntry
    released: float
    now_ms: int
    finished: FinishedIndex
    context: str  # the current context, in words
    bucket: str | None  # the cohort bucket the viewer borrowed from
    lift: dict[str, float]  # the viewer's context lift


def _genre(pick: _Pick, said: list[str]) -> str | None:
    genre = max(pick.entry.genres, key=lambda g: pick.profile.genres.get(g, 0.0))
    because = pick.finished.by_genre(genre)
    return f"because you finished {because}" if because else f"because you watch {genre}"


def _tag(pick: _Pick, said: list[str]) -> str | None:
    tag = max(pick.entry.tags, key=lambda t: pick.profile.tags.get(t, 0.0))
    because = pick.finished.by_tag(tag)
    return f"because you finished {because}" if because and not said else f"because you like {tag}"


def _context(pick: _Pick, said: list[str]) -> str | None:
    genre = max(pick.entry.genres, key=lambda g: pick.lift.get(g, 0.0))
    if pick.lift.get(genre, 0.0) <= 0:  # true only when positive (a learned weight could turn a drop into a gain)
        return None
    return f"you watch more {genre} {pick.context}".rstrip()


def _cohort(pick: _Pick, said: list[str]) -> str | None:
    where = bucket_label(pick.bucket) if pick.bucket else ""
    return f"popular with viewers like you {where}".rstrip()


def _freshness(pick: _Pick, said: list[str]) -> str | None:
    new = "new this week" if pick.now_ms - pick.released < WEEK_MS else "new release"
    liked = [g for g in pick.entry.genres if pick.profile.genres.get(g, 0.0) > 0]
    if liked:
        genre = max(liked, key=lambda g: pick.profile.genres[g])
        new = f"{new} in a genre you watch ({genre})"
    return new


#: How each feature of the score explains itself, given the reasons already said.
_REASONS: dict[str, Callable[[_Pick, list[str]], str | None]] = {
    "genre": _genre,
    "tag": _tag,
    "context": _context,
    "cohort": _cohort,
    "popularity": lambda pick, said: "popular right now",
    "trending": lambda pick, said: "trending in the last hour",
    "freshness": _freshness,
}


def explain(
    profile: Profile,
    catalog: Catalog,
    idx: int,
    parts: dict[str, float],
    mats: CatalogMatrices,
    now_ms: int,
    finished: FinishedIndex | None = None,
    labels: tuple[str, str | None, dict[str, float] | None] = ("", None, None),
) -> list[str]:
    """Readable reasons for one pick, strongest contribution first (at most ``MAX_REASONS``).

    ``parts``: each feature's weighted part of the score; ``labels``: the current context in
    words, the cohort bucket the viewer borrowed from, and its context lift (computed here
    when not given).
    """
    context, bucket, lift = labels
    if lift is None:
        lift = context_lift(profile, profile.device, profile.last_ts)
    pick = _Pick(
        profile,
        catalog.entry(idx),
        float(mats.release_ts[idx]),
        now_ms,
        finished or FinishedIndex(profile, catalog),
        context,
        bucket,
        lift,
    )
    reasons: list[str] = []
    strong = sorted((kv for kv in parts.items() if kv[1] >= MIN_REASON), key=lambda kv: -kv[1])
    for feature, _ in strong[:MAX_REASONS]:
        reason = _REASONS[feature](pick, reasons)
        if reason is not None:
            reasons.append(reason)
    return reasons or [DIFFERENT]


class FinishedIndex:
    """The newest finished title per genre and per tag, looked up once per viewer."""

    def __init__(self, profile: Profile, catalog: Catalog) -> None:
        self.genres: dict[str, str] = {}
        self.tags: dict[str, str] = {}
        for item_id in profile.finished_titles():  # newest first: keep the first seen
            entry = catalog.get(item_id)
            if entry is None:
                continue
            for g in entry.genres:
                self.genres.setdefault(g, entry.title)
            for t in entry.tags:
                self.tags.setdefault(t, entry.title)

    def by_genre(self, genre: str) -> str | None:
        return self.genres.get(genre)

    def by_tag(self, tag: str) -> str | None:
        return self.tags.get(tag)
