"""The one home of the score: what a (viewer, title) pair's features are, and how they add up.

A title's score for a viewer is ``parts @ weights``, the weighted sum of ten features:

- ``genre``: how the viewer's decayed genre affinities match the title's genres;
- ``tag``: the same for fine-grained tags;
- ``context``: how much more (or less) the viewer watches the title's genres in the
  current context (device, daypart, weekday or weekend) than overall; 0 for a
  viewer whose habits do not change with context (:func:`context_lift`);
- ``cohort``: how often viewers of the same taste cohort finished or liked it (on this
  device at this time of day, once that bucket has enough starts): see
  :mod:`stream.learning.cohorts`;
- ``cowatch``: how much it goes with the viewer's recent finishes and likes, by what the whole
  deployment's viewers finished or liked after or beside them: see :mod:`stream.learning.cowatch`;
- ``factor``: how well it fits the viewer's recent finishes and likes by the deployment's item
  factors (a latent-factor model of which titles viewers choose): see :mod:`stream.learning.factors`;
- ``popularity``: how often it was started lately (log-scaled);
- ``trending``: what the whole deployment's viewers did with it in the last hour's windows
  (early skips count against it), shared by every partition and worker: see
  :mod:`stream.learning.velocity`;
- ``trend``: how often the whole deployment's viewers finished or liked it lately, decayed by
  count, shared by every partition and worker: see :mod:`stream.learning.trend`;
- ``freshness``: how recently it was released.

The first six depend on the viewer (:class:`ViewerTerms`), the last four only on
the title and the model (:func:`title_parts`). :func:`pair_parts` computes all ten
for any set of one viewer's titles: learning (one pair), candidate and exploration
scoring (a few hundred) and the group list (every title) call it. :func:`scan` is the
same computation for many viewers and every title at once, from the same viewer rows,
title matrices and title parts; a test pins that the two agree. The model's weights
(``PartitionModel.weights``) are learned online from the raw parts, and because the score is linear every pick's
reasons are read off its largest weighted parts. A viewer back after a while (``ViewerTerms.away``) is
ranked with weights of its own (:meth:`PartitionModel.weights_for`; see :mod:`stream.learning.choice`).

>>> from stream.learning.catalog import Catalog
>>> from stream.learning.model import PartitionModel
>>> from stream.learning.profile import Profile
>>> from stream.contracts.validation import CatalogEntry
>>> cat = Catalog()
>>> cat.upsert(CatalogEntry("t1", "One", ("drama",), (), None))
>>> cat.upsert(CatalogEntry("t2", "Two", ("comedy",), (), None))
>>> viewer = ViewerTerms.of(Profile("u", genres={"drama": 2.0}), PartitionModel(), cat, now_ms=0)
>>> parts = pair_parts(viewer, cat)
>>> [round(p, 2) for p in parts[:, FEATURES.index("genre")].tolist()]
[1.0, 0.0]
>>> features(viewer, cat, 0)["genre"]
1.0
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from stream.learning.catalog import Catalog, CatalogMatrices
from stream.learning.profile import Profile, context_keys, daypart

if TYPE_CHECKING:
    from stream.learning.model import PartitionModel

__all__ = [
    "CONTEXT_PRIOR_MASS",
    "FEATURES",
    "FRESH_DAYS",
    "TITLE_FEATURES",
    "VIEWER_FEATURES",
    "Scan",
    "ViewerTerms",
    "bucket_rows",
    "cohort_part",
    "context_lift",
    "cowatch_part",
    "factor_part",
    "features",
    "pair_parts",
    "scan",
    "title_parts",
    "title_rows",
    "unit",
    "weight_vector",
]

FEATURES = ("genre", "tag", "context", "cohort", "cowatch", "factor", "popularity", "trending", "trend", "freshness")
#: The features only the viewer changes, then those of the title alone (and the model).
VIEWER_FEATURES, TITLE_FEATURES = FEATURES[:6], FEATURES[6:]
#: Freshness halves every this many days after release.
FRESH_DAYS = 30.0
#: A context's evidence counts fully once its affinities sum to well above this (see context_lift).
CONTEXT_PRIOR_MASS = 2.0

_GENRE, _TAG, _CONTEXT, _COHORT, _COWATCH, _FACTOR = range(6)
#: Up to this many titles, slicing the tag matrix by hand beats scipy's indexing.
FEW = 8
#: Up to this many titles, a cohort look-up per title beats building the whole catalog's column (a
#: finish is learned against a few dozen titles: its cost must not grow with the catalog).
LOOKUPS = 64


def weight_vector(weights: dict[str, float]) -> np.ndarray:
    """The weights in :data:`FEATURES` order, for ``parts @ weight_vector(w)``."""
    return np.asarray([weights[f] for f in FEATURES], dtype=np.float32)


def unit(values: dict[str, float]) -> dict[str, float]:
    """Affinities scaled so the strongest is +-1 (a profile's sums grow without bound)."""
    top = max((abs(v) for v in values.values()), default=0.0)
    return {k: v / top for k, v in values.items()} if top > 1.0 else dict(values)


def context_lift(profile: Profile, device: str | None, ts_ms: int) -> dict[str, float]:
    """How much more of each genre the viewer watches in this context than overall (negative: less).

    For each context the moment belongs to (device, daypart, weekday or weekend: see
    :func:`stream.learning.profile.context_keys`), the genre's share of the viewer's positive
    affinity there minus its share overall (over the same genres: the context's and the viewer's
    strongest), weighed by how much evidence the context has; averaged over the contexts. A viewer
    whose habits do not change with context, or who has no history in this one, gets 0 everywhere.

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


def _row(values: dict[str, float], ids: dict[str, int], width: int) -> np.ndarray:
    out = np.zeros(width, dtype=np.float32)
    for name, value in values.items():
        i = ids.get(name)
        if i is not None:
            out[i] = value
    return out


@dataclass(slots=True)
class ViewerTerms:
    """What one viewer brings to its pairs' features, at one moment (a device and a time)."""

    profile: Profile
    model: PartitionModel
    now_ms: int
    device: str | None
    cohort: int | None
    #: The cohort bucket the viewer borrows from (None: no cohort).
    bucket: str | None
    genres: np.ndarray  # (genres,) the viewer's genre affinities, scaled by :func:`unit`
    tags: np.ndarray  # (tags,)
    lift: dict[str, float]  # :func:`context_lift` at this moment
    context: np.ndarray  # (genres,) the same lift, as a row
    #: Titles that go with the viewer's recent positives: catalog row -> (co-watch feature, the
    #: positive that gave it most) (see :mod:`stream.learning.cowatch`).
    related: dict[int, tuple[float, str]]
    #: The same, as arrays: rows, and their feature.
    related_rows: np.ndarray
    related_values: np.ndarray
    #: The viewer's vector of item factors (None: no recent positive has factors yet): see
    #: :mod:`stream.learning.factors`.
    taste: np.ndarray | None
    #: Ranked for a viewer back after a while (its newest event :data:`~stream.learning.profile.AWAY_MS` or
    #: more before ``now_ms``): its list takes the choice learner's away weights too.
    away: bool = False

    @property
    def weights(self) -> dict[str, float]:
        """The ranking weights this viewer's list takes (:meth:`PartitionModel.weights_for`)."""
        return self.model.weights_for(self.away)

    @classmethod
    def of(
        cls,
        profile: Profile,
        model: PartitionModel,
        catalog: Catalog,
        now_ms: int,
        device: str | None = None,
        cohort: int | None = None,
        at_ms: int | None = None,
    ) -> ViewerTerms:
        """The viewer on ``device`` at ``at_ms`` (default: ``now_ms``), its titles judged at ``now_ms``."""
        mats = catalog.matrices()
        n_genres, n_tags = mats.genres.shape[1], mats.tags.shape[1]
        moment = now_ms if at_ms is None else at_ms
        lift = context_lift(profile, device, moment) if profile.contexts else {}
        bucket = None
        if cohort is not None:
            bucket = model.cohorts.bucket(cohort, device, daypart(moment), model.unit)
        related = _related(profile, model, catalog)
        return cls(
            profile,
            model,
            now_ms,
            device,
            cohort,
            bucket,
            _row(unit(profile.genres), catalog.genre_ids, n_genres),
            _row(unit(profile.tags), catalog.tag_ids, n_tags),
            lift,
            _row(lift, catalog.genre_ids, n_genres) if lift else np.zeros(n_genres, dtype=np.float32),
            related,
            np.fromiter(related, dtype=np.int64, count=len(related)),
            np.fromiter((v for v, _ in related.values()), dtype=np.float32, count=len(related)),
            model.shared.factors.viewer(profile.positives()) if profile.history else None,
            profile.back_at(now_ms),
        )

    @classmethod
    def current(
        cls, profile: Profile, model: PartitionModel, catalog: Catalog, now_ms: int, cohort: int | None = None
    ) -> ViewerTerms:
        """The viewer in its current context (its newest event's device and time), as a list is made for it."""
        return cls.of(profile, model, catalog, now_ms, profile.device, cohort, at_ms=profile.last_ts)


def _related(profile: Profile, model: PartitionModel, catalog: Catalog) -> dict[int, tuple[float, str]]:
    if not profile.history:
        return {}
    out: dict[int, tuple[float, str]] = {}
    index_of = catalog.index_of
    for item, found in model.shared.cowatch.related(profile.positives()).items():
        row = index_of(item)
        if row is not None:
            out[row] = found
    return out


def cowatch_part(viewer: ViewerTerms, catalog: Catalog, rows: np.ndarray | None) -> np.ndarray:
    """The co-watch feature of the viewer's pairs with ``rows`` (None: every title)."""
    if rows is None:
        out = np.zeros(len(catalog.ids), dtype=np.float32)
        out[viewer.related_rows] = viewer.related_values
        return out
    related = viewer.related
    if not related:
        return np.zeros(len(rows), dtype=np.float32)
    return np.fromiter((related.get(r, (0.0, ""))[0] for r in rows.tolist()), dtype=np.float32, count=len(rows))


def factor_part(viewer: ViewerTerms, catalog: Catalog, rows: np.ndarray | None) -> np.ndarray:
    """The factor feature of the viewer's pairs with ``rows`` (None: every title)."""
    if viewer.taste is None:
        return np.zeros(len(catalog.ids) if rows is None else len(rows), dtype=np.float32)
    return viewer.model.shared.factors.catalog_scores(viewer.taste, catalog.ids, rows)


def title_parts(model: PartitionModel, catalog: Catalog, now_ms: int, rows: np.ndarray | None = None) -> np.ndarray:
    """(titles, 4): the popularity, trending, trend and freshness features of ``rows`` (None: every title).

    Read from the models' and the catalog's per-title arrays (each cached while it holds:
    trending until new counts, popularity and trend until the next delta, freshness for the minute).
    """
    ids, shared = catalog.ids, model.shared
    trending, freshness = model.trending.array(ids), catalog.freshness(now_ms, FRESH_DAYS)
    if rows is not None:
        trending, freshness = trending[rows], freshness[rows]
    columns = [shared.popularity.array(ids, rows), trending, shared.trend.array(ids, rows), freshness]
    return np.column_stack(columns).astype(np.float32, copy=False)


def bucket_rows(viewer: ViewerTerms, catalog: Catalog) -> tuple[np.ndarray, np.ndarray]:
    """The catalog rows of the viewer's cohort bucket and their cohort feature (the rest is 0)."""
    if viewer.bucket is None:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    ids, shares = viewer.model.cohorts.items(viewer.bucket, viewer.model.unit)
    found = [(row, share) for row, share in zip(map(catalog.index_of, ids), shares, strict=True) if row is not None]
    return np.asarray([r for r, _ in found], dtype=np.int64), np.asarray([v for _, v in found], dtype=np.float32)


def cohort_part(viewer: ViewerTerms, catalog: Catalog, rows: np.ndarray | None) -> np.ndarray:
    """The cohort feature of the viewer's pairs with ``rows`` (None: every title)."""
    if rows is None:
        out = np.zeros(len(catalog.ids), dtype=np.float32)
        hit, shares = bucket_rows(viewer, catalog)
        out[hit] = shares
        return out
    if viewer.bucket is None:
        return np.zeros(len(rows), dtype=np.float32)
    if len(rows) > LOOKUPS:
        return cohort_part(viewer, catalog, None)[rows]
    share, bucket, names, unit_now = viewer.model.cohorts.share, viewer.bucket, catalog.ids, viewer.model.unit
    return np.asarray([share(bucket, names[i], unit_now) for i in rows.tolist()], dtype=np.float32)


def title_rows(catalog: Catalog, rows: np.ndarray) -> tuple[np.ndarray, Any]:
    """The unit genre and tag rows of the catalog ``rows`` (for callers that score the same titles often)."""
    mats = catalog.matrices()
    return mats.genres_dense[rows], _tag_rows(mats, rows)


def pair_parts(
    viewer: ViewerTerms,
    catalog: Catalog,
    rows: np.ndarray | None = None,
    gathered: tuple[np.ndarray, Any] | None = None,
    cohort: np.ndarray | None = None,
) -> np.ndarray:
    """(titles, 10): every feature of the pairs (viewer, title) for the catalog ``rows`` (None: every title).

    The one definition of the features, in :data:`FEATURES` order; ``parts @ weight_vector(w)``
    is the score. ``gathered`` (:func:`title_rows` of ``rows``) and ``cohort`` (the cohort
    column, the same for every viewer of a bucket): what the caller computed before, if any.
    """
    mats = catalog.matrices()
    if rows is None:
        title_genres, title_tags = mats.genres, mats.tags
    else:
        title_genres, title_tags = gathered if gathered is not None else title_rows(catalog, rows)
    # each title's unit genre (tag) row dotted with the viewer's: :func:`scan` makes the same products
    parts = np.empty((title_genres.shape[0], len(FEATURES)), dtype=np.float32)
    parts[:, _GENRE] = np.asarray(title_genres @ viewer.genres).ravel()
    parts[:, _TAG] = np.asarray(title_tags @ viewer.tags).ravel()
    parts[:, _CONTEXT] = np.asarray(title_genres @ viewer.context).ravel()
    parts[:, _COHORT] = cohort_part(viewer, catalog, rows) if cohort is None else cohort
    parts[:, _COWATCH] = cowatch_part(viewer, catalog, rows)
    parts[:, _FACTOR] = factor_part(viewer, catalog, rows)
    parts[:, len(VIEWER_FEATURES) :] = title_parts(viewer.model, catalog, viewer.now_ms, rows)
    return parts


def _tag_rows(mats: CatalogMatrices, rows: np.ndarray) -> Any:
    if len(rows) <= FEW:  # a learning step: slicing CSR by hand beats scipy's fancy indexing by far
        tags = mats.tags
        dense = np.zeros((len(rows), tags.shape[1]), dtype=np.float32)
        for j, row in enumerate(rows.tolist()):
            a, b = tags.indptr[row], tags.indptr[row + 1]
            dense[j, tags.indices[a:b]] = tags.data[a:b]
        return dense
    return mats.tags[rows]


def features(viewer: ViewerTerms, catalog: Catalog, idx: int) -> dict[str, float]:
    """The features of one pair, by name: what the model learns from (predict, then learn)."""
    parts = pair_parts(viewer, catalog, np.asarray([idx], dtype=np.int64))[0]
    return dict(zip(FEATURES, map(float, parts.tolist()), strict=True))


@dataclass(slots=True)
class Scan:
    """Every title scored for several viewers at once (see :func:`scan`)."""

    scores: np.ndarray  # (viewers, titles) weighted sums; -inf where a title is retired
    genre: np.ndarray  # (viewers, titles) raw genre feature
    tag: np.ndarray
    context: np.ndarray | None  # None: 0 for every viewer in the scan
    factor: np.ndarray | None  # (viewers, titles) raw factor feature; None: 0 for every viewer in the scan
    titles: dict[int, np.ndarray]  # per model (by id): (titles, 3) raw title features
    cohorts: dict[tuple[int, str], np.ndarray]  # per (model, bucket): (titles,) the cohort feature

    def parts(self, r: int, rows: np.ndarray, viewer: ViewerTerms, catalog: Catalog) -> np.ndarray:
        """(len(rows), 10) raw features of viewer ``r``'s pairs with ``rows``, as :func:`pair_parts` gives them."""
        parts = np.zeros((len(rows), len(FEATURES)), dtype=np.float32)
        parts[:, _GENRE] = self.genre[r, rows]
        parts[:, _TAG] = self.tag[r, rows]
        if self.context is not None:
            parts[:, _CONTEXT] = self.context[r, rows]
        if viewer.bucket is not None:
            parts[:, _COHORT] = self.cohorts[(id(viewer.model), viewer.bucket)][rows]
        if viewer.related:
            parts[:, _COWATCH] = cowatch_part(viewer, catalog, rows)
        if self.factor is not None:
            parts[:, _FACTOR] = self.factor[r, rows]
        parts[:, len(VIEWER_FEATURES) :] = self.titles[id(viewer.model)][rows]
        return parts


def scan(viewers: Sequence[ViewerTerms], catalog: Catalog) -> Scan:
    """Score every title for every viewer: :func:`pair_parts` ``@`` weights, as a few matrix products.

    Viewers may belong to different models (partitions): each row is scored with its own
    model's weights, popularity, trending and cohorts. Genre and context parts share the
    catalog's genre matrix, in one product, and the context product is made only for the
    viewers whose habits change with context (for the others it is all 0).
    """
    mats = catalog.matrices()
    n, n_titles = len(viewers), mats.genres.shape[0]
    genres = np.vstack([v.genres for v in viewers])
    contexts = np.vstack([v.context for v in viewers])
    lifted = np.flatnonzero(contexts.any(axis=1))
    # the products of :func:`pair_parts`, for every viewer at once (genre and context in one)
    both = np.asarray(mats.genres @ np.vstack([genres, contexts[lifted]]).T).T
    genre = np.ascontiguousarray(both[:n])
    tag = np.ascontiguousarray(np.asarray(mats.tags @ np.vstack([v.tags for v in viewers]).T).T)
    context = None
    if len(lifted):
        context = np.zeros((n, n_titles), dtype=np.float32)
        context[lifted] = both[n:]
    factor = _factor_scan(viewers, catalog)
    by_weights: dict[tuple[int, bool], list[int]] = {}  # viewers of a model, in a visit or back after a while
    for r, v in enumerate(viewers):
        by_weights.setdefault((id(v.model), v.away), []).append(r)
    titles: dict[int, np.ndarray] = {}
    scores = np.empty((n, n_titles), dtype=np.float32)
    for (key, away), rows in by_weights.items():
        model = viewers[rows[0]].model
        if key not in titles:
            titles[key] = title_parts(model, catalog, viewers[rows[0]].now_ms)
        w = weight_vector(model.weights_for(away))
        shared = titles[key] @ w[len(VIEWER_FEATURES) :]
        shared[~mats.active] = -np.inf
        sel = rows if len(rows) < n else slice(None)
        scores[sel] = w[_GENRE] * genre[sel] + w[_TAG] * tag[sel] + shared[None, :]
        if context is not None:
            scores[sel] += w[_CONTEXT] * context[sel]
        if factor is not None:
            scores[sel] += w[_FACTOR] * factor[sel]
    return Scan(scores, genre, tag, context, factor, titles, _add_sparse_parts(scores, viewers, catalog))


def _add_sparse_parts(
    scores: np.ndarray, viewers: Sequence[ViewerTerms], catalog: Catalog
) -> dict[tuple[int, str], np.ndarray]:
    """Add each viewer's weighted cohort and co-watch parts to its row of ``scores``, in place; the cohort
    feature of each (model, bucket), which the bucket's viewers share."""
    cohorts: dict[tuple[int, str], np.ndarray] = {}
    for r, v in enumerate(viewers):
        if v.bucket is None and not v.related:
            continue
        weights = v.weights
        if v.bucket is not None:
            key = (id(v.model), v.bucket)
            if key not in cohorts:
                cohorts[key] = cohort_part(v, catalog, None)
            scores[r] += weights["cohort"] * cohorts[key]
        if v.related:
            scores[r, v.related_rows] += weights["cowatch"] * v.related_values
    return cohorts


def _factor_scan(viewers: Sequence[ViewerTerms], catalog: Catalog) -> np.ndarray | None:
    """(viewers, titles): the factor feature of every pair, one product per replica (None: no viewer
    has a vector)."""
    tasted = [r for r, v in enumerate(viewers) if v.taste is not None]
    if not tasted:
        return None
    out = np.zeros((len(viewers), len(catalog.ids)), dtype=np.float32)
    by_replica: dict[int, list[int]] = {}
    for r in tasted:
        by_replica.setdefault(id(viewers[r].model.shared), []).append(r)
    for rows in by_replica.values():
        factors = viewers[rows[0]].model.shared.factors
        tastes = np.vstack([viewers[r].taste for r in rows])  # type: ignore[misc]
        out[rows] = factors.catalog_scores_many(tastes, catalog.ids)
    return out
