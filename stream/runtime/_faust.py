"""Everything that reaches into Faust's or aiokafka's internals, behind one guarded door.

The rest of ``stream`` uses Faust and aiokafka through their public API only. What
their public API cannot express lives here, written against the versions in
:data:`TESTED`; :func:`install` refuses to start on any other version, because each
piece below replaces or wraps a private method whose shape may change in a release.
Settings come from the app (:func:`install`'s arguments, kept on the app object), never
from module state, so several apps in one process (as in tests) keep their own.

1. **Whole-fetch delivery.** Faust hands records to agents one event at a time: each
   record becomes an event, goes through a queue, a stream iterator and per-event
   acknowledgement (about 0.5 ms of CPU per record here, more than the whole
   recommendation pipeline; ``Stream.take`` and ``noack`` batch the agent's view but
   not that path). For a topic given a batch handler, the worker's fetch loop
   (:func:`_drain_in_batches`, Faust's ``Consumer._drain_messages`` with the per-record
   callback replaced by one call per fetch) gathers every record a fetch returned, by
   partition, and awaits one call of the handler with them; every other topic keeps
   Faust's per-event path in the same loop. It follows upstream line for line otherwise:
   records read before are dropped, gaps are committed past, ``commit_every`` is
   honoured, the loop yields every 100 records, and a partition's read offset is set
   after its records were handed over. The handler returns an awaitable that completes
   once everything the batch produced is delivered; only then are the records
   acknowledged (their offsets committable), so no offset is committed ahead of the
   state and output it caused, and the next fetch is applied meanwhile. A batch that a
   rebalance made stale is dropped unacknowledged: the partition's next owner reads it
   again. A handler call is shielded from cancellation (Faust stops the fetch loop to
   recover tables), so a batch is never left half applied. A handler may keep some records
   to apply later (events and commands waiting for the other topic's earlier records): its
   awaitable completes with them, and they are acknowledged when the handler says so
   (:func:`acknowledge`), or never if their partition goes first. After a round that
   brought them nothing, handlers are called with an empty fetch, so what they keep can go
   on; while they keep some, a round waits a fetch wait for records, not upstream's second.
2. **Fetch wait.** Faust hard-codes ``fetch_max_wait_ms=1500`` for the worker's
   consumer; a broker that holds a fetch that long (the embedded one always does)
   adds up to 1.5 s to every event's latency. The consumer takes the app's wait.
3. **End offsets for table recovery.** Faust recovers a table by reading its changelog
   up to the end offsets ListOffsets(LATEST) reports. The embedded broker answers that
   wrongly when a partition's last batch holds more than one record, so recovery would
   stop early and lose the newest state. The lookup also fetches each partition's newest
   record and takes the fetch's high watermark when larger (:func:`true_end_offsets`);
   on Apache Kafka both agree, for one round trip per recovery.
4. **Seek after a rebalance.** Faust seeks every assigned partition back to its
   committed offset after a rebalance; aiokafka's ``seek_to_committed`` skips a partition
   whose committed offset is missing or 0, which then kept an advanced position and never
   read the records dropped around the rebalance (seen in the fault-injection tests:
   hundreds of events skipped). Such a partition is put where the reset policy says.
5. **Standby offsets after a fast rebalance.** Faust notes a new standby changelog
   partition's offset as ``None`` until recovery fills it in; an assignment landing
   mid-recovery made recovery seek ``None`` and crash the worker (``Offset must be a
   positive integer``; seen once in the three-worker fault test). Such a partition is
   read from its start (:func:`seek_known_offsets`), as Faust does for an empty one.
6. **No bare index page.** Faust serves ``/`` (``{"status": "OK"}``) to anyone in production
   mode, and no setting turns it off (the other built-in views have one, and are off). Every
   route but ``/health`` and ``/metrics`` needs a token, so the index is not served.

Also here: the one write (and delete) of a table row to a named partition (:func:`write_row`,
:func:`delete_row`), the
consumer's positions for the progress log (:func:`positions`), and a metadata refresh
(:func:`refresh_metadata`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from importlib import metadata
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.exceptions import ConsumerNotStarted
from faust.tables import recovery
from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as driver
from faust.types import TP
from faust.web import base as web_base

__all__ = [
    "TESTED",
    "BatchHandler",
    "UntestedVersion",
    "acknowledge",
    "at_end_ms",
    "check_versions",
    "delete_row",
    "holds",
    "install",
    "lag",
    "last_fetched_ms",
    "positions",
    "refresh_metadata",
    "seek_known_offsets",
    "true_end_offsets",
    "write_row",
]

log = logging.getLogger(__name__)

#: The releases every piece here was written and tested against.
TESTED = {"faust-streaming": "0.15.3", "aiokafka": "0.14.0"}
#: ``await handler({tp: records})`` applies one fetch's records of a topic, by partition, and
#: returns what completes once everything they caused is delivered. It may complete with records
#: it keeps: those are not acknowledged with the rest, the handler does it (:func:`acknowledge`).
BatchHandler = Callable[[dict[TP, list[Any]]], Awaitable[Awaitable[Any]]]
#: Upstream's loop yields to the event loop after this many records; so does the copy.
YIELD_EVERY = 100
_ATTR = "_stream_runtime"


class UntestedVersion(RuntimeError):
    """An installed faust-streaming or aiokafka is not the release this module was written for."""


@dataclass
class _AppRuntime:
    """What the patched methods read from the app they serve."""

    fetch_wait_ms: int | None
    handlers: dict[str, BatchHandler] = field(default_factory=dict)
    crashes: set[asyncio.Future[Any]] = field(default_factory=set)  # crash tasks, referenced until run
    #: Whether a handler keeps records (see :data:`BatchHandler`): the loop then polls again soon.
    keeping: Callable[[], bool] = lambda: False

    def poll_s(self) -> float:
        """How long a round waits for records: upstream's second, or a fetch wait while a handler keeps some."""
        return max(self.fetch_wait_ms or 0, 5) / 1000 if self.keeping() else 1.0


