"""A small catalog shared by the tests: two titles per genre and tag, released long ago."""

from __future__ import annotations

from typing import Any

import orjson

RELEASED = 1_600_000_000_000

#: drama d1-d4, comedy c1-c4, documentary m1-m4, crime k1-k4.
TITLES: list[dict[str, Any]] = [
    {"item_id": f"{prefix}{n}", "title": f"{genre.title()} {n}", "genres": [genre], "tags": [tag],
     "duration_s": 3000.0, "release_ts": RELEASED}
    for prefix, genre, tag in (("d", "drama", "hospital"), ("c", "comedy", "sitcom"),
                               ("m", "documentary", "ocean"), ("k", "crime", "heist"))
    for n in range(1, 5)
]  # fmt: skip


def catalog_messages() -> list[tuple[bytes, bytes]]:
    return [(t["item_id"].encode(), orjson.dumps(t)) for t in TITLES]


def genre_of(item_id: str) -> str:
    return {t["item_id"]: t["genres"][0] for t in TITLES}[item_id]
