"""Snapshots of the deployment-wide model: exact, chunked on a compacted topic, taken by a worker that starts."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import numpy as np
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from jsonschema import Draft202012Validator

from stream.contracts import snapshots
from stream.contracts.topics import CATALOG, EVENTS, MODEL, MODEL_SNAPSHOTS, load_schema
from stream.contracts.validation import CatalogEntry
from stream.learning.model import PartitionModel
from stream.learning.shared import SharedModel, delta_document
from stream.processing.step import Processor
from stream.runtime.kafka import read_to_end
from stream.settings import Settings

from .catalog_fixture import TITLES, catalog_messages
from .helpers import Workers, encode, event, publish
from .test_commands import Log
from .test_ranking import T0, make_catalog
from .test_shared_model import _health, _until


def _records() -> list[dict[str, Any]]:
    """A model topic's records as three partitions' workers publish them: deltas of starts, finishes with
    histories, choice pairs and competitors, early skips (outcomes, trending), tastes and exploration
    impressions, and now and then a worker's cohorts' state."""
    cat = make_catalog(12)
    cat.upsert(CatalogEntry("n1", "Premiere", ("western",), (), 3000.0, T0 - 86_400_000))  # a new release
    processor = Processor(cat, share_deltas=True, exploration=2)
    models = {p: PartitionModel() for p in range(3)}
    logs = {p: Log() for p in range(3)}
    rng = random.Random(7)
    records: list[dict[str, Any]] = []
    for n in range(45):
        p = n % 3
        viewer, titles = f"v{n % 9}", rng.sample(cat.ids, 4)
        batch = [
            logs[p].event(viewer, title, kind)
            for k, title in enumerate(titles)
            for kind in (("play", "complete") if k != 2 else ("play", "skip"))
        ]
        [result] = processor.step(processor.plan([(p, batch)]), {}, models)
        for delta in result.deltas:  # published, read back and folded in, as the runtime does
            records.append(orjson.loads(orjson.dumps(delta_document(p, delta))))
            processor.shared.apply_document(records[-1], len(records) - 1)
        if n % 10 == 9:
            records.append(orjson.loads(orjson.dumps({"cohorts": processor.shared.cohort_state()})))
    return records


def _fold(replica: SharedModel, records: list[dict[str, Any]], first: int) -> None:
    for position, doc in enumerate(records[first:], start=first):
        if "cohorts" in doc:
            assert replica.adopt(doc["cohorts"], position)
        else:
            replica.apply_document(doc, position)


def _exact(replica: SharedModel) -> bytes:
    return orjson.dumps(replica.to_state(), option=orjson.OPT_SERIALIZE_NUMPY)


def _written(replica: SharedModel) -> dict[str, Any]:
    """The replica's state as a snapshot holds it: packed, written to the topic and read back."""
    return snapshots.unpack(snapshots.pack(replica.to_state()))


def test_a_replica_restored_from_a_snapshot_then_the_records_after_it_holds_what_one_that_read_all_holds() -> None:
    records = _records()
    whole = SharedModel()
    whole.reading_from(0)
    cut = len(records) // 2
    _fold(whole, records[: cut + 1], 0)
    state = _written(whole)
    assert state["position"] == cut
    held = [whole.cowatch.co, whole.factors.index, whole.trending.windows, whole.exploration.shown, whole._lessons]
    assert all(held) and whole.choice.learned and whole.outcome.learned and whole.cohorts.seeded >= 2

    restored = SharedModel()
    restored.restore(state)
    assert _exact(restored) == _exact(whole), "the snapshot is the replica, exactly"
    _fold(whole, records, cut + 1)
    _fold(restored, records, cut + 1)
    assert _exact(restored) == _exact(whole), "and the records after it leave both the same"
    taste = {"drama": 1.0, "comedy": -0.4}
    assert restored.cohorts.assign(taste) == whole.cohorts.assign(taste)
    assert restored.cowatch.related(["d1", "c1"]) == whole.cowatch.related(["d1", "c1"])
    first = next(d for d in records if "cohorts" not in d)
    assert not restored.apply_document(first), "a delta applied before the snapshot is still a repeat"


def test_a_snapshot_that_is_not_one_changes_nothing() -> None:
    replica = SharedModel()
    _fold(replica, _records()[:20], 0)
    before, state = _exact(replica), _written(replica)
    cowatch = state["cowatch"]
    broken_states = [
        {**state, "format": 99},
        {**state, "cowatch": {**cowatch, "co": cowatch["co"][:-1]}},
        {**state, "cowatch": {**cowatch, "neighbours": cowatch["neighbours"] + len(cowatch["titles"])}},
        {**state, "factors": {**state["factors"], "p": np.zeros((1, 3), dtype=np.float32)}},
        {**state, "recent": None},
    ]
    for broken in broken_states:
        with pytest.raises(ValueError):
            replica.restore(broken)
        assert _exact(replica) == before