def check_versions(installed: Callable[[str], str] | None = None) -> None:
    """Raise :class:`UntestedVersion` unless the installed releases are those of :data:`TESTED`.

    ``installed``: a distribution's version by name (default: what is installed).
    """
    installed = installed or metadata.version
    wrong = []
    for name, tested in TESTED.items():
        try:
            have = installed(name)
        except metadata.PackageNotFoundError:
            have = "not installed"
        if have != tested:
            wrong.append(f"{name}: expected {tested}, found {have}")
    if wrong:
        raise UntestedVersion(
            "stream.runtime._faust patches private methods of faust-streaming and aiokafka and was written "
            f"for exactly {', '.join(f'{n}=={v}' for n, v in TESTED.items())}; "
            + "; ".join(wrong)
            + ". Install the pinned versions (pip install -e .), or port and re-test the patches."
        )


def install(
    app: faust.App,
    *,
    fetch_wait_ms: int | None = None,
    handlers: Mapping[str, BatchHandler] | None = None,
    keeping: Callable[[], bool] | None = None,
) -> None:
    """Check the versions, patch Faust's classes once per process, and give ``app`` its settings.

    ``fetch_wait_ms``: the worker consumer's fetch wait (None: Faust's); ``handlers``: a
    :data:`BatchHandler` per topic name, delivered whole fetches instead of Faust's events
    (topics given the same handler are delivered together, in one call per fetch); ``keeping``:
    whether a handler keeps records now, so that the loop's next round comes after a fetch
    wait instead of upstream's second when no records come.
    An app that was not given settings keeps every upstream behaviour but the fixes 3-5.
    """
    check_versions()
    _patch_classes()
    runtime = _AppRuntime(fetch_wait_ms, dict(handlers or {}))
    if keeping is not None:
        runtime.keeping = keeping
    setattr(app, _ATTR, runtime)


def _runtime(app: Any) -> _AppRuntime | None:
    return getattr(app, _ATTR, None)


# -- 1. whole-fetch delivery -------------------------------------------------------


