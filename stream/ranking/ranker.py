"""Rank the catalog for many viewers at once, and say why each title was picked.

One ranking pass scores every title for every viewer of a batch with a few
matrix products (titles x features times features x viewers), masks what a
viewer must not see, and takes each viewer's top K. Each score is the model's
weighted sum of the features of :mod:`stream.learning.model`, so every part of it is
known: reasons come from the largest positive parts of each picked title, and
are true to the score.

Then, per viewer, two re-ranking steps: diversity (:func:`_diversify`) and one
exploration slot for a new release whose budget in the viewer's cohort is not
spent (:mod:`stream.learning.velocity`).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

import numpy as np

from stream.learning.catalog import Catalog, CatalogMatrices
from stream.learning.cohorts import bucket_label
from stream.learning.model import FRESH_DAYS, PartitionModel, freshness
from stream.learning.profile import DAYPARTS, Profile, context_keys, daypart
from stream.learning.velocity import NEW_DAYS
from stream.ranking.candidates import CandidateIndex

__all__ = ["RankedItem", "context_lift", "rank", "shared_terms", "taste_rows", "viewer_features"]

DAY_MS = 86_400_000
WEEK_MS = 7 * DAY_MS
#: Above this many titles, only each viewer's candidates are scored (see stream.ranking.candidates).
LARGE_CATALOG = 20_000
#: A feature must add at least this much to a score to be given as a reason.
MIN_REASON = 0.05
#: Reasons given per title at most (its strongest contributions).
MAX_REASONS = 3
#: A context's evidence counts fully once its affinities sum to well above this (see context_lift).
CONTEXT_PRIOR_MASS = 2.0
#: The rank (1-based) of the exploration slot.
EXPLORE_RANK = 3
EXPLORING = "exploring: new release"
DIFFERENT = "something different to try"
_DEVICE_NAMES = {"tv": "TV", "mobile": "mobile", "tablet": "tablet", "web": "the web", "other": "other devices"}


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


def context_lift(profile: Profile, device: str | None, ts_ms: int) -> dict[str, float]:
    """How much more of each genre the viewer watches in this context than overall (negative: less).

    For each context the moment belongs to (device, daypart, weekday or weekend: see
    :func:`stream.learning.profile.context_keys`), the genre's share of the viewer's positive affinity
    there minus its share overall (over the same genres: the context's and the viewer's strongest),
    weighed by how much evidence the context has; averaged over the contexts. A viewer whose
    habits do not change with context, or who has no history in this one, gets 0 everywhere.

    >>> p = Profile("u1", genres={"drama": 2.0, "comedy": 2.0}, contexts={"tv": {"drama": 4.0}, "p2": {}, "wd": {}})
    >>> lift = context_lift(p, "tv", 0)
    >>> lift["drama"] > 0 > lift["comedy"]
    True
    >>> context_lift(p, None, 0)
    {}
    """
    contexts = profile.contexts
    if not contexts:
        return {}
    keys = context_keys(device, ts_ms)
    overall = profile.genres
    strongest = heapq.nlargest(4, overall, key=lambda g: abs(overall[g]))
    lift: dict[str, float] = {}
    for key in keys:
        here = contexts.get(key)
        if not here:
            continue
        # the context's genres and the viewer's strongest, in insertion order: the same sums in every process
        genres = [*here, *(g for g in strongest if g not in here)]
        evidence = sum(map(abs, here.values()))
        # shares of what the viewer engages with (positive affinity): skipping a genre less often
        # in a context is not watching more of it there
        liked_here = sum(v for v in here.values() if v > 0)
        liked = sum(max(overall.get(g, 0.0), 0.0) for g in genres)
        if evidence <= 0 or liked <= 0:
            continue
        weight = evidence / (evidence + CONTEXT_PRIOR_MASS) / len(keys)
        for g in genres:
            share_here = max(here.get(g, 0.0), 0.0) / liked_here if liked_here > 0 else 0.0
            delta = share_here - max(overall.get(g, 0.0), 0.0) / liked
            if delta:
                lift[g] = lift.get(g, 0.0) + weight * delta
    return lift


def context_label(device: str | None, ts_ms: int) -> str:
    """``"on TV in the evening"``, ``"at night"``: the current context, in words."""
    part = DAYPARTS[daypart(ts_ms)]
    when = "at night" if part == "night" else f"in the {part}"
    return f"on {_DEVICE_NAMES.get(device, device)} {when}" if device else when


def viewer_features(
    profile: Profile,
    catalog: Catalog,
    idx: int,
    model: PartitionModel,
    now_ms: int,
    device: str | None = None,
    cohort: int | None = None,
) -> dict[str, float]:
    """The features of one (viewer, title) pair at ``now_ms`` on ``device``, as the model learns from them.

    Exactly the quantities :func:`rank` computes for all titles at once (it ranks for the
    viewer's current context: its newest event's time and device).
    """
    entry = catalog.entry(idx)
    root = math.sqrt(len(entry.genres))
    g = _unit_sum(profile.genres, entry.genres) / root
    t = _unit_sum(profile.tags, entry.tags) / math.sqrt(len(entry.tags)) if entry.tags else 0.0
    lift = context_lift(profile, device, now_ms)
    c = sum(lift.get(genre, 0.0) for genre in entry.genres) / root
    co = 0.0
    if cohort is not None:
        unit = model.unit
        co = model.cohorts.share(model.cohorts.bucket(cohort, device, daypart(now_ms), unit), entry.item_id, unit)
    release = float(entry.release_ts) if entry.release_ts is not None else float("nan")
    return {
        "genre": float(g),
        "tag": float(t),
        "context": float(c),
        "cohort": float(co),
        "popularity": model.popularity_of(entry.item_id),
        "trending": model.trending.of(entry.item_id),
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


def context_rows(
    profiles: Sequence[Profile], catalog: Catalog, mats: CatalogMatrices
) -> tuple[np.ndarray, list[dict[str, float]]]:
    """Each viewer's :func:`context_lift` for its current context: as rows (viewers x genres), and as dicts."""
    rows = np.zeros((len(profiles), mats.genres.shape[1]), dtype=np.float32)
    lifts: list[dict[str, float]] = []
    genre_ids = catalog.genre_ids
    for row, profile in enumerate(profiles):
        lift = context_lift(profile, profile.device, profile.last_ts) if profile.contexts else {}
        lifts.append(lift)
        for name, value in lift.items():
            gid = genre_ids.get(name)
            if gid is not None:
                rows[row, gid] = value
    return rows, lifts


