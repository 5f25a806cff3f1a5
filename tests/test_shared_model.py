"""The deployment-wide model (trend, co-watch): deltas on the model topic, folded once into every worker's replica."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

import numpy as np
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from jsonschema import Draft202012Validator

from stream.contracts.topics import CATALOG, EVENTS, MODEL, load_schema
from stream.contracts.validation import CatalogEntry
from stream.learning.choice import SAMPLED
from stream.learning.features import FEATURES
from stream.learning.model import PartitionModel
from stream.learning.profile import AWAY_MS, Profile
from stream.learning.shared import SharedModel, delta_cohorts, delta_document, delta_lesson, delta_pairs
from stream.learning.trend import SharedTrend
from stream.processing.step import Processor
from stream.runtime.kafka import read_to_end
from stream.settings import Settings

from .catalog_fixture import catalog_messages
from .helpers import Workers, encode, event, publish
from .test_commands import Log
from .test_ranking import T0, make_catalog


def test_the_step_shares_each_applied_event_that_teaches_once_and_nothing_of_an_opted_out_viewer() -> None:
    log = Log()
    processor = Processor(make_catalog(), share_deltas=True)
    batch = [
        log.event("u1", "d1", "complete"),
        log.event("u1", "d2", "play"),  # a start: shared for popularity only
        log.event("u1", "d2", "complete"),  # shared with what u1 liked before it
        log.command("u2", "opt_out"),
        log.event("u2", "c1", "complete"),  # opted out: teaches nothing, shares nothing
        log.event("u3", "m1", "complete"),
        log.event("u3", "m2", "skip"),  # an early skip: an outcome, and what it takes from m2's trending
    ]
    [result] = processor.step(processor.plan([(0, batch)]), {}, {0: PartitionModel()})
    assert [d[:3] for d in result.deltas] == [
        (0, "d1", []),
        (1, "d2", []),
        (2, "d2", ["d1"]),
        (4, "m1", []),
        (5, "m2", []),
    ]
    assert [d.start for d in result.deltas] == [False, True, False, False, False]
    assert [d.positive for d in result.deltas] == [True, False, True, True, False]
    assert [d.trending for d in result.deltas] == [1.0, 1.0, 1.0, 1.0, -3.0]
    assert [None if d.outcome is None else d.outcome[1] for d in result.deltas] == [1.0, None, 1.0, 1.0, -1.0]
    # each finish with what it teaches the choice learner: titles drawn from the catalog, their differences
    finishes = [d for d in result.deltas if not d.start]
    shapes = [(d.pairs[0].shape, d.pairs[1].shape) for d in finishes if d.pairs is not None]
    assert len(shapes) == 3 and all(0 < n <= SAMPLED and f == len(FEATURES) and o == (n,) for (n, f), o in shapes)
    assert result.deltas[1].pairs is None and orjson.loads(orjson.dumps(delta_document(0, result.deltas[1]))) == {
        "partition": 0,
        "offset": 1,
        "item_id": "d2",
        "start": True,
        "ts": T0 + 2,
        "trending": 1.0,
    }
    validator = Draft202012Validator(load_schema("schemas/model-delta.json"))
    validator.validate(orjson.loads(orjson.dumps(delta_document(0, result.deltas[1]))))
    doc = orjson.loads(orjson.dumps(delta_document(0, result.deltas[2])))
    validator.validate(doc)
    assert doc["history"] == ["d1"] and np.allclose(delta_pairs(doc)[0], result.deltas[2].pairs[0], atol=1e-4)
    skip = orjson.loads(orjson.dumps(delta_document(0, result.deltas[4])))
    validator.validate(skip)
    assert skip["positive"] is False and skip["y"] == -1.0 and len(skip["x"]) == len(FEATURES)
    lesson = delta_lesson(skip)
    assert lesson is not None and lesson[1] == -1.0
    assert lesson[0] == pytest.approx(result.deltas[4].outcome[0], abs=1e-4)
    assert processor.shared.learned == 0, "with share_deltas, the runtime folds them in"
    local = Processor(make_catalog())
    local.process(
        [log.event("u9", "d1", "play"), log.event("u9", "d1", "complete"), log.event("u9", "d3", "complete")],
        {},
        PartitionModel(),
    )
    assert local.shared.learned == 3 and local.shared.trend.share("d1") > 0.99
    assert local.shared.outcome.learned == 2, "the finishes' outcomes, learned at once (a start teaches none)"
    assert local.shared.trending.windows, "and the trending windows count the three events"
    assert local.shared.popularity.share("d1") == 1.0 and local.shared.popularity.share("d3") == 0.0
    assert set(local.shared.cowatch.related(["d1"])) == {"d3"}


def test_a_finish_of_a_title_started_back_after_a_while_teaches_the_away_weights_of_every_replica() -> None:
    """A viewer starts a title after AWAY_MS without an event: its finish's delta says so (``away``), and a
    replica applying it moves what lists of viewers back take as well as what every list takes. A title
    started within a visit teaches the common weights only; so does a document from before ``away``."""
    log, processor = Log(), Processor(make_catalog(), share_deltas=True)
    back = T0 + 120_000 + AWAY_MS  # AWAY_MS after the newest event
    batch = [
        log.event("u1", "d1", "play", T0), log.event("u1", "d1", "complete", T0 + 60_000),  # first: not back
        log.event("u1", "d2", "play", T0 + 90_000), log.event("u1", "d2", "complete", T0 + 120_000),  # in the visit
        log.event("u1", "c1", "play", back), log.event("u1", "c1", "complete", back + 60_000),  # back after a while
    ]  # fmt: skip
    [result] = processor.step(processor.plan([(0, batch)]), {}, {0: PartitionModel()})
    finishes = [d for d in result.deltas if not d.start]
    assert [(d.item_id, d.pairs is not None, d.away) for d in finishes] == [
        ("d1", True, False), ("d2", True, False), ("c1", True, True),
    ]  # fmt: skip
    assert Profile.loads(result.profiles["u1"].dumps()).away, "the row keeps it until the viewer's next start"
    docs = [orjson.loads(orjson.dumps(delta_document(0, d))) for d in finishes]
    schema = load_schema("schemas/model-delta.json")
    for doc in docs:
        Draft202012Validator(schema).validate(doc)
        assert set(doc) <= set(schema["properties"]), "every field the contract names"
    assert [doc.get("away") for doc in docs] == [None, None, True]
    replica, older = SharedModel(), SharedModel()
    for doc in docs[:2]:
        assert replica.apply_document(doc) and older.apply_document(doc)
    assert not replica.choice.away.any() and replica.choice.w.any()
    assert replica.apply_document(docs[2]) and replica.choice.away.any()
    assert older.apply_document({k: v for k, v in docs[2].items() if k != "away"}) and not older.choice.away.any()
    with pytest.raises(ValueError, match="away"):
        SharedModel().apply_document({**docs[2], "away": "yes"})


def test_a_replica_applies_a_delta_to_the_trend_the_cowatch_counts_and_the_choice_weights_once() -> None:
    shared = SharedModel()
    pairs = (np.eye(len(FEATURES))[[FEATURES.index("trend")]], np.zeros(1))  # chosen for its trend alone
    assert shared.apply(0, 7, "b", ["a"], pairs) and not shared.apply(0, 7, "b", ["a"], pairs)
    assert shared.learned == 1 and shared.cowatch.co["a"]["b"] == pytest.approx(shared.cowatch.count["b"])
    assert shared.choice.learned == 1 and shared.choice.weights["trend"] > 0


def test_every_partition_model_ranks_with_the_one_choice_learner_of_the_deployment() -> None:
    """Weights learned from one partition's viewers are every partition's: with 32 partitions each
    would otherwise learn from a thirty-second of the choices."""
    log, processor = Log(), Processor(make_catalog())
    models = {p: PartitionModel() for p in range(2)}
    before = models[1].weights["popularity"] + models[1].weights["trend"]
    for v in range(60):  # partition 0's viewers finish the same (so popular, trending) titles
        batch = [log.event(f"v{v}", item, kind) for item in ("c1", "d1") for kind in ("play", "complete")]
        processor.step(processor.plan([(0, batch)]), {}, models)
    processor.step(processor.plan([(1, [log.event("w1", "m2", "play")])]), {}, models)
    assert models[1].choice is models[0].choice and models[1].choice.learned > 0
    assert models[1].weights["popularity"] + models[1].weights["trend"] > before + 0.1
    with pytest.raises(ValueError, match="pairs"):
        delta_pairs({"pairs": [[1.0, 2.0]], "offsets": [0.0]})


def test_cohorts_and_exploration_budgets_are_the_deployment_s_learned_from_every_partition_s_deltas() -> None:
    """Which cohort a viewer is in stays with its partition; the cohorts' centres, what each cohort
    likes and the exploration impressions spent travel in the deltas, so every replica holds the same
    and a viewer of another partition borrows what partition 0's viewers like."""
    cat = make_catalog(12)  # enough dramas that the new release is listed in the exploration slot, not for its score
    cat.upsert(CatalogEntry("n1", "Premiere", ("western",), (), 3000.0, T0 - 86_400_000))  # a new release
    logs, processor = {0: Log(), 1: Log()}, Processor(cat, share_deltas=True, exploration=2)
    models = {0: PartitionModel(), 1: PartitionModel()}
    validator = Draft202012Validator(load_schema("schemas/model-delta.json"))
    docs: list[dict[str, Any]] = []

    def run(partition: int, viewer: str, *items: str) -> None:
        batch = [logs[partition].event(viewer, item, kind) for item in items for kind in ("play", "complete")]
        [result] = processor.step(processor.plan([(partition, batch)]), {}, models)
        for delta in result.deltas:  # published, read back and folded in, as the runtime does
            doc = orjson.loads(orjson.dumps(delta_document(partition, delta)))
            validator.validate(doc)
            docs.append(doc)
            assert processor.shared.apply_document(doc)

    for v in range(4):  # partition 0's viewers finish dramas: the first batch places a taste, the next counts
        run(0, f"v{v}", "d1")
        run(0, f"v{v}", "d2", "d3")
    assert sum("taste" in d for d in docs) == 4 and processor.shared.cohorts.seeded == 1
    liked = [d for d in docs if "cohort" in d]
    assert [d["item_id"] for d in liked] == ["d2", "d3"] * 4 and {d["cohort"][0] for d in liked} == {0}
    spent = [d["explored"] for d in docs if "explored" in d]
    assert spent == [[0, "n1"], [0, "n1"]], "two impressions of the budget of 2, then none"
    assert not models[0].to_state().keys() & {"co", "ex"}, "the partition keeps no cohorts or budgets"

    run(1, "w1", "d4")  # a viewer of partition 1 with the same taste
    cohort = models[1].cohort_of("w1", {"drama": 1.0})
    assert cohort == 0 and models[1].cohorts is models[0].cohorts
    names, shares = models[1].cohorts.items(str(cohort), models[1].unit)
    assert dict(zip(names, shares, strict=True))["d2"] > 0.99, "it borrows what partition 0's viewers liked"
    assert not any("explored" in d for d in docs[-3:]), "the budget is the deployment's: spent"

    replicas = [SharedModel(), SharedModel()]
    for replica in replicas:
        for doc in docs:
            replica.apply_document(orjson.loads(orjson.dumps(doc)))
    states = [
        orjson.dumps([r.cohorts.to_state(r.unit), r.exploration.to_state()]) for r in (*replicas, processor.shared)
    ]
    assert states[0] == states[1] == states[2]
    for bad in ({"taste": {"drama": 2.0}}, {"cohort": [0, "tv", 4]}, {"cohort": [-1, None, 0]}, {"explored": [0, ""]}):
        with pytest.raises(ValueError):
            delta_cohorts(bad)


