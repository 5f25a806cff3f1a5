"""Candidate generation for large catalogs: score a few thousand titles, not all of them.

A title's score is ``genre match + tag match + shared``, where ``shared`` (the
weighted popularity and freshness) is the same for every viewer. So the titles
a viewer can rank highly are among the best-``shared`` titles overall, or among
the best-``shared`` titles of the genres and tags that viewer likes. The index
keeps, per genre and per tag, its titles ordered by ``shared`` (refreshed every
couple of seconds, since popularity moves), and a viewer's candidates are the
union of the global head (600) and the heads (300 each) of its 5 strongest genres
and 8 strongest tags: at most 4,500 rows. The ranking pass then scores only those
rows exactly: the cost no longer grows with the catalog. (Heads of 600 made up to
8,400 rows, more than the 5,000-title catalog scored whole: a 100,000-title
catalog cost 1,116 us per event in ``loadtest/processor_bench.py``, 966 with 300.)
"""

from __future__ import annotations

import time

import numpy as np

from stream.learning.catalog import CatalogMatrices
from stream.learning.profile import Profile

__all__ = ["CandidateIndex"]


class CandidateIndex:
    def __init__(self, per_list: int = 300, global_head: int = 600, refresh_s: float = 2.0) -> None:
        self.per_list = per_list
        self.global_head = global_head
        self.refresh_s = refresh_s
        self._version = -1
        self._built_at = 0.0
        self._head = np.zeros(0, dtype=np.int64)
        self._by_genre: list[np.ndarray] = []
        self._by_tag: list[np.ndarray] = []

    def refresh(self, mats: CatalogMatrices, shared: np.ndarray) -> None:
        """Rebuild the ordered lists when the catalog changed or they are older than ``refresh_s``."""
        now = time.monotonic()
        if mats.version == self._version and now - self._built_at < self.refresh_s:
            return
        order = np.argsort(-shared, kind="stable")
        position = np.empty_like(order)
        position[order] = np.arange(len(order))
        self._head = order[: self.global_head]
        self._by_genre = self._heads(mats.genres.tocsc(), position)
        self._by_tag = self._heads(mats.tags.tocsc(), position)
        self._version = mats.version
        self._built_at = now

    def _heads(self, incidence: object, position: np.ndarray) -> list[np.ndarray]:
        indptr = incidence.indptr  # type: ignore[attr-defined]
        indices = incidence.indices  # type: ignore[attr-defined]
        heads = []
        for col in range(len(indptr) - 1):
            rows = indices[indptr[col] : indptr[col + 1]]
            if len(rows) > self.per_list:
                keep = np.argpartition(position[rows], self.per_list - 1)[: self.per_list]
                rows = rows[keep]
            heads.append(rows)
        return heads

    def for_viewer(
        self, profile: Profile, genre_ids: dict[str, int], tag_ids: dict[str, int], genres: int = 5, tags: int = 8
    ) -> np.ndarray:
        """Catalog rows worth scoring for this viewer."""
        parts = [self._head]
        liked = sorted((v, k) for k, v in profile.genres.items() if v > 0)[-genres:]
        for _, name in liked:
            gid = genre_ids.get(name)
            if gid is not None and gid < len(self._by_genre):
                parts.append(self._by_genre[gid])
        liked = sorted((v, k) for k, v in profile.tags.items() if v > 0)[-tags:]
        for _, name in liked:
            tid = tag_ids.get(name)
            if tid is not None and tid < len(self._by_tag):
                parts.append(self._by_tag[tid])
        return np.unique(np.concatenate(parts)) if len(parts) > 1 else self._head
