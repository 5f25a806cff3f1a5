"""Four narrow patches to faust-streaming 0.15.3's aiokafka driver, applied by the worker.

1. **Fetch wait.** Faust hard-codes ``fetch_max_wait_ms=1500`` for the worker's
   consumer. A broker that holds a fetch open that long (the embedded one
   always does) adds up to 1.5 s to every event's latency, so the worker sets
   the consumer's wait to ``STREAM_FETCH_WAIT_MS`` after Faust builds it and
   before it starts.
2. **End offsets for table recovery.** Faust recovers a table by reading its
   changelog up to the end offsets that ListOffsets(LATEST) reports. The
   embedded broker answers that wrongly when a partition's last batch holds
   more than one record (first offset of the batch plus one), so recovery would
   stop early and lose the newest state. The patched lookup also fetches the
   newest record of each partition and takes the fetch response's high
   watermark when it is larger. On Apache Kafka both answers agree and the
   extra fetch costs one round trip per recovery.
3. **Seek after a rebalance.** After each rebalance Faust seeks every assigned
   partition back to its committed offset, because records fetched around the
   rebalance may have been dropped unprocessed. aiokafka's ``seek_to_committed``
   skips partitions whose committed offset is missing or 0, so such a partition
   kept the advanced position and its dropped records were never read: seen in
   the fault-injection tests as hundreds of events of a partition that had no
   commit yet skipped by its new owner. The patched seek puts those partitions
   at the position the reset policy names (the beginning, for this project).
4. **Standby offsets after a fast rebalance.** Faust notes a newly assigned
   standby changelog partition with no local offset as ``None`` and fills the
   offset in while it prepares recovery. When another assignment lands while a
   recovery is under way (the embedded broker's coordinator rebalances in quick
   succession), recovery goes on to seek the new standbys with ``None`` and the
   worker crashes (``ValueError: Offset must be a positive integer``; seen once
   in the three-worker fault-injection test). The patched seek reads such a
   partition from its start, which is what Faust does for an offset it knows
   to be empty (-1).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.tables import recovery
from faust.transport.drivers import aiokafka as driver

__all__ = ["FETCH_WAIT_MS", "install", "seek_known_offsets", "true_end_offsets"]

#: Fetch wait per Faust app id (several apps may live in one process, as in tests).
FETCH_WAIT_MS: dict[str, int] = {}


async def true_end_offsets(bootstrap: str | list[str], listed: Mapping[Any, int]) -> dict[Any, int]:
    """End offsets confirmed by the high watermark of a fetch of each partition's newest record."""
    wanted = {tp: off for tp, off in listed.items() if off and off > 0}
    result = dict(listed)
    if not wanted:
        return result
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=50)
    await consumer.start()
    try:
        tps = {TopicPartition(tp.topic, tp.partition): tp for tp in wanted}
        consumer.assign(list(tps))
        for ktp, tp in tps.items():
            consumer.seek(ktp, wanted[tp] - 1)
        pending = set(tps)
        for _ in range(20):
            if not pending:
                break
            await consumer.getmany(*pending, timeout_ms=250)
            for ktp in list(pending):
                high = consumer.highwater(ktp)
                if high is not None:
                    result[tps[ktp]] = max(wanted[tps[ktp]], high)
                    pending.discard(ktp)
    finally:
        await consumer.stop()
    return result


_faust_seek_offsets = recovery.Recovery._seek_offsets


async def seek_known_offsets(self: Any, consumer: Any, tps: Any, offsets: Any, title: str) -> None:
    """Faust's recovery seek, with an offset it never filled in (``None``) read from the start."""
    for tp in tps:
        if offsets.get(tp) is None:
            offsets[tp] = -1  # what Faust notes for a partition read from its start
    await _faust_seek_offsets(self, consumer, tps, offsets, title)


def install() -> None:
    """Apply the patches once per process."""
    thread = driver.AIOKafkaConsumerThread
    if getattr(thread, "_stream_fixes", False):
        return
    create = thread._create_worker_consumer
    highwaters = thread._highwaters

    def create_worker_consumer(self: Any, transport: Any) -> Any:
        consumer = create(self, transport)
        wait = FETCH_WAIT_MS.get(self.app.conf.id)
        if wait is not None:
            consumer._fetch_max_wait_ms = wait
        return consumer

    async def confirmed_highwaters(self: Any, partitions: Iterable[Any]) -> Mapping[Any, int]:
        listed = await highwaters(self, list(partitions))
        if self.consumer.in_transaction:
            return listed
        servers = driver.server_list(self.transport.url, self.transport.default_port)
        return await true_end_offsets(servers, listed)

    async def seek_to_committed(self: Any) -> Mapping[Any, int]:
        consumer = self._ensure_consumer()
        to_end = self.app.conf.consumer_auto_offset_reset == "latest"

        async def seek() -> Mapping[Any, int]:
            committed = await consumer.seek_to_committed()
            unset = [tp for tp, offset in committed.items() if not offset or offset <= 0]
            if unset:
                await (consumer.seek_to_end(*unset) if to_end else consumer.seek_to_beginning(*unset))
            return committed

        return await self.call_thread(seek)

    thread.seek_to_committed = seek_to_committed  # type: ignore[method-assign]
    thread._create_worker_consumer = create_worker_consumer  # type: ignore[method-assign]
    thread._highwaters = confirmed_highwaters  # type: ignore[method-assign]
    recovery.Recovery._seek_offsets = seek_known_offsets  # type: ignore[method-assign]
    thread._stream_fixes = True  # type: ignore[attr-defined]