async def _drain_in_batches(self: Any, fetcher: Any) -> None:  # pragma: no cover - run inside workers
    """Faust's ``Consumer._drain_messages``, with registered topics delivered a whole fetch at a time."""
    runtime = _runtime(self.app)
    if runtime is None or not runtime.handlers:
        return await _UPSTREAM["drain"](self, fetcher)
    consumer_should_stop = self._stopped.is_set
    fetcher_should_stop = fetcher._stopped.is_set
    reader = _FetchReader(self, runtime.handlers)
    try:
        while not (consumer_should_stop() or fetcher_should_stop()):
            self.diag.set_flag(faust_consumer.CONSUMER_FETCHING)
            generation = self.app.consumer_generation_id
            ait = self.getmany(timeout=runtime.poll_s())  # upstream: 1.0
            # Sleeping because sometimes getmany is called in a loop never releasing to the event loop
            await self.sleep(0)
            if not self.should_stop:
                batches = await reader.read(ait)
                await reader.hand_over(batches, generation, runtime)
            self.diag.unset_flag(faust_consumer.CONSUMER_FETCHING)
    except self.consumer_stopped_errors:
        if self.transport.app.should_stop:
            self.log.info("Broker stopped consumer, shutting down...")
            return
        raise
    except asyncio.CancelledError:
        if self.transport.app.should_stop:
            self.log.info("Consumer shutting down for user cancel.")
            return
        raise
    except Exception as exc:
        self.log.exception("Drain messages raised: %r", exc)
        raise
    finally:
        self.diag.unset_flag(faust_consumer.CONSUMER_FETCHING)


class _FetchReader:
    """One fetch loop's reading: upstream's per-record checks, records of registered topics gathered."""

    def __init__(self, consumer: Any, handlers: dict[str, BatchHandler]) -> None:
        self.consumer = consumer
        self.handlers = handlers
        self.since_yield = 0
        #: Where each partition's next batch should start, this generation (a check that never skips).
        self.next_offset: dict[TP, int] = {}
        self.generation: Any = None

    async def read(self, ait: Any) -> dict[TP, list[Any]]:
        """Upstream's handling of each record; records of registered topics are returned by partition."""
        c = self.consumer
        read_offset = c._read_offset
        seen: dict[TP, int] = {}  # a gathered record's offset counts as read for the next record's checks
        batches: dict[TP, list[Any]] = {}
        async for tp, message in ait:
            self.since_yield += 1
            if self.since_yield > YIELD_EVERY:
                await asyncio.sleep(0)
                self.since_yield = 0
            offset = message.offset
            last = seen.get(tp, read_offset[tp])
            if last is not None and offset < last:
                continue  # read before (after a seek back): upstream drops these too
            if last and offset - last > 1 and c.app.topics.acks_enabled_for(message.topic):
                await c._add_gap(tp, last + 1, offset)  # e.g. compacted away: commit past it
            await self._commit_if_due()
            if tp.topic in self.handlers:
                batches.setdefault(tp, []).append(message)
                seen[tp] = offset
            else:
                await c.wait_first(c.callback(message), c.suspend_flow.wait())
                read_offset[tp] = offset
        return batches

    async def _commit_if_due(self) -> None:
        c = self.consumer
        if c._commit_every is not None and c._n_acked >= c._commit_every:
            c._n_acked = 0
            await c.commit()

    async def hand_over(self, batches: dict[TP, list[Any]], generation: Any, runtime: _AppRuntime) -> None:
        """Call each topic's handler with its partitions' batches; acknowledge them once delivered."""
        c = self.consumer
        if generation != self.generation:
            self.next_offset.clear()  # a rebalance may legitimately move a partition forward (its new commit)
            self.generation = generation
        by_handler: dict[BatchHandler, dict[TP, list[Any]]] = {}  # topics sharing a handler: one call
        assignment = c.assignment()
        for tp, messages in batches.items():
            self._check_continuity(tp, messages)
            if c.app.consumer_generation_id != generation or tp not in assignment:
                log.info("dropped a stale batch of %d records of %s (rebalance)", len(messages), tp)
                continue
            by_handler.setdefault(self.handlers[tp.topic], {})[tp] = messages
        if not batches and c.app.consumer_generation_id == generation:
            for handler in dict.fromkeys(self.handlers.values()):
                by_handler[handler] = {}  # a round that brought nothing: what waits in a handler may go on
        for handler, fetched in by_handler.items():
            delivered = asyncio.ensure_future(await asyncio.shield(handler(fetched)))
            if c.app.consumer_generation_id == generation:  # a rebalance meanwhile seeks and sets its own
                for tp, messages in fetched.items():
                    c._read_offset[tp] = messages[-1].offset  # after the records were handed over, as upstream
            records = [m for ms in fetched.values() for m in ms]
            delivered.add_done_callback(partial(_acknowledge, c, records, runtime))

    def _check_continuity(self, tp: TP, messages: list[Any]) -> None:
        expected = self.next_offset.get(tp)
        if expected is not None and messages[0].offset > expected:
            # within one generation, reading never jumps forward: this would be records skipped
            log.error(
                "records skipped on %s: expected offset %d, the batch starts at %d (committed %s)",
                tp, expected, messages[0].offset, self.consumer._committed_offset.get(tp),
            )  # fmt: skip
        self.next_offset[tp] = messages[-1].offset + 1


