"""Garbage on every input topic, generated with Hypothesis and mixed with valid messages, against a
real worker: the worker stays up, every bad message lands in its topic's dead-letter topic with the
reason and where it came from, and every good event is applied.

Each message's verdict is known by construction: a valid document with exactly one thing broken
(its key, its bytes, its JSON, or one field), so the reason it must be rejected for is known too.
Checks run in the order :mod:`stream.contracts.validation` documents (key, size, UTF-8, JSON, object, then the
fields in schema order), and only one thing is broken per message, so the first failing check is
the broken one. Each example is one large mixed batch and one broker round trip; the worker and
its topics are shared by the examples (each example uses its own viewer, event and title ids).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import random
import urllib.request
from dataclasses import dataclass
from typing import Any

import hypothesis
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from hypothesis import HealthCheck, Phase, given
from hypothesis import strategies as st

from stream.contracts.topics import CATALOG, COMMANDS, EVENTS, RECOMMENDATIONS
from stream.contracts.validation import COMMANDS as COMMAND_NAMES
from stream.contracts.validation import DEVICES, EVENT_TYPES, MAX_TS, MIN_TS
from stream.settings import Settings

from .catalog_fixture import TITLES, catalog_messages
from .helpers import Workers, consume_until, publish

pytestmark = pytest.mark.faults

NEEDS_POSITION = ("play", "pause", "resume", "skip", "rewind", "seek", "complete", "stop")
NEEDS_OFFSET = ("rewind", "seek")
ITEMS = [t["item_id"] for t in TITLES]
MAX_BYTES = {EVENTS: 16384, CATALOG: 65536, COMMANDS: 16384}  # Settings.max_event_bytes; decode_catalog's limit
MISSING: Any = object()  # a field to remove
GOOD_PER_TOPIC = 25  # valid messages per topic in each batch, beside one of every kind of garbage
WAIT_S = 30.0

EXAMPLES = hypothesis.settings(
    max_examples=3,
    deadline=None,
    database=None,  # nothing written to the worktree
    # each example costs a broker round trip: no shrinking (the failing batch is printed as drawn)
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,  # deliberate: one worker and one set of topics for all examples
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)


@dataclass
class Msg:
    topic: str  # unprefixed topic name
    key: bytes | None
    value: bytes | None
    #: None for a valid message; else the fragments of which the dead letter's reason must hold one.
    reasons: tuple[str, ...] | None
    user: str | None = None  # a valid event's viewer
    event_id: str | None = None


# -- values --------------------------------------------------------------------------------------


def texts(min_size: int, max_size: int) -> st.SearchStrategy[str]:
    return st.text(st.characters(codec="utf-8"), min_size=min_size, max_size=max_size)


NOT_STRING = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
    st.lists(st.integers(0, 9), max_size=3),
    st.dictionaries(texts(0, 3), st.integers(0, 9), max_size=2),
)
NOT_NUMBER = st.one_of(texts(0, 8), st.booleans(), st.none(), st.lists(st.integers(0, 9), max_size=3))
NOT_INTEGER = st.one_of(
    NOT_NUMBER,
    st.floats(min_value=-1e15, max_value=1e15).filter(lambda x: not x.is_integer()),
)
NOT_LIST = st.one_of(texts(0, 8), st.integers(0, 9), st.booleans(), st.none(), st.just({"a": 1}))


def longer_than(n: int) -> st.SearchStrategy[str]:
    """Text of n+1 to n+100 characters (cheap to draw: a short text repeated)."""
    return st.tuples(texts(1, 3), st.integers(n + 1, n + 100)).map(lambda t: (t[0] * (n + 100))[: t[1]])


def many(n: int) -> st.SearchStrategy[list[str]]:
    """A list of more than n valid strings."""
    return st.integers(n + 1, n + 4).map(lambda k: [f"s{i}" for i in range(k)])


LONG_ID = longer_than(128)
SECONDS_OUT_OF_RANGE = st.one_of(
    st.floats(max_value=-1e-9, allow_infinity=False), st.floats(min_value=86400.5, max_value=1e300)
)
TS_OUT_OF_RANGE = st.one_of(
    st.integers(-(2**63), MIN_TS - 1),
    st.integers(MAX_TS + 1, 2**63 - 1),
    st.just(1_767_225_600),  # seconds, not milliseconds
)


def bad_list_item(max_len: int) -> st.SearchStrategy[Any]:
    return st.one_of(st.just(""), longer_than(max_len), NOT_STRING)


# -- valid documents ------------------------------------------------------------------------------
# Valid documents come from a ``random.Random`` seeded by Hypothesis: drawing every character of a
# few hundred documents through Hypothesis would overflow the choices an example may hold. The garbage
# (what is broken, and with which value) is drawn through Hypothesis.

ALPHABET = 'abcXYZ019 -_.:/é中😀\u00a0\u200b\\"'


def text(rng: random.Random, limit: int) -> str:
    """Valid text: short, or exactly at the field's limit (limits count characters, not bytes)."""
    size = limit if rng.random() < 0.1 else rng.randint(1, 10)
    return "".join(rng.choice(ALPHABET) for _ in range(size))