def shared_terms(
    catalog: Catalog, mats: CatalogMatrices, model: PartitionModel, now_ms: int
) -> tuple[dict[str, float], np.ndarray, np.ndarray, np.ndarray]:
    """Weights, popularity, freshness, and the part of every title's score no viewer changes (-inf: retired)."""
    w = model.weights
    popularity = model.popularity(catalog.ids)
    fresh = catalog.freshness(now_ms, FRESH_DAYS)
    shared = w["popularity"] * popularity + w["freshness"] * fresh
    trend = model.trending.array(catalog.ids)
    if trend.any():
        shared = shared + w["trending"] * trend
    shared[~mats.active] = -np.inf
    return w, popularity, fresh, shared


@dataclass(slots=True)
class _Viewer:
    """One row of a ranking pass: the viewer, its model, and what only it changes in a score."""

    profile: Profile
    model: PartitionModel
    cohort: int | None
    bucket: str | None  # the cohort bucket it borrows from
    cohort_rows: np.ndarray  # catalog rows of that bucket's titles
    cohort_vals: np.ndarray  # their weighted cohort part
    cohort_of: dict[int, float]  # the same, by row
    excluded: list[int]


def rank(
    profiles: Sequence[Profile],
    catalog: Catalog,
    model: PartitionModel | Sequence[PartitionModel],
    top_k: int,
    now_ms: int,
    diversity: float = 0.0,
    cohorts: Sequence[int | None] | None = None,
    exploration: int = 0,
) -> list[list[RankedItem]]:
    """The top ``top_k`` titles for each viewer, best first, with reasons.

    ``model`` is one model for every viewer, or one per viewer (viewers of several
    partitions ranked in one pass: the matrix work is shared, each row uses its model's
    weights, popularity and cohorts). ``cohorts``: each viewer's cohort in its model (None:
    none yet). With ``diversity`` > 0 the list is re-ranked from the ``POOL`` x ``top_k``
    best by :func:`_diversify`, trading relevance for variety of genres. With ``exploration``
    > 0, a new release with fewer than that many exploration impressions in the viewer's
    cohort takes rank ``EXPLORE_RANK``; the impression is counted in the model, once for as
    long as the viewer's consecutive lists keep showing it (``Profile.explored``).
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
    viewers = _viewers(profiles, models, cohorts, catalog, terms)
    user_genres, user_tags = taste_rows(profiles, catalog, mats)
    user_context, lifts = context_rows(profiles, catalog, mats)
    k = min(top_k * POOL if diversity > 0 else top_k, n_titles)
    picks: list[_Picks | None] = [None] * len(profiles)
    if n_titles > LARGE_CATALOG:
        for key, rows in groups.items():
            w, _, _, shared = terms[key]
            index = _candidate_index(models[rows[0]])
            index.refresh(mats, shared)
            for r in rows:
                candidates = index.for_viewer(profiles[r], catalog.genre_ids, catalog.tag_ids)
                candidates = np.union1d(candidates, viewers[r].cohort_rows)
                scores, parts = _score_rows(
                    candidates, r, viewers[r], user_genres, user_tags, user_context, mats, w, shared
                )
                picks[r] = _top(candidates, scores, parts, k)
    else:
        row_terms = [(rows, terms[key][0], terms[key][3]) for key, rows in groups.items()]
        picks = list(_top_of_all(viewers, user_genres, user_tags, user_context, mats, row_terms, k))
    chosen = cast(list[_Picks], picks)
    if diversity > 0:
        chosen = _diversify(chosen, mats.genres_dense, min(top_k, n_titles), diversity)
    new_rows = _new_releases(mats, now_ms) if exploration > 0 and cohorts is not None else None
    open_slots: dict[tuple[int, int], _Open] = {}  # (model, cohort) -> new releases with budget left

    results: list[list[RankedItem]] = []
    for r, (viewer, (top_rows, row_scores, top_parts)) in enumerate(zip(viewers, chosen, strict=True)):
        w, popularity, fresh, shared = terms[id(viewer.model)]
        keep = np.isfinite(row_scores)
        top_rows, row_scores, top_parts = top_rows[keep], row_scores[keep], top_parts[keep]
        explored: int | None = None
        if new_rows is not None and len(new_rows) and viewer.cohort is not None:
            slot = (id(viewer.model), viewer.cohort)
            if slot not in open_slots:
                open_slots[slot] = _open_slot(viewer.model, viewer.cohort, new_rows, catalog, mats, now_ms, exploration)
            pick = open_slots[slot].best(top_rows, r, viewer, user_genres, user_tags, user_context, w, shared)
            if pick is not None:
                explored, score, parts = pick
                at, end = min(EXPLORE_RANK - 1, len(top_rows)), max(top_k, 1) - 1
                top_rows = np.concatenate([top_rows[:at], [explored], top_rows[at:end]])
                row_scores = np.concatenate([row_scores[:at], [score], row_scores[at:end]])
                top_parts = np.concatenate([top_parts[:at], parts[None, :], top_parts[at:end]])
                item_id = catalog.ids[explored]
                if item_id != viewer.profile.explored:  # shown again in the next list: the same impression
                    viewer.model.exploration.spend(viewer.cohort, item_id)
                    if not viewer.model.exploration.left(viewer.cohort, item_id, exploration):
                        open_slots[slot].close(explored)
        viewer.profile.explored = catalog.ids[explored] if explored is not None else None
        trend = viewer.model.trending.array(catalog.ids)
        # every pick's parts, as plain floats: genre, tag, context, cohort, then the shared ones
        all_parts = np.column_stack(
            [
                top_parts,
                w["popularity"] * popularity[top_rows],
                w["trending"] * trend[top_rows],
                w["freshness"] * fresh[top_rows],
            ]
        ).tolist()
        finished = _FinishedIndex(viewer.profile, catalog)
        labels = (context_label(viewer.profile.device, viewer.profile.last_ts), viewer.bucket, lifts[r])
        items: list[RankedItem] = []
        for j, (idx, score_j) in enumerate(zip(top_rows.tolist(), row_scores.tolist(), strict=True)):
            contributions = dict(zip(ALL_PARTS, all_parts[j], strict=True))
            reasons = explain(viewer.profile, catalog, idx, contributions, mats, now_ms, finished, labels)
            if idx == explored:
                reasons = [EXPLORING, *reasons[: MAX_REASONS - 1]] if reasons != [DIFFERENT] else [EXPLORING]
            items.append(RankedItem(catalog.ids[idx], len(items) + 1, round(score_j, 4), reasons))
        results.append(items)
    return results


#: (catalog rows, scores, weighted genre/tag/context/cohort parts), best first
_Picks = tuple[np.ndarray, np.ndarray, np.ndarray]
PART_NAMES = ("genre", "tag", "context", "cohort")
ALL_PARTS = (*PART_NAMES, "popularity", "trending", "freshness")
#: With diversity on, each list is chosen from this many times ``top_k`` best-scored titles.
POOL = 4


def _viewers(
    profiles: Sequence[Profile],
    models: Sequence[PartitionModel],
    cohorts: Sequence[int | None] | None,
    catalog: Catalog,
    terms: dict[int, tuple[dict[str, float], np.ndarray, np.ndarray, np.ndarray]],
) -> list[_Viewer]:
    out: list[_Viewer] = []
    empty_rows, empty_vals = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    buckets: dict[tuple[int, str], tuple[np.ndarray, np.ndarray, dict[int, float]]] = {}
    for r, (profile, m) in enumerate(zip(profiles, models, strict=True)):
        cohort = cohorts[r] if cohorts is not None else None
        excluded = [i for i in map(catalog.index_of, profile.excluded) if i is not None]
        if cohort is None:
            out.append(_Viewer(profile, m, None, None, empty_rows, empty_vals, {}, excluded))
            continue
        unit = m.unit
        bucket = m.cohorts.bucket(cohort, profile.device, daypart(profile.last_ts), unit)
        cached = buckets.get((id(m), bucket))
        if cached is None:
            ids, shares = m.cohorts.items(bucket, unit)
            rows = [catalog.index_of(i) for i in ids]
            known = [j for j, row in enumerate(rows) if row is not None]
            weight = terms[id(m)][0]["cohort"]
            bucket_rows = np.asarray([rows[j] for j in known], dtype=np.int64)
            bucket_vals = np.asarray([weight * shares[j] for j in known], dtype=np.float32)
            cached = (bucket_rows, bucket_vals, dict(zip(bucket_rows.tolist(), bucket_vals.tolist(), strict=True)))
            buckets[(id(m), bucket)] = cached
        out.append(_Viewer(profile, m, cohort, bucket, cached[0], cached[1], cached[2], excluded))
    return out


def _top_of_all(
    viewers: Sequence[_Viewer],
    user_genres: np.ndarray,
    user_tags: np.ndarray,
    user_context: np.ndarray,
    mats: CatalogMatrices,
    row_terms: Sequence[tuple[list[int], dict[str, float], np.ndarray]],
    k: int,
) -> list[_Picks]:
    """Score every title for every viewer: (viewers x features) @ (features x titles).

    ``row_terms``: (rows, weights, shared scores) per model; each row is scored with its own.
    """
    n, n_titles = len(viewers), mats.genres.shape[0]
    # Genre and context parts share the catalog's genre matrix: one product for both, and
    # only for the viewers whose habits change with context (for the others it is all 0).
    lifted = np.flatnonzero(user_context.any(axis=1))
    both = np.asarray((mats.genres @ np.vstack([user_genres, user_context[lifted]]).T).T)
    genre_part = both[:n]
    context_part = np.zeros((n, n_titles), dtype=np.float32) if len(lifted) else None
    if context_part is not None:
        context_part[lifted] = both[n:]
    tag_part = np.asarray((mats.tags @ user_tags.T).T)
    scores = np.empty((n, n_titles), dtype=np.float32)
    for rows, w, shared in row_terms:
        sel = rows if len(rows) < n else slice(None)
        genre_part[sel] *= w["genre"]
        tag_part[sel] *= w["tag"]
        scores[sel] = genre_part[sel] + tag_part[sel] + shared[None, :]
        if context_part is not None:
            context_part[sel] *= w["context"]
            scores[sel] += context_part[sel]
    for row, viewer in enumerate(viewers):
        if len(viewer.cohort_rows):
            scores[row, viewer.cohort_rows] += viewer.cohort_vals
        if viewer.excluded:
            scores[row, viewer.excluded] = -np.inf
    # the k largest of each row (partitioning ``scores`` itself: negating it first costs a copy)
    top = np.argpartition(scores, -k, axis=1)[:, -k:] if k < n_titles else np.tile(np.arange(n_titles), (n, 1))
    top_scores = np.take_along_axis(scores, top, axis=1)
    order = np.argsort(-top_scores, axis=1, kind="stable")
    top = np.take_along_axis(top, order, axis=1)
    top_scores = np.take_along_axis(top_scores, order, axis=1)
    parts = np.zeros((n, top.shape[1], len(PART_NAMES)), dtype=np.float32)  # each pick's parts
    parts[:, :, 0] = np.take_along_axis(genre_part, top, axis=1)
    parts[:, :, 1] = np.take_along_axis(tag_part, top, axis=1)
    if context_part is not None:
        parts[:, :, 2] = np.take_along_axis(context_part, top, axis=1)
    for r, viewer in enumerate(viewers):
        _cohort_column(parts[r], top[r], viewer)
    return [(top[r], top_scores[r], parts[r]) for r in range(n)]


def _cohort_column(parts: np.ndarray, rows: np.ndarray, viewer: _Viewer) -> None:
    """Fill the cohort column of ``parts`` (one row per catalog row of ``rows``) for this viewer."""
    if viewer.cohort_of:
        get = viewer.cohort_of.get
        parts[:, 3] = [get(i, 0.0) for i in rows.tolist()]


def _score_rows(
    rows: np.ndarray,
    r: int,
    viewer: _Viewer,
    user_genres: np.ndarray,
    user_tags: np.ndarray,
    user_context: np.ndarray,
    mats: CatalogMatrices,
    w: dict[str, float],
    shared: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Scores of the catalog ``rows`` for viewer ``r``, as :func:`_top_of_all` computes them, and their parts."""
    genres = mats.genres_dense[rows]
    parts = np.zeros((len(rows), len(PART_NAMES)), dtype=np.float32)
    parts[:, 0] = w["genre"] * (genres @ user_genres[r])
    parts[:, 1] = w["tag"] * np.asarray(mats.tags[rows] @ user_tags[r]).ravel()
    parts[:, 2] = w["context"] * (genres @ user_context[r])
    _cohort_column(parts, rows, viewer)
    scores = (parts.sum(axis=1) + shared[rows]).astype(np.float32)
    if viewer.excluded:
        scores[np.isin(rows, viewer.excluded)] = -np.inf
    return scores, parts


