"""Rank the catalog for many viewers at once: a pure function of the viewers, the catalog and the models.

One ranking pass scores titles for every viewer of a batch with the features of
:mod:`stream.learning.features` (the whole catalog in a few matrix products, or, for a
large catalog, each viewer's candidates from :mod:`stream.ranking.candidates`), masks
what a viewer must not see, and takes each viewer's best. Then, per viewer, the
re-ranking of :mod:`stream.ranking.rerank` (diversity, one exploration slot), and the
reasons of :mod:`stream.ranking.explain`, read off each pick's largest weighted parts.

Nothing here changes a profile or a model. Each list says what showing it spends
(:attr:`Ranked.explored`, :attr:`Ranked.spends`): the caller applies that.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from stream.learning.catalog import Catalog
from stream.learning.features import (
    VIEWER_FEATURES,
    ViewerTerms,
    bucket_rows,
    pair_parts,
    scan,
    title_parts,
    weight_vector,
)
from stream.learning.model import PartitionModel
from stream.learning.profile import Profile
from stream.ranking.candidates import CandidateIndex
from stream.ranking.explain import (
    DIFFERENT,
    EXPLORING,
    MAX_REASONS,
    PERSONALISATION_OFF,
    Explainer,
    context_label,
)
from stream.ranking.rerank import NewReleases, OpenSlots, Picks, diversify, explore

__all__ = ["LARGE_CATALOG", "LIKE_BOOST", "POOL", "Memo", "Ranked", "RankedItem", "asked_for", "rank"]

#: Above this many titles, only each viewer's candidates are scored (see stream.ranking.candidates).
LARGE_CATALOG = 20_000
#: With diversity on, each list is chosen from this many times ``top_k`` best-scored titles.
POOL = 4
#: Added to the score of a title of a genre the viewer asked for (``set_preferences`` likes):
#: half of what a title squarely in the viewer's taste gets from its genre feature.
LIKE_BOOST = 0.5


@dataclass(slots=True)
class RankedItem:
    item_id: str
    rank: int
    #: What the list is ordered by: non-increasing with rank (relevance after re-ranking).
    score: float
    #: The model's score of the title for this viewer, before re-ranking.
    relevance: float
    reasons: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "item_id": self.item_id,
            "rank": self.rank,
            "score": self.score,
            "relevance": self.relevance,
            "reasons": self.reasons,
        }


class Ranked(list[RankedItem]):
    """One viewer's list, best first, and what showing it spends."""

    #: The new release in the exploration slot, if any.
    explored: str | None = None
    #: Whether showing it spends an impression of that release's budget in the viewer's cohort
    #: (False when the viewer's previous list showed it already: the same impression).
    spends: bool = False


class Memo:
    """What ranking passes may reuse: derived data only, never state.

    Candidate indexes per model, and the catalog's new releases with their title rows.
    Passing one memo to successive :func:`rank` calls saves rebuilding them; the lists are
    the same with or without it.
    """

    def __init__(self) -> None:
        self._indexes: weakref.WeakKeyDictionary[PartitionModel, CandidateIndex] = weakref.WeakKeyDictionary()
        self._new: NewReleases | None = None
        #: Per model, per cohort: the new releases with exploration budget left (see OpenSlots).
        self.open_sets: weakref.WeakKeyDictionary[PartitionModel, dict[int, Any]] = weakref.WeakKeyDictionary()

    def new_releases(self, catalog: Catalog, now_ms: int) -> NewReleases:
        """The catalog's new releases, gathered once per catalog version and hour."""
        if self._new is None or self._new.stamp != NewReleases.stamp_of(catalog, now_ms):
            self._new = NewReleases.of(catalog, now_ms)
        return self._new

    def candidates(self, model: PartitionModel) -> CandidateIndex:
        index = self._indexes.get(model)
        if index is None:
            index = self._indexes[model] = CandidateIndex()
        return index


