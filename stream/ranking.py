"""Rank the catalog for many viewers at once, and say why each title was picked.

One ranking pass scores every title for every viewer of a batch with a few
matrix products (titles x features times features x viewers), masks what a
viewer must not see, and takes each viewer's top K. Reasons come from the
largest positive feature contributions of each picked title, so they are true
to the score.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

import numpy as np

from .candidates import CandidateIndex
from .catalog import Catalog, CatalogMatrices
from .model import FRESH_DAYS, PartitionModel
from .profile import Profile

__all__ = ["RankedItem", "rank", "shared_terms", "taste_rows", "viewer_features"]

WEEK_MS = 7 * 86_400_000
#: Above this many titles, only each viewer's candidates are scored (see stream.candidates).
LARGE_CATALOG = 20_000
#: A feature must add at least this much to a score to be given as a reason.
MIN_REASON = 0.05


@dataclass(slots=True)
class RankedItem:
    item_id: str
    rank: int
    score: float
    reasons: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {"item_id": self.item_id, "rank": self.rank, "score": self.score, "reasons": self.reasons}


def _unit(values: dict[str, float]) -> dict[str, float]:
    """Affinities scaled so the strongest is +-1 (a profile's sums grow without bound)."""
    top = max((abs(v) for v in values.values()), default=0.0)
    return {k: v / top for k, v in values.items()} if top > 1.0 else dict(values)


def _unit_sum(values: dict[str, float], keys: Sequence[str]) -> float:
    """``sum(_unit(values).get(k, 0.0) for k in keys)``, without building the scaled dict."""
    total = sum(values.get(k, 0.0) for k in keys)
    if not total:
        return 0.0
    top = max(map(abs, values.values()))
    return total / top if top > 1.0 else total


def viewer_features(
    profile: Profile, catalog: Catalog, idx: int, model: PartitionModel, now_ms: int
) -> dict[str, float]:
    """The features of one (viewer, title) pair, as the model learns from them.

    Exactly the quantities :func:`rank` computes for all titles at once.
    """
    from .model import freshness

    entry = catalog.entry(idx)
    g = _unit_sum(profile.genres, entry.genres) / math.sqrt(len(entry.genres))
    t = _unit_sum(profile.tags, entry.tags) / math.sqrt(len(entry.tags)) if entry.tags else 0.0
    release = float(entry.release_ts) if entry.release_ts is not None else float("nan")
    return {
        "genre": float(g),
        "tag": float(t),
        "popularity": model.popularity_of(entry.item_id),
        "freshness": freshness(release, now_ms),
    }


def taste_rows(profiles: Sequence[Profile], catalog: Catalog, mats: CatalogMatrices) -> tuple[np.ndarray, np.ndarray]:
    """Each viewer's genre and tag affinities as rows (viewers x genres, viewers x tags), scaled by :func:`_unit`."""
    n = len(profiles)
    user_genres = np.zeros((n, mats.genres.shape[1]), dtype=np.float32)
    user_tags = np.zeros((n, mats.tags.shape[1]), dtype=np.float32)
    genre_ids, tag_ids = catalog.genre_ids, catalog.tag_ids
    for row, profile in enumerate(profiles):
        for name, value in _unit(profile.genres).items():
            gid = genre_ids.get(name)
            if gid is not None:
                user_genres[row, gid] = value
        for name, value in _unit(profile.tags).items():
            tid = tag_ids.get(name)
            if tid is not None:
                user_tags[row, tid] = value
    return user_genres, user_tags


def shared_terms(
    catalog: Catalog, mats: CatalogMatrices, model: PartitionModel, now_ms: int
) -> tuple[dict[str, float], np.ndarray, np.ndarray, np.ndarray]:
    """Weights, popularity, freshness, and the part of every title's score no viewer changes (-inf: retired)."""
    w = model.weights
    popularity = model.popularity(catalog.ids)
    fresh = catalog.freshness(now_ms, FRESH_DAYS)
    shared = w["popularity"] * popularity + w["freshness"] * fresh
    shared[~mats.active] = -np.inf
    return w, popularity, fresh, shared


def rank(
    profiles: Sequence[Profile],
    catalog: Catalog,
    model: PartitionModel | Sequence[PartitionModel],
    top_k: int,
    now_ms: int,
    diversity: float = 0.0,
) -> list[list[RankedItem]]:
    """The top ``top_k`` titles for each viewer, best first, with reasons.

    ``model`` is one model for every viewer, or one per viewer (viewers of several
    partitions ranked in one pass: the matrix work is shared, each row uses its model's
    weights and popularity). With ``diversity`` > 0 the list is re-ranked from the
    ``POOL`` x ``top_k`` best by :func:`_diversify`, trading relevance for variety of genres.
    """
    mats = catalog.matrices()
    n_titles = mats.genres.shape[0]
    if n_titles == 0 or not profiles:
        return [[] for _ in profiles]
    models = [model] * len(profiles) if isinstance(model, PartitionModel) else list(model)
    groups: dict[int, list[int]] = {}
    for row, m in enumerate(models):
        groups.setdefault(id(m), []).append(row)
    terms = {key: shared_terms(catalog, mats, models[rows[0]], now_ms) for key, rows in groups.items()}
    user_genres, user_tags = taste_rows(profiles, catalog, mats)
    k = min(top_k * POOL if diversity > 0 else top_k, n_titles)
    picks: list[_Picks | None] = [None] * len(profiles)
    if n_titles > LARGE_CATALOG:
        for key, rows in groups.items():
            w, _, _, shared = terms[key]
            index = _candidate_index(models[rows[0]])
            index.refresh(mats, shared)
            for r in rows:
                p = profiles[r]
                candidates = index.for_viewer(p, catalog.genre_ids, catalog.tag_ids)
                picks[r] = _top_of_rows(candidates, user_genres[r], user_tags[r], p, catalog, mats, w, shared, k)
    else:
        row_terms = [(rows, terms[key][0], terms[key][3]) for key, rows in groups.items()]
        picks = list(_top_of_all(profiles, user_genres, user_tags, catalog, mats, row_terms, k))
    chosen = cast(list[_Picks], picks)
    if diversity > 0:
        chosen = _diversify(chosen, mats.genres_dense, min(top_k, n_titles), diversity)

    results: list[list[RankedItem]] = []
    for profile, m, (top_rows, row_scores, genre_vals, tag_vals) in zip(profiles, models, chosen, strict=True):
        w, popularity, fresh, _ = terms[id(m)]
        items: list[RankedItem] = []
        finished = _FinishedIndex(profile, catalog)
        for j, (idx, score) in enumerate(zip(top_rows.tolist(), row_scores.tolist(), strict=True)):
            if score == -np.inf:
                break
            parts = {
                "genre": float(genre_vals[j]),
                "tag": float(tag_vals[j]),
                "popularity": float(w["popularity"] * popularity[idx]),
                "freshness": float(w["freshness"] * fresh[idx]),
            }
            reasons = explain(profile, catalog, idx, parts, mats, now_ms, finished)
            items.append(RankedItem(catalog.ids[idx], len(items) + 1, round(score, 4), reasons))
        results.append(items)
    return results


_Picks = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
#: With diversity on, each list is chosen from this many times ``top_k`` best-scored titles.
POOL = 4


def _top_of_all(
    profiles: Sequence[Profile],
    user_genres: np.ndarray,
    user_tags: np.ndarray,
    catalog: Catalog,
    mats: CatalogMatrices,
    row_terms: Sequence[tuple[list[int], dict[str, float], np.ndarray]],
    k: int,
) -> list[_Picks]:
    """Score every title for every viewer: (viewers x features) @ (features x titles).

    ``row_terms``: (rows, weights, shared scores) per model; each row is scored with its own.
    """
    n, n_titles = len(profiles), mats.genres.shape[0]
    genre_part = np.asarray((mats.genres @ user_genres.T).T)
    tag_part = np.asarray((mats.tags @ user_tags.T).T)
    scores = np.empty((n, n_titles), dtype=np.float32)
    for rows, w, shared in row_terms:
        sel = rows if len(rows) < n else slice(None)
        genre_part[sel] *= w["genre"]
        tag_part[sel] *= w["tag"]
        scores[sel] = genre_part[sel] + tag_part[sel] + shared[None, :]
    for row, profile in enumerate(profiles):
        excluded = [i for i in map(catalog.index_of, profile.excluded) if i is not None]
        if excluded:
            scores[row, excluded] = -np.inf
    # the k largest of each row (partitioning ``scores`` itself: negating it first costs a copy)
    top = np.argpartition(scores, -k, axis=1)[:, -k:] if k < n_titles else np.tile(np.arange(n_titles), (n, 1))
    top_scores = np.take_along_axis(scores, top, axis=1)
    order = np.argsort(-top_scores, axis=1, kind="stable")
    top = np.take_along_axis(top, order, axis=1)
    top_scores = np.take_along_axis(top_scores, order, axis=1)
    genre_top = np.take_along_axis(genre_part, top, axis=1)
    tag_top = np.take_along_axis(tag_part, top, axis=1)
    return [(top[r], top_scores[r], genre_top[r], tag_top[r]) for r in range(n)]


def _top_of_rows(
    rows: np.ndarray,
    user_genres: np.ndarray,
    user_tags: np.ndarray,
    profile: Profile,
    catalog: Catalog,
    mats: CatalogMatrices,
    w: dict[str, float],
    shared: np.ndarray,
    k: int,
) -> _Picks:
    """Score only the candidate ``rows`` for one viewer."""
    genre_part = w["genre"] * (mats.genres_dense[rows] @ user_genres)
    tag_part = w["tag"] * np.asarray(mats.tags[rows] @ user_tags).ravel()
    scores = genre_part + tag_part + shared[rows]
    excluded = [i for i in map(catalog.index_of, profile.excluded) if i is not None]
    if excluded:
        scores[np.isin(rows, excluded)] = -np.inf
    k = min(k, len(rows))
    top = np.argpartition(-scores, k - 1)[:k] if k < len(rows) else np.arange(len(rows))
    top = top[np.argsort(-scores[top], kind="stable")]
    return rows[top], scores[top], genre_part[top], tag_part[top]


def _diversify(picks: list[_Picks], genres: np.ndarray, k: int, penalty: float) -> list[_Picks]:
    """Greedy re-ranking of each viewer's candidates for variety, all viewers at once.

    Each next pick maximises ``score - penalty * s``, where ``s`` sums the candidate's genre
    similarities (cosine of unit genre rows) to the titles picked before it. The cost of a
    genre grows with each title of it already listed (unlike maximal marginal relevance's
    largest similarity, which a strong favourite pays once and then fills the list), so a
    list spreads across the genres the viewer likes, in proportion to how much.
    """
    n = len(picks)
    width = max(len(p[0]) for p in picks)
    if width <= 1:
        return picks
    rows = np.zeros((n, width), dtype=np.int64)
    scores = np.full((n, width), -np.inf, dtype=np.float64)
    for r, (idx, sc, _, _) in enumerate(picks):
        rows[r, : len(idx)] = idx
        scores[r, : len(sc)] = sc
    feats = genres[rows]  # (viewers, candidates, genres)
    overlap = np.zeros((n, width))
    chosen = np.zeros((n, min(k, width)), dtype=np.int64)
    valid = np.zeros(chosen.shape, dtype=bool)  # False once a viewer runs out of rankable titles
    every = np.arange(n)
    for step in range(chosen.shape[1]):
        gain = scores - penalty * overlap
        j = np.argmax(gain, axis=1)
        chosen[:, step] = j
        valid[:, step] = np.isfinite(gain[every, j])
        scores[every, j] = -np.inf  # taken
        overlap += np.einsum("ncg,ng->nc", feats, feats[every, j])
    out: list[_Picks] = []
    for r, (idx, sc, genre_vals, tag_vals) in enumerate(picks):
        keep = chosen[r][valid[r]]
        out.append((idx[keep], sc[keep], genre_vals[keep], tag_vals[keep]))
    return out


def _candidate_index(model: PartitionModel) -> CandidateIndex:
    index = getattr(model, "_candidates", None)
    if index is None:
        index = CandidateIndex()
        model._candidates = index  # type: ignore[attr-defined]  # derived data, never checkpointed
    return index


def explain(
    profile: Profile,
    catalog: Catalog,
    idx: int,
    parts: dict[str, float],
    mats: CatalogMatrices,
    now_ms: int,
    finished: _FinishedIndex | None = None,
) -> list[str]:
    """Readable reasons for one pick, strongest contribution first (at most two)."""
    entry = catalog.entry(idx)
    finished = finished or _FinishedIndex(profile, catalog)
    reasons: list[str] = []
    for feature, value in sorted(parts.items(), key=lambda kv: -kv[1]):
        if value < MIN_REASON or len(reasons) == 2:
            break
        if feature == "genre":
            genre = max(entry.genres, key=lambda g: profile.genres.get(g, 0.0))
            because = finished.by_genre(genre)
            reasons.append(f"because you finished {because}" if because else f"because you watch {genre}")
        elif feature == "tag":
            tag = max(entry.tags, key=lambda t: profile.tags.get(t, 0.0))
            because = finished.by_tag(tag)
            reasons.append(f"because you finished {because}" if because and not reasons else f"because you like {tag}")
        elif feature == "popularity":
            reasons.append("popular right now")
        elif feature == "freshness":
            released = mats.release_ts[idx]
            reasons.append("new this week" if now_ms - released < WEEK_MS else "new release")
    if not reasons:
        reasons.append("something different to try")
    return reasons


class _FinishedIndex:
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
