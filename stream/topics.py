"""Topic specs (``topics/*.json``): the contract with producers and consumers.

Each spec names a topic, its partitions, cleanup policy, retention, key and the
JSON Schema of its value. ``"partitions": "STREAM_PARTITIONS"`` means the topic
is keyed by viewer and co-partitioned with the state changelogs, so it takes
the configured partition count.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from .settings import Settings

__all__ = ["TOPICS_DIR", "TopicSpec", "create_topics", "load_schema", "load_specs"]

TOPICS_DIR = Path(__file__).resolve().parent.parent / "topics"
if not TOPICS_DIR.is_dir():  # installed as a wheel: the specs ship inside the package
    TOPICS_DIR = Path(__file__).resolve().parent / "topics"

EVENTS, CATALOG, COMMANDS, RECOMMENDATIONS = "playback-events", "catalog", "user-commands", "recommendations"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    cleanup_policy: str
    retention_ms: int
    key: str
    value_schema: str
    dead_letter: str | None
    description: str

    def configs(self) -> dict[str, str]:
        return {"cleanup.policy": self.cleanup_policy, "retention.ms": str(self.retention_ms)}


def load_specs(settings: Settings) -> dict[str, TopicSpec]:
    """All topic specs by their unprefixed name, partitions resolved for ``settings``."""
    specs = {}
    for path in sorted(TOPICS_DIR.glob("*.json")):
        raw = json.loads(path.read_text())
        parts = raw["partitions"]
        specs[raw["name"]] = TopicSpec(
            name=raw["name"],
            partitions=settings.partitions if parts == "STREAM_PARTITIONS" else int(parts),
            cleanup_policy=raw["cleanup_policy"],
            retention_ms=int(raw["retention_ms"]),
            key=raw["key"],
            value_schema=raw["value_schema"],
            dead_letter=raw.get("dead_letter"),
            description=raw.get("description", ""),
        )
    return specs


@cache
def load_schema(relative: str) -> dict[str, Any]:
    """The JSON Schema a spec names, e.g. ``schemas/playback-event.json``."""
    return dict(json.loads((TOPICS_DIR / relative).read_text()))


async def create_topics(settings: Settings, names: list[str] | None = None) -> list[str]:
    """Create the topics of ``topics/`` that do not exist yet; return those created.

    Idempotent: a topic that already exists is left as it is (its partition
    count is checked, since a mismatch would break co-partitioning).
    """
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    specs = load_specs(settings)
    wanted = [specs[n] for n in (names or list(specs))]
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap, client_id="stream-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        todo = [s for s in wanted if settings.topic(s.name) not in existing]
        if todo:
            await admin.create_topics(
                [
                    NewTopic(settings.topic(s.name), s.partitions, settings.replication, topic_configs=s.configs())
                    for s in todo
                ]
            )
        described = await admin.describe_topics([settings.topic(s.name) for s in wanted])
        for spec, info in zip(wanted, _by_name(described, [settings.topic(s.name) for s in wanted]), strict=True):
            have = len(info.get("partitions", []))
            if have and have != spec.partitions:
                raise RuntimeError(
                    f"topic {settings.topic(spec.name)} has {have} partitions, "
                    f"expected {spec.partitions} (STREAM_PARTITIONS); "
                    "co-partitioned topics must match: recreate it or set STREAM_PARTITIONS"
                )
        return [settings.topic(s.name) for s in todo]
    finally:
        await admin.close()


def _by_name(described: list[dict[str, Any]], names: list[str]) -> list[dict[str, Any]]:
    index = {d.get("topic"): d for d in described}
    return [index.get(n, {}) for n in names]


async def partitions_of(consumer: Any, topic: str, timeout_s: float = 10.0) -> list[Any]:
    """The TopicPartitions of ``topic``, waiting (with metadata refreshes) until the client knows them."""
    import asyncio

    from aiokafka import TopicPartition

    parts = consumer.partitions_for_topic(topic)
    for _ in range(int(timeout_s / 0.1)):
        if parts:
            break
        await asyncio.sleep(0.1)
        await consumer._client.force_metadata_update()
        parts = consumer.partitions_for_topic(topic)
    if not parts:
        raise RuntimeError(f"topic {topic}: expected its partitions in the cluster metadata; none after {timeout_s}s")
    return [TopicPartition(topic, p) for p in sorted(parts)]
