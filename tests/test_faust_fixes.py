"""The worker's patches to Faust's Kafka driver, checked against the real broker."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from stream.runtime._patches import seek_known_offsets, true_end_offsets
from stream.runtime.broker import EmbeddedBroker


async def test_end_offsets_count_every_record_of_a_multi_record_last_batch(broker: EmbeddedBroker) -> None:
    topic = "fixes-end-offsets"
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, 2, 1)])
    await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=50)
    await producer.start()
    futures = [await producer.send(topic, value=b"x", partition=0) for _ in range(7)]  # one batch of 7
    await producer.flush()
    await producer.stop()
    assert [f.result().offset for f in futures] == list(range(7))

    consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap)
    await consumer.start()
    tps = [TopicPartition(topic, 0), TopicPartition(topic, 1)]
    listed = await consumer.end_offsets(tps)
    await consumer.stop()
    confirmed = await true_end_offsets(broker.bootstrap, listed)
    assert confirmed[tps[0]] == 7, f"ListOffsets said {listed[tps[0]]}; a fetch's high watermark must say 7"
    assert confirmed[tps[1]] == 0


async def test_a_standby_partition_faust_never_gave_an_offset_is_read_from_its_start() -> None:
    """Faust notes a new standby changelog partition as ``None`` until recovery fills it in; an
    assignment landing mid-recovery left it so, and Faust's seek crashed the worker on it."""
    from collections import Counter

    from faust.types import TP

    seeks: list[dict[TP, int]] = []

    class Seeks:  # the one method of Faust's consumer the seek calls: records what it is asked
        async def seek_wait(self, offsets: dict[TP, int]) -> None:
            seeks.append(dict(offsets))

    known, new, empty = TP("t-changelog", 0), TP("t-changelog", 1), TP("t-changelog", 2)
    offsets: Counter[TP] = Counter({known: 41, empty: -1})
    offsets[new] = None  # type: ignore[assignment]  # as Faust's Recovery._add leaves it
    await seek_known_offsets(None, Seeks(), {known, new, empty}, offsets, "standby")
    assert seeks == [{known: 41, new: 0, empty: 0}]
