"""Why each pick is there, in words: reasons read off the score's largest weighted parts.

Every reason names one of the parts that put the title in the list, and says only what
is true of it: "because you finished Night Shift" names a finished title of the genre
(or tag) that scored; "you watch more drama on TV in the evening" is given only when
the viewer's context lift for that genre is positive.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from stream.contracts.validation import CatalogEntry
from stream.learning.catalog import Catalog
from stream.learning.cohorts import bucket_label
from stream.learning.features import FEATURES, context_lift
from stream.learning.profile import DAYPARTS, Profile, daypart

__all__ = [
    "DIFFERENT",
    "EXPLORING",
    "MAX_REASONS",
    "MIN_REASON",
    "PERSONALISATION_OFF",
    "Explainer",
    "FinishedIndex",
    "context_label",
]

WEEK_MS = 7 * 86_400_000
#: A feature must add at least this much to a score to be given as a reason.
MIN_REASON = 0.05
#: Reasons given per title at most (its strongest contributions).
MAX_REASONS = 3
EXPLORING = "exploring: new release"
DIFFERENT = "something different to try"
#: The first reason of every pick for a viewer who opted out: the list is made without its data.
PERSONALISATION_OFF = "personalisation is off: popular and new titles"
_DEVICE_NAMES = {"tv": "TV", "mobile": "mobile", "tablet": "tablet", "web": "the web", "other": "other devices"}


def context_label(device: str | None, ts_ms: int) -> str:
    """``"on TV in the evening"``, ``"at night"``: the current context, in words."""
    part = DAYPARTS[daypart(ts_ms)]
    when = "at night" if part == "night" else f"in the {part}"
    return f"on {_DEVICE_NAMES.get(device, device)} {when}" if device else when


class Explainer:
    """The reasons for one viewer's picks, with what they may name looked up once per viewer.

    ``context``: the viewer's current context in words; ``bucket``: the cohort bucket it
    borrowed from; ``lift``: its context lift (computed here when not given); ``related``: its
    co-watched titles (:attr:`stream.learning.features.ViewerTerms.related`); ``fits``: which of its
    recent positives gives a title's factor feature most (by id; see
    :meth:`stream.learning.factors.ItemFactors.strongest`).
    """

    def __init__(
        self,
        profile: Profile,
        catalog: Catalog,
        now_ms: int,
        context: str = "",
        bucket: str | None = None,
        lift: dict[str, float] | None = None,
        related: dict[int, tuple[float, str]] | None = None,
        fits: Callable[[str], str | None] | None = None,
    ) -> None:
        self.profile = profile
        #: Co-watched titles: row -> (feature, the viewer's positive that gave it most).
        self.related = related or {}
        self.fits = fits
        self.catalog = catalog
        self.release_ts = catalog.matrices().release_ts
        self.now_ms = now_ms
        self.finished = FinishedIndex(profile, catalog)
        self.context = context
        self.cohort = f"popular with viewers like you {bucket_label(bucket) if bucket else ''}".rstrip()
        self.lift = lift if lift is not None else context_lift(profile, profile.device, profile.last_ts)
        self._by_feature = [getattr(self, f"_{feature}") for feature in FEATURES]

    def reasons(self, idx: int, parts: Sequence[float]) -> list[str]:
        """Readable reasons for the pick at catalog row ``idx``, strongest part first (at most ``MAX_REASONS``).

        ``parts``: each feature's weighted part of its score, in :data:`FEATURES` order.
        """
        strong = sorted((-part, f) for f, part in enumerate(parts) if part >= MIN_REASON)
        entry = self.catalog.entry(idx)
        said: list[str] = []
        for _, feature in strong[:MAX_REASONS]:
            reason = self._by_feature[feature](idx, entry, said)
            if reason is not None:
                said.append(reason)
        return said or [DIFFERENT]

    def _genre(self, idx: int, entry: CatalogEntry, said: list[str]) -> str | None:
        genre = max(entry.genres, key=lambda g: self.profile.genres.get(g, 0.0))
        because = self.finished.by_genre(genre)
        return f"because you finished {because}" if because else f"because you watch {genre}"

    def _tag(self, idx: int, entry: CatalogEntry, said: list[str]) -> str | None:
        tag = max(entry.tags, key=lambda t: self.profile.tags.get(t, 0.0))
        because = self.finished.by_tag(tag)
        return f"because you finished {because}" if because and not said else f"because you like {tag}"

    def _context(self, idx: int, entry: CatalogEntry, said: list[str]) -> str | None:
        lift = self.lift
        genre = max(entry.genres, key=lambda g: lift.get(g, 0.0))
        if lift.get(genre, 0.0) <= 0:  # true only when positive (a learned weight could turn a drop into a gain)
            return None
        return f"you watch more {genre} {self.context}".rstrip()

    def _cohort(self, idx: int, entry: CatalogEntry, said: list[str]) -> str | None:
        return self.cohort

    def _cowatch(self, idx: int, entry: CatalogEntry, said: list[str]) -> str | None:
        reason = self._because(self.related.get(idx, (0.0, ""))[1])
        return None if reason in said else reason

    def _factor(self, idx: int, entry: CatalogEntry, said: list[str]) -> str | None:
        because = self.fits(entry.item_id) if self.fits is not None else None
        reason = self._because(because)
        return None if reason in said else reason

    def _because(self, item_id: str | None) -> str | None:
        """ "because you finished (liked) X" for one of the viewer's positives (None: not in the catalog)."""
        found = self.catalog.get(item_id) if item_id else None
        if found is None:
            return None
        return f"because you {'finished' if item_id in self.finished.titles else 'liked'} {found.title}"

    def _popularity(self, idx: int, entry: CatalogEntry, said: list[str]) -> str | None:
        return "popular right now"

    def _trending(self, idx: int, entry: CatalogEntry, said: list[str]) -> str | None:
        return "trending in the last hour"

    def _trend(self, idx: int, entry: CatalogEntry, said: list[str]) -> str | None:
        return "many viewers finished or liked it lately"

    def _freshness(self, idx: int, entry: CatalogEntry, said: list[str]) -> str | None:
        new = "new this week" if self.now_ms - self.release_ts[idx] < WEEK_MS else "new release"
        liked = [g for g in entry.genres if self.profile.genres.get(g, 0.0) > 0]
        if liked:
            genre = max(liked, key=lambda g: self.profile.genres[g])
            new = f"{new} in a genre you watch ({genre})"
        return new


class FinishedIndex:
    """The newest finished title per genre and per tag, looked up once per viewer."""

    def __init__(self, profile: Profile, catalog: Catalog) -> None:
        self.genres: dict[str, str] = {}
        self.tags: dict[str, str] = {}
        #: The ids of the viewer's finished titles.
        self.titles: set[str] = set()
        for item_id in profile.finished_titles():  # newest first: keep the first seen
            self.titles.add(item_id)
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
