"""The one module that reaches into Faust's and aiokafka's internals: each patch, and its guard."""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import faust
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from faust.types import TP

from stream.runtime import _faust
from stream.runtime._faust import (
    _UPSTREAM,
    UntestedVersion,
    check_versions,
    seek_known_offsets,
    seek_to_committed,
    true_end_offsets,
)
from stream.runtime.app import create_app
from stream.runtime.broker import EmbeddedBroker
from stream.settings import Settings

#: sha256 of faust-streaming 0.15.3's ``Consumer._drain_messages`` source.
UPSTREAM_DRAIN_SHA256 = "44a2500309e83c630493f6828af50166ec8d96a0b3e4fb2bab735f704ae93417"


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


# -- the version guard ---------------------------------------------------------------------------


def test_the_door_names_what_it_expected_and_what_it_found_on_other_versions() -> None:
    check_versions()  # the pinned versions are installed here
    found = {"faust-streaming": "0.16.0", "aiokafka": "0.14.0"}
    with pytest.raises(UntestedVersion) as caught:
        check_versions(found.__getitem__)
    message = str(caught.value)
    assert "faust-streaming: expected 0.15.3, found 0.16.0" in message and "aiokafka:" not in message.split(";")[1]

    def missing(name: str) -> str:
        raise metadata.PackageNotFoundError(name)

    with pytest.raises(UntestedVersion, match=r"aiokafka: expected 0\.14\.0, found not installed"):
        check_versions(missing)


