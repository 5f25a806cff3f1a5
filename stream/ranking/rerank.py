"""Re-ranking a viewer's best-scored titles: diversity, then one exploration slot.

Both steps keep the list's ``score`` (what the list is ordered by) non-increasing
with rank: diversity scores each pick by its gain when it was picked (relevance
minus the genre penalty, which only grows as the list fills, so the gains never
rise), and the exploration slot, placed by rule rather than by score, takes the
score of the pick it displaces. Each pick's relevance (the model's score before
re-ranking) is kept beside it.

Nothing here changes a model: :class:`OpenSlots` counts the impressions a ranking
pass would spend, and the caller has the deployment learn them (``SharedModel.learn_viewer``).
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from stream.learning.catalog import Catalog, CatalogMatrices
from stream.learning.features import ViewerTerms, cohort_part, pair_parts, title_rows, weight_vector
from stream.learning.model import PartitionModel
from stream.learning.velocity import NEW_DAYS

__all__ = ["EXPLORE_RANK", "NewReleases", "OpenSlots", "Picks", "diversify", "explore"]

#: The rank (1-based) of the exploration slot.
EXPLORE_RANK = 3
DAY_MS = 86_400_000


@dataclass(slots=True)
class Picks:
    """One viewer's candidates, in list order."""

    rows: np.ndarray  # catalog rows
    relevance: np.ndarray  # the model's score of each
    parts: np.ndarray  # (len(rows), 7) raw features of each (see stream.learning.features)
    scores: np.ndarray  # what the list is ordered by: non-increasing

    def take(self, keep: np.ndarray) -> Picks:
        return Picks(self.rows[keep], self.relevance[keep], self.parts[keep], self.scores[keep])


def diversify(picks: list[Picks], genres: np.ndarray, k: int, penalty: float) -> list[Picks]:
    """Greedy re-ranking of each viewer's candidates for variety, all viewers at once.

    Each next pick maximises ``relevance - penalty * s``, where ``s`` sums the candidate's genre
    similarities (cosine of unit genre rows) to the titles picked before it. The cost of a
    genre grows with each title of it already listed (unlike maximal marginal relevance's
    largest similarity, which a strong favourite pays once and then fills the list), so a
    list spreads across the genres the viewer likes, in proportion to how much. A pick's
    score is its gain when picked.
    """
    n = len(picks)
    width = max(len(p.rows) for p in picks)
    if width <= 1:
        return picks
    rows = np.zeros((n, width), dtype=np.int64)
    relevance = np.full((n, width), -np.inf, dtype=np.float64)
    for r, p in enumerate(picks):
        rows[r, : len(p.rows)] = p.rows
        relevance[r, : len(p.relevance)] = p.relevance
    feats = genres[rows]  # (viewers, candidates, genres)
    overlap = np.zeros((n, width))
    chosen = np.zeros((n, min(k, width)), dtype=np.int64)
    gains = np.zeros(chosen.shape)
    valid = np.zeros(chosen.shape, dtype=bool)  # False once a viewer runs out of rankable titles
    every = np.arange(n)
    for step in range(chosen.shape[1]):
        gain = relevance - penalty * overlap
        j = np.argmax(gain, axis=1)
        chosen[:, step] = j
        gains[:, step] = gain[every, j]
        valid[:, step] = np.isfinite(gain[every, j])
        relevance[every, j] = -np.inf  # taken
        overlap += np.einsum("ncg,ng->nc", feats, feats[every, j])
    out: list[Picks] = []
    for r, p in enumerate(picks):
        keep = chosen[r][valid[r]]
        taken = p.take(keep)
        taken.scores = gains[r][valid[r]].astype(np.float32)
        out.append(taken)
    return out


def new_releases(mats: CatalogMatrices, now_ms: int) -> np.ndarray:
    """Catalog rows of the titles out for less than ``NEW_DAYS`` (and not retired)."""
    age = now_ms - mats.release_ts
    with np.errstate(invalid="ignore"):
        new = (age >= 0) & (age < NEW_DAYS * DAY_MS) & mats.active
    return np.flatnonzero(new)