def seconds(rng: random.Random, low: float, exclusive: bool = False) -> float | int:
    edges = [86400, 86400.0] + ([] if exclusive else [low])
    return rng.choice([rng.uniform(low, 86400), rng.randint(int(low) + 1, 86400), rng.choice(edges)])


def event_doc(rng: random.Random, tag: str, i: int, user: str, full: bool) -> dict[str, Any]:
    """A valid event; ``full``: with every optional field, so any type may be set without breaking it."""
    kind = rng.choice(EVENT_TYPES)
    doc: dict[str, Any] = {
        "event_id": f"{tag}-e{i}",
        "user_id": user,
        "item_id": rng.choice(ITEMS),
        "type": kind,
        "ts": rng.choice([rng.randint(MIN_TS, MAX_TS), MIN_TS, MAX_TS, float(MAX_TS)]),  # integral floats count
    }
    if full or kind in NEEDS_POSITION:
        doc["position_s"] = seconds(rng, 0)
        doc["duration_s"] = seconds(rng, 0, exclusive=True)
    if full or kind in NEEDS_OFFSET:
        doc["offset_s"] = seconds(rng, -86400)
    if full or rng.random() < 0.5:
        doc["device"] = rng.choice(DEVICES)
    if full or rng.random() < 0.5:
        doc["session_id"] = rng.choice(["", text(rng, 128)])
    if rng.random() < 0.3:
        doc[rng.choice(["client", "x", "experiment"])] = rng.choice([None, 1, [1, "a"], {"a": None}])  # ignored
    return doc


def catalog_doc(rng: random.Random, item: str, full: bool) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "item_id": item,
        "title": text(rng, 512),
        "genres": [text(rng, 64) for _ in range(rng.randint(1, 3))],
        "duration_s": seconds(rng, 0, exclusive=True),
    }
    if full or rng.random() < 0.5:
        doc["tags"] = [text(rng, 64) for _ in range(rng.randint(0, 3))]
    if full or rng.random() < 0.5:
        doc["release_ts"] = rng.choice([rng.randint(0, MAX_TS), 0, MAX_TS])
    if full or rng.random() < 0.5:
        doc["artwork"] = [text(rng, 128) for _ in range(rng.randint(0, 3))]
    return doc


def command_doc(rng: random.Random, user: str, full: bool) -> dict[str, Any]:
    doc: dict[str, Any] = {"command": rng.choice(COMMAND_NAMES), "ts": rng.randint(MIN_TS, MAX_TS)}
    if full or rng.random() < 0.5:
        doc["user_id"] = user
    for name in ("likes", "dislikes"):
        if full or rng.random() < 0.5:
            doc[name] = [text(rng, 64) for _ in range(rng.randint(0, 4))]
    return doc


# -- one broken field per document: field -> [(replacement or MISSING, reason fragment, type to set)] ----


def id_breaks(field: str, key_bound: bool) -> list[tuple[st.SearchStrategy[Any], str, str | None]]:
    out = [
        (NOT_STRING, f"{field}: expected a string", None),
        (st.just(""), f"{field}: expected 1-128 characters", None),
        (LONG_ID, f"{field}: expected 1-128 characters", None),
        (st.just(MISSING), f"{field}: expected a non-empty string; it is missing", None),
    ]
    if key_bound:
        out.append((texts(1, 12).map(lambda s: "other-" + s), f"{field}: expected the message key", None))
    return out