def _acknowledge(consumer: Any, messages: list[Any], runtime: _AppRuntime, delivered: asyncio.Future[Any]) -> None:
    if delivered.cancelled():
        return  # the worker is stopping: the records will be read again
    exc = delivered.exception()
    if exc is not None:
        log.error("delivery failed; stopping without acknowledging %d records: %r", len(messages), exc)
        crash = asyncio.ensure_future(consumer.crash(exc))
        runtime.crashes.add(crash)
        crash.add_done_callback(runtime.crashes.discard)
        return
    kept = {id(message) for message in delivered.result() or ()}
    for message in messages:
        if id(message) not in kept:
            consumer.ack(message)


def acknowledge(app: faust.App, messages: Iterable[Any]) -> None:
    """Acknowledge records a batch handler kept (see :data:`BatchHandler`), once what they caused is delivered."""
    consumer: Any = app.consumer
    for message in messages:
        consumer.ack(message)


# -- 2. fetch wait, 3. end offsets, 4. seek after a rebalance --------------------------


def _create_worker_consumer(self: Any, transport: Any) -> Any:
    consumer = _UPSTREAM["create_worker_consumer"](self, transport)
    runtime = _runtime(self.app)
    if runtime is not None and runtime.fetch_wait_ms is not None:
        consumer._fetch_max_wait_ms = runtime.fetch_wait_ms
    return consumer


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


async def _confirmed_highwaters(self: Any, partitions: Iterable[Any]) -> Mapping[Any, int]:
    listed = await _UPSTREAM["highwaters"](self, list(partitions))
    if self.consumer.in_transaction:
        return listed
    servers = driver.server_list(self.transport.url, self.transport.default_port)
    return await true_end_offsets(servers, listed)


async def seek_to_committed(consumer: AIOKafkaConsumer, to_end: bool) -> Mapping[Any, int]:
    """aiokafka's ``seek_to_committed``, with partitions it leaves alone (no commit, or 0) put at the reset policy."""
    committed = await consumer.seek_to_committed()
    unset = [tp for tp, offset in committed.items() if not offset or offset <= 0]
    if unset:
        await (consumer.seek_to_end(*unset) if to_end else consumer.seek_to_beginning(*unset))
    return committed


async def _thread_seek_to_committed(self: Any) -> Mapping[Any, int]:
    consumer = self._ensure_consumer()
    to_end = self.app.conf.consumer_auto_offset_reset == "latest"
    return await self.call_thread(partial(seek_to_committed, consumer, to_end))


# -- 5. standby offsets ---------------------------------------------------------------


async def seek_known_offsets(self: Any, consumer: Any, tps: Any, offsets: Any, title: str) -> None:
    """Faust's recovery seek, with an offset it never filled in (``None``) read from the start."""
    for tp in tps:
        if offsets.get(tp) is None:
            offsets[tp] = -1  # what Faust notes for a partition read from its start
    await _UPSTREAM["seek_offsets"](self, consumer, tps, offsets, title)


# -- the patching, once per process ------------------------------------------------------

_thread = driver.AIOKafkaConsumerThread
_UPSTREAM: dict[str, Any] = {
    "drain": faust_consumer.Consumer._drain_messages,
    "create_worker_consumer": _thread._create_worker_consumer,
    "highwaters": _thread._highwaters,
    "seek_to_committed": _thread.seek_to_committed,
    "seek_offsets": recovery.Recovery._seek_offsets,
}


def _patch_classes() -> None:
    if faust_consumer.Consumer._drain_messages is _drain_in_batches:
        return
    web_base.Web.production_blueprints = []  # 6. no bare index page
    faust_consumer.Consumer._drain_messages = _drain_in_batches  # type: ignore[method-assign]
    _thread._create_worker_consumer = _create_worker_consumer  # type: ignore[method-assign]
    _thread._highwaters = _confirmed_highwaters  # type: ignore[method-assign]
    _thread.seek_to_committed = _thread_seek_to_committed  # type: ignore[method-assign]
    recovery.Recovery._seek_offsets = seek_known_offsets  # type: ignore[method-assign]


