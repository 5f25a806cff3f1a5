"""Aged lists are re-ranked: the schedule (no broker), the refreshed snapshot (no broker), and a worker
doing it across a real broker."""

from __future__ import annotations

import signal
import time
from dataclasses import replace
from typing import Any

import numpy as np
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from loadtest.replay_replica import Replica
from stream.contracts.topics import CATALOG, EVENTS, RECOMMENDATIONS
from stream.learning.features import FEATURES
from stream.learning.outcome import PRIOR
from stream.learning.profile import AWAY_MS, Profile
from stream.processing.refresh import COMPACT_SLACK, Refresher
from stream.processing.step import BatchResult
from stream.settings import Settings
from tests.test_commands import SNAPSHOT, Log, Worker, _snapshots
from tests.test_ranking import T0, genre, rows

from .catalog_fixture import catalog_messages
from .helpers import Workers, consume_until, encode, event, publish, snapshots

HOUR = 3_600_000


def test_lists_come_up_in_the_order_they_aged_and_only_while_their_viewer_is_active() -> None:
    r = Refresher(after_ms=HOUR, active_ms=3 * HOUR)
    for n, user in enumerate(["a", "b", "c"]):
        r.listed(0, user, ranked_ms=n * 10, last_event_ms=n * 10)
    r.listed(1, "d", ranked_ms=0, last_event_ms=0)
    assert r.due(0, clock_ms=HOUR - 1, limit=10) == []
    assert r.due(0, clock_ms=HOUR + 15, limit=1) == ["a"], "the longest due first, at most the limit"
    assert r.due(0, clock_ms=HOUR + 15, limit=10) == ["b"]
    assert r.pending(0) == 1 and r.pending(1) == 1
    # a list ranked again (an event came) moves its viewer's turn; the old entry is skipped
    r.listed(0, "c", ranked_ms=HOUR, last_event_ms=HOUR)
    assert r.due(0, clock_ms=2 * HOUR - 1, limit=10) == []
    assert r.due(0, clock_ms=2 * HOUR, limit=10) == ["c"]
    # refreshed each hour while c's newest event is at most 3 hours old: at 2, 3 and 4 hours, not at 5
    for at in (2, 3, 4):
        r.listed(0, "c", ranked_ms=at * HOUR, last_event_ms=HOUR)
        turn = r.due(0, clock_ms=(at + 1) * HOUR, limit=10)
        assert turn == (["c"] if at < 4 else []), at
    r.drop([1])
    assert r.partitions() == [0] and r.due(1, clock_ms=10 * HOUR, limit=10) == []
    with pytest.raises(ValueError, match="after_ms"):
        Refresher(after_ms=0, active_ms=HOUR)


def test_a_viewer_listed_over_and_over_keeps_one_live_entry_and_a_bounded_heap() -> None:
    r = Refresher(after_ms=HOUR, active_ms=10 * HOUR)
    for n in range(5 * COMPACT_SLACK):
        r.listed(0, f"v{n % 3}", ranked_ms=n, last_event_ms=n)
    assert r.pending(0) == 3
    assert len(r._heaps[0]) <= 2 * 3 + COMPACT_SLACK + 1
    assert sorted(r.due(0, clock_ms=100 * HOUR, limit=10)) == ["v0", "v1", "v2"]


def test_note_schedules_the_personalised_lists_of_a_step_and_gives_its_newest_event() -> None:
    r = Refresher(after_ms=HOUR, active_ms=3 * HOUR)
    fan, out = Profile("fan"), Profile("out")
    fan.last_ts, out.last_ts, out.opted_out = 5, 9, 0
    result = BatchResult(profiles={"fan": fan, "out": out}, snapshots=[("fan", b"{}"), ("out", b"{}")])
    assert r.note(0, result) == 9
    assert r.due(0, clock_ms=HOUR + 5, limit=10) == ["fan"], "an opted-out viewer's list is not scheduled"
    r.note(0, BatchResult(profiles={"fan": fan}, snapshots=[("fan", b"{}")]), ranked_ms=2 * HOUR)
    assert r.due(0, clock_ms=3 * HOUR - 1, limit=10) == [] and r.due(0, clock_ms=3 * HOUR, limit=10) == ["fan"]


