"""Small Kafka client helpers shared by the runtime and the tools: topics, partitions, reading to the end.

Everything here speaks the Kafka protocol through aiokafka's public API only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from stream.contracts.topics import load_specs
from stream.settings import Settings

__all__ = ["create_topics", "partitions_of", "read_to_end"]


async def create_topics(settings: Settings, names: list[str] | None = None) -> list[str]:
    """Create the topics of ``topics/`` that do not exist yet; return those created.

    Idempotent: a topic that already exists is left as it is (its partition
    count is checked, since a mismatch would break co-partitioning).
    """
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


async def partitions_of(consumer: AIOKafkaConsumer, topic: str, timeout_s: float = 10.0) -> list[TopicPartition]:
    """The TopicPartitions of ``topic``, waiting (with metadata refreshes) until the client knows them."""
    from stream.runtime import _faust  # imported when needed: producing and watching need no Faust

    parts = consumer.partitions_for_topic(topic)
    for _ in range(int(timeout_s / 0.1)):
        if parts:
            break
        await asyncio.sleep(0.1)
        await _faust.refresh_metadata(consumer)
        parts = consumer.partitions_for_topic(topic)
    if not parts:
        raise RuntimeError(f"topic {topic}: expected its partitions in the cluster metadata; none after {timeout_s}s")
    return [TopicPartition(topic, p) for p in sorted(parts)]


async def read_to_end(
    bootstrap: str,
    topic: str,
    timeout_s: float = 30.0,
    on_records: Callable[[list[Any]], None] | None = None,
) -> list[Any]:
    """Every record of ``topic`` from the beginning up to its end when read.

    The end is each partition's high watermark as a fetch reports it, not ListOffsets
    (which the embedded broker answers wrongly when the last batch holds several records).
    ``on_records``: called with each fetched batch instead of collecting the records (then
    the result is empty). Raises ``TimeoutError`` when the end is not reached in ``timeout_s``.
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=50)
    await consumer.start()
    records: list[Any] = []
    try:
        tps = await partitions_of(consumer, topic, timeout_s=min(5.0, timeout_s))
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        pending = set(tps)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while pending and loop.time() < deadline:
            batches = await consumer.getmany(*pending, timeout_ms=200, max_records=10_000)
            for batch in batches.values():
                if on_records is not None:
                    on_records(batch)
                else:
                    records.extend(batch)
            for tp in list(pending):
                high = consumer.highwater(tp)
                if high is not None and await consumer.position(tp) >= high:
                    pending.discard(tp)
        if pending:
            raise TimeoutError(
                f"{topic}: expected to read it to its end in {timeout_s:.0f}s; {len(pending)} partitions short"
            )
    finally:
        await consumer.stop()
    return records
