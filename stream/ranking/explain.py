"""Why each pick is there, in words: reasons read off the score's largest weighted parts.

Every reason names one of the parts that put the title in the list, and says only what
is true of it: "because you finished Night Shift" names a finished title of the genre
(or tag) that scored; "you watch more drama on TV in the evening" is given only when
the viewer's context lift for that genre is positive.
"""

from __future__ import annotations

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
    words, the cohort bucket the viewer borrowed from, and its context lift (see :func:`rank`;
    computed here when not given).
    """
    entry = catalog.entry(idx)
    finished = finished or FinishedIndex(profile, catalog)
    context, bucket, lift = labels
    reasons: list[str] = []
    strong = sorted((kv for kv in parts.items() if kv[1] >= MIN_REASON), key=lambda kv: -kv[1])
    for feature, _ in strong[:MAX_REASONS]:
        if feature == "genre":
            genre = max(entry.genres, key=lambda g: profile.genres.get(g, 0.0))
            because = finished.by_genre(genre)
            reasons.append(f"because you finished {because}" if because else f"because you watch {genre}")
        elif feature == "tag":
            tag = max(entry.tags, key=lambda t: profile.tags.get(t, 0.0))
            because = finished.by_tag(tag)
            reasons.append(f"because you finished {because}" if because and not reasons else f"because you like {tag}")
        elif feature == "context":
            if lift is None:
                lift = context_lift(profile, profile.device, profile.last_ts)
            genre = max(entry.genres, key=lambda g: lift.get(g, 0.0))
            if lift.get(genre, 0.0) > 0:  # true only then (a learned weight could turn a drop into a gain)
                reasons.append(f"you watch more {genre} {context}".rstrip())
        elif feature == "cohort":
            where = bucket_label(bucket) if bucket else ""
            reasons.append(f"popular with viewers like you {where}".rstrip())
        elif feature == "popularity":
            reasons.append("popular right now")
        elif feature == "trending":
            reasons.append("trending in the last hour")
        elif feature == "freshness":
            released = mats.release_ts[idx]
            new = "new this week" if now_ms - released < WEEK_MS else "new release"
            liked = [g for g in entry.genres if profile.genres.get(g, 0.0) > 0]
            if liked:
                genre = max(liked, key=lambda g: profile.genres[g])
                new = f"{new} in a genre you watch ({genre})"
            reasons.append(new)
    if not reasons:
        reasons.append(DIFFERENT)
    return reasons


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