def test_a_refreshed_list_follows_what_others_did_since_and_is_the_viewers_next_snapshot() -> None:
    log, w = Log(), Worker(top_k=4)
    stored = _snapshots(w.run([log.event("u1", "d1", "complete")]))["u1"]
    w.run([log.event(f"o{n}", "m3", "complete") for n in range(30)])  # since: many finish a documentary
    time.sleep(0.6)  # ranking reuses the partition's trending values for half a second (velocity.REFRESH_S)
    state = w.state()
    at = T0 + 10**6
    result = w.processor.refresh({"u1": w.store["u1"]}, w.model, at, generated_at=123)
    [(user, raw)] = result.snapshots
    snap = orjson.loads(raw)
    SNAPSHOT.validate(snap)
    assert user == "u1" and snap["refreshed_at"] == at and snap["generated_at"] == 123
    assert snap["version"] == stored["version"] + 1, "a refreshed list is the viewer's next version"
    assert snap["events_applied"] == stored["events_applied"] and snap["trigger"] == stored["trigger"]
    titles = [i["item_id"] for i in snap["items"]]
    assert "m3" in titles and "m3" not in [i["item_id"] for i in stored["items"]]
    assert w.state() == state, "a refresh changed the model"
    profile = result.profiles["u1"]
    assert profile.version == snap["version"] and profile.listed == titles[: len(profile.listed)]
    assert profile.applied == Profile.loads(w.store["u1"]).applied
    w.store.update(rows(result.profiles))
    after = _snapshots(w.run([log.event("u1", "d2", "play")]))["u1"]
    assert after["version"] == snap["version"] + 1 and "refreshed_at" not in after


def test_an_opted_out_viewers_refreshed_list_is_impersonal_and_writes_nothing() -> None:
    log, w = Log(), Worker(top_k=4)
    w.run([log.event("u1", "d1", "complete"), log.command("u1", "opt_out")])
    result = w.processor.refresh({"u1": w.store["u1"]}, w.model, T0 + 10**6, generated_at=1)
    [(_, raw)] = result.snapshots
    snap = orjson.loads(raw)
    SNAPSHOT.validate(snap)
    assert snap["personalised"] is False and result.profiles == {}


def test_the_replay_replica_refreshes_the_lists_that_aged_by_its_newest_event() -> None:
    catalog = [orjson.loads(value) for _, value in catalog_messages()]
    replica = Replica(catalog, replace(Settings(partitions=2), refresh_after_s=3600.0, refresh_lead=0.0))
    first = replica.apply("u1", [event(0, "u1", "d1", "complete", ts=T0)])
    assert first and replica.refresh() == {}
    replica.apply("u2", [event(0, "u2", "d2", "complete", ts=T0 + HOUR - 1)])
    assert replica.refresh() == {}, "not an hour old yet"
    replica.apply("u2", [event(1, "u2", "d3", "complete", ts=T0 + HOUR)])
    refreshed = replica.refresh()
    assert list(refreshed) == ["u1"] and len(refreshed["u1"]) == len(first) and replica.refreshed == 1
    assert Profile.loads(replica.rows["u1"]).version == 2


def test_the_first_refresh_comes_the_lead_before_a_day_since_the_viewers_event_and_the_next_a_day_later() -> None:
    catalog = [orjson.loads(value) for _, value in catalog_messages()]
    replica = Replica(catalog, replace(Settings(partitions=2), refresh_after_s=3600.0, refresh_lead=0.25))
    replica.apply("u1", [event(0, "u1", "d1", "complete", ts=T0)])
    clock = iter(range(1, 10))

    def refreshed_at(ts: int) -> list[str]:
        replica.apply("u2", [event(next(clock), "u2", "d2", "complete", ts=ts)])  # moves the clock on
        return sorted(replica.refresh())

    first = T0 + HOUR - HOUR // 4  # a quarter of the hour early
    assert refreshed_at(first - 1) == [] and refreshed_at(first) == ["u1"]
    # then every hour after that refresh (u2 is listed again by each of its events: never due)
    assert refreshed_at(first + HOUR - 1) == [] and refreshed_at(first + HOUR) == ["u1"]