EVENT_BREAKS: dict[str, list[tuple[st.SearchStrategy[Any], str, str | None]]] = {
    "event_id": id_breaks("event_id", False),
    "user_id": id_breaks("user_id", True),
    "item_id": [*id_breaks("item_id", False), (texts(1, 12).map(lambda s: "nope-" + s), "(unknown)", None)],
    "type": [
        (NOT_STRING, "type: expected one of", None),
        (texts(0, 12).filter(lambda s: s not in EVENT_TYPES), "type: expected one of", None),
        (st.sampled_from([t.upper() for t in EVENT_TYPES]), "type: expected one of", None),
        (st.just(MISSING), "type: expected one of", None),
    ],
    "ts": [
        (NOT_INTEGER, "ts: expected integer epoch milliseconds", None),
        (TS_OUT_OF_RANGE, "ts: expected epoch milliseconds between", None),
        (st.just(MISSING), "ts: expected integer epoch milliseconds; it is missing", None),
    ],
    "position_s": [
        (NOT_NUMBER, "position_s: expected a number of seconds", None),
        (SECONDS_OUT_OF_RANGE, "position_s: expected at least 0", None),
        (st.just(MISSING), "position_s: expected seconds for a play event", "play"),
    ],
    "duration_s": [
        (NOT_NUMBER, "duration_s: expected a number of seconds", None),
        (st.one_of(st.just(0), SECONDS_OUT_OF_RANGE), "duration_s: expected more than 0", None),
        (st.just(MISSING), "duration_s: expected seconds for a complete event", "complete"),
    ],
    "offset_s": [
        (NOT_NUMBER, "offset_s: expected a number of seconds", None),
        (
            st.one_of(st.floats(max_value=-86400.5, allow_infinity=False), st.floats(86400.5, allow_infinity=False)),
            "offset_s: expected at least -86400",
            None,
        ),
        (st.just(MISSING), "offset_s: expected the seconds moved for a seek event", "seek"),
    ],
    "device": [
        (NOT_STRING, "device: expected one of", None),
        (texts(0, 12).filter(lambda s: s not in DEVICES), "device: expected one of", None),
    ],
    "session_id": [
        (NOT_STRING, "session_id: expected a string of at most 128 characters", None),
        (LONG_ID, "session_id: expected a string of at most 128 characters", None),
    ],
}
CATALOG_BREAKS: dict[str, list[tuple[st.SearchStrategy[Any], str, str | None]]] = {
    "item_id": id_breaks("item_id", True),
    "title": [
        (NOT_STRING, "title: expected a string of 1-512 characters", None),
        (st.sampled_from(["", "t" * 513]), "title: expected a string of 1-512 characters", None),
        (st.just(MISSING), "title: expected a string of 1-512 characters; it is missing", None),
    ],
    "genres": [
        (st.just(MISSING), "genres: expected a list of at least 1 strings; it is missing", None),
        (st.just([]), "genres: expected 1-16 strings; got 0", None),
        (NOT_LIST, "genres: expected a list of strings", None),
        (many(16), "genres: expected 1-16 strings", None),
        (bad_list_item(64).map(lambda v: ["drama", v]), "genres: expected strings of 1-64 characters", None),
    ],
    "tags": [
        (NOT_LIST, "tags: expected a list of strings", None),
        (many(64), "tags: expected 0-64 strings", None),
        (bad_list_item(64).map(lambda v: [v]), "tags: expected strings of 1-64 characters", None),
    ],
    "duration_s": [
        (st.just(MISSING), "duration_s: expected the title's length in seconds; it is missing", None),
        (NOT_NUMBER, "duration_s: expected a number of seconds", None),
        (st.one_of(st.just(0), SECONDS_OUT_OF_RANGE), "duration_s: expected more than 0", None),
    ],
    "release_ts": [
        (NOT_INTEGER, "release_ts: expected integer epoch milliseconds", None),
        (st.one_of(st.integers(-(2**63), -1), st.integers(MAX_TS + 1, 2**63 - 1)), "release_ts: expected epoch", None),
    ],
    "artwork": [
        (NOT_LIST, "artwork: expected a list of strings", None),
        (many(32), "artwork: expected 0-32 strings", None),
        (bad_list_item(128).map(lambda v: [v]), "artwork: expected strings of 1-128 characters", None),
    ],
}
COMMAND_BREAKS: dict[str, list[tuple[st.SearchStrategy[Any], str, str | None]]] = {
    "user_id": [
        (NOT_STRING, "user_id: expected a string", None),
        (st.sampled_from(["", "u" * 129]), "user_id: expected 1-128 characters", None),
        (texts(1, 12).map(lambda s: "other-" + s), "user_id: expected the message key", None),
    ],
    "command": [
        (NOT_STRING, "command: expected one of", None),
        (texts(0, 16).filter(lambda s: s not in COMMAND_NAMES), "command: expected one of", None),
        (st.just(MISSING), "command: expected one of", None),
    ],
    "ts": EVENT_BREAKS["ts"],
    "likes": [
        (NOT_LIST, "likes: expected a list of strings", None),
        (many(32), "likes: expected 0-32 strings", None),
        (bad_list_item(64).map(lambda v: [v]), "likes: expected strings of 1-64 characters", None),
    ],
    "dislikes": [(NOT_LIST, "dislikes: expected a list of strings", None)],
}
BREAKS = {EVENTS: EVENT_BREAKS, CATALOG: CATALOG_BREAKS, COMMANDS: COMMAND_BREAKS}