def test_the_newest_manifest_names_the_snapshot_and_its_chunks_must_all_be_there() -> None:
    old, old_manifest = snapshots.encode(b"x" * 5000, 10, "a", 1, chunk_bytes=8)
    new, new_manifest = snapshots.encode(b"y" * 7000, 20, "b", 2, chunk_bytes=8)
    Draft202012Validator(load_schema("schemas/model-snapshot.json")).validate(orjson.loads(new_manifest))
    topic: list[tuple[bytes | None, bytes | None]] = [*old, (snapshots.MANIFEST, old_manifest)]
    found = snapshots.latest(topic)
    assert found is not None and found.payload == b"x" * 5000 and found.manifest["as_of"] == 10
    topic += new  # a newer snapshot's chunks, its manifest not yet written: the older one stands
    found = snapshots.latest(topic)
    assert found is not None and found.manifest["id"] == "a" and found.stale == []
    topic.append((snapshots.MANIFEST, new_manifest))
    found = snapshots.latest(topic)
    assert found is not None and found.payload == b"y" * 7000
    assert found.stale == [key for key, _ in old], "the older snapshot's chunks are left over"
    topic += [(key, None) for key, _ in old]  # deleted by the writer: gone
    assert snapshots.latest(topic) == snapshots.Found(found.manifest, found.payload, [])
    with pytest.raises(snapshots.SnapshotError, match="missing"):
        snapshots.latest([*topic, (new[1][0], None)])
    with pytest.raises(snapshots.SnapshotError, match="do not match"):
        snapshots.latest([*topic, (new[1][0], b"zzzzzzzz")])
    assert snapshots.latest(new) is None, "no manifest: no snapshot"
    for not_packed in (b"y" * 7000, b"", np.zeros(3).tobytes()):
        with pytest.raises(snapshots.SnapshotError):
            snapshots.unpack(not_packed)
    with pytest.raises(snapshots.SnapshotError, match="missing"):  # a count past what the topic holds
        snapshots.latest([*new, (snapshots.MANIFEST, orjson.dumps({**orjson.loads(new_manifest), "chunks": 10**12}))])


def test_reading_the_topic_holds_only_each_key_s_newest_value_in_the_order_written() -> None:
    class Record:
        def __init__(self, key: bytes | None, value: bytes | None) -> None:
            self.key, self.value = key, value

    compacted = snapshots.Compacted()
    compacted.add([Record(b"a/0", b"1"), Record(b"manifest", b"m1"), Record(None, b"x")])
    compacted.add([Record(b"b/0", b"2"), Record(b"a/0", None), Record(b"manifest", b"m2")])
    assert compacted.records() == [(b"b/0", b"2"), (b"manifest", b"m2")]


def test_the_floor_of_the_choice_learner_is_the_code_s_not_an_old_snapshot_s() -> None:
    """A snapshot written before the floor existed carries none: the replica taking it keeps the floor
    its code gives, as a replica that read the deltas does."""
    replica = SharedModel()
    _fold(replica, _records()[:20], 0)
    state = _written(replica)
    del state["choice"]["floor"]
    taken = SharedModel.from_state(state)
    assert taken.choice.floor == SharedModel().choice.floor and taken.choice.floor


@pytest.mark.broker
async def test_a_worker_that_starts_takes_the_snapshot_and_holds_what_the_writer_holds(
    settings: Settings, workers: Workers, producer: AIOKafkaProducer
) -> None:
    writer = workers.start(model_snapshot_s=0.5, cohort_sync_s=0.7)
    await publish(producer, settings.topic(CATALOG), catalog_messages())
    titles = [t["item_id"] for t in TITLES]
    sent = [
        event(2 * n + k, f"v{n % 12}", titles[(n + n // 12) % len(titles)], kind)
        for n in range(36)
        for k, kind in enumerate(("play", "complete"))
    ]
    await publish(producer, settings.topic(EVENTS), [encode(d) for d in sent])
    await _until(lambda: _health(workers.configs[0])["deltas_applied"] >= 60, 60, "the writer to apply the deltas")
    await asyncio.sleep(1)
    deltas = len(await read_to_end(settings.bootstrap, settings.topic(MODEL)))

    async def newest() -> snapshots.Found | None:
        records = await read_to_end(settings.bootstrap, settings.topic(MODEL_SNAPSHOTS))
        return snapshots.latest((r.key, r.value) for r in records)

    deadline = time.monotonic() + 60
    while (found := await newest()) is None or found.manifest["as_of"] < deltas - 1:
        assert time.monotonic() < deadline, f"no snapshot of the {deltas} model records: {found and found.manifest}"
        await asyncio.sleep(0.5)
    # what a replica that reads the model topic up to the snapshot's offset holds, exactly
    replica = SharedModel()
    replica.reading_from(0)
    as_of = found.manifest["as_of"]
    for r in await read_to_end(settings.bootstrap, settings.topic(MODEL)):
        if r.offset <= as_of:
            doc = orjson.loads(r.value)
            _ = (
                replica.adopt(doc["cohorts"], r.offset)
                if r.key == b"cohorts"
                else replica.apply_document(doc, r.offset)
            )
    assert _exact(SharedModel.from_state(snapshots.unpack(found.payload))) == _exact(replica)
    assert replica.learned >= 60 and replica.cohorts.seeded >= 1

    workers.start(model_snapshot_s=0)  # a worker that starts now takes the newest snapshot
    first, second = workers.configs
    # ready (its catalog loaded) is not yet its replica loaded
    await _until(lambda: _health(second)["model_ready"], 60, "the new worker's replica to be loaded")
    started = _health(second)
    assert started["model_snapshot_loaded"]["as_of"] >= as_of
    assert started["deltas_applied"] < replica.learned, "it read the deltas after the snapshot only"
    await _until(
        lambda: _health(second)["model_learned"] == _health(first)["model_learned"] >= replica.learned,
        30,
        "the new worker's replica to hold every delta the writer's holds",
    )
    assert writer.poll() is None