def _taste_doc(offset: int, taste: dict[str, float], explored: list[Any] | None = None) -> dict[str, Any]:
    doc = {"partition": 0, "offset": offset, "item_id": "d1", "positive": False, "taste": taste}
    return {**doc, "explored": explored} if explored else doc


def test_a_replica_that_started_reading_later_adopts_the_cohorts_state_and_holds_the_same_centres() -> None:
    genres = ["drama", "comedy", "crime", "horror", "western", "musical", "war", "sport", "news", "noir"]
    docs = [
        _taste_doc(n, {genres[n % 10]: 1.0, genres[(n * 3 + 1) % 10]: round(0.1 * (n % 7) - 0.3, 1)}, [n % 8, "n1"])
        for n in range(40)
    ]
    early, late = SharedModel(), SharedModel()
    early.reading_from(0)
    late.reading_from(20)  # a worker that started later: its window holds only the last 20 deltas
    for position, doc in enumerate(docs[:30]):
        early.apply_document(doc, position)
        if position >= 20:
            late.apply_document(doc, position)
        if position == 26:
            state = orjson.loads(orjson.dumps({"cohorts": early.cohort_state()}))  # published now, read at 30
    Draft202012Validator(load_schema("schemas/model-cohorts.json")).validate(state)
    assert state["cohorts"]["as_of"] == 26

    def held(m: SharedModel) -> bytes:
        return orjson.dumps({k: v for k, v in m.cohort_state().items() if k != "as_of"})

    assert held(late) != held(early), "its own centres, seeded by the first tastes it read, are not the others'"
    before = held(early)
    assert early.adopt(state["cohorts"], 30) and held(early) == before, "a replica that holds the same stays"
    assert late.adopt(state["cohorts"], 30) and held(late) == held(early)
    for position, doc in enumerate(docs[30:], start=31):
        early.apply_document(doc, position)
        late.apply_document(doc, position)
    assert held(late) == held(early) and early.cohorts.assign({"war": 1.0}) == late.cohorts.assign({"war": 1.0})
    newer = SharedModel()
    newer.reading_from(28)
    assert not newer.adopt(state["cohorts"], 30), "it did not read what came between the state and the record"
    broken = {**state["cohorts"], "centers": [*state["cohorts"]["centers"][:-1], {"war": "much"}]}
    with pytest.raises(ValueError):
        late.adopt(broken, 41)
    assert held(late) == held(early), "a malformed state changes nothing"