# -- broken envelopes: key, size, bytes, JSON ----------------------------------------------------


def not_json(draw: st.DrawFn, good: bytes) -> bytes:
    """Valid UTF-8 that is not JSON."""
    text = good.decode()
    return draw(
        st.one_of(
            st.integers(1, len(text) - 1).map(lambda n: text[:n].encode()),  # truncated: never closed
            texts(0, 40).map(lambda s: ("#" + s).encode()),
            st.just(b"\xef\xbb\xbf" + good),  # a byte-order mark before the document
            st.sampled_from([b"", b"NaN", b"1e999", b"{'event_id': 'e1'}", b"[" * 1100 + b"]" * 1100]),
            st.just(good.replace(b'"', b"", 2)),
        )
    )


def not_utf8(draw: st.DrawFn, good: bytes) -> bytes:
    at = draw(st.integers(0, len(good)))
    return (
        good[:at] + draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"])) + good[at:]
    )


ENVELOPE = ("null key", "key not UTF-8", "tombstone", "oversized", "not UTF-8", "not JSON", "not an object")


def envelope(draw: st.DrawFn, topic: str, key: bytes, good: bytes, how: str) -> tuple[bytes | None, bytes | None, str]:
    if how == "null key":
        return None, good, "key: expected the UTF-8 id the topic is keyed by; got a null key"
    if how == "key not UTF-8":
        return b"\xff" + key, good, "key: expected UTF-8 text"
    if how == "tombstone":
        return key, None, "value: expected a JSON object; got a null value (tombstone)"
    if how == "oversized":
        limit = MAX_BYTES[topic]
        size = draw(st.integers(limit + 1, limit * 3))
        padded = good[:-1] + b',"pad":"' + b"x" * max(0, size - len(good) - 9) + b'"}'  # still a valid document
        value = draw(st.sampled_from([padded, b"\xff" * size]))
        return key, value, f"value: expected at most {limit} bytes; got {len(value)} bytes"
    if how == "not UTF-8":
        return key, not_utf8(draw, good), "value: expected UTF-8 JSON; got bytes that are not UTF-8"
    if how == "not JSON":
        return key, not_json(draw, good), "value: expected UTF-8 JSON; got invalid JSON"
    value = orjson.dumps(draw(st.one_of(NOT_STRING.filter(lambda v: not isinstance(v, dict)), texts(0, 8))))
    return key, value, "value: expected a JSON object"


# -- a batch ----------------------------------------------------------------------------------------