@dataclass(frozen=True, slots=True)
class NewReleases:
    """The catalog's new releases and their title rows, gathered once (they change with the catalog and the hour)."""

    #: (catalog, its version, the hour) it was gathered for: what it stands for, as long as it holds.
    stamp: tuple[int, int, int]
    rows: np.ndarray
    genres: np.ndarray  # (new releases, genres) unit rows
    tags: np.ndarray  # (new releases, tags), dense: a few hundred rows at most, sliced per cohort

    @staticmethod
    def stamp_of(catalog: Catalog, now_ms: int) -> tuple[int, int, int]:
        return (id(catalog), catalog.version, now_ms // 3_600_000)

    @classmethod
    def of(cls, catalog: Catalog, now_ms: int) -> NewReleases:
        rows = new_releases(catalog.matrices(), now_ms // 3_600_000 * 3_600_000)  # "new" is judged to the hour
        genres, tags = title_rows(catalog, rows)
        dense = np.asarray(tags.todense() if hasattr(tags, "todense") else tags)
        return cls(cls.stamp_of(catalog, now_ms), rows, genres, dense)


class _Open:
    """One cohort's new releases with budget left: their rows and title rows."""

    def __init__(self, new: NewReleases, keep: np.ndarray) -> None:
        self.rows = new.rows[keep]
        self.set = set(self.rows.tolist())
        self.gathered = (new.genres[keep], new.tags[keep])

    def close(self, row: int) -> None:
        keep = self.rows != row
        self.rows, self.gathered = self.rows[keep], (self.gathered[0][keep], self.gathered[1][keep])
        self.set.discard(row)


class OpenSlots:
    """The new releases with exploration budget left, per (model, cohort), for one ranking pass.

    Impressions this pass would spend are counted here (``pending``), so two viewers of one
    cohort in one pass cannot overspend a budget; the caller applies them to the models.
    ``new``: the catalog's :class:`NewReleases` now (callers may keep it across passes).
    """

    def __init__(
        self,
        catalog: Catalog,
        now_ms: int,
        budget: int,
        new: NewReleases | None = None,
        kept: MutableMapping[PartitionModel, dict[int, tuple[Any, _Open]]] | None = None,
    ) -> None:
        self.catalog = catalog
        self.budget = budget
        self.new = new if new is not None else NewReleases.of(catalog, now_ms)
        self.pending: dict[tuple[int, int, str], int] = {}  # (model, cohort, title) -> impressions
        #: Per model, per cohort: its open new releases. Kept across passes when the caller gives a
        #: mapping (rows only ever close: a cached title found spent is closed when picked).
        self._kept = kept if kept is not None else {}
        self._cohort_parts: dict[tuple[int, int, int, str], np.ndarray] = {}  # this pass: per bucket

    def _open_for(self, viewer: ViewerTerms) -> _Open:
        model, cohort, ids = viewer.model, cast(int, viewer.cohort), self.catalog.ids
        stamp = (self.new.stamp, self.budget)
        per_cohort = self._kept.setdefault(model, {})
        kept = per_cohort.get(cohort)
        if kept is None or kept[0] != stamp:
            left = model.exploration.left
            keep = np.asarray([left(cohort, ids[i], self.budget) for i in self.new.rows.tolist()], dtype=bool)
            kept = per_cohort[cohort] = (stamp, _Open(self.new, keep))
        return kept[1]

    def _left(self, viewer: ViewerTerms, row: int, pending: int = 0) -> bool:
        cohort = cast(int, viewer.cohort)
        item_id = self.catalog.ids[row]
        pending += self.pending.get((id(viewer.model), cohort, item_id), 0)
        return viewer.model.exploration.left(cohort, item_id, self.budget, pending)

    def best(self, viewer: ViewerTerms, listed: np.ndarray) -> tuple[int, float, np.ndarray] | None:
        """(row, relevance, raw parts) of the new release for this viewer's exploration slot, or None.

        None when there is none, or the list already holds one (the slot is taken). Otherwise
        the one this viewer's score likes best, so exploration still follows taste.
        """
        if viewer.cohort is None or not len(self.new.rows):
            return None
        slot = self._open_for(viewer)
        if not slot.set or not slot.set.isdisjoint(listed.tolist()):
            return None
        rows = slot.rows
        key = (id(viewer.model), cast(int, viewer.cohort), len(rows), cast(str, viewer.bucket))
        cohort = self._cohort_parts.get(key)
        if cohort is None:  # viewers of one bucket share its cohort parts in a pass
            cohort = self._cohort_parts[key] = cohort_part(viewer, self.catalog, rows)
        parts = pair_parts(viewer, self.catalog, rows, slot.gathered, cohort=cohort)
        scores = parts @ weight_vector(viewer.weights)
        excluded = set(viewer.profile.not_listed())
        if excluded:
            ids = self.catalog.ids
            scores[[j for j, row in enumerate(rows.tolist()) if ids[row] in excluded]] = -np.inf
        while True:
            best = int(np.argmax(scores))
            if not np.isfinite(scores[best]):
                return None
            if self._left(viewer, int(rows[best])):
                return int(rows[best]), float(scores[best]), parts[best]
            scores[best] = -np.inf  # spent since it was kept open: closed from now on
            slot.close(int(rows[best]))

    def count(self, viewer: ViewerTerms, row: int) -> bool:
        """Count the impression of showing ``row`` to this viewer; False if its last list showed it already."""
        item_id = self.catalog.ids[row]
        if item_id == viewer.profile.explored or viewer.cohort is None:
            return False  # shown again in consecutive lists: the same impression
        key = (id(viewer.model), viewer.cohort, item_id)
        self.pending[key] = self.pending.get(key, 0) + 1
        if not self._left(viewer, row):  # spent: closed
            self._open_for(viewer).close(row)
        return True


def explore(picks: Picks, slot: tuple[int, float, np.ndarray], top_k: int) -> Picks:
    """``picks`` with the explored title at rank ``EXPLORE_RANK``, scored as the pick it displaces."""
    row, relevance, parts = slot
    at, end = min(EXPLORE_RANK - 1, len(picks.rows)), max(top_k, 1) - 1
    scores = picks.scores
    score = scores[at] if at < len(scores) else (scores[-1] if len(scores) else relevance)
    return Picks(
        np.concatenate([picks.rows[:at], [row], picks.rows[at:end]]),
        np.concatenate([picks.relevance[:at], [relevance], picks.relevance[at:end]]).astype(np.float32),
        np.concatenate([picks.parts[:at], parts[None, :], picks.parts[at:end]]),
        np.concatenate([scores[:at], [score], scores[at:end]]).astype(np.float32),
    )