def test_a_replica_applies_a_delta_once_and_forgets_repeats_beyond_its_window() -> None:
    shared = SharedModel(repeats=3)
    assert [shared.apply(1, o, "a") for o in (5, 6, 5, 7)] == [True, True, False, True]
    assert shared.learned == shared.trend.learned == 3
    assert not shared.apply(1, 6, "a", start=True), "a start at an offset applied is a repeat too"
    assert shared.apply(2, 5, "a"), "the same offset of another partition is another delta"
    assert shared.apply(1, 5, "a"), "forgotten: more than 3 deltas ago"


def _health(cfg: Settings) -> dict[str, Any]:
    import urllib.request

    with urllib.request.urlopen(f"http://{cfg.web_host}:{cfg.web_port}/health", timeout=5) as response:
        return dict(orjson.loads(response.read()))


async def _until(check: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.broker
async def test_every_worker_folds_every_partitions_deltas_once_also_after_a_kill(
    settings: Settings, workers: Workers, producer: AIOKafkaProducer
) -> None:
    procs = workers.start_many(2)
    await publish(producer, settings.topic(CATALOG), catalog_messages())
    liked = [event(n, f"v{n}", f"{'dcmk'[n % 4]}{n % 4 + 1}", "complete") for n in range(40)]
    starts = [event(100 + n, f"v{n}", "d1", "play") for n in range(10)]
    await publish(producer, settings.topic(EVENTS), [encode(d) for d in [*liked, *starts]])

    def every_replica(n: int) -> bool:
        return all(
            _health(cfg)["deltas_applied"] == n
            for cfg, p in zip(workers.configs, workers.procs, strict=True)
            if p.poll() is None
        )

    shared = len(liked) + len(starts)  # a delta per finish, one per start
    await _until(lambda: every_replica(shared), 60, "both replicas to hold every partition's deltas")
    records = await read_to_end(settings.bootstrap, settings.topic(MODEL))
    deltas = [orjson.loads(r.value) for r in records if r.key != b"cohorts"]
    assert len({(d["partition"], d["offset"]) for d in deltas}) == shared
    assert sum(d.get("start", False) for d in deltas) >= len(starts)
    # a worker killed at once: its uncommitted events are applied again by the next owner, which
    # publishes their deltas again; every replica, the new one too, holds each delta once
    os.kill(procs[0].pid, signal.SIGKILL)
    procs[0].wait(10)
    await publish(
        producer, settings.topic(EVENTS), [encode(event(200 + n, f"w{n}", "k1", "complete")) for n in range(8)]
    )
    workers.start()
    await _until(lambda: every_replica(shared + 8), 90, "every replica to hold each delta once")
    await asyncio.sleep(2)
    assert every_replica(shared + 8), "a delta was applied twice"


@pytest.mark.parametrize("scale", [1000.0, None])
def test_the_trend_array_kept_up_title_by_title_equals_one_gathered_afresh(scale: float | None) -> None:
    """The array is updated only where deltas landed; across rescales and a growing catalog it must stay
    what gathering every count again gives (the trend's scaling, and popularity's: log counts)."""
    import math
    import random

    import numpy as np

    def afresh(trend: SharedTrend, ids: list[str]) -> np.ndarray:
        top = max(trend.counts.values(), default=0.0) or 1.0
        counts = np.asarray([trend.counts.get(i, 0.0) for i in ids])
        if scale is None:
            unit = trend._unit
            return (np.log1p(counts / unit) / math.log1p(top / unit)).astype(np.float32)
        return (np.log1p(counts / top * scale) / math.log1p(scale)).astype(np.float32)

    rng = random.Random(3)
    ids = [f"t{i}" for i in range(300)]
    trend = SharedTrend(half_life=5.0, scale=scale)  # rescales every 200 deltas
    for n in range(5000):
        trend.learn(f"t{rng.randrange(320)}")  # some titles the catalog does not have yet
        if n % 97 == 0:
            if n % 3 == 0:
                ids.append(f"t{300 + n % 20}")  # the catalog grows in place, as Catalog.ids does
            some = np.asarray([0, 5, len(ids) - 1])
            assert np.array_equal(trend.array(ids, some), afresh(trend, ids)[some]), n  # a few rows, alone
            assert trend.value(ids[5]) == pytest.approx(float(afresh(trend, ids)[5]), rel=1e-6), n  # one title
            assert np.array_equal(trend.array(ids), afresh(trend, ids)), n


def test_what_a_finish_teaches_sees_the_title_as_it_was_before_the_viewers_own_start() -> None:
    """Each viewer starts and finishes a title nobody else started: its popularity when chosen was 0.
    Counting the viewer's own start (a moment before) would teach that what viewers finish is popular."""
    log, catalog = Log(), make_catalog()
    processor = Processor(catalog)
    model = PartitionModel()
    for v, item in enumerate(catalog.ids[:8]):
        processor.process([log.event(f"v{v}", item, "play"), log.event(f"v{v}", item, "complete")], {}, model)
    assert processor.shared.popularity.share(catalog.ids[0]) > 0, "the starts are counted"
    assert processor.shared.choice.learned > 0
    assert processor.shared.choice.weights["popularity"] <= 0.0, processor.shared.choice.weights
    x = np.zeros(len(FEATURES))
    processor.shared.without_viewer(x, catalog.ids[0], started=True, liked=False)
    assert x[FEATURES.index("popularity")] == 0.0


def test_a_start_sent_with_the_batch_is_not_taken_out_of_counts_that_do_not_hold_it_yet() -> None:
    """Through workers a start comes back from the model topic after its batch: a finish in the same
    batch sees the title's count without it already, and takes nothing out."""
    log = Log()
    processor = Processor(make_catalog(), share_deltas=True)
    processor.shared.apply(5, 0, "d1", start=True)  # another viewer started d1 before
    batch = [log.event("u1", "d1", "play"), log.event("u1", "d1", "complete")]
    [result] = processor.step(processor.plan([(0, batch)]), {}, {0: PartitionModel()})
    finish = next(d for d in result.deltas if not d.start)
    assert finish.pairs is not None
    # the competitors were never started: each difference is d1's popularity, the other viewer's start
    assert finish.pairs[0][:, FEATURES.index("popularity")].tolist() == pytest.approx([1.0] * len(finish.pairs[0]))


@pytest.mark.broker
async def test_a_worker_publishes_its_cohorts_state_as_of_the_deltas_it_had_applied(
    settings: Settings, workers: Workers, producer: AIOKafkaProducer
) -> None:
    workers.start(cohort_sync_s=0.5)
    await publish(producer, settings.topic(CATALOG), catalog_messages())
    await publish(
        producer,
        settings.topic(EVENTS),
        [encode(event(n, f"v{n}", f"{'dcmk'[n % 4]}{n % 4 + 1}", "complete")) for n in range(24)],
    )
    validator = Draft202012Validator(load_schema("schemas/model-cohorts.json"))

    async def published() -> tuple[list[Any], list[Any]]:
        records = await read_to_end(settings.bootstrap, settings.topic(MODEL))
        return [r for r in records if r.key != b"cohorts"], [r for r in records if r.key == b"cohorts"]

    deadline = time.monotonic() + 60
    while True:
        deltas, states = await published()
        taught = [r.offset for r in deltas if "taste" in orjson.loads(r.value)]
        done = [r for r in states if taught and orjson.loads(r.value)["cohorts"]["as_of"] >= max(taught)]
        if len(taught) == 24 and done:
            break
        assert time.monotonic() < deadline, f"{len(taught)} tastes, {len(states)} states published"
        await asyncio.sleep(0.5)
    state = orjson.loads(done[0].value)
    validator.validate(state)
    replica = SharedModel()  # what the records before it teach, read from the topic as a worker reads it
    replica.reading_from(0)
    for r in sorted([*deltas, *states], key=lambda r: r.offset):
        if r.offset > state["cohorts"]["as_of"]:
            break
        doc = orjson.loads(r.value)
        if r.key == b"cohorts":  # a state published before it (under load, even between the deltas)
            assert replica.adopt(doc["cohorts"], r.offset)
        else:
            replica.apply_document(doc, r.offset)
    assert replica.cohort_state() == state["cohorts"] and state["cohorts"]["seeded"] >= 2