def test_a_worker_refuses_to_start_on_an_untested_faust(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real = metadata.version
    monkeypatch.setattr(metadata, "version", lambda name: "0.16.1" if name == "faust-streaming" else real(name))
    with pytest.raises(UntestedVersion, match=r"faust-streaming: expected 0\.15\.3, found 0\.16\.1"):
        create_app(Settings(bootstrap="127.0.0.1:1", data_dir=tmp_path, web_port=0))


# -- 2. the fetch wait --------------------------------------------------------------------------


async def test_the_worker_consumer_takes_its_apps_fetch_wait_and_other_apps_keep_fausts() -> None:
    configured = faust.App("door-wait-a", broker="kafka://127.0.0.1:1", store="memory://")
    _faust.install(configured, fetch_wait_ms=7)
    other = faust.App("door-wait-b", broker="kafka://127.0.0.1:1", store="memory://")
    made = [
        app.consumer._thread._create_worker_consumer(app.transport)  # type: ignore[attr-defined]
        for app in (configured, other)
    ]
    try:
        assert [c._fetch_max_wait_ms for c in made] == [7, 1500]
    finally:
        for c in made:
            await c.stop()


# -- 4. the seek after a rebalance ----------------------------------------------------------------


async def test_a_partition_without_a_commit_is_read_from_the_start_after_the_seek(broker: EmbeddedBroker) -> None:
    """aiokafka's seek_to_committed leaves such a partition where it was; the patched seek rewinds it."""
    topic, group = f"door-seek-{uuid.uuid4().hex[:6]}", f"g-{uuid.uuid4().hex[:6]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, 2, 1)])
    await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
    await producer.start()
    for partition in (0, 1):
        for _ in range(5):
            await producer.send_and_wait(topic, b"x", partition=partition)
    await producer.stop()
    tps = [TopicPartition(topic, 0), TopicPartition(topic, 1)]
    consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(tps)
        await consumer.commit({tps[0]: 3})  # partition 1 has no commit
        await consumer.seek_to_end(*tps)
        assert [await consumer.position(tp) for tp in tps] == [5, 5]
        await consumer.seek_to_committed()  # aiokafka's: partition 1 keeps its advanced position
        assert [await consumer.position(tp) for tp in tps] == [3, 5]
        await consumer.seek_to_end(*tps)
        await seek_to_committed(consumer, to_end=False)
        assert [await consumer.position(tp) for tp in tps] == [3, 0]
    finally:
        await consumer.stop()


# -- 1. whole-fetch delivery -------------------------------------------------------------------------


def test_the_fetch_loop_is_a_copy_of_the_faust_release_it_was_written_against() -> None:
    """_drain_in_batches follows faust-streaming 0.15.3's Consumer._drain_messages; a change upstream
    must be read and ported before this hash is updated."""
    source = inspect.getsource(_UPSTREAM["drain"])
    assert hashlib.sha256(source.encode()).hexdigest() == UPSTREAM_DRAIN_SHA256


class _Message:
    def __init__(self, topic: str, partition: int, offset: int) -> None:
        self.topic, self.partition, self.offset = topic, partition, offset


class _Consumer:
    """The parts of Faust's Consumer the fetch loop's reading uses, recording what it is asked."""

    def __init__(self, commit_every: int | None = None) -> None:
        self._read_offset: dict[TP, int | None] = defaultdict(lambda: None)
        self._committed_offset: dict[TP, int] = {}
        self._commit_every, self._n_acked, self.commits = commit_every, 0, 0
        self.gaps: list[tuple[TP, int, int]] = []
        self.called: list[tuple[int, dict[TP, int | None]]] = []  # per-event callbacks: offset, read offsets then
        self.acked: list[int] = []
        self.crashed: list[BaseException] = []
        self.generation = 1
        self.app = SimpleNamespace(
            topics=SimpleNamespace(acks_enabled_for=lambda topic: True), consumer_generation_id=1
        )
        self.suspend_flow = asyncio.Event()

    async def _add_gap(self, tp: TP, start: int, end: int) -> None:
        self.gaps.append((tp, start, end))

    async def commit(self) -> None:
        self.commits += 1

    async def callback(self, message: _Message) -> None:
        self.called.append((message.offset, {tp: o for tp, o in self._read_offset.items() if o is not None}))

    async def wait_first(self, *coros: Any) -> None:
        await coros[0]
        coros[1].close()

    def assignment(self) -> set[TP]:
        return {TP("events", 0), TP("events", 1), TP("commands", 0), TP("other", 0)}

    def ack(self, message: _Message) -> None:
        self.acked.append(message.offset)
        self._n_acked += 1

    async def crash(self, reason: BaseException) -> None:
        self.crashed.append(reason)


async def _records(items: list[tuple[TP, _Message]]) -> AsyncIterator[tuple[TP, _Message]]:
    for item in items:  # never yields to the event loop by itself, like a fetch already in memory
        yield item


async def test_a_fetch_reaches_the_handler_whole_and_its_offsets_are_set_after_the_handover() -> None:
    events0, events1, other = TP("events", 0), TP("events", 1), TP("other", 0)
    c = _Consumer()
    c._read_offset[events0] = 9  # read up to 9 before; 5 is read again after a seek back: dropped
    fetch = [(events0, _Message("events", 0, o)) for o in (5, 10, 11, 14)]
    fetch += [(events1, _Message("events", 1, 0)), (other, _Message("other", 0, 3))]
    seen_by_handler: list[dict[TP, list[int]]] = []
    read_during_handler: list[Any] = []
    delivered: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def handler(fetched: dict[TP, list[Any]]) -> asyncio.Future[None]:
        seen_by_handler.append({tp: [m.offset for m in ms] for tp, ms in fetched.items()})
        read_during_handler.append(c._read_offset[events0])
        return delivered

    runtime = _faust._AppRuntime(10, {"events": handler})
    reader = _faust._FetchReader(c, runtime.handlers)
    batches = await reader.read(_records(fetch))
    assert c.gaps == [(events0, 12, 14)], "a gap in a partition's offsets is committed past"
    assert c.called == [(3, {events0: 9})], "another topic's record goes through Faust's callback"
    assert c._read_offset[other] == 3
    await reader.hand_over(batches, 1, runtime)
    assert seen_by_handler == [{events0: [10, 11, 14], events1: [0]}], "one call, every partition's records"
    assert read_during_handler == [9], "read offsets are set after the handover, as upstream does"
    assert (c._read_offset[events0], c._read_offset[events1]) == (14, 0)
    assert c.acked == [], "nothing is acknowledged before it is delivered"
    delivered.set_result(None)
    await asyncio.sleep(0)
    assert sorted(c.acked) == [0, 10, 11, 14]


async def test_a_batch_of_a_past_generation_is_dropped_unacknowledged_and_unread() -> None:
    c = _Consumer()
    events0 = TP("events", 0)
    calls: list[Any] = []

    async def handler(fetched: dict[TP, list[Any]]) -> Any:
        calls.append(fetched)
        return asyncio.get_running_loop().create_future()

    runtime = _faust._AppRuntime(10, {"events": handler})
    reader = _faust._FetchReader(c, runtime.handlers)
    batches = await reader.read(_records([(events0, _Message("events", 0, 4))]))
    c.app.consumer_generation_id = 2  # a rebalance while the fetch was read
    await reader.hand_over(batches, 1, runtime)
    assert calls == [] and c._read_offset[events0] is None and c.acked == []


async def test_a_round_without_records_calls_the_handler_with_none_and_records_it_keeps_are_not_acknowledged() -> None:
    c = _Consumer()
    events0, commands0 = TP("events", 0), TP("commands", 0)
    calls: list[dict[TP, list[int]]] = []
    answers: list[asyncio.Future[Any]] = []
    fetched: list[dict[TP, list[Any]]] = []

    async def handler(batch: dict[TP, list[Any]]) -> asyncio.Future[Any]:
        calls.append({tp: [m.offset for m in ms] for tp, ms in batch.items()})
        fetched.append(batch)
        answers.append(asyncio.get_running_loop().create_future())
        return answers[-1]

    runtime = _faust._AppRuntime(10, {"events": handler, "commands": handler})
    reader = _faust._FetchReader(c, runtime.handlers)
    records = [(events0, _Message("events", 0, 4)), (commands0, _Message("commands", 0, 7))]
    records.append((commands0, _Message("commands", 0, 8)))
    await reader.hand_over(await reader.read(_records(records)), 1, runtime)
    await reader.hand_over(await reader.read(_records([])), 1, runtime)
    assert calls == [{events0: [4], commands0: [7, 8]}, {}], "an empty round: one call (one handler), with nothing"
    answers[0].set_result([fetched[0][commands0][1]])  # the command at 8 waits
    answers[1].set_exception(RuntimeError("a delivery failed"))
    await asyncio.sleep(0.01)
    assert sorted(c.acked) == [4, 7], "the record the handler keeps is not acknowledged with its batch"
    assert [str(e) for e in c.crashed] == ["a delivery failed"], "a failed delivery crashes the worker"
    c.app.consumer_generation_id = 2
    await reader.hand_over(await reader.read(_records([])), 1, runtime)
    assert len(calls) == 2, "an empty round of a past generation calls nothing"
    keeping = [False]
    runtime.keeping = lambda: keeping[0]
    assert runtime.poll_s() == 1.0, "a round waits upstream's second for records"
    keeping[0] = True
    assert runtime.poll_s() == 0.01, "while the handler keeps records, one fetch wait"


async def test_the_fetch_loop_yields_to_the_event_loop_every_hundred_records_and_commits_when_due() -> None:
    c = _Consumer(commit_every=50)
    c._n_acked = 50
    turns = 0

    async def other_task() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    task = asyncio.ensure_future(other_task())
    await asyncio.sleep(0)
    before = turns
    reader = _faust._FetchReader(c, {"events": lambda fetched: asyncio.sleep(0)})  # type: ignore[arg-type,return-value]
    tp = TP("events", 0)
    await reader.read(_records([(tp, _Message("events", 0, o)) for o in range(250)]))
    task.cancel()
    assert turns - before >= 2, "250 records in memory: the loop gave other tasks a turn at 101 and 202"
    assert c.commits == 1 and c._n_acked == 0, "commit_every is honoured, as upstream does"