def rank(
    profiles: Sequence[Profile],
    catalog: Catalog,
    model: PartitionModel | Sequence[PartitionModel],
    top_k: int,
    now_ms: int,
    diversity: float = 0.0,
    cohorts: Sequence[int | None] | None = None,
    exploration: int = 0,
    memo: Memo | None = None,
) -> list[Ranked]:
    """The top ``top_k`` titles for each viewer, best first, with reasons.

    ``model`` is one model for every viewer, or one per viewer (viewers of several
    partitions ranked in one pass: the matrix work is shared, each row uses its model's
    weights, popularity and cohorts). ``cohorts``: each viewer's cohort in its model (None:
    none yet). With ``diversity`` > 0 the list is re-ranked from the ``POOL`` x ``top_k``
    best (:func:`stream.ranking.rerank.diversify`). With ``exploration`` > 0, a new release
    with fewer than that many exploration impressions in the viewer's cohort takes rank
    ``EXPLORE_RANK``; the list says whether showing it spends one.
    """
    mats = catalog.matrices()
    n_titles = mats.genres.shape[0]
    if n_titles == 0 or not profiles:
        return [Ranked() for _ in profiles]
    models = [model] * len(profiles) if isinstance(model, PartitionModel) else list(model)
    cohort_of = list(cohorts) if cohorts is not None else [None] * len(profiles)
    viewers = [
        ViewerTerms.current(p, m, catalog, now_ms, c) for p, m, c in zip(profiles, models, cohort_of, strict=True)
    ]
    k = min(top_k * POOL if diversity > 0 else top_k, n_titles)
    memo = memo or Memo()
    if n_titles > LARGE_CATALOG:
        picks = _best_candidates(viewers, catalog, k, memo)
    else:
        picks = _best_of_all(viewers, catalog, k)
    if diversity > 0:
        picks = diversify(picks, mats.genres_dense, min(top_k, n_titles), diversity)
    slots = None
    if exploration > 0 and cohorts is not None:
        slots = OpenSlots(catalog, now_ms, exploration, memo.new_releases(catalog, now_ms), memo.open_sets)
    return [_listed(viewer, p, catalog, now_ms, top_k, slots) for viewer, p in zip(viewers, picks, strict=True)]


def _excluded(profile: Profile, catalog: Catalog) -> list[int]:
    """Rows not to show this viewer: what it put away or started lately (:meth:`Profile.not_listed`), and
    every title of a genre it said it dislikes."""
    rows = [i for i in map(catalog.index_of, profile.not_listed()) if i is not None]
    if profile.dislikes:
        rows.extend(catalog.rows_with_genres(profile.dislikes).tolist())
    return rows


def _boost(profile: Profile, catalog: Catalog, scores: np.ndarray, rows: np.ndarray | None = None) -> None:
    """Raise, in place, the scores of titles of a genre the viewer asked for (``rows``: what ``scores`` index)."""
    if not profile.likes:
        return
    liked = catalog.rows_with_genres(profile.likes)
    if rows is None:
        scores[liked] += LIKE_BOOST
    else:
        scores[np.isin(rows, liked)] += LIKE_BOOST


