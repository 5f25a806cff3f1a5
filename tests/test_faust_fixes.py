"""The worker's patches to Faust's Kafka driver, checked against the real broker."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from stream.broker import EmbeddedBroker
from stream.faust_fixes import true_end_offsets


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