@st.composite
def batches(draw: st.DrawFn, tag: str) -> list[Msg]:
    """One of every kind of garbage for every topic, GOOD_PER_TOPIC valid messages per topic, shuffled."""
    viewers = [f"{tag}-v{n}" for n in range(3)] + [f"{tag}-é{n}" for n in range(2)]
    # valid commands act (opt_out, forget, ...): they go to viewers of their own, so that the events'
    # viewers are counted as their events alone say
    commanding = [f"{tag}-c{n}" for n in range(3)]
    counter = itertools.count()
    rng = random.Random(draw(st.integers(0, 2**32 - 1), label="seed of the valid documents"))
    out: list[Msg] = []

    def document(topic: str, full: bool) -> tuple[bytes, dict[str, Any]]:
        i = next(counter)
        if topic == EVENTS:
            user = rng.choice(viewers)
            return user.encode(), event_doc(rng, tag, i, user, full)
        if topic == CATALOG:
            item = f"{tag}-t{i}"
            return item.encode(), catalog_doc(rng, item, full)
        user = rng.choice(commanding)
        return user.encode(), command_doc(rng, user, full)

    for topic in (EVENTS, CATALOG, COMMANDS):
        for _ in range(GOOD_PER_TOPIC):
            key, doc = document(topic, full=False)
            if topic == EVENTS:
                out.append(Msg(topic, key, orjson.dumps(doc), None, doc["user_id"], doc["event_id"]))
            else:
                out.append(Msg(topic, key, orjson.dumps(doc), None))
        if topic == CATALOG:  # retiring a title nobody published is valid
            out.append(Msg(topic, f"{tag}-gone-{next(counter)}".encode(), None, None))
        for how in ENVELOPE:
            if topic == CATALOG and how == "tombstone":
                continue  # a catalog tombstone is valid: it retires the title
            key, doc = document(topic, full=True)
            k, v, reason = envelope(draw, topic, key, orjson.dumps(doc), how)
            out.append(Msg(topic, k, v, (reason,)))
        for field, breaks in BREAKS[topic].items():
            for replacement, reason, kind in breaks:
                key, doc = document(topic, full=True)
                value = draw(replacement)
                if kind is not None:
                    doc["type"] = kind
                if value is MISSING:
                    doc.pop(field, None)
                else:
                    doc[field] = value
                out.append(Msg(topic, key, orjson.dumps(doc), (reason,)))
    return draw(st.permutations(out))


# -- checks ------------------------------------------------------------------------------------------


def as_text(raw: bytes | None) -> tuple[str | None, str]:
    """How a dead letter carries bytes: text when UTF-8, else base64."""
    if raw is None:
        return None, "utf-8"
    try:
        return raw.decode(), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode(), "base64"


def health(workers: Workers, index: int = 0) -> dict[str, Any]:
    cfg = workers.configs[index]
    with urllib.request.urlopen(f"http://{cfg.web_host}:{cfg.web_port}/health", timeout=5) as response:
        assert response.status == 200
        return dict(orjson.loads(response.read()))


