"""One list for several viewers watching together (``stream group``).

Every member's taste scores every title as in their own list (:mod:`stream.ranking`).
The group's score of a title is the members' mean, and a title any member strongly
dislikes (their taste part below ``-dislike``) or has already put away (finished,
skipped early, thumbs down) is left out: "least misery" first, then the average.
Reasons name who the pick is for.

>>> from stream.catalog import Catalog
>>> from stream.validation import CatalogEntry
>>> cat = Catalog()
>>> for i, g in enumerate(["drama", "drama", "comedy", "horror"]):
...     cat.upsert(CatalogEntry(f"t{i}", f"T{i}", (g,), (), 3000.0))
>>> ann = Profile("ann", genres={"drama": 2.0, "comedy": 1.0})
>>> bob = Profile("bob", genres={"comedy": 2.0, "drama": -1.5})
>>> [(i.item_id, i.reasons[0]) for i in rank_group([ann, bob], cat, PartitionModel(), top_k=2, now_ms=0)]
[('t2', 'good for everyone: ann likes comedy, bob likes comedy'), ('t3', 'nobody minds it')]
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson
from aiokafka import AIOKafkaConsumer

from .catalog import Catalog
from .model import PartitionModel
from .profile import Profile
from .ranking import RankedItem, shared_terms, taste_rows
from .settings import Settings
from .topics import CATALOG, partitions_of

__all__ = ["DISLIKE", "load_state", "rank_group"]

#: A member's taste part (genre + tag contribution) below minus this is a strong dislike.
DISLIKE = 0.3
#: ... and above this, a reason to name them in the pick's reason.
LIKE = 0.05


def rank_group(
    members: Sequence[Profile],
    catalog: Catalog,
    model: PartitionModel,
    top_k: int = 10,
    now_ms: int = 0,
    dislike: float = DISLIKE,
) -> list[RankedItem]:
    """The group's list, best first: the mean of the members' scores, no member strongly against."""
    mats = catalog.matrices()
    if not members or mats.genres.shape[0] == 0:
        return []
    user_genres, user_tags = taste_rows(members, catalog, mats)
    w, _, _, shared = shared_terms(catalog, mats, model, now_ms)
    genre_part = w["genre"] * np.asarray((mats.genres @ user_genres.T).T)
    tag_part = w["tag"] * np.asarray((mats.tags @ user_tags.T).T)
    taste = genre_part + tag_part  # (members, titles)
    group = taste.mean(axis=0) + shared
    group[(taste < -dislike).any(axis=0)] = -np.inf
    for member in members:
        put_away = [i for i in map(catalog.index_of, member.excluded) if i is not None]
        group[put_away] = -np.inf
    k = min(top_k, len(group))
    top = np.argpartition(group, -k)[-k:]
    top = top[np.argsort(-group[top], kind="stable")]
    items: list[RankedItem] = []
    for idx in top.tolist():
        if group[idx] == -np.inf:
            break
        entry = catalog.entry(idx)
        fans = [
            f"{m.user_id} likes {_favourite(m, entry.genres)}" for r, m in enumerate(members) if taste[r, idx] > 0.05
        ]
        if len(fans) == len(members):
            reason = "good for everyone: " + ", ".join(fans)
        elif fans:
            reason = "for " + ", ".join(fans) + "; nobody minds it"
        else:
            reason = "nobody minds it"
        items.append(RankedItem(entry.item_id, len(items) + 1, round(float(group[idx]), 4), [reason]))
    return items


def _favourite(member: Profile, genres: Sequence[str]) -> str:
    return max(genres, key=lambda g: member.genres.get(g, 0.0))


async def load_state(settings: Settings, user_ids: Sequence[str]) -> tuple[Catalog, list[Profile], PartitionModel]:
    """Read the catalog, the members' profiles and the most-trained model from their topics."""
    catalog = Catalog()
    for record in await _read_all(settings.bootstrap, settings.topic(CATALOG)):
        catalog.apply(record.key, record.value)
    wanted = {u.encode() for u in user_ids}
    rows: dict[bytes, bytes] = {}
    for record in await _read_all(settings.bootstrap, f"{settings.faust_id}-profiles-changelog"):
        if record.key in wanted and record.value is not None:
            rows[record.key] = record.value
    missing = sorted(u for u in user_ids if u.encode() not in rows)
    if missing:
        raise LookupError(f"no profile yet for: {', '.join(missing)}")
    models = [
        PartitionModel.from_state(orjson.loads(r.value))
        for r in await _read_all(settings.bootstrap, f"{settings.faust_id}-models-changelog")
        if r.value is not None
    ]
    model = max(models, key=lambda m: m.learned, default=PartitionModel())
    return catalog, [Profile.loads(rows[u.encode()]) for u in user_ids], model


async def _read_all(bootstrap: str, topic: str, timeout_s: float = 30.0) -> list[Any]:
    """Every record of ``topic`` up to its end when read (end: each partition's fetch high watermark)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=50)
    await consumer.start()
    records: list[Any] = []
    try:
        tps = await partitions_of(consumer, topic, timeout_s=5.0)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        pending = set(tps)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while pending and loop.time() < deadline:
            batches = await consumer.getmany(*pending, timeout_ms=200, max_records=10_000)
            for batch in batches.values():
                records.extend(batch)
            for tp in list(pending):
                high = consumer.highwater(tp)
                if high is not None and await consumer.position(tp) >= high:
                    pending.discard(tp)
        if pending:
            raise TimeoutError(f"{topic}: not read to its end in {timeout_s:.0f}s")
    finally:
        await consumer.stop()
    return records
