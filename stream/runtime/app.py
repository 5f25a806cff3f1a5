"""The Faust application: topics, tables and thin agents around :mod:`stream.processing.step`.

Shape of a worker::

    playback-events --(whole fetches, per partition)--> process-events --> recommendations
          |                                        |   |
          |                       profiles table <-+   +-> models table (checkpoints)
          +--(rejects)--> playback-events-dlq
    catalog --(every partition, every worker)--> Catalog (in memory, matrices)
    catalog / user-commands --(validate)--> *-dlq

State lives in two changelog-backed tables, both co-partitioned with
``playback-events``: ``profiles`` (one row per viewer) and ``models`` (one
row per partition: what that partition's viewers taught the model). Writes
name the partition explicitly: each write goes to the changelog partition of
the events it reflects, so state moves with its partition on a rebalance.

Playback events do not go through Faust's per-event streams: the worker's
consumer hands ``process-events`` every record a fetch returned for one
partition at once (:mod:`stream.runtime._faust`), and acknowledges them only after
their state, snapshots and dead letters are delivered to the broker.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import socket
import time
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import faust
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from stream.contracts import snapshots
from stream.contracts.topics import (
    CATALOG,
    COMMANDS,
    ERASE_WITHIN_A_DAY,
    EVENTS,
    MODEL,
    MODEL_SNAPSHOTS,
    RECOMMENDATIONS,
    load_specs,
)
from stream.contracts.validation import InvalidMessage, decode_catalog, decode_command
from stream.learning.catalog import Catalog
from stream.learning.model import PartitionModel
from stream.learning.shared import WINDOW, SharedModel, delta_document
from stream.processing.refresh import REFRESH_EVERY_S, REFRESH_MAX, REFRESH_PASS, SEED_CHUNK, Refresher
from stream.processing.step import (
    BatchResult,
    Other,
    Plan,
    Processor,
    RawMessage,
    dead_letter,
    due,
    in_order,
    split_held,
)
from stream.runtime import _faust, api
from stream.runtime.kafka import partitions_of, read_to_end
from stream.runtime.metrics import CONTENT_TYPE, Metrics, gauge
from stream.runtime.tokens import TokenStore
from stream.settings import Settings

__all__ = ["StreamApp", "create_app"]

log = logging.getLogger("stream")

#: An HTTP reply: status, JSON body, extra headers.
Reply = tuple[int, dict[str, Any], dict[str, str] | None]


def raw() -> faust.Schema:
    """Keys and values stay bytes: the processor decodes and validates them itself.

    A new schema for each topic: Faust updates a schema it is given in place, so
    one schema shared with a table took the table's JSON serializers, and every
    topic sharing it then failed to decode its (non-JSON) keys. Tables get raw
    bytes from ``key_type=bytes, value_type=bytes``.
    """
    return faust.Schema(key_serializer="raw", value_serializer="raw")


class StreamApp:
    """A configured Faust app with its agents; ``.app`` is the :class:`faust.App`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = s = settings
        self.app = app = faust.App(
            s.faust_id,
            broker=[f"kafka://{host}" for host in s.bootstrap.split(",")],
            store="memory://",
            datadir=str(s.data_dir),
            topic_partitions=s.partitions,
            topic_replication_factor=s.replication,
            web_enabled=s.web_port > 0,
            web_host=s.web_host,
            web_port=s.web_port or 6066,
            web_bind=s.web_host,
            # where peers forward a request for a viewer this worker owns (a wildcard bind is no address)
            canonical_url=f"http://{_advertised(s.web_host)}:{s.web_port or 6066}",
            # Faust's built-in views would serve the partition map and the tables' rows (viewers'
            # profiles) to anyone who asks: off. Only "/" remains, a bare {"status": "OK"}.
            web_router_enabled=False,
            web_tables_enabled=False,
            web_graph_enabled=False,
            web_stats_enabled=False,
            web_metrics_enabled=False,
            broker_session_timeout=s.session_timeout_s,
            broker_heartbeat_interval=s.heartbeat_s,
            broker_rebalance_timeout=s.session_timeout_s,
            broker_request_timeout=max(90.0, s.session_timeout_s * 2),
            consumer_auto_offset_reset="earliest",
            consumer_max_fetch_size=s.fetch_max_bytes,
            producer_linger_ms=1,
            producer_acks=-1,
            stream_wait_empty=False,
            logging_config=None,
        )
        specs = load_specs(s)
        self.specs = specs
        self.events = app.topic(s.topic(EVENTS), schema=raw(), partitions=specs[EVENTS].partitions)
        self.catalog_topic = app.topic(s.topic(CATALOG), schema=raw(), partitions=specs[CATALOG].partitions)
        self.commands = app.topic(s.topic(COMMANDS), schema=raw(), partitions=specs[COMMANDS].partitions)
        self.recommendations_name = s.topic(RECOMMENDATIONS)
        erase = dict(ERASE_WITHIN_A_DAY)  # a profile overwritten or deleted is compacted away within a day
        self.profiles = app.Table(
            "profiles", default=None, key_type=bytes, value_type=bytes, partitions=s.partitions,
            extra_topic_configs=erase,
        )  # fmt: skip
        self.models = app.Table("models", default=None, key_type=bytes, value_type=bytes, partitions=s.partitions)
        # Each viewer's latest snapshot, for GET .../recommendations: the compacted recommendations
        # topic is this table's changelog, so a snapshot is written once and a worker recovers the
        # snapshots of the partitions it is given from the topic consumers read.
        self.snapshots = app.Table(
            "snapshots", default=None, key_type=bytes, value_type=bytes, partitions=s.partitions,
            changelog_topic=app.topic(
                self.recommendations_name, schema=raw(), partitions=specs[RECOMMENDATIONS].partitions
            ),
        )  # fmt: skip
        # Viewers forgotten: a keyed hash of the id -> where its partition's events stood (see _erase).
        self.forgotten = app.Table(
            "forgotten", default=None, key_type=bytes, value_type=bytes, partitions=s.partitions,
            extra_topic_configs=erase,
        )  # fmt: skip
        self._forget_key = hashlib.blake2b(s.faust_id.encode(), digest_size=32).digest()
        self._forget_ttl_ms = specs[EVENTS].retention_ms
        # Per events partition: the newest offset processed (where a command without events before it
        # in its batch stands); dropped when the partition goes.
        self._events_through: dict[int, int] = {}
        # Per (topic, partition) of events and commands: the newest record timestamp read; per
        # partition, the events and commands waiting for the other topic's records published before
        # them (see _align). Dropped when the partition goes.
        self._newest_ms: dict[tuple[str, int], int] = {}
        self._waiting: dict[int, _Waiting] = {}
        # Viewers with messages held for the catalog (how many held plans hold them), and the
        # newest held plan's "applied" future: held plans are applied in the order they were held.
        self._held: dict[str, int] = {}
        self._held_applied: asyncio.Future[None] | None = None

        self.catalog = Catalog()
        self.catalog_ready = asyncio.Event()
        #: Wall-clock ms before which everything appended to the catalog topic is in ``catalog``.
        self._catalog_synced_ms = 0.0
        self._catalog_round = asyncio.Event()  # set (and replaced) after each round of the catalog reader
        # The deployment-wide model (trend, co-watch): every worker's replica folds the deltas of the model topic.
        self.shared = SharedModel()
        self.model_ready = asyncio.Event()
        # model-snapshots: the newest one written here, and the chunk keys its manifest made obsolete
        self._snapshot_as_of = -1
        self._snapshot_obsolete: list[bytes] = []
        self._snapshot_writer = False  # this worker wrote the last snapshot it knows of
        # held by the model follower while it applies a fetch's records, and by the snapshot writer while a
        # thread reads the replica: no delta changes it meanwhile (nothing else in a worker does)
        self._replica_lock = asyncio.Lock()
        self.processor = Processor(
            self.catalog, s.top_k, s.max_event_bytes, s.half_life_days, s.diversity, s.exploration,
            commands_topic=s.topic(COMMANDS), shared=self.shared, share_deltas=True,
        )  # fmt: skip
        # What each assigned partition has learned; the ``models`` table is its durable copy.
        self._partition_models: dict[int, PartitionModel] = {}
        self._checkpointed: dict[int, float] = {}
        # Per partition: resolved when a model checkpoint covering the batches applied so far is delivered.
        self._checkpoint_waiters: dict[int, asyncio.Future[None]] = {}
        self.metrics = metrics = Metrics()
        metrics.watch(self._gauges)
        self.counters = {
            "applied": 0,
            "duplicates": 0,
            "dead_letters": 0,
            "snapshots": 0,
            "batches": 0,
            "failed": 0,
            "unranked": 0,
            "catalog_waits": 0,
            "held_batches": 0,
            "deltas_applied": 0,
            "commands": 0,
            "ignored": 0,
            "forgotten": 0,
            "snapshots_written": 0,
            "refreshed": 0,
        }
        # Aged lists come up for a refresh by event time: the newest event applied here (never ahead of the wall clock).
        self.refresher = Refresher.of(s)
        self._clock_ms = 0
        # Partitions whose viewers' schedule was taken from the snapshots held (see _seed), and those waiting for it.
        self._seeded: set[int] = set()
        self._unseeded: set[int] = set()
        #: The snapshot the replica was loaded from: its id and model-topic offset (None: none).
        self.snapshot_loaded: dict[str, Any] | None = None

        self._batch_lock = asyncio.Lock()  # a revocation waits for the batch being applied
        self._in_flight: set[asyncio.Future[Any]] = set()  # batches applied, not yet delivered
        app.topics.add(self.events)
        app.topics.add(self.commands)
        # a viewer's commands and events are applied together, in the order they were published
        handlers = {topic.get_topic_name(): self._process_fetch for topic in (self.events, self.commands)}
        _faust.install(app, fetch_wait_ms=s.fetch_wait_ms, handlers=handlers, keeping=lambda: bool(self._waiting))
        app.agent(self.catalog_topic, name="check-catalog")(self._check_catalog)
        app.task(self._follow_catalog)
        app.task(self._follow_model)
        app.timer(interval=3600.0)(self._expire_forget_marks)
        app.timer(interval=s.cohort_sync_s)(self._publish_cohorts)
        if s.model_snapshot_s > 0:
            app.timer(interval=s.model_snapshot_s)(self._write_model_snapshot)
        app.task(self._checkpoint_idle_partitions)
        if self.refresher is not None:
            app.task(self._refresh_aged)
        app.task(self._report_progress)
        app.on_partitions_revoked.connect(self._on_revoked)  # type: ignore[arg-type]  # faust's stub misses async receivers

        @app.page("/health")
        async def health(web: Any, request: Any) -> Any:
            metrics.http.labels(route="/health", status="200").inc()
            return web.json(self.health())

        @app.page("/metrics")
        async def exposition(web: Any, request: Any) -> Any:
            metrics.http.labels(route="/metrics", status="200").inc()
            return web.bytes(metrics.exposition(), content_type=CONTENT_TYPE)

        self.tokens = TokenStore(s.api_tokens_file)
        api.register(self)

    # -- the event agent -----------------------------------------------------------

    def _model_for(self, partition: int) -> PartitionModel:
        model = self._partition_models.get(partition)
        if model is None:
            raw = self.models.data.get(str(partition).encode())
            model = PartitionModel.from_state(orjson.loads(raw)) if raw else PartitionModel()
            model.shared = self.shared  # the deployment's, in this worker's replica
            self._partition_models[partition] = model
            self._checkpointed[partition] = time.monotonic()
        return model

    def model_of_viewer(self, viewer: str) -> PartitionModel:
        """The model of the viewer's partition (keys are partitioned as Kafka's default partitioner does)."""
        tp = self.app.producer.key_partition(self.events.get_topic_name(), viewer.encode())
        return self._model_for(tp.partition)

    async def _write(self, table: faust.types.TableT, partition: int, key: bytes, value: bytes) -> asyncio.Future[Any]:
        """Write a state row to its events' partition; returns the delivery future."""
        return await _faust.write_row(self.app, table, partition, key, value)

    async def _send(self, topic: str, key: bytes | None, value: bytes | None, partition: int | None = None) -> Any:
        return await self.app.producer.send(topic, key, value, partition, None, None)

    async def _process_fetch(self, fetched: dict[Any, list[Any]]) -> asyncio.Future[Any]:
        """The ``process-events`` handler: apply one fetch's events and commands, by partition.

        A partition's commands and events are merged in the order they were published
        (:func:`in_order`); a record of either waits while the other topic may hold unread
        records published before it (:meth:`_align`). Partitions' batches are processed together
        (one ranking pass) up to ``STREAM_BATCH_MAX`` messages at a time. Returns a future that
        completes when all they produced is delivered, and the model checkpoints covering them
        too, with the records of the fetch that wait: those are acknowledged once they are
        applied and delivered.
        """
        if not fetched and not self._waiting:
            return _resolved([])  # a round that brought nothing, and nothing waits
        await self.catalog_ready.wait()
        await self.model_ready.wait()
        size = self.settings.batch_max
        events_topic = self.events.get_topic_name()
        events = {tp.partition: [(_raw(m), m) for m in ms] for tp, ms in fetched.items() if tp.topic == events_topic}
        commands = {tp.partition: [(_raw(m), m) for m in ms] for tp, ms in fetched.items() if tp.topic != events_topic}
        pending: list[Any] = []
        async with self._batch_lock:
            merged, released, kept = self._align(events, commands)
            chunks = [(p, ms[i : i + size]) for p, ms in merged.items() for i in range(0, len(ms), size)]
            group: list[tuple[int, list[RawMessage]]] = []
            for chunk in chunks:
                if any(chunk[0] == partition for partition, _ in group):
                    # a partition's next chunk loads what its previous one wrote: not in the same group
                    await self._process_group(group, pending)
                    group = []
                group.append(chunk)
                if sum(len(c) for _, c in group) >= size:
                    await self._process_group(group, pending)
                    group = []
            if group:
                await self._process_group(group, pending)
            for partition in merged:
                # The model is state too: offsets are committable once a checkpoint reflecting them is delivered.
                pending.append(self._covered_by_checkpoint(partition))
                if time.monotonic() - self._checkpointed.get(partition, 0.0) >= self.settings.checkpoint_s:
                    await self._checkpoint(partition)
        applied = asyncio.gather(*pending)
        if released:  # records that waited: acknowledged once delivered (a failure crashes the worker via this fetch)
            applied.add_done_callback(partial(_acknowledge_when_delivered, self.app, released))
        delivered = asyncio.ensure_future(_then(applied, kept))
        self._in_flight.add(delivered)
        delivered.add_done_callback(self._in_flight.discard)
        return delivered

    def _align(
        self, events: dict[int, list[tuple[RawMessage, Any]]], commands: dict[int, list[tuple[RawMessage, Any]]]
    ) -> tuple[dict[int, list[RawMessage]], list[Any], list[Any]]:
        """Each partition's events and commands that are due now, merged in the order they were published.

        A record goes once the other topic's partition can hold no unread record published before
        it (:func:`due`): a later-stamped record of it was read, or a fetch answered after this
        record's showed it read to its end. Until then it waits in ``_waiting``, with every later
        record of its topic and partition. Each message comes with its record. Returns the merged
        messages by partition, the records that waited and go now, and those of this fetch that wait.
        """
        events_topic, commands_topic = self.events.get_topic_name(), self.commands.get_topic_name()
        merged: dict[int, list[RawMessage]] = {}
        released: list[Any] = []
        kept: list[Any] = []
        for p in sorted({*events, *commands, *self._waiting}):
            waiting = self._waiting.pop(p, None) or _Waiting()
            queued_events = [*waiting.events, *self._read(events_topic, p, events.get(p, []))]
            queued_commands = [*waiting.commands, *self._read(commands_topic, p, commands.get(p, []))]
            n_events = due([(raw, at) for raw, _, at in queued_events], self._other(commands_topic, p), True)
            n_commands = due([(raw, at) for raw, _, at in queued_commands], self._other(events_topic, p), False)
            if n_events < len(queued_events) or n_commands < len(queued_commands):
                self._waiting[p] = _Waiting(queued_events[n_events:], queued_commands[n_commands:])
            for queue, n, old in (
                (queued_events, n_events, waiting.events),
                (queued_commands, n_commands, waiting.commands),
            ):
                released += [record for _, record, _ in old[:n]]  # the waiting ones lead their queue
                kept += [record for _, record, _ in queue[max(n, len(old)) :]]
            ready = in_order(
                [m for m, _, _ in queued_events[:n_events]], [m for m, _, _ in queued_commands[:n_commands]]
            )
            if ready:
                merged[p] = ready
        return merged, released, kept

    def _read(self, topic: str, partition: int, new: list[tuple[RawMessage, Any]]) -> list[_Queued]:
        """A fetch's records of one topic's partition, each with when its fetch was answered; notes the newest stamp."""
        if not new:
            return []
        newest = max(raw.timestamp_ms or 0 for raw, _ in new)
        self._newest_ms[topic, partition] = max(newest, self._newest_ms.get((topic, partition), 0))
        answered = _faust.last_fetched_ms(self.app, topic, partition)
        at = answered if answered is not None else int(time.time() * 1000)
        return [(raw, record, at) for raw, record in new]

    def _other(self, topic: str, partition: int) -> Other:
        """What ``topic``'s partition has shown, for the records of the other topic waiting on it."""
        return Other(self._newest_ms.get((topic, partition)), _faust.at_end_ms(self.app, topic, partition))

    async def _process_group(self, group: list[tuple[int, list[RawMessage]]], pending: list[Any]) -> None:
        """Plan, split off what must wait for the catalog reader, apply the rest now.

        Events naming titles this worker's catalog lacks (and every later message of their
        viewers) are held and applied in the background once the catalog reader has caught up
        (:meth:`_apply_held`); every other viewer's events go on at once. Their offsets are
        acknowledged only when the held ones are applied and delivered too.
        """
        plan = self.processor.plan(group)
        now, later = split_held(plan, self.catalog, set(self._held))
        if now.batches:
            await self._apply(now, pending, self._events_through)
            for partition, messages, _ in now.batches:
                events = [m.offset for m in messages if m.topic == self.events.get_topic_name()]
                if events:
                    self._events_through[partition] = max(events[-1], self._events_through.get(partition, -1))
        if later.batches:
            pending.append(self._hold(later))
        self.counters["batches"] += 1
        # Let the producer send these snapshots now: the next group would hold the loop.
        await asyncio.sleep(0)

    async def _apply(self, plan: Plan, pending: list[Any], positions: dict[int, int]) -> None:
        """Prefetch (stored profiles, forget marks), step, write."""
        stored = self.profiles.data
        rows = {user_id: stored.get(user_id.encode()) for user_id in plan.viewers}
        forgotten: dict[str, tuple[int, int]] = {}
        for user_id in (u for u, row in rows.items() if row is None):
            mark = self.forgotten.data.get(self._pseudonym(user_id))
            if mark is not None:
                through, command = orjson.loads(mark)[:2]
                forgotten[user_id] = (through, command)
        models = {partition: self._model_for(partition) for partition, _, _ in plan.batches}
        results = self.processor.step(plan, rows, models, None, positions, forgotten)
        newest = {msg.key: msg.timestamp_ms for _, messages, _ in plan.batches for msg in messages}  # offset order
        self.metrics.batch_events.observe(sum(len(messages) for _, messages, _ in plan.batches))
        for (partition, _, _), result in zip(plan.batches, results, strict=True):
            await self._write_result(partition, result, newest, pending)

    def _hold(self, plan: Plan) -> asyncio.Future[Any]:
        """Apply ``plan`` once the catalog reader has caught up, after the plans held before it."""
        viewers = plan.viewers
        for viewer in viewers:
            self._held[viewer] = self._held.get(viewer, 0) + 1
        events = self.events.get_topic_name()
        for partition, messages, _ in plan.batches:
            self._model_for(partition).hold(m.offset for m in messages if m.topic == events)
        previous, applied = self._held_applied, asyncio.get_running_loop().create_future()
        self._held_applied = applied
        self.counters["held_batches"] += 1
        return asyncio.ensure_future(self._apply_held(plan, previous, applied, viewers))

    async def _apply_held(
        self, plan: Plan, previous: asyncio.Future[None] | None, applied: asyncio.Future[None], viewers: set[str]
    ) -> None:
        pending: list[Any] = []
        try:
            missing = plan.unknown_titles(self.catalog)
            if missing:
                await self._await_catalog(missing)  # whatever is still unknown then is dead-lettered
            if previous is not None:
                await previous
            async with self._batch_lock:
                await self._apply(plan, pending, {})
                pending += [self._covered_by_checkpoint(partition) for partition, _, _ in plan.batches]
        finally:
            applied.set_result(None)
            for viewer in viewers:
                self._held[viewer] -= 1
                if not self._held[viewer]:
                    del self._held[viewer]
        await asyncio.gather(*pending)

    async def _write_result(
        self,
        partition: int,
        result: BatchResult,
        newest: dict[bytes | None, int | None],
        pending: list[Any],
        ranked_ms: int | None = None,
    ) -> None:
        """Send what one partition's batch produced: erasures first, then rows, snapshots, dead letters.
        ``ranked_ms``: the event time refreshed lists were ranked at (None: the lists of events)."""
        m = self.metrics
        for user_id, (through, command) in result.erased.items():
            pending.extend(await self._erase(partition, user_id, through, command))
        for user_id, profile in result.profiles.items():
            pending.append(await self._write(self.profiles, partition, user_id.encode(), profile.dumps()))
        for user_id, snapshot in result.snapshots:
            pending.append(await self._write(self.snapshots, partition, user_id.encode(), snapshot))
            stamp = newest.get(user_id.encode())
            if stamp is not None:
                m.latency.observe(max(0.0, time.time() - stamp / 1000))
        self._schedule_refresh(partition, result, ranked_ms)
        for key, record in result.dead_letters:
            letter = orjson.loads(record)
            pending.append(await self._send(letter["topic"] + "-dlq", key, record))
            m.dead_letter(letter["topic"], letter["error"])
        for d in result.deltas:
            delta = orjson.dumps(delta_document(partition, d))
            pending.append(await self._send(self.settings.topic(MODEL), str(partition).encode(), delta, 0))
        for kind, n in result.commands.items():
            m.commands.labels(kind=kind).inc(n)
        c = self.counters
        c["applied"] += result.applied
        c["duplicates"] += result.duplicates
        c["dead_letters"] += len(result.dead_letters)
        c["snapshots"] += len(result.snapshots)
        c["failed"] += result.failed
        c["unranked"] += result.unranked
        c["commands"] += sum(result.commands.values())
        c["ignored"] += result.ignored
        c["forgotten"] += len(result.erased)
        m.applied.inc(result.applied)
        m.duplicates.inc(result.duplicates)
        m.snapshots.inc(len(result.snapshots))
        m.failed.inc(result.failed)
        m.unranked.inc(result.unranked)
        m.ignored.inc(result.ignored)

    def _schedule_refresh(self, partition: int, result: BatchResult, ranked_ms: int | None) -> None:
        """Advance the clock to the batch's newest event, and put each personalised list on the refresh schedule."""
        if self.refresher is not None:
            self._clock_ms = max(self._clock_ms, self.refresher.note(partition, result, ranked_ms))
            if partition not in self._seeded:
                self._seeded.add(partition)
                self._unseeded.add(partition)

    async def _refresh_aged(self) -> None:
        """Every :data:`REFRESH_EVERY_S`, re-rank the lists that aged (:mod:`stream.processing.refresh`): at most
        :data:`REFRESH_MAX` a round, :data:`REFRESH_PASS` of a partition in one ranking pass, between batches."""
        refresher = self.refresher
        assert refresher is not None
        while True:
            await asyncio.sleep(REFRESH_EVERY_S)
            try:
                if self._unseeded:
                    await self._seed(set(self._unseeded))
                await self._refresh_round(refresher, min(self._clock_ms, int(time.time() * 1000)))
            except Exception:  # a defect: the lists wait for the next round, or their viewers' next events
                log.exception("refreshing aged lists failed")

    async def _refresh_round(self, refresher: Refresher, clock: int) -> None:
        budget = REFRESH_MAX
        for partition in refresher.partitions():
            while budget > 0:
                async with self._batch_lock:
                    if partition not in self._partition_models:
                        break  # revoked meanwhile (its schedule is dropped)
                    due = refresher.due(partition, clock, min(budget, REFRESH_PASS))
                    rows = {u: row for u in due if (row := self.profiles.data.get(u.encode())) is not None}
                    if rows:
                        await self._refresh(partition, rows, clock)
                budget -= len(due)
                if len(due) < REFRESH_PASS:
                    break
                await asyncio.sleep(0)  # let the events' batches in

    async def _seed(self, partitions: set[int]) -> None:
        """Schedule the viewers of partitions newly held from their snapshots (the recommendations topic is
        the snapshots table's changelog, recovered with the partition), :data:`SEED_CHUNK` at a time."""
        self._unseeded -= partitions
        refresher, stored = self.refresher, self.snapshots.data
        assert refresher is not None
        every = list(range(self.specs[EVENTS].partitions))
        partitioner = DefaultPartitioner()  # Kafka's, as producers key viewers (see "Running on Apache Kafka")
        keys = list(stored.keys())
        for i in range(0, len(keys), SEED_CHUNK):
            for key in keys[i : i + SEED_CHUNK]:
                p = partitioner(key, every, every)
                raw = stored.get(key)
                if p in partitions and p in self._partition_models and raw is not None:
                    try:
                        refresher.seed(p, raw)
                    except (ValueError, KeyError, TypeError):  # not a snapshot of ours: left alone
                        continue
            await asyncio.sleep(0)

    async def _refresh(self, partition: int, rows: dict[str, bytes], clock: int) -> None:
        model = self._partition_models[partition]
        try:
            result = self.processor.refresh(rows, model, clock, int(time.time() * 1000))
        except Exception:  # a defect: these viewers keep their lists until their next event
            log.exception("refreshing %d lists of partition %d failed", len(rows), partition)
            return
        pending: list[Any] = []
        await self._write_result(partition, result, {}, pending, ranked_ms=clock)
        self.counters["refreshed"] += len(result.snapshots)
        self.metrics.refreshed.inc(len(result.snapshots))
        delivered = asyncio.ensure_future(asyncio.gather(*pending))
        self._in_flight.add(delivered)
        delivered.add_done_callback(self._in_flight.discard)

    async def _erase(self, partition: int, user_id: str, through: int, command: int) -> list[Any]:
        """Forget a viewer: tombstones for its profile and its snapshot, and a mark for its partition.

        The mark, under a keyed hash of the id (not the id), holds only where the partition's
        events and commands stood at the ``forget``: a redelivery or a replay of what the viewer
        published before is recognised and ignored. It is dropped once the events topic's
        retention has passed (:meth:`_expire_forget_marks`): nothing older can be read again.
        """
        key = user_id.encode()
        mark = orjson.dumps([through, command, int(time.time() * 1000), partition])
        return [
            await _faust.delete_row(self.app, self.profiles, partition, key),
            await _faust.delete_row(self.app, self.snapshots, partition, key),
            await self._write(self.forgotten, partition, self._pseudonym(user_id), mark),
        ]

    def _pseudonym(self, user_id: str) -> bytes:
        return hashlib.blake2b(user_id.encode(), key=self._forget_key, digest_size=16).digest()

    async def _publish_cohorts(self) -> None:
        """Publish this replica's cohorts' state to the model topic for every replica to adopt (see
        :meth:`SharedModel.cohort_state`): a worker that starts then holds the same cohort centres as the
        rest within its read-back window. Not before the replica is loaded."""
        if not self.model_ready.is_set():
            return
        state = orjson.dumps({"cohorts": self.shared.cohort_state()})
        await self._send(self.settings.topic(MODEL), b"cohorts", state, 0)

    async def _expire_forget_marks(self) -> None:
        """Drop forget marks older than the events topic's retention (their events are gone from Kafka)."""
        if self._forget_ttl_ms <= 0:
            return  # events kept forever: so are the marks
        oldest = time.time() * 1000 - self._forget_ttl_ms
        async with self._batch_lock:
            for key, raw in list(self.forgotten.data.items()):
                _, _, at, partition = orjson.loads(raw)
                if at < oldest:
                    await _faust.delete_row(self.app, self.forgotten, partition, key)

    def _covered_by_checkpoint(self, partition: int) -> asyncio.Future[None]:
        waiter = self._checkpoint_waiters.get(partition)
        if waiter is None:
            waiter = self._checkpoint_waiters[partition] = asyncio.get_running_loop().create_future()
        return waiter

    async def _checkpoint(self, partition: int) -> Any:
        """Write the partition's model (with the offset it reflects); returns the delivery future."""
        model = self._partition_models[partition]
        waiter = self._checkpoint_waiters.pop(partition, None)
        self._checkpointed[partition] = time.monotonic()
        state = orjson.dumps(model.to_state())
        delivered = await self._write(self.models, partition, str(partition).encode(), state)
        if waiter is not None:
            delivered.add_done_callback(partial(_settle, waiter))
        return delivered

    async def _report_progress(self) -> None:
        """Every ``STREAM_PROGRESS_S``: the events partitions held, where reading is, and the counters."""
        period = self.settings.progress_s
        if period <= 0:
            return
        topic = self.events.get_topic_name()
        while True:
            await asyncio.sleep(period)
            parts = _faust.positions(self.app, topic)
            log.info("progress: partitions (read/committed) %s; %s", parts or "none", self.counters)

    async def _checkpoint_idle_partitions(self) -> None:
        """Checkpoint partitions whose applied batches wait for one, when no new batch brings it."""
        period = self.settings.checkpoint_s
        while True:
            await asyncio.sleep(min(1.0, period / 2))
            now = time.monotonic()
            due = [p for p in self._checkpoint_waiters if now - self._checkpointed.get(p, 0.0) >= period]
            if due:
                async with self._batch_lock:
                    for partition in due:
                        if partition in self._partition_models and partition in self._checkpoint_waiters:
                            await self._checkpoint(partition)

    async def _on_revoked(self, app: faust.App, revoked: set[Any], **kwargs: Any) -> None:
        if self._held_applied is not None:
            await self._held_applied  # plans held for the catalog are applied first (each takes the lock)
        async with self._batch_lock:  # the batch being applied finishes first
            for tp in revoked:
                if tp.topic == self.events.get_topic_name() and self._waiting.pop(tp.partition, None):
                    # events and commands not applied yet, nor acknowledged: the partition's next owner reads them
                    log.info("events and commands waiting on partition %d are left to its next owner", tp.partition)
            pending = [
                await self._checkpoint(tp.partition)
                for tp in revoked
                if tp.topic == self.events.get_topic_name() and tp.partition in self._partition_models
            ]
            # and everything applied is delivered before the partitions go
            await asyncio.gather(*pending, *self._in_flight, return_exceptions=True)
            for tp in revoked:
                if tp.topic == self.events.get_topic_name():
                    self._partition_models.pop(tp.partition, None)
                    self._events_through.pop(tp.partition, None)
                    for topic in (self.events.get_topic_name(), self.commands.get_topic_name()):
                        self._newest_ms.pop((topic, tp.partition), None)
                    if self.refresher is not None:
                        self.refresher.drop([tp.partition])
                        self._seeded.discard(tp.partition)
                        self._unseeded.discard(tp.partition)

    # -- catalog: a global table every worker reads whole -------------------------

    async def _follow_catalog(self) -> None:
        """Read every partition of the catalog topic from the start, then follow it.

        Each worker needs the whole catalog, so this is a global table. Faust's
        GlobalTable over an external topic stalls the group's assignment in
        faust-streaming 0.15.3, so the table is read with a plain consumer
        (no group) into :class:`Catalog`. "Caught up" is judged from each fetch's
        high watermark, not from ListOffsets, which the embedded broker answers
        wrongly when the last batch holds more than one record.
        """
        s = self.settings
        topic = s.topic(CATALOG)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=s.bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=s.fetch_wait_ms,
            client_id=f"{s.faust_id}-catalog",
        )
        await consumer.start()
        try:
            tps = await partitions_of(consumer, topic)
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            while True:
                batches = await consumer.getmany(timeout_ms=50, max_records=5000)
                for records in batches.values():
                    for record in records:
                        self.catalog.apply(
                            record.key, record.value
                        )  # invalid ones: the check-catalog agent reports them
                self._catalog_synced(consumer, tps, [await consumer.position(tp) for tp in tps])
                if not self.catalog_ready.is_set() and self._catalog_synced_ms > 0:
                    log.info("catalog loaded: %d titles", len(self.catalog))
                    self.catalog_ready.set()
        finally:
            await consumer.stop()

    async def _follow_model(self) -> None:
        """Read the model topic into this worker's replica of the deployment-wide model, then follow it.

        A worker that starts takes the newest snapshot of ``model-snapshots`` (:meth:`_load_snapshot`)
        and reads the model topic after it. Without one (or one older than what the model topic
        still holds) it reads only the last :data:`WINDOW` deltas: older ones weigh little
        (:mod:`stream.learning.shared`), so it is ready in seconds however long the deployment
        has run. Each delta's staleness (from its publication to its application
        here) is observed in ``stream_model_staleness_seconds``.
        """
        s = self.settings
        tp = TopicPartition(s.topic(MODEL), 0)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=s.bootstrap, enable_auto_commit=False, auto_offset_reset="earliest",
            fetch_max_wait_ms=s.fetch_wait_ms, client_id=f"{s.faust_id}-model",
        )  # fmt: skip
        await consumer.start()
        try:
            consumer.assign([tp])
            end = (await consumer.end_offsets([tp]))[tp]
            start = (await consumer.beginning_offsets([tp]))[tp]
            as_of = await self._load_snapshot(start)
            if as_of is not None:
                consumer.seek(tp, as_of + 1)
            else:
                consumer.seek(tp, max(start, end - WINDOW))
                self.shared.reading_from(max(start, end - WINDOW))
            while True:
                batches = await consumer.getmany(timeout_ms=50, max_records=5000)
                async with self._replica_lock:
                    now = time.time()
                    for records in batches.values():
                        for record in records:
                            self._apply_delta(record, now)
                if not self.model_ready.is_set():
                    high = consumer.highwater(tp)
                    if high is None or await consumer.position(tp) >= high:
                        log.info("model replica loaded: %d deltas", self.shared.learned)
                        self.model_ready.set()
        finally:
            await consumer.stop()

    async def _read_snapshots(self) -> snapshots.Found | None:
        """The newest snapshot on ``model-snapshots`` (None: none); SnapshotError if it cannot be used.
        Only each key's newest value is held while the topic is read (it may hold several snapshots
        until compaction has run), and the snapshot is checked off the loop."""
        compacted = snapshots.Compacted()
        s = self.settings
        await read_to_end(s.bootstrap, s.topic(MODEL_SNAPSHOTS), timeout_s=300.0, on_records=compacted.add)
        return await asyncio.to_thread(compacted.latest)

    async def _load_snapshot(self, start: int) -> int | None:
        """Take the newest snapshot of ``model-snapshots`` into the replica; the model-topic offset it holds
        everything up to, or None (and the replica as it was) if there is none that can be used: its
        chunks missing or corrupt, the deltas after it deleted from the model topic (``start``: the
        model topic's first offset), or the topic unreadable. It is unpacked and rebuilt off the loop."""
        try:
            found = await self._read_snapshots()
            if found is None:
                return None
            # once this worker writes a snapshot, these are left over
            self._snapshot_obsolete = [*found.stale, *snapshots.chunk_keys(found.manifest)]
            as_of = int(found.manifest["as_of"])
            if as_of + 1 < start:
                log.warning("the model snapshot as of offset %d is older than the model topic's first %d", as_of, start)
                return None
            taken = await asyncio.to_thread(lambda: SharedModel.from_state(snapshots.unpack(found.payload)))
        except Exception as exc:  # whatever the snapshot or the broker did, the worker starts from the window
            log.warning("the model snapshot cannot be used: %r", exc)
            return None
        self.shared.become(taken)
        log.info("model snapshot %s taken: as of offset %d, %d deltas", found.manifest["id"], as_of, taken.learned)
        self.snapshot_loaded = {"id": found.manifest["id"], "as_of": as_of}
        self._snapshot_as_of = as_of  # as if written here: none is needed until the replica learns more
        return as_of

    async def _write_model_snapshot(self) -> None:
        """Write this replica of the deployment-wide model to ``model-snapshots``, if this worker holds the
        events topic's partition 0 (one writer for the deployment) and the replica learned anything since
        its last one (:mod:`stream.contracts.snapshots`). A thread reads and packs the replica while the
        model follower waits; the loop keeps serving, slowed while the thread holds the interpreter. A
        worker that takes over the writing first reads what the topic holds, to delete it once its own
        snapshot is written. A snapshot that fails is tried again at the next interval."""
        shared = self.shared
        if not _faust.holds(self.app, self.events.get_topic_name(), 0):
            self._snapshot_writer = False
            return
        if not self.model_ready.is_set() or shared.position <= self._snapshot_as_of:
            return
        topic = self.settings.topic(MODEL_SNAPSHOTS)
        sent: list[Any] = []  # the chunks' delivery futures
        records: list[tuple[bytes, bytes]] = []
        try:
            if not self._snapshot_writer:  # taking over: the last writer's snapshot is left over after ours
                found = await self._read_snapshots()
                if found is not None:
                    known = {*self._snapshot_obsolete, *found.stale, *snapshots.chunk_keys(found.manifest)}
                    self._snapshot_obsolete = sorted(known)
                self._snapshot_writer = True
            async with self._replica_lock:
                as_of, began = shared.position, time.perf_counter()
                payload = await asyncio.to_thread(lambda: snapshots.pack(shared.to_state()))
                held_ms = (time.perf_counter() - began) * 1000
            snapshot_id, now_ms = uuid.uuid4().hex[:16], int(time.time() * 1000)
            records, manifest = await asyncio.to_thread(snapshots.encode, payload, as_of, snapshot_id, now_ms)
            for key, value in records:
                sent.append(await self._send(topic, key, value, 0))
            await asyncio.gather(*sent)
            await (await self._send(topic, snapshots.MANIFEST, manifest, 0))
            await asyncio.gather(*[await self._send(topic, key, None, 0) for key in self._snapshot_obsolete])
        except Exception:  # the broker, or a bug: logged, and the next interval tries again
            log.exception("the model snapshot as of offset %d was not written", shared.position)
            # the chunks sent (this snapshot's manifest perhaps too) are deleted once the next one is written
            self._snapshot_obsolete.extend(key for key, _ in records[: len(sent)])
            return
        self._snapshot_obsolete = [key for key, _ in records]
        self._snapshot_as_of = as_of
        self.counters["snapshots_written"] += 1
        log.info(
            "model snapshot as of offset %d written: %d bytes packed, %d chunks; deltas waited %.0f ms",
            as_of, len(payload), len(records), held_ms,
        )  # fmt: skip

    def _apply_delta(self, record: Any, now: float) -> None:
        try:
            doc = orjson.loads(record.value)
            if isinstance(doc, dict) and "cohorts" in doc:
                if not self.shared.adopt(doc["cohorts"], record.offset):
                    log.info("the cohorts' state at offset %d predates what this replica read", record.offset)
                return
            applied = self.shared.apply_document(doc, record.offset)
        except (ValueError, TypeError, KeyError, AttributeError):  # a tombstone's None: TypeError
            log.warning("a malformed model record at offset %d was skipped", record.offset)
            return
        if applied:
            self.counters["deltas_applied"] += 1
            if self.model_ready.is_set():
                self.metrics.staleness.observe(max(0.0, now - record.timestamp / 1000))

    async def _await_catalog(self, titles: set[str]) -> None:
        """Events name titles this worker's catalog lacks: give the catalog reader time to catch up.

        A producer publishes a title before its first event, but the worker reads the two
        topics concurrently. The events wait until the reader has read everything appended
        before now, or the titles arrive, or ``STREAM_CATALOG_WAIT_MS`` passes; whatever is
        still unknown then goes to the dead-letter topic.
        """
        wait_ms = self.settings.catalog_wait_ms
        if wait_ms <= 0:
            return
        asked = time.time() * 1000
        deadline = time.monotonic() + wait_ms / 1000
        catalog = self.catalog
        self.counters["catalog_waits"] += 1
        self.metrics.catalog_waits.inc()
        while self._catalog_synced_ms < asked and any(catalog.index_of(t) is None for t in titles):
            remaining = deadline - time.monotonic()
            try:
                await asyncio.wait_for(self._catalog_round.wait(), max(0.0, remaining))
            except TimeoutError:
                log.warning("the catalog reader did not catch up within %d ms", wait_ms)
                return

    def _catalog_synced(self, consumer: AIOKafkaConsumer, tps: list[TopicPartition], positions: list[int]) -> None:
        """After a round of the catalog reader: note how current it is, and wake who waits for it."""
        highs = [consumer.highwater(tp) for tp in tps]
        if all(h is not None and p >= h for p, h in zip(positions, highs, strict=True)):
            # Every partition read to the high watermark of a fetch answered at its poll time; that
            # fetch was asked for at most a fetch wait (plus a margin) earlier: what was appended
            # before then is in the catalog.
            polled = min(consumer.last_poll_timestamp(tp) for tp in tps)
            self._catalog_synced_ms = max(self._catalog_synced_ms, polled - self.settings.fetch_wait_ms - 100)
        self._catalog_round.set()
        self._catalog_round = asyncio.Event()

    async def _check_catalog(self, stream: faust.StreamT) -> None:
        async for event in stream.events():
            try:
                decode_catalog(event.message.key, event.message.value)
            except InvalidMessage as exc:
                await self._reject(event, str(exc))

    async def _reject(self, event: faust.EventT, error: str) -> None:
        m = event.message
        raw = RawMessage(m.key, m.value, m.topic, m.partition, m.offset)
        await self.app.producer.send(m.topic + "-dlq", m.key, dead_letter(raw, error), None, None, None)
        self.counters["dead_letters"] += 1
        self.metrics.dead_letter(m.topic, error)

    # -- HTTP -------------------------------------------------------------------------------

    def authorize(self, header: str | None, scope: str) -> Reply | None:
        """None when ``header`` holds a bearer token with ``scope`` (or ``admin``); else the 401 or 403."""
        challenge = {"WWW-Authenticate": 'Bearer realm="stream"'}
        scheme, _, token = (header or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return 401, {"error": "Authorization: expected 'Bearer <token>' (see stream tokens add)"}, challenge
        scopes = self.tokens.scopes_of(token.strip())
        if scopes is None:
            return 401, {"error": "Authorization: the token is unknown or was revoked"}, challenge
        if scope not in scopes and "admin" not in scopes:
            return 403, {"error": f"Authorization: the token lacks the {scope!r} scope"}, None
        return None

    async def post_command(self, request: Any, viewer: str) -> Reply:
        """Validate a command for ``viewer`` as the topic's consumers do, and publish it (202), or say why not."""
        refused = self.authorize(request.headers.get("Authorization"), "commands")
        if refused is not None:
            return refused
        limit = self.settings.max_body_bytes
        if (request.content_length or 0) > limit:
            return 413, {"error": f"body: expected at most {limit} bytes; got {request.content_length}"}, None
        body = await request.content.read(limit + 1)
        if len(body) > limit:
            return 413, {"error": f"body: expected at most {limit} bytes; got more"}, None
        try:
            decode_command(viewer.encode(), body, self.settings.max_event_bytes)
        except InvalidMessage as exc:
            expected = "a user-commands message (topics/schemas/user-command.json) for this viewer"
            return 400, {"error": str(exc), "expected": expected}, None
        topic = self.settings.topic(COMMANDS)
        sent = await (await self.app.producer.send(topic, viewer.encode(), body, None, None, None))
        return 202, {"published": {"topic": topic, "partition": sent.partition, "offset": sent.offset}}, None

    def _gauges(self) -> list[Any]:
        """Read at each scrape: the consumer's lag per held partition, what each partition model learned, and the
        events and commands waiting per partition."""
        lag = _faust.lag(self.app, self.events.get_topic_name())
        models = sorted(self._partition_models.items())
        held = sorted({*self._waiting, *lag})
        waiting = {p: self._waiting.get(p, _Waiting()) for p in held}
        return [
            gauge("stream_consumer_lag", "Playback events not yet read, per held partition", ["partition"],
                  [([str(p)], float(n)) for p, n in sorted(lag.items())]),
            gauge("stream_model_learned", "Events of each partition whose outcome the regression learns", ["partition"],
                  [([str(p)], float(model.learned)) for p, model in models]),
            gauge("stream_model_choices_learned", "Finishes and likes the deployment's choice learner learned",
                  [],
                  [([], float(self.shared.choice.learned))]),
            gauge("stream_model_factors_learned", "Finishes and likes the deployment's item factors learned", [],
                  [([], float(self.shared.factors.learned))]),
            gauge("stream_commands_waiting", "Commands read and waiting for the events published before them",
                  ["partition"], [([str(p)], float(len(w.commands))) for p, w in waiting.items()]),
            gauge("stream_events_waiting", "Events read and waiting for the commands published before them",
                  ["partition"], [([str(p)], float(len(w.events))) for p, w in waiting.items()]),
        ]  # fmt: skip

    def health(self) -> dict[str, Any]:
        return {
            "catalog_titles": len(self.catalog), "catalog_ready": self.catalog_ready.is_set(),
            "model_ready": self.model_ready.is_set(), "model_position": self.shared.position,
            "model_learned": self.shared.learned, "model_snapshot_loaded": self.snapshot_loaded, **self.counters,
        }  # fmt: skip


def _raw(message: Any) -> RawMessage:
    stamp = getattr(message, "timestamp", None)  # seconds, as Faust gives it
    return RawMessage(
        message.key, message.value, message.topic, message.partition, message.offset,
        int(stamp * 1000) if stamp else None,
    )  # fmt: skip


def _advertised(host: str) -> str:
    """The host peers reach this worker at: the bound one, or for a wildcard bind, the machine's name."""
    return socket.gethostname() if host in ("0.0.0.0", "::", "") else host


#: A record read and not yet applied: its message, its record (acknowledged once what it caused is
#: delivered), and when (epoch ms) the fetch that brought it was answered.
_Queued = tuple[RawMessage, Any, int]


@dataclass
class _Waiting:
    """A partition's events and commands read but not yet due (:meth:`StreamApp._align`), each in offset order."""

    events: list[_Queued] = field(default_factory=list)
    commands: list[_Queued] = field(default_factory=list)


def _resolved(value: Any) -> asyncio.Future[Any]:
    done = asyncio.get_running_loop().create_future()
    done.set_result(value)
    return done


async def _then(applied: Awaitable[Any], kept: list[Any]) -> list[Any]:
    """``kept`` once ``applied`` completes: a fetch's answer to :data:`_faust.BatchHandler`."""
    await applied
    return kept


def _acknowledge_when_delivered(app: faust.App, records: list[Any], applied: asyncio.Future[Any]) -> None:
    if not applied.cancelled() and applied.exception() is None:
        _faust.acknowledge(app, records)


def _settle(waiter: asyncio.Future[None], delivered: asyncio.Future[Any]) -> None:
    if waiter.done():
        return
    if delivered.cancelled():
        waiter.cancel()
    elif delivered.exception() is not None:
        waiter.set_exception(delivered.exception())  # type: ignore[arg-type]
    else:
        waiter.set_result(None)


def create_app(settings: Settings | None = None) -> StreamApp:
    return StreamApp(settings or Settings.from_env())
