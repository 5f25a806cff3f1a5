"""Re-ranking a viewer's best-scored titles: diversity, then one exploration slot.

Both steps keep the list's ``score`` (what the list is ordered by) non-increasing
with rank: diversity scores each pick by its gain when it was picked (relevance
minus the genre penalty, which only grows as the list fills, so the gains never
rise), and the exploration slot, placed by rule rather than by score, takes the
score of the pick it displaces. Each pick's relevance (the model's score before
re-ranking) is kept beside it.

Nothing here changes a model: :class:`OpenSlots` counts the impressions a ranking
pass would spend, and the caller applies them (``PartitionModel.spend_exploration``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stream.learning.catalog import Catalog, CatalogMatrices
from stream.learning.features import ViewerTerms, pair_parts, weight_vector
from stream.learning.velocity import NEW_DAYS

__all__ = ["EXPLORE_RANK", "OpenSlots", "Picks", "diversify", "explore"]

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


class OpenSlots:
    """The new releases with exploration budget left, per (model, cohort), for one ranking pass.

    Impressions this pass would spend are counted here (``pending``), so two viewers of one
    cohort in one pass cannot overspend a budget; the caller applies them to the models.
    """

    def __init__(self, catalog: Catalog, now_ms: int, budget: int) -> None:
        self.catalog = catalog
        self.budget = budget
        self.new = new_releases(catalog.matrices(), now_ms)
        self.pending: dict[tuple[int, int, str], int] = {}  # (model, cohort, title) -> impressions
        self._open_rows: dict[tuple[int, int], np.ndarray] = {}  # (model, cohort) -> rows with budget left

    def _open(self, viewer: ViewerTerms) -> np.ndarray:
        model, cohort, ids = viewer.model, viewer.cohort, self.catalog.ids
        assert cohort is not None
        rows = self._open_rows.get((id(model), cohort))
        if rows is None:
            left = model.exploration.left
            rows = np.asarray([i for i in self.new.tolist() if left(cohort, ids[i], self.budget)], dtype=np.int64)
            self._open_rows[(id(model), cohort)] = rows
        return rows

    def best(self, viewer: ViewerTerms, listed: np.ndarray) -> tuple[int, float, np.ndarray] | None:
        """(row, relevance, raw parts) of the new release for this viewer's exploration slot, or None.

        None when there is none, or the list already holds one (the slot is taken). Otherwise
        the one this viewer's score likes best, so exploration still follows taste.
        """
        if viewer.cohort is None or not len(self.new):
            return None
        rows = self._open(viewer)
        if not len(rows) or np.isin(rows, listed).any():
            return None
        parts = pair_parts(viewer, self.catalog, rows)
        scores = parts @ weight_vector(viewer.model.weights)
        excluded = [i for i in map(self.catalog.index_of, viewer.profile.excluded) if i is not None]
        if excluded:
            scores[np.isin(rows, excluded)] = -np.inf
        best = int(np.argmax(scores))
        if not np.isfinite(scores[best]):
            return None
        return int(rows[best]), float(scores[best]), parts[best]

    def count(self, viewer: ViewerTerms, row: int) -> bool:
        """Count the impression of showing ``row`` to this viewer; False if its last list showed it already."""
        item_id = self.catalog.ids[row]
        if item_id == viewer.profile.explored or viewer.cohort is None:
            return False  # shown again in consecutive lists: the same impression
        model, cohort = viewer.model, viewer.cohort
        key = (id(model), cohort, item_id)
        pending = self.pending[key] = self.pending.get(key, 0) + 1
        if not model.exploration.left(cohort, item_id, self.budget, pending):  # spent: closed for this pass
            rows = self._open_rows[(id(model), cohort)]
            self._open_rows[(id(model), cohort)] = rows[rows != row]
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
