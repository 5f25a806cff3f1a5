"""What ``stream group`` needs from the topics: the catalog, the members' profiles and a model."""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from stream.contracts.topics import CATALOG
from stream.learning.catalog import Catalog
from stream.learning.model import PartitionModel
from stream.learning.profile import Profile
from stream.runtime.kafka import read_to_end
from stream.settings import Settings

__all__ = ["load_state"]


async def load_state(settings: Settings, user_ids: Sequence[str]) -> tuple[Catalog, list[Profile], PartitionModel]:
    """Read the catalog, the members' profiles and the most-trained model from their topics."""
    catalog = Catalog()
    for record in await read_to_end(settings.bootstrap, settings.topic(CATALOG)):
        catalog.apply(record.key, record.value)
    wanted = {u.encode() for u in user_ids}
    rows: dict[bytes, bytes] = {}
    for record in await read_to_end(settings.bootstrap, f"{settings.faust_id}-profiles-changelog"):
        if record.key in wanted and record.value is not None:
            rows[record.key] = record.value
    missing = sorted(u for u in user_ids if u.encode() not in rows)
    if missing:
        raise LookupError(f"no profile yet for: {', '.join(missing)}")
    models = [
        PartitionModel.from_state(orjson.loads(r.value))
        for r in await read_to_end(settings.bootstrap, f"{settings.faust_id}-models-changelog")
        if r.value is not None
    ]
    model = max(models, key=lambda m: m.learned, default=PartitionModel())
    return catalog, [Profile.loads(rows[u.encode()]) for u in user_ids], model
