"""The catalog as matrices: every title a row, genres and tags as columns.

Ranking scores all titles for many viewers at once with a few matrix products,
so the catalog keeps its features in numpy/scipy form. Titles are appended as
they are published; a retired title keeps its row (indices stay stable) but is
masked out of every list.

>>> from stream.contracts.validation import CatalogEntry
>>> cat = Catalog()
>>> cat.upsert(CatalogEntry("t1", "Night Shift", ("drama",), ("hospital",), 3000.0))
>>> cat.upsert(CatalogEntry("t2", "Laugh Lines", ("comedy",), (), 1500.0))
>>> cat.retire("t2")
>>> [cat.entry(i).item_id for i in cat.active_indices()]
['t1']
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from stream.contracts.validation import CatalogEntry, InvalidMessage, decode_catalog

__all__ = ["Catalog", "CatalogMatrices", "freshness"]


@dataclass(frozen=True)
class CatalogMatrices:
    """A consistent view of the catalog for one ranking pass."""

    genres: sp.csr_matrix  # (titles, genres) float32, rows scaled to unit length
    genres_dense: np.ndarray  # the same, dense: cheap row gathers for candidate scoring
    tags: sp.csr_matrix  # (titles, tags) float32, rows scaled to unit length
    active: np.ndarray  # (titles,) bool
    n_active: int  # how many are active
    release_ts: np.ndarray  # (titles,) float64 epoch ms, NaN when unknown
    version: int


class Catalog:
    def __init__(self) -> None:
        self._entries: list[CatalogEntry | None] = []
        self._index: dict[str, int] = {}
        #: Title id of every row, retired ones included. Rows are only ever appended:
        #: a title keeps its row for the life of the process (per-row caches rely on it).
        self.ids: list[str] = []
        self.genre_ids: dict[str, int] = {}
        self.tag_ids: dict[str, int] = {}
        self.genre_names: list[str] = []
        self.tag_names: list[str] = []
        self._genre_rows: list[list[int]] = []
        self._tag_rows: list[list[int]] = []
        self._active: list[bool] = []
        self._release: list[float] = []
        self.version = 0
        self._cached: CatalogMatrices | None = None
        self._fresh: tuple[int, int, np.ndarray] | None = None

    def __len__(self) -> int:
        return sum(self._active)

    def __contains__(self, item_id: object) -> bool:
        return isinstance(item_id, str) and self.index_of(item_id) is not None

    def index_of(self, item_id: str) -> int | None:
        idx = self._index.get(item_id)
        return idx if idx is not None and self._active[idx] else None

    def retired(self, item_id: str) -> bool:
        """Whether the title was published and then retired."""
        idx = self._index.get(item_id)
        return idx is not None and not self._active[idx]

    def entry(self, idx: int) -> CatalogEntry:
        entry = self._entries[idx]
        if entry is None:  # pragma: no cover - rows are only emptied by retire, which masks them
            raise KeyError(idx)
        return entry

    def get(self, item_id: str) -> CatalogEntry | None:
        idx = self.index_of(item_id)
        return None if idx is None else self._entries[idx]

    def active_indices(self) -> list[int]:
        return [i for i, a in enumerate(self._active) if a]

    @property
    def size(self) -> int:
        """Rows, retired ones included: the length of every per-title array."""
        return len(self._entries)

    def _ids(self, names: tuple[str, ...], ids: dict[str, int], vocab: list[str]) -> list[int]:
        out = []
        for name in names:
            if name not in ids:
                ids[name] = len(vocab)
                vocab.append(name)
            out.append(ids[name])
        return sorted(set(out))

    def apply(self, key: bytes | None, value: bytes | None) -> bool:
        """Apply one record of the catalog topic (a null value retires); False if it is invalid."""
        try:
            entry = decode_catalog(key, value)
        except InvalidMessage:
            return False
        if entry is None:
            self.retire(key.decode("utf-8", "replace") if key else "")
        else:
            self.upsert(entry)
        return True

    def upsert(self, entry: CatalogEntry) -> None:
        genres = self._ids(entry.genres, self.genre_ids, self.genre_names)
        tags = self._ids(entry.tags, self.tag_ids, self.tag_names)
        release = float(entry.release_ts) if entry.release_ts is not None else float("nan")
        idx = self._index.get(entry.item_id)
        if idx is None:
            self._index[entry.item_id] = len(self._entries)
            self._entries.append(entry)
            self.ids.append(entry.item_id)
            self._genre_rows.append(genres)
            self._tag_rows.append(tags)
            self._active.append(True)
            self._release.append(release)
        else:
            self._entries[idx] = entry
            self._genre_rows[idx] = genres
            self._tag_rows[idx] = tags
            self._active[idx] = True
            self._release[idx] = release
        self.version += 1
        self._cached = None

    def retire(self, item_id: str) -> None:
        idx = self._index.get(item_id)
        if idx is not None and self._active[idx]:
            self._active[idx] = False
            self.version += 1
            self._cached = None

    def freshness(self, now_ms: int, half_life_days: float) -> np.ndarray:
        """Per title: 1 when released now, halving every ``half_life_days``; 0 when unknown.

        Cached per catalog version and minute: it changes slowly and costs O(titles).
        """
        minute = now_ms // 60_000
        if self._fresh is not None and self._fresh[:2] == (self.version, minute):
            return self._fresh[2]
        fresh = freshness(self.matrices().release_ts, now_ms, half_life_days)
        self._fresh = (self.version, minute, fresh)
        return fresh

    def rows_with_genres(self, names: Iterable[str]) -> np.ndarray:
        """Rows of the titles having any of the genres ``names`` (compared in lower case), ascending."""
        wanted = {name.lower() for name in names}
        columns = [j for name, j in self.genre_ids.items() if name.lower() in wanted]
        if not columns:
            return np.zeros(0, dtype=np.int64)
        return np.unique(self.matrices().genres[:, columns].nonzero()[0]).astype(np.int64)

    def matrices(self) -> CatalogMatrices:
        """The catalog's feature matrices, rebuilt only after a change."""
        if self._cached is not None:
            return self._cached
        # sparse: a title has a few genres and tags, and sparse products beat dense BLAS here
        genres = _unit_rows(self._genre_rows, len(self.genre_names))
        active = np.asarray(self._active, dtype=bool)
        self._cached = CatalogMatrices(
            genres=genres,
            genres_dense=genres.toarray(),
            tags=_unit_rows(self._tag_rows, len(self.tag_names)),
            active=active,
            n_active=int(np.count_nonzero(active)),
            release_ts=np.asarray(self._release, dtype=np.float64),
            version=self.version,
        )
        return self._cached


def freshness(release_ts: np.ndarray, now_ms: int, half_life_days: float) -> np.ndarray:
    """Per title: 1 when released now (to the minute), halving every ``half_life_days``; 0 when unknown (NaN).

    >>> freshness(np.asarray([0.0, -30 * 86_400_000, np.nan]), 0, 30.0).tolist()
    [1.0, 0.5, 0.0]
    """
    minute = now_ms // 60_000 * 60_000
    age_days = np.maximum(0.0, (minute - release_ts) / 86_400_000)
    return np.nan_to_num(np.power(0.5, age_days / half_life_days), nan=0.0).astype(np.float32)


def _unit_rows(rows: list[list[int]], columns: int) -> sp.csr_matrix:
    """A 0/1 incidence matrix with each non-empty row scaled to unit length."""
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    indices: list[int] = []
    data: list[float] = []
    for i, row in enumerate(rows):
        indices.extend(row)
        if row:
            data.extend([1.0 / np.sqrt(len(row))] * len(row))
        indptr[i + 1] = len(indices)
    return sp.csr_matrix(
        (np.asarray(data, dtype=np.float32), np.asarray(indices, dtype=np.int64), indptr),
        shape=(len(rows), max(1, columns)),
    )