def _top(rows: np.ndarray, scores: np.ndarray, parts: np.ndarray, k: int) -> _Picks:
    k = min(k, len(rows))
    top = np.argpartition(-scores, k - 1)[:k] if k < len(rows) else np.arange(len(rows))
    top = top[np.argsort(-scores[top], kind="stable")]
    return rows[top], scores[top], parts[top]


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
    for r, (idx, sc, _) in enumerate(picks):
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
    for r, (idx, sc, parts) in enumerate(picks):
        keep = chosen[r][valid[r]]
        out.append((idx[keep], sc[keep], parts[keep]))
    return out


def _new_releases(mats: CatalogMatrices, now_ms: int) -> np.ndarray:
    """Catalog rows of the titles out for less than ``NEW_DAYS`` (and not retired)."""
    age = now_ms - mats.release_ts
    with np.errstate(invalid="ignore"):
        new = (age >= 0) & (age < NEW_DAYS * DAY_MS) & mats.active
    return np.flatnonzero(new)


def _open_slot(
    model: PartitionModel, cohort: int, new_rows: np.ndarray, catalog: Catalog, mats: CatalogMatrices, now_ms: int,
    budget: int,
) -> _Open:  # fmt: skip
    """The cohort's :class:`_Open` new releases, kept on the model while the catalog, minute and budget hold."""
    cache: dict[int, tuple[tuple[int, int, int], _Open]] = model.__dict__.setdefault("_open_slots", {})
    stamp = (mats.version, now_ms // 3_600_000, budget)  # "new" is judged to the hour
    cached = cache.get(cohort)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    spent, ids = model.exploration, catalog.ids
    slot = _Open([i for i in new_rows.tolist() if spent.left(cohort, ids[i], budget)], mats)
    cache[cohort] = (stamp, slot)
    return slot


class _Open:
    """The new releases with exploration budget left in one cohort, for one ranking pass."""

    def __init__(self, rows: list[int], mats: CatalogMatrices) -> None:
        self.rows = np.asarray(rows, dtype=np.int64)
        self.set = set(rows)
        self.genres = mats.genres_dense[self.rows]
        self.tags = mats.tags[self.rows]  # one sparse gather per pass, not per viewer

    def close(self, row: int) -> None:
        """The budget of ``row`` is spent: drop it."""
        keep = self.rows != row
        self.rows, self.genres, self.tags = self.rows[keep], self.genres[keep], self.tags[keep]
        self.set.discard(row)

    def best(
        self,
        listed: np.ndarray,
        r: int,
        viewer: _Viewer,
        user_genres: np.ndarray,
        user_tags: np.ndarray,
        user_context: np.ndarray,
        w: dict[str, float],
        shared: np.ndarray,
    ) -> tuple[int, float, np.ndarray] | None:
        """(row, score, parts) of the new release to show viewer ``r`` in the exploration slot, or None.

        None when there is none, or the list already holds one (the slot is taken).
        Otherwise the one this viewer's score likes best, so exploration still follows taste.
        """
        if not self.set or not self.set.isdisjoint(listed.tolist()):
            return None
        parts = np.zeros((len(self.rows), len(PART_NAMES)), dtype=np.float32)
        parts[:, 0] = w["genre"] * (self.genres @ user_genres[r])
        parts[:, 1] = w["tag"] * np.asarray(self.tags @ user_tags[r]).ravel()
        parts[:, 2] = w["context"] * (self.genres @ user_context[r])
        _cohort_column(parts, self.rows, viewer)
        scores = parts.sum(axis=1) + shared[self.rows]
        if viewer.excluded:
            excluded = set(viewer.excluded)
            scores[[i for i, row in enumerate(self.rows.tolist()) if row in excluded]] = -np.inf
        best = int(np.argmax(scores))
        if not np.isfinite(scores[best]):
            return None
        return int(self.rows[best]), float(scores[best]), parts[best]


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
    labels: tuple[str, str | None, dict[str, float] | None] = ("", None, None),
) -> list[str]:
    """Readable reasons for one pick, strongest contribution first (at most ``MAX_REASONS``).

    ``parts``: each feature's weighted part of the score; ``labels``: the current context in
    words, the cohort bucket the viewer borrowed from, and its context lift (see :func:`rank`;
    computed here when not given).
    """
    entry = catalog.entry(idx)
    finished = finished or _FinishedIndex(profile, catalog)
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