def _top(rows: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best of ``rows`` by ``scores``, best first (ties: lower position first)."""
    k = min(k, len(rows))
    top = np.argpartition(-scores, k - 1)[:k] if k < len(rows) else np.arange(len(rows))
    top = top[np.argsort(-scores[top], kind="stable")]
    return rows[top], scores[top]


def _best_of_all(viewers: Sequence[ViewerTerms], catalog: Catalog, k: int) -> list[Picks]:
    """Every title scored for every viewer (:func:`stream.learning.features.scan`), the ``k`` best kept."""
    result = scan(viewers, catalog)
    scores = result.scores
    for r, viewer in enumerate(viewers):
        _boost(viewer.profile, catalog, scores[r])
        excluded = _excluded(viewer.profile, catalog)
        if excluded:
            scores[r, excluded] = -np.inf
    n, n_titles = scores.shape
    # the k largest of each row (partitioning ``scores`` itself: negating it first costs a copy)
    top = np.argpartition(scores, -k, axis=1)[:, -k:] if k < n_titles else np.tile(np.arange(n_titles), (n, 1))
    top_scores = np.take_along_axis(scores, top, axis=1)
    order = np.argsort(-top_scores, axis=1, kind="stable")
    top = np.take_along_axis(top, order, axis=1)
    top_scores = np.take_along_axis(top_scores, order, axis=1)
    return [
        Picks(top[r], top_scores[r], result.parts(r, top[r], viewer, catalog), top_scores[r])
        for r, viewer in enumerate(viewers)
    ]


def _best_candidates(viewers: Sequence[ViewerTerms], catalog: Catalog, k: int, memo: Memo) -> list[Picks]:
    """A large catalog: each viewer's candidates (:mod:`stream.ranking.candidates`) scored, the ``k`` best kept."""
    mats = catalog.matrices()
    shared: dict[int, np.ndarray] = {}
    out: list[Picks] = []
    for viewer in viewers:
        model = viewer.model
        if id(model) not in shared:
            w = weight_vector(model.weights)[len(VIEWER_FEATURES) :]
            base = title_parts(model, catalog, viewer.now_ms) @ w
            base[~mats.active] = -np.inf
            shared[id(model)] = base
            memo.candidates(model).refresh(mats, base)
        rows = memo.candidates(model).for_viewer(viewer.profile, catalog.genre_ids, catalog.tag_ids)
        rows = np.union1d(rows, bucket_rows(viewer, catalog)[0])  # what its cohort liked, too
        rows = np.union1d(rows, viewer.related_rows)  # and what goes with its recent positives
        if viewer.profile.likes:  # the best few of the genres it asked for
            liked = catalog.rows_with_genres(viewer.profile.likes)
            rows = np.union1d(rows, liked[np.argsort(-shared[id(model)][liked], kind="stable")[:k]])
        rows = rows[mats.active[rows]]
        parts = pair_parts(viewer, catalog, rows)
        scores = parts @ weight_vector(viewer.weights)
        _boost(viewer.profile, catalog, scores, rows)
        excluded = _excluded(viewer.profile, catalog)
        if excluded:
            scores[np.isin(rows, excluded)] = -np.inf
        top, top_scores = _top(np.arange(len(rows)), scores, k)
        out.append(Picks(rows[top], top_scores, parts[top], top_scores))
    return out


def _listed(
    viewer: ViewerTerms, picks: Picks, catalog: Catalog, now_ms: int, top_k: int, slots: OpenSlots | None
) -> Ranked:
    """One viewer's final list: the exploration slot filled, every pick explained."""
    keep = np.isfinite(picks.relevance)
    picks = picks.take(keep)
    ranked = Ranked()
    explored: int | None = None
    if slots is not None:
        slot = slots.best(viewer, picks.rows)
        if slot is not None and slot[0] in _excluded(viewer.profile, catalog):
            slot = None  # a new release of a genre the viewer dislikes is never shown, even to explore
        if slot is not None:
            explored = slot[0]
            picks = explore(picks, slot, top_k)
            ranked.explored = catalog.ids[explored]
            ranked.spends = slots.count(viewer, explored)
    weighted = (picks.parts * weight_vector(viewer.weights)).tolist()
    profile = viewer.profile
    where = context_label(profile.device, profile.last_ts)
    fits = None
    if viewer.taste is not None:
        history, factors = profile.positives(), viewer.model.shared.factors
        fits = partial(factors.strongest, history)
    explainer = Explainer(profile, catalog, now_ms, where, viewer.bucket, viewer.lift, viewer.related, fits)
    listed = zip(picks.rows.tolist(), picks.scores.tolist(), picks.relevance.tolist(), weighted, strict=True)
    for j, (idx, score, relevance, parts) in enumerate(listed):
        reasons = explainer.reasons(idx, parts)
        if idx == explored:
            reasons = _first(EXPLORING, reasons)
        asked = asked_for(profile, catalog.entry(idx).genres)
        if asked is not None:
            reasons = _first(f"you asked for more {asked}", reasons)
        if not profile.personalised:
            reasons = _first(PERSONALISATION_OFF, reasons)
        ranked.append(RankedItem(catalog.ids[idx], j + 1, round(score, 4), round(relevance, 4), reasons))
    return ranked


def asked_for(profile: Profile, genres: Sequence[str]) -> str | None:
    """The first of ``genres`` the viewer asked to see more of, as it asked for it (None: none)."""
    lowered = {g.lower(): g for g in genres}
    return next((like for like in profile.likes if like in lowered), None)


def _first(reason: str, reasons: list[str]) -> list[str]:
    """``reason`` first, then the others that fit (a pick's only 'something different' gives way)."""
    return [reason] if reasons == [DIFFERENT] else [reason, *reasons[: MAX_REASONS - 1]]