async def round_trip(settings: Settings, batch: list[Msg]) -> tuple[dict[Any, Any], list[Any], dict[int, tuple]]:
    """Publish ``batch``; return the dead letters of its messages, by (topic, partition, offset), and the snapshots."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap, linger_ms=2)
    await producer.start()
    try:
        futures = [await producer.send(settings.topic(m.topic), key=m.key, value=m.value) for m in batch]
        await producer.flush()
        where = {}
        for n, future in enumerate(futures):
            metadata = await future
            where[n] = (batch[n].topic, metadata.partition, metadata.offset)
    finally:
        await producer.stop()

    bad_at = {where[n] for n, m in enumerate(batch) if m.reasons is not None}
    letters: dict[Any, list[dict[str, Any]]] = {}
    for topic in (EVENTS, CATALOG, COMMANDS):
        wanted = {w for w in bad_at if w[0] == topic}

        def done(records: list[Any], topic: str = topic, wanted: set[Any] = wanted) -> bool:
            got = {(topic, d["partition"], d["offset"]) for d in map(orjson.loads, (r.value for r in records))}
            return wanted <= got

        for record in await consume_until(settings, settings.topic(topic) + "-dlq", done, timeout_s=WAIT_S):
            letter = orjson.loads(record.value)
            letters.setdefault((topic, letter["partition"], letter["offset"]), []).append(letter)

    want = applied_per_viewer(batch)

    def applied(records: list[Any]) -> bool:
        latest = {r.key.decode(): orjson.loads(r.value) for r in records if r.value is not None}  # not forgotten
        return all(latest.get(u, {}).get("events_applied", -1) >= n for u, (n, _) in want.items())

    snapshots = await consume_until(settings, settings.topic(RECOMMENDATIONS), applied, timeout_s=WAIT_S)
    return letters, snapshots, where


def applied_per_viewer(batch: list[Msg]) -> dict[str, tuple[int, str]]:
    """Each viewer's count of valid events in the batch and its last one's id."""
    out: dict[str, tuple[int, str]] = {}
    for m in batch:
        if m.topic == EVENTS and m.reasons is None and m.user is not None and m.event_id is not None:
            out[m.user] = (out.get(m.user, (0, ""))[0] + 1, m.event_id)
    return out


_tags = itertools.count()


def test_garbage_on_every_input_topic_is_dead_lettered_and_good_events_are_applied(
    settings: Settings, workers: Workers
) -> None:
    asyncio.run(publish_catalog(settings))
    worker = workers.start()
    sent_bad = 0
    examples: list[dict[str, int]] = []

    @EXAMPLES
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        nonlocal sent_bad
        tag = f"g{next(_tags)}"
        batch = data.draw(batches(tag), label="batch")
        letters, snapshots, where = asyncio.run(round_trip(settings, batch))

        problems: list[str] = []
        for n, m in enumerate(batch):
            found = letters.get(where[n], [])
            if m.reasons is None:
                if found:
                    problems.append(f"valid {m.topic} message {m.key!r}:{m.value!r:.200} dead-lettered: {found}")
                continue
            if len(found) != 1:
                problems.append(f"{len(found)} dead letters for {m.topic} {m.key!r}:{m.value!r:.200} ({m.reasons})")
                continue
            letter = found[0]
            if not any(r in letter["error"] for r in m.reasons):
                problems.append(f"{m.topic} {m.value!r:.120}: reason {letter['error']!r}, expected {m.reasons}")
            raw, encoding = as_text(m.value)
            key, _ = as_text(m.key)
            expected = {"topic": settings.topic(m.topic), "key": key, "raw": raw, "raw_encoding": encoding}
            actual = {k: letter.get(k) for k in expected}
            if actual != expected:
                problems.append(f"dead letter of {m.topic} {m.value!r:.80} carries {actual}, expected {expected}")
            if not isinstance(letter.get("received_at"), int) or letter["received_at"] <= 0:
                problems.append(f"dead letter without received_at: {letter}")

        latest = {}
        for record in snapshots:
            if record.value is not None:  # a commanding viewer's forget: a tombstone
                snap = orjson.loads(record.value)
                latest[snap["user_id"]] = snap
        for user, (count, last) in applied_per_viewer(batch).items():
            snap = latest.get(user, {})
            if snap.get("events_applied") != count or snap.get("trigger", {}).get("event_id") != last:
                problems.append(f"{user}: {count} valid events up to {last}; latest snapshot {snap!r:.300}")

        bad = sum(m.reasons is not None for m in batch)
        sent_bad += bad
        examples.append({"messages": len(batch), "bad": bad, "viewers": len(applied_per_viewer(batch))})
        assert worker.poll() is None, f"the worker exited with code {worker.returncode}; see {workers.log_path(worker)}"
        state = health(workers)
        assert state.get("catalog_ready") is True, state
        if "dead_letters" in state:
            assert state["dead_letters"] == sent_bad, f"/health counts {state['dead_letters']}, {sent_bad} sent"
        assert not problems, f"{len(problems)} problems, e.g.:\n" + "\n".join(problems[:15])

    check()
    print(f"\ngarbage examples: {examples}")
    assert len(examples) == EXAMPLES.max_examples


async def publish_catalog(settings: Settings) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap)
    await producer.start()
    try:
        await publish(producer, settings.topic(CATALOG), catalog_messages())
    finally:
        await producer.stop()