# -- the other internals the runtime needs --------------------------------------------------


async def write_row(app: faust.App, table: Any, partition: int, key: bytes, value: bytes) -> asyncio.Future[Any]:
    """Write a table row to a named changelog partition; returns the delivery future.

    ``table[key] = value`` would take the partition from Faust's "current event", which a
    whole-fetch batch does not have; the write names the events' partition instead, so the
    state moves with its partition on a rebalance.
    """
    table.data[key] = value
    topic = table.changelog_topic.get_topic_name()
    delivered: Any = await app.producer.send(topic, key, value, partition, None, None)
    return delivered  # a Future: Faust's stub says Awaitable


async def delete_row(app: faust.App, table: Any, partition: int, key: bytes) -> asyncio.Future[Any]:
    """Delete a table row: a tombstone on the named changelog partition; returns the delivery future."""
    table.data.pop(key, None)
    topic = table.changelog_topic.get_topic_name()
    delivered: Any = await app.producer.send(topic, key, None, partition, None, None)
    return delivered


def last_fetched_ms(app: faust.App, topic: str, partition: int) -> int | None:
    """When (epoch ms) the worker's consumer read the newest fetch answer for the partition (None: none yet)."""
    state = _partition_state(app, topic, partition)
    return None if state is None else state.timestamp


def at_end_ms(app: faust.App, topic: str, partition: int) -> int | None:
    """When (epoch ms) the newest fetch answer for the partition was read, if it showed the partition
    read to its end: every record the broker held then was handed over. None when it did not, or
    when not known (not fetched yet, no valid position, or not assigned).

    Only sound between fetch rounds (in a handler): the consumer's position is where the records
    handed over end, except while a round's records are being gathered.
    """
    state = _partition_state(app, topic, partition)
    if state is None:
        return None
    answered = state.timestamp  # before the high watermark: a newer answer only makes it stricter
    high = state.highwater
    if answered is None or high is None or not state.has_valid_position or state.position < high:
        return None
    return int(answered)


def holds(app: faust.App, topic: str, partition: int) -> bool:
    """Whether this worker's consumer is assigned ``partition`` of ``topic`` now."""
    return _partition_state(app, topic, partition) is not None


def _partition_state(app: faust.App, topic: str, partition: int) -> Any:
    """aiokafka's state of one assigned partition of the worker's consumer (None: not assigned)."""
    try:
        consumer = app.consumer._thread._ensure_consumer()  # type: ignore[attr-defined]
    except (ConsumerNotStarted, AttributeError):
        return None
    tp = TopicPartition(topic, partition)
    if not consumer._subscription.is_assigned(tp):
        return None
    return consumer._subscription.subscription.assignment.state_value(tp)


def positions(app: faust.App, topic: str) -> str:
    """Each held partition of ``topic`` as ``partition@read/committed`` (``paused`` when so), for the progress log."""
    consumer: Any = app.consumer
    held = sorted((tp for tp in consumer.assignment() if tp.topic == topic), key=lambda tp: tp.partition)
    active = consumer._get_active_partitions()
    return ", ".join(
        f"{tp.partition}@{consumer._read_offset.get(tp)}"
        f"/{consumer._committed_offset.get(tp)}{'' if tp in active else ' paused'}"
        for tp in held
    )


def lag(app: faust.App, topic: str) -> dict[int, int]:
    """Records of ``topic`` not yet read, per held partition (the fetches' high watermark less the read offset)."""
    consumer: Any = app.consumer
    out: dict[int, int] = {}
    try:
        held = consumer.assignment()
    except ConsumerNotStarted:  # scraped before the worker joined its group
        return out
    for tp in held:
        if tp.topic != topic:
            continue
        high = consumer.highwater(tp)
        read = consumer._read_offset.get(tp)
        if high is not None:
            out[tp.partition] = max(0, high - (read + 1 if read is not None else 0))
    return out


async def refresh_metadata(consumer: AIOKafkaConsumer) -> None:
    """Ask the cluster for fresh metadata now (aiokafka refreshes on its own schedule otherwise)."""
    await consumer._client.force_metadata_update()
