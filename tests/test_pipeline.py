"""The pipeline across a real broker: events in through a plain aiokafka producer,
snapshots and dead letters out, read with a plain consumer. Nothing is mocked."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from stream.contracts.topics import CATALOG, COMMANDS, EVENTS, RECOMMENDATIONS
from stream.settings import Settings

from .catalog_fixture import catalog_messages, genre_of
from .helpers import Workers, consume_until, encode, event, publish, snapshots


def _mean_score(snapshot: dict[str, Any], genre: str) -> float:
    scores = [i["score"] for i in snapshot["items"] if genre_of(i["item_id"]) == genre]
    return sum(scores) / len(scores)


def _assert_in_score_order(snapshot: dict[str, Any]) -> None:
    """A consumer that sorts a list by score keeps it as it is (diversity re-ranking included)."""
    scores = [i["score"] for i in snapshot["items"]]
    assert all(a >= b for a, b in itertools.pairwise(scores)), f"scores out of rank order: {scores}"


async def _wait_applied(settings: Settings, user: str, applied: int, timeout_s: float = 60.0) -> list[dict[str, Any]]:
    def done(records: list[Any]) -> bool:
        return any(s["events_applied"] >= applied for s in snapshots(records, user))

    records = await consume_until(settings, settings.topic(RECOMMENDATIONS), done, timeout_s)
    found = snapshots(records, user)
    assert found and found[-1]["events_applied"] >= applied, f"no snapshot of {user} with {applied} events: {found}"
    return found


async def test_skips_push_a_genre_down_and_completions_pull_one_up(
    settings: Settings, workers: Workers, producer: AIOKafkaProducer
) -> None:
    await publish(producer, settings.topic(CATALOG), catalog_messages())
    workers.start(top_k=20)  # the whole catalog, so every genre's scores are visible
    topic = settings.topic(EVENTS)

    await publish(producer, topic, [encode(event(1, "ana", "d1", "play"))])
    first = (await _wait_applied(settings, "ana", 1))[-1]

    await publish(producer, topic, [encode(event(n, "ana", f"c{n - 1}", "skip")) for n in (2, 3)])
    after_skips = (await _wait_applied(settings, "ana", 3))[-1]
    assert _mean_score(after_skips, "comedy") < _mean_score(first, "comedy")
    assert all(genre_of(i["item_id"]) != "comedy" for i in after_skips["items"][:4])
    assert {"c1", "c2"}.isdisjoint(i["item_id"] for i in after_skips["items"]), "skipped titles came back"

    await publish(producer, topic, [encode(event(4, "ana", "d1", "complete"))])
    history = await _wait_applied(settings, "ana", 4)
    after_complete = history[-1]
    assert after_complete["items"][0]["item_id"] in {"d2", "d3", "d4"}
    assert _mean_score(after_complete, "drama") > _mean_score(after_skips, "drama")
    assert "d1" not in [i["item_id"] for i in after_complete["items"]], "a completed title was recommended again"
    assert after_complete["trigger"] == {
        "event_id": "ana-e4",
        "type": "complete",
        "ts": after_complete["trigger"]["ts"],
    }
    assert any("because you finished Drama 1" in r for r in after_complete["items"][0]["reasons"])
    # the worker re-ranks for diversity (STREAM_DIVERSITY): scores are relevance less the genre penalty
    assert any(i["score"] < i["relevance"] for i in after_complete["items"]), after_complete["items"]

    versions = [s["version"] for s in history]
    assert versions == list(range(1, len(versions) + 1)), versions
    applied = [s["events_applied"] for s in history]
    assert applied == sorted(applied) and applied[-1] == 4
    for snap in history:
        assert [i["rank"] for i in snap["items"]] == list(range(1, len(snap["items"]) + 1))
        assert all(i["reasons"] for i in snap["items"])
        _assert_in_score_order(snap)


async def test_one_snapshot_per_viewer_per_batch_reflecting_all_its_events(
    settings: Settings, workers: Workers, producer: AIOKafkaProducer
) -> None:
    await publish(producer, settings.topic(CATALOG), catalog_messages())
    viewers = [f"v{n}" for n in range(40)]
    sent = [encode(event(n, v, f"d{1 + n % 4}", "play")) for n in range(5) for v in viewers]
    await publish(producer, settings.topic(EVENTS), sent)
    workers.start()  # after the events: its first fetches hold several events of each viewer

    def done(records: list[Any]) -> bool:
        last = {s["user_id"]: s["events_applied"] for s in snapshots(records)}
        return len(last) == len(viewers) and min(last.values()) == 5

    found = snapshots(await consume_until(settings, settings.topic(RECOMMENDATIONS), done))
    assert len(found) < len(sent) / 2, f"{len(found)} snapshots for {len(sent)} events: batches were not coalesced"
    for viewer in viewers:
        mine = [s for s in found if s["user_id"] == viewer]
        assert [s["version"] for s in mine] == list(range(1, len(mine) + 1))
        applied = [s["events_applied"] for s in mine]
        assert all(a < b for a, b in itertools.pairwise(applied)), f"a snapshot without new events: {applied}"
        assert mine[-1]["events_applied"] == 5
        assert mine[-1]["trigger"]["event_id"] == f"{viewer}-e4"
    for snapshot in found:
        _assert_in_score_order(snapshot)


async def test_malformed_input_goes_to_the_dead_letter_topics_and_good_events_flow(
    settings: Settings, workers: Workers, producer: AIOKafkaProducer
) -> None:
    await publish(producer, settings.topic(CATALOG), [*catalog_messages(), (b"x1", b'{"item_id": "x1"}')])
    workers.start()
    good = [event(n, "bo", f"d{n}", "play") for n in range(1, 4)]
    bad: list[tuple[bytes | None, bytes | None, str]] = [
        (b"bo", b"{not json", "invalid JSON"),
        (b"bo", b"\xff\xfe\x00", "not UTF-8"),
        (None, orjson.dumps(event(9, "bo", "d1", "play")), "null key"),
        (b"bo", orjson.dumps({**event(10, "bo", "d1", "play"), "ts": "yesterday"}), "ts: expected integer"),
        (b"bo", orjson.dumps(event(11, "bo", "d1", "jump")), "type: expected one of"),
        (b"bo", orjson.dumps({**event(12, "bo", "d1", "play"), "event_id": ""}), "event_id: expected 1-128"),
        (b"bo", orjson.dumps(event(13, "bo", "d1", "play", position_s=-5)), "position_s: expected at least 0"),
        (b"bo", orjson.dumps(event(14, "bo", "zz", "play")), "got 'zz' (unknown)"),
        (b"bo", orjson.dumps({**event(15, "bo", "d1", "play"), "pad": "x" * 20000}), "at most 16384 bytes"),
        (b"bo", orjson.dumps([1, 2]), "expected a JSON object"),
    ]
    messages: list[tuple[bytes | None, bytes | None]] = []
    for n, (key, value, _) in enumerate(bad):
        messages.append((key, value))
        if n < len(good):
            messages.append(encode(good[n]))
    await publish(producer, settings.topic(EVENTS), messages)
    await publish(producer, settings.topic(COMMANDS), [(b"bo", b'{"command": "delete_everything", "ts": 1}')])

    await _wait_applied(settings, "bo", len(good))
    dlq = await consume_until(settings, settings.topic(EVENTS) + "-dlq", lambda r: len(r) >= len(bad))
    letters = [orjson.loads(r.value) for r in dlq]
    assert len(letters) == len(bad)
    for letter in letters:
        assert letter["topic"] == settings.topic(EVENTS)
        assert letter["partition"] >= 0 and letter["offset"] >= 0
        assert letter["received_at"] > 0
    for _key, value, reason in bad:
        matching = [x for x in letters if reason in x["error"]]
        assert len(matching) == 1, (reason, [x["error"] for x in letters])
        if matching[0]["raw_encoding"] == "utf-8":
            assert matching[0]["raw"] == value.decode()  # type: ignore[union-attr]

    cat_dlq = await consume_until(settings, settings.topic(CATALOG) + "-dlq", lambda r: len(r) >= 1)
    assert "title" in orjson.loads(cat_dlq[0].value)["error"]
    cmd_dlq = await consume_until(settings, settings.topic(COMMANDS) + "-dlq", lambda r: len(r) >= 1)
    assert "command: expected one of" in orjson.loads(cmd_dlq[0].value)["error"]


async def test_a_title_published_later_is_recommendable_and_a_retired_one_never_again(
    settings: Settings, workers: Workers, producer: AIOKafkaProducer
) -> None:
    await publish(producer, settings.topic(CATALOG), catalog_messages())
    workers.start(top_k=30)  # every title the viewer may get, so each one's presence is visible
    topic = settings.topic(EVENTS)
    await publish(producer, topic, [encode(event(1, "cy", "d1", "complete"))])
    await _wait_applied(settings, "cy", 1)

    # Each round publishes a title and at once an event naming it (one producer request carries
    # both): the worker reads the two topics concurrently, and the event must still find its title.
    # Another viewer starts them: a viewer's own list leaves out what it started lately.
    for n in range(2, 7):
        entry = {
            "item_id": f"n{n}",
            "title": f"New {n}",
            "genres": ["drama"],
            "tags": ["hospital"],
            "duration_s": 3000.0,
        }
        await asyncio.sleep(0.5)  # the worker idles between rounds: its readers back off
        await producer.send(settings.topic(CATALOG), key=f"n{n}".encode(), value=orjson.dumps(entry))
        await publish(producer, topic, [encode(event(n, "cz", f"n{n}", "play"))])
    await _wait_applied(settings, "cz", 5)  # every event applied: none dead-lettered
    await publish(producer, topic, [encode(event(2, "cy", "d1", "rewind"))])
    last = (await _wait_applied(settings, "cy", 2))[-1]
    assert {"n2", "n3", "n4", "n5", "n6", "d2"} <= {i["item_id"] for i in last["items"]}, last["items"]

    await publish(producer, settings.topic(CATALOG), [(b"d2", None)])
    for n in range(3, 13):  # a retirement is read concurrently with the events: poll with events
        await publish(producer, topic, [encode(event(n, "cy", "c1", "play"))])
        ids = [i["item_id"] for i in (await _wait_applied(settings, "cy", n))[-1]["items"]]
        if "d2" not in ids:
            break
    assert "d2" not in ids, ids
    await publish(producer, topic, [encode(event(n + 1, "cy", "c2", "play"))])
    assert "d2" not in [i["item_id"] for i in (await _wait_applied(settings, "cy", n + 1))[-1]["items"]]


async def test_a_restarted_worker_resumes_from_its_state(
    settings: Settings, workers: Workers, producer: AIOKafkaProducer
) -> None:
    await publish(producer, settings.topic(CATALOG), catalog_messages())
    first = workers.start()
    topic = settings.topic(EVENTS)
    await publish(producer, topic, [encode(event(n, "di", f"d{n}", "complete")) for n in (1, 2)])
    before = (await _wait_applied(settings, "di", 2))[-1]

    first.send_signal(signal.SIGTERM)  # a restart (a crash is the next test's subject)
    first.wait(30)
    await publish(producer, topic, [encode(event(n, "di", f"c{n - 2}", "skip")) for n in (3, 4)])
    workers.start()
    after = (await _wait_applied(settings, "di", 4, timeout_s=90))[-1]

    assert after["events_applied"] == 4, "state was lost or applied twice across the restart"
    assert after["version"] > before["version"]
    ids = [i["item_id"] for i in after["items"]]
    assert {"d1", "d2", "c1", "c2"}.isdisjoint(ids), "the restarted worker forgot what it knew"
    assert genre_of(ids[0]) == "drama"


async def test_a_worker_killed_mid_stream_loses_nothing_and_applies_nothing_twice(
    settings: Settings, workers: Workers, producer: AIOKafkaProducer
) -> None:
    await publish(producer, settings.topic(CATALOG), catalog_messages())
    first = workers.start()
    viewers = [f"v{n}" for n in range(300)]
    items = ["d1", "d2", "d3", "d4", "c1", "c2", "c3", "c4", "m1", "m2"]

    async def send(rounds: range) -> None:
        for n in rounds:
            await publish(producer, settings.topic(EVENTS), [encode(event(n, v, items[n], "play")) for v in viewers])
            await asyncio.sleep(0.05)

    await send(range(0, 6))
    os.kill(first.pid, signal.SIGKILL)
    first.wait(10)
    await send(range(6, 10))
    # the same event published twice by a producer changes nothing the second time
    await publish(producer, settings.topic(EVENTS), [encode(event(9, v, items[9], "play")) for v in viewers[:50]])
    workers.start()

    def done(records: list[Any]) -> bool:
        last = {s["user_id"]: s["events_applied"] for s in snapshots(records)}
        return len(last) == len(viewers) and min(last.values()) >= 10

    found = snapshots(await consume_until(settings, settings.topic(RECOMMENDATIONS), done, timeout_s=120))
    last = {s["user_id"]: s["events_applied"] for s in found}
    assert sorted(set(last.values())) == [10], f"events_applied per viewer: {sorted(set(last.values()))}"