async def test_a_worker_refreshes_a_list_once_the_deployments_clock_has_moved_past_its_age(
    settings: Settings, workers: Workers, producer: AIOKafkaProducer
) -> None:
    """u1 acts two hours ago (event time), u2 an hour later: u1's list is re-ranked at u2's time, once."""
    await publish(producer, settings.topic(CATALOG), catalog_messages())
    workers.start(refresh_after_s=600.0, refresh_lead=0.0)
    then = int(time.time() * 1000) - 2 * HOUR
    await publish(producer, settings.topic(EVENTS), [encode(event(0, "u1", "d1", "complete", ts=then))])
    await consume_until(settings, settings.topic(RECOMMENDATIONS), lambda rs: len(snapshots(rs, "u1")) == 1)
    await publish(producer, settings.topic(EVENTS), [encode(event(0, "u2", "d2", "complete", ts=then + HOUR))])

    def refreshed(records: list[Any]) -> bool:
        return any("refreshed_at" in s for s in snapshots(records, "u1"))

    mine = snapshots(await consume_until(settings, settings.topic(RECOMMENDATIONS), refreshed), "u1")
    assert [s["version"] for s in mine] == [1, 2]
    first, again = mine
    SNAPSHOT.validate(again)
    assert again["refreshed_at"] == then + HOUR, "re-ranked at the deployment's clock: the newest event applied"
    assert again["events_applied"] == 1 and again["trigger"] == first["trigger"]
    # more refresh rounds (every half second) bring nothing: no list is 10 minutes old by the clock now
    assert len(snapshots(await consume_until(settings, settings.topic(RECOMMENDATIONS), lambda _: False, 3.0))) == 3


async def test_a_worker_taking_a_partition_over_refreshes_the_lists_it_recovered(
    settings: Settings, workers: Workers, producer: AIOKafkaProducer
) -> None:
    """u1's list was made by a worker that stopped; the next one refreshes it, with no new event of u1,
    once another viewer of u1's partition moves the clock on."""
    await publish(producer, settings.topic(CATALOG), catalog_messages())
    every = list(range(settings.partitions))
    home = DefaultPartitioner()(b"u1", every, every)
    neighbour = next(f"n{k}" for k in range(100) if DefaultPartitioner()(f"n{k}".encode(), every, every) == home)
    first = workers.start(refresh_after_s=600.0, refresh_lead=0.0)
    then = int(time.time() * 1000) - 2 * HOUR
    await publish(producer, settings.topic(EVENTS), [encode(event(0, "u1", "d1", "complete", ts=then))])
    await consume_until(settings, settings.topic(RECOMMENDATIONS), lambda rs: len(snapshots(rs, "u1")) == 1)
    first.send_signal(signal.SIGTERM)
    first.wait(30)

    workers.start(refresh_after_s=600.0, refresh_lead=0.0)
    await publish(producer, settings.topic(EVENTS), [encode(event(0, neighbour, "d2", "complete", ts=then + HOUR))])

    def refreshed(records: list[Any]) -> bool:
        return any("refreshed_at" in s for s in snapshots(records, "u1"))

    mine = snapshots(await consume_until(settings, settings.topic(RECOMMENDATIONS), refreshed, 90.0), "u1")
    assert [s["version"] for s in mine] == [1, 2] and mine[1]["refreshed_at"] == then + HOUR
    assert mine[1]["events_applied"] == 1


def test_a_list_for_a_viewer_back_after_a_while_is_ranked_with_the_weights_of_viewers_back() -> None:
    """Within a visit the weights here give nothing for what others watch, so the drama fan's list opens with
    drama; back after AWAY_MS they give only the trend, so its read and its refreshed list open with the
    documentary everyone finished."""
    log, w = Log(), Worker(top_k=4)
    w.run([log.event("u1", "d1", "complete")])
    w.run([log.event(f"o{n}", "m3", "complete") for n in range(30)])
    choice, prior = w.processor.shared.choice, np.asarray([PRIOR[f] for f in FEATURES])
    others = [FEATURES.index(f) for f in ("popularity", "trending", "trend")]
    choice.w[others] = -prior[others]
    choice.away[:] = -(prior + choice.w)  # back after a while: all weights 0 ...
    choice.away[FEATURES.index("trend")] += 10.0  # ... but the trend's
    row, last = w.store["u1"], Profile.loads(w.store["u1"]).last_ts
    in_visit = orjson.loads(w.processor.read_list(row, w.model, last + AWAY_MS - 1))["items"]
    back = orjson.loads(w.processor.read_list(row, w.model, last + AWAY_MS))["items"]
    [(_, raw)] = w.processor.refresh({"u1": row}, w.model, last + AWAY_MS, generated_at=1).snapshots
    assert genre(in_visit[0]["item_id"]) == "drama"
    assert back[0]["item_id"] == "m3" and orjson.loads(raw)["items"][0]["item_id"] == "m3"
