"""Decoding and validation of input messages (stream.contracts.validation), and its agreement with topics/schemas.

The hand-written checks must accept exactly what the published JSON Schemas accept: the
property tests below generate valid documents and mutated ones and compare both verdicts.
"""

from __future__ import annotations

from typing import Any

import hypothesis
import orjson
import pytest
from hypothesis import HealthCheck, given
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from stream.contracts.topics import CATALOG, COMMANDS, EVENTS, TOPICS_DIR, load_schema, load_specs
from stream.contracts.validation import COMMANDS as COMMAND_NAMES
from stream.contracts.validation import (
    DEVICES,
    EVENT_TYPES,
    MAX_TS,
    MIN_TS,
    CatalogEntry,
    InvalidMessage,
    PlaybackEvent,
    UserCommand,
    decode_catalog,
    decode_command,
    decode_event,
)
from stream.settings import Settings

T0 = 1_767_225_600_000  # 2026-01-01 00:00 UTC
NEEDS_POSITION = ("play", "pause", "resume", "skip", "rewind", "seek", "complete", "stop")
NEEDS_OFFSET = ("rewind", "seek")
PROPERTY_TEST = hypothesis.settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def schema_of(topic: str) -> dict[str, Any]:
    """The value schema the topic spec of ``topic`` names (the one producers are told to follow)."""
    return load_schema(load_specs(Settings())[topic].value_schema)


EVENT_SCHEMA = schema_of(EVENTS)
CATALOG_SCHEMA = schema_of(CATALOG)
COMMAND_SCHEMA = schema_of(COMMANDS)


def event_doc(kind: str = "thumbs_up", **fields: Any) -> dict[str, Any]:
    """A valid playback event of ``kind`` with the fields that type needs; ``fields`` override."""
    doc: dict[str, Any] = {"event_id": "e1", "user_id": "u1", "item_id": "t1", "type": kind, "ts": T0}
    if kind in NEEDS_POSITION:
        doc |= {"position_s": 900.0, "duration_s": 3000.0}
    if kind in NEEDS_OFFSET:
        doc["offset_s"] = -30.0
    doc |= fields
    return doc


def catalog_doc(**fields: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"item_id": "t1", "title": "Night Shift", "genres": ["drama", "crime"], "duration_s": 3000.0}
    doc |= fields
    return doc


def command_doc(command: str = "opt_out", **fields: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"user_id": "u1", "command": command, "ts": T0}
    doc |= fields
    return doc


def without(doc: dict[str, Any], field: str) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != field}


def raw(doc: Any) -> bytes:
    return orjson.dumps(doc)


# --- playback events: what decodes ------------------------------------------------------------


@pytest.mark.parametrize("kind", EVENT_TYPES)
def test_a_valid_event_of_each_type_decodes_with_its_fields(kind: str) -> None:
    doc = event_doc(kind)
    event = decode_event(b"u1", raw(doc))
    expected = PlaybackEvent(
        "e1",
        "u1",
        "t1",
        kind,
        T0,
        position_s=doc.get("position_s"),
        duration_s=doc.get("duration_s"),
        offset_s=doc.get("offset_s"),
    )
    assert event == expected, f"expected {expected}; got {event}"


@pytest.mark.parametrize("kind", [k for k in EVENT_TYPES if k not in NEEDS_POSITION])
def test_events_that_need_no_position_decode_without_one(kind: str) -> None:
    event = decode_event(b"u1", raw(event_doc(kind)))
    assert (event.position_s, event.duration_s, event.offset_s) == (None, None, None), (
        f"{kind} without positions: expected no positions; got {event}"
    )


def test_integer_seconds_decode_as_floats() -> None:
    event = decode_event(b"u1", raw(event_doc("seek", position_s=60, duration_s=3000, offset_s=-10)))
    assert (event.position_s, event.duration_s, event.offset_s) == (60.0, 3000.0, -10.0)
    assert all(isinstance(v, float) for v in (event.position_s, event.duration_s, event.offset_s)), (
        f"expected float seconds; got {event}"
    )


def test_unknown_extra_fields_are_ignored() -> None:
    plain = decode_event(b"u1", raw(event_doc("play")))
    extra = decode_event(b"u1", raw(event_doc("play", client={"app": "tv", "build": [1, 2]}, experiment=None, x=1)))
    assert extra == plain, f"expected extra fields to change nothing ({plain}); got {extra}"


def test_optional_device_session_and_artwork_decode() -> None:
    doc = event_doc("play", device="tv", session_id="s-42", artwork_id="art-7")
    event = decode_event(b"u1", raw(doc))
    assert (event.device, event.session_id, event.artwork_id) == ("tv", "s-42", "art-7"), f"got {event}"


@pytest.mark.parametrize("device", DEVICES)
def test_every_device_decodes(device: str) -> None:
    assert decode_event(b"u1", raw(event_doc(device=device))).device == device


def test_boundary_values_are_accepted() -> None:
    """The limits themselves are inside: ids of 128 characters, ts at 2000-01-01 and 2100-01-01, a full day."""
    long_id = "é" * 128  # 128 characters, 256 bytes: limits count characters
    for doc in (
        event_doc(event_id=long_id, user_id=long_id, item_id=long_id),
        event_doc(ts=MIN_TS),
        event_doc(ts=MAX_TS),
        event_doc("seek", position_s=0, duration_s=86400, offset_s=-86400),
        event_doc("seek", position_s=86400.0, duration_s=5e-324, offset_s=86400),
    ):
        key = doc["user_id"].encode()
        try:
            decode_event(key, raw(doc))
        except InvalidMessage as exc:
            pytest.fail(f"expected {doc} to decode; got InvalidMessage({exc})")


def test_progress_is_position_over_duration_capped_at_one() -> None:
    assert decode_event(b"u1", raw(event_doc("stop", position_s=750, duration_s=3000))).progress == 0.25
    assert decode_event(b"u1", raw(event_doc("stop", position_s=4000, duration_s=3000))).progress == 1.0
    assert decode_event(b"u1", raw(event_doc("thumbs_up"))).progress is None


# --- playback events: what is rejected, and why ------------------------------------------------

OK_KEY = b"u1"
OK_VALUE = raw(event_doc("play"))
TYPES = ", ".join(EVENT_TYPES)

EVENT_REJECTIONS = [
    pytest.param(None, OK_VALUE, ["key:", "null key"], id="null-key"),
    pytest.param(b"\xff\xfe", OK_VALUE, ["key:", "UTF-8", r"b'\xff\xfe'"], id="key-not-utf8"),
    pytest.param(OK_KEY, None, ["value:", "null value"], id="null-value"),
    pytest.param(OK_KEY, b'{"event_id": "\xff"}', ["value:", "not UTF-8"], id="value-not-utf8"),
    pytest.param(OK_KEY, b'{"event_id": "e1",', ["value:", "invalid JSON"], id="not-json"),
    pytest.param(OK_KEY, b"NaN", ["value:", "invalid JSON"], id="nan-literal"),
    pytest.param(OK_KEY, b'[{"event_id": "e1"}]', ["value:", "JSON object", "got array"], id="json-array"),
    pytest.param(OK_KEY, b"42", ["value:", "JSON object", "got number 42"], id="json-number"),
    pytest.param(OK_KEY, b'"play"', ["value:", "JSON object", "got string 'play'"], id="json-string"),
    pytest.param(OK_KEY, raw(without(event_doc(), "event_id")), ["event_id:", "missing"], id="no-event_id"),
    pytest.param(OK_KEY, raw(without(event_doc(), "user_id")), ["user_id:", "missing"], id="no-user_id"),
    pytest.param(OK_KEY, raw(without(event_doc(), "item_id")), ["item_id:", "missing"], id="no-item_id"),
    pytest.param(OK_KEY, raw(without(event_doc(), "type")), ["type:", "missing"], id="no-type"),
    pytest.param(OK_KEY, raw(without(event_doc(), "ts")), ["ts:", "missing"], id="no-ts"),
    pytest.param(OK_KEY, raw(event_doc(event_id=None)), ["event_id:", "got null"], id="null-event_id"),
    pytest.param(OK_KEY, raw(event_doc(event_id="")), ["event_id:", "1-128 characters", "got 0"], id="empty-event_id"),
    pytest.param(OK_KEY, raw(event_doc(event_id="e" * 129)), ["event_id:", "got 129"], id="event_id-129-chars"),
    pytest.param(OK_KEY, raw(event_doc(item_id=7)), ["item_id:", "got number 7"], id="item_id-number"),
    pytest.param(b"u2", raw(event_doc()), ["user_id:", "message key 'u2'", "got 'u1'"], id="user_id-not-key"),
    pytest.param(OK_KEY, raw(event_doc(ts="2026-01-01")), ["ts:", "got string '2026-01-01'"], id="ts-string"),
    pytest.param(OK_KEY, raw(event_doc(ts=T0 + 0.5)), ["ts:", "integer", "got number 1767225600000.5"], id="ts-float"),
    pytest.param(OK_KEY, raw(event_doc(ts=True)), ["ts:", "got boolean True"], id="ts-bool"),
    pytest.param(OK_KEY, raw(event_doc("play", position_s="12")), ["position_s:", "got string '12'"], id="pos-string"),
    pytest.param(OK_KEY, raw(event_doc("play", position_s=True)), ["position_s:", "got boolean"], id="pos-bool"),
    pytest.param(OK_KEY, raw(event_doc(device=3)), ["device:", "got number 3"], id="device-int"),
    pytest.param(OK_KEY, raw(event_doc(type="binge")), ["type:", TYPES, "got 'binge'"], id="unknown-type"),
    pytest.param(OK_KEY, raw(event_doc(type="PLAY")), ["type:", "got 'PLAY'"], id="type-wrong-case"),
    pytest.param(OK_KEY, raw(event_doc(device="fridge")), ["device:", "got 'fridge'"], id="unknown-device"),
    pytest.param(OK_KEY, raw(event_doc("play", position_s=-1)), ["position_s:", "at least 0", "got -1"], id="pos<0"),
    pytest.param(OK_KEY, raw(event_doc("play", duration_s=0)), ["duration_s:", "more than 0", "got 0"], id="dur=0"),
    pytest.param(OK_KEY, raw(event_doc("play", duration_s=-0.0)), ["duration_s:", "got -0.0"], id="dur=-0.0"),
    pytest.param(OK_KEY, raw(event_doc("play", position_s=86400.5)), ["position_s:", "got 86400.5"], id="pos>86400"),
    pytest.param(OK_KEY, raw(event_doc("seek", offset_s=-86401)), ["offset_s:", "got -86401"], id="offset<-86400"),
    pytest.param(OK_KEY, raw(event_doc(ts=MIN_TS - 1)), ["ts:", f"got {MIN_TS - 1}"], id="ts-before-2000"),
    pytest.param(OK_KEY, raw(event_doc(ts=MAX_TS + 1)), ["ts:", f"got {MAX_TS + 1}"], id="ts-after-2100"),
    pytest.param(
        OK_KEY, raw(without(event_doc("play"), "position_s")), ["position_s:", "play", "missing"], id="play-no-pos"
    ),
    pytest.param(
        OK_KEY, raw(without(event_doc("play"), "duration_s")), ["duration_s:", "play", "missing"], id="play-no-dur"
    ),
    pytest.param(
        OK_KEY, raw(without(event_doc("rewind"), "offset_s")), ["offset_s:", "rewind", "missing"], id="rewind-no-off"
    ),
    pytest.param(
        OK_KEY, raw(without(event_doc("seek"), "offset_s")), ["offset_s:", "seek", "missing"], id="seek-no-offset"
    ),
    pytest.param(OK_KEY, raw(event_doc(session_id="s" * 129)), ["session_id:", "at most 128"], id="session_id-129"),
    pytest.param(OK_KEY, raw(event_doc(artwork_id=["a1"])), ["artwork_id:", "got array ['a1']"], id="artwork_id-list"),
]


@pytest.mark.parametrize(("key", "value", "fragments"), EVENT_REJECTIONS)
def test_an_invalid_event_is_rejected_with_a_reason_naming_the_field_and_what_arrived(
    key: bytes | None, value: bytes | None, fragments: list[str]
) -> None:
    with pytest.raises(InvalidMessage) as caught:
        decode_event(key, value)
    reason = str(caught.value)
    missing = [f for f in fragments if f not in reason]
    assert not missing, f"expected the reason to contain {missing}; got {reason!r}"


@pytest.mark.parametrize("size", [100, 16384])
def test_a_value_over_max_bytes_is_rejected_before_it_is_parsed(size: int) -> None:
    doc = event_doc(padding="x" * size)
    value = raw(doc)
    assert len(value) > size
    with pytest.raises(InvalidMessage) as caught:
        decode_event(b"u1", value, max_bytes=size)
    expected = f"value: expected at most {size} bytes; got {len(value)} bytes"
    assert str(caught.value) == expected, f"expected {expected!r}; got {str(caught.value)!r}"
    # with room for exactly its size the same message decodes
    assert decode_event(b"u1", value, max_bytes=len(value)).event_id == "e1"


@pytest.mark.parametrize("field", ["position_s", "duration_s", "offset_s", "ts"])
def test_a_number_too_large_for_a_double_is_rejected(field: str) -> None:
    """1e309 overflows a double; orjson refuses it while parsing, so it never reaches the range checks."""
    doc = event_doc("seek")
    doc[field] = "__HUGE__"
    value = raw(doc).replace(b'"__HUGE__"', b"1e309")
    with pytest.raises(InvalidMessage) as caught:
        decode_event(b"u1", value)
    reason = str(caught.value)
    assert reason.startswith("value: expected UTF-8 JSON; got invalid JSON") and "infinity" in reason, (
        f"expected an invalid-JSON rejection naming the infinite number; got {reason!r}"
    )


# --- catalog ----------------------------------------------------------------------------------


def test_a_valid_catalog_entry_decodes() -> None:
    doc = catalog_doc(tags=["hospital", "night"], release_ts=T0, artwork=["art-1", "art-2"])
    entry = decode_catalog(b"t1", raw(doc))
    expected = CatalogEntry(
        "t1", "Night Shift", ("drama", "crime"), ("hospital", "night"), 3000.0, T0, ("art-1", "art-2")
    )
    assert entry == expected, f"expected {expected}; got {entry}"


def test_a_minimal_catalog_entry_decodes_with_empty_tags_and_artwork() -> None:
    entry = decode_catalog(b"t1", raw(catalog_doc()))
    assert entry == CatalogEntry("t1", "Night Shift", ("drama", "crime"), (), 3000.0, None, ()), f"got {entry}"


def test_a_catalog_tombstone_decodes_to_none() -> None:
    assert decode_catalog(b"t1", None) is None


def test_artwork_ids_decode_in_order() -> None:
    ids = [f"art-{n}" for n in range(32)]
    entry = decode_catalog(b"t1", raw(catalog_doc(artwork=ids)))
    assert entry is not None and entry.artwork == tuple(ids), f"expected {tuple(ids)}; got {entry}"


CATALOG_REJECTIONS = [
    pytest.param(None, None, ["key:", "null key"], id="null-key-and-value-is-no-tombstone"),
    pytest.param(b"t1", raw(without(catalog_doc(), "title")), ["title:", "it is missing"], id="no-title"),
    pytest.param(b"t1", raw(catalog_doc(title="")), ["title:", "got string ''"], id="empty-title"),
    pytest.param(b"t1", raw(catalog_doc(genres=[])), ["genres:", "1-16 strings", "got 0"], id="empty-genres"),
    pytest.param(b"t1", raw(without(catalog_doc(), "genres")), ["genres:", "missing"], id="no-genres"),
    pytest.param(b"t1", raw(catalog_doc(genres="drama")), ["genres:", "got string 'drama'"], id="genres-string"),
    pytest.param(b"t1", raw(catalog_doc(genres=["drama", ""])), ["genres:", "got ''"], id="empty-genre"),
    pytest.param(b"t2", raw(catalog_doc()), ["item_id:", "message key 't2'", "got 't1'"], id="item_id-not-key"),
    pytest.param(b"t1", raw(without(catalog_doc(), "duration_s")), ["duration_s:", "missing"], id="no-duration"),
    pytest.param(b"t1", raw(catalog_doc(duration_s=0)), ["duration_s:", "got 0"], id="duration-0"),
    pytest.param(b"t1", raw(catalog_doc(release_ts=-1)), ["release_ts:", "got -1"], id="release-negative"),
    pytest.param(b"t1", raw(catalog_doc(artwork=["a" * 129])), ["artwork:", "1-128 characters"], id="artwork-129"),
    pytest.param(b"t1", raw(catalog_doc(artwork=[7])), ["artwork:", "got 7"], id="artwork-number"),
]


@pytest.mark.parametrize(("key", "value", "fragments"), CATALOG_REJECTIONS)
def test_an_invalid_catalog_entry_is_rejected_with_a_reason(
    key: bytes | None, value: bytes | None, fragments: list[str]
) -> None:
    with pytest.raises(InvalidMessage) as caught:
        decode_catalog(key, value)
    reason = str(caught.value)
    missing = [f for f in fragments if f not in reason]
    assert not missing, f"expected the reason to contain {missing}; got {reason!r}"


# --- user commands ----------------------------------------------------------------------------


@pytest.mark.parametrize("command", COMMAND_NAMES)
def test_each_command_decodes(command: str) -> None:
    decoded = decode_command(b"u1", raw(command_doc(command)))
    assert decoded == UserCommand("u1", command, T0), f"expected a plain {command}; got {decoded}"


def test_likes_and_dislikes_decode_as_tuples() -> None:
    doc = command_doc("set_preferences", likes=["drama", "crime"], dislikes=["horror"])
    decoded = decode_command(b"u1", raw(doc))
    assert (decoded.likes, decoded.dislikes) == (("drama", "crime"), ("horror",)), f"got {decoded}"


def test_a_command_without_user_id_belongs_to_the_key() -> None:
    decoded = decode_command(b"u7", raw(without(command_doc("forget"), "user_id")))
    assert decoded.user_id == "u7", f"expected the key 'u7' as user_id; got {decoded.user_id!r}"


COMMAND_REJECTIONS = [
    pytest.param(
        b"u1",
        raw(command_doc("nuke")),
        ["command:", "opt_out, opt_in, forget, set_preferences", "'nuke'"],
        id="unknown-command",
    ),
    pytest.param(b"u1", raw(without(command_doc(), "command")), ["command:", "missing"], id="no-command"),
    pytest.param(b"u2", raw(command_doc()), ["user_id:", "message key 'u2'", "got 'u1'"], id="user_id-not-key"),
    pytest.param(b"u1", raw(command_doc(user_id="")), ["user_id:", "got 0"], id="empty-user_id"),
    pytest.param(b"u1", raw(without(command_doc(), "ts")), ["ts:", "missing"], id="no-ts"),
    pytest.param(b"u1", raw(command_doc(likes="drama")), ["likes:", "got string 'drama'"], id="likes-string"),
    pytest.param(b"u1", raw(command_doc(dislikes=["x"] * 33)), ["dislikes:", "0-32", "got 33"], id="dislikes-33"),
    pytest.param(None, raw(command_doc()), ["key:", "null key"], id="null-key"),
]


@pytest.mark.parametrize(("key", "value", "fragments"), COMMAND_REJECTIONS)
def test_an_invalid_command_is_rejected_with_a_reason(key: bytes | None, value: bytes, fragments: list[str]) -> None:
    with pytest.raises(InvalidMessage) as caught:
        decode_command(key, value)
    reason = str(caught.value)
    missing = [f for f in fragments if f not in reason]
    assert not missing, f"expected the reason to contain {missing}; got {reason!r}"


# --- the schemas themselves -------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted((TOPICS_DIR / "schemas").glob("*.json")), ids=lambda p: p.name)
def test_every_schema_file_is_a_valid_draft_2020_12_schema(path: Any) -> None:
    schema = orjson.loads(path.read_bytes())
    assert schema.get("$schema") == "https://json-schema.org/draft/2020-12/schema", (
        f"{path.name}: expected $schema draft 2020-12; got {schema.get('$schema')!r}"
    )
    Draft202012Validator.check_schema(schema)


def test_the_enumerations_match_the_schemas() -> None:
    props = EVENT_SCHEMA["properties"]
    assert tuple(props["type"]["enum"]) == EVENT_TYPES
    assert tuple(props["device"]["enum"]) == DEVICES
    assert tuple(COMMAND_SCHEMA["properties"]["command"]["enum"]) == COMMAND_NAMES
    conditions = {
        tuple(rule["if"]["properties"]["type"]["enum"]): rule["then"]["required"] for rule in EVENT_SCHEMA["allOf"]
    }
    assert conditions == {NEEDS_POSITION: ["position_s", "duration_s"], NEEDS_OFFSET: ["offset_s"]}, (
        f"expected position for {NEEDS_POSITION} and offset for {NEEDS_OFFSET}; the schema says {conditions}"
    )


# --- agreement with the JSON Schemas ----------------------------------------------------------
#
# Each field can take a valid value, a value at or just past one of its limits, or a value of another
# JSON type. The sweep tries every such single change on valid documents (deterministic, so every
# limit is checked on every run); the property test combines changes and draws arbitrary values.
# Two classes of value are left out of both because code and schema knowingly disagree on them
# (see test_known_disagreements_with_the_schema at the end): null in a field that is not always
# required, and an integral float such as 1767225600000.0 in an integer field.

ID_EDGES = ["", "x", "x" * 128, "x" * 129, "é" * 128, "😀" * 128, "😀" * 129]
TITLE_EDGES = ["", "x", "x" * 512, "x" * 513, "😀" * 512, "😀" * 513]
SECONDS_EDGES = [0, 0.0, -0.0, 5e-324, -5e-324, -1e-9, -0.5, -1, 0.5, 1, 86399.999, 86400, 86400.0, 86400.000001]
SECONDS_EDGES += [86401, -86400, -86400.0, -86400.000001, -86401, 1e300, -1e300, 2**63 - 1, -(2**63)]
TS_EDGES = [MIN_TS - 1, MIN_TS, MAX_TS, MAX_TS + 1, 0, -1, 2**63 - 1, -(2**63), T0 + 0.5, MIN_TS - 0.5, MAX_TS + 0.5]
RELEASE_EDGES = [-1, 0, 1, MAX_TS, MAX_TS + 1, -0.5, 0.5, MAX_TS + 0.5]
WRONG_TYPES: list[Any] = [True, False, 1.5, "", "x", "1767225600000", [], ["x"], [None], {}, {"k": "v"}]


def list_edges(max_items: int, item_limit: int) -> list[Any]:
    return [
        [],
        ["x"],
        ["x"] * max_items,
        ["x"] * (max_items + 1),
        [""],
        ["x" * item_limit],
        ["x" * (item_limit + 1)],
        ["😀" * item_limit],
        [1],
        [None],
        [True],
        [["x"]],
        ["x", 1],
    ]


EVENT_EDGES: dict[str, list[Any]] = {
    "event_id": ID_EDGES,
    "user_id": ID_EDGES,
    "item_id": ID_EDGES,
    "type": [*EVENT_TYPES, "", "PLAY", "thumbs-up", "binge"],
    "ts": TS_EDGES,
    "position_s": SECONDS_EDGES,
    "duration_s": SECONDS_EDGES,
    "offset_s": SECONDS_EDGES,
    "device": [*DEVICES, "", "TV", "fridge"],
    "session_id": ID_EDGES,
    "artwork_id": ID_EDGES,
}
CATALOG_EDGES: dict[str, list[Any]] = {
    "item_id": ID_EDGES,
    "title": TITLE_EDGES,
    "genres": list_edges(16, 64),
    "tags": list_edges(64, 64),
    "release_ts": RELEASE_EDGES,
    "duration_s": SECONDS_EDGES,
    "artwork": list_edges(32, 128),
}
COMMAND_EDGES: dict[str, list[Any]] = {
    "user_id": ID_EDGES,
    "command": [*COMMAND_NAMES, "", "OPT_OUT", "delete"],
    "ts": TS_EDGES,
    "likes": list_edges(32, 64),
    "dislikes": list_edges(32, 64),
}
# fields whose null both sides reject; null elsewhere is one of the known disagreements
ALWAYS_REQUIRED = {
    EVENTS: {"event_id", "user_id", "item_id", "type", "ts"},
    CATALOG: {"item_id", "title", "genres", "duration_s"},
    COMMANDS: {"command", "ts"},
}
EDGES = {EVENTS: EVENT_EDGES, CATALOG: CATALOG_EDGES, COMMANDS: COMMAND_EDGES}
SCHEMAS = {EVENTS: EVENT_SCHEMA, CATALOG: CATALOG_SCHEMA, COMMANDS: COMMAND_SCHEMA}
VALIDATORS = {topic: Draft202012Validator(schema) for topic, schema in SCHEMAS.items()}
DECODERS: dict[str, Any] = {EVENTS: decode_event, CATALOG: decode_catalog, COMMANDS: decode_command}
KEY_FIELDS = {EVENTS: "user_id", CATALOG: "item_id", COMMANDS: "user_id"}


def verdicts(topic: str, doc: dict[str, Any]) -> tuple[bool, str, bool, str]:
    """(code accepts, why; schema accepts, why) for ``doc``, keyed by its key field when that is a string."""
    decode = DECODERS[topic]
    key_value = doc.get(KEY_FIELDS[topic])
    key = key_value.encode() if isinstance(key_value, str) else b"u1"
    value = raw(doc)
    assert len(value) <= 16384, f"expected generated documents under every max_bytes; got {len(value)} bytes"
    wire = orjson.loads(value)  # what a consumer sees: the document after a JSON round trip
    error = best_match(VALIDATORS[topic].iter_errors(wire))
    try:
        decode(key, value)
        code_ok, code_reason = True, "accepted"
    except InvalidMessage as exc:
        code_ok, code_reason = False, f"rejected ({exc})"
    return code_ok, code_reason, error is None, "accepted" if error is None else f"rejected ({error.message})"


def assert_agree(topic: str, doc: dict[str, Any]) -> None:
    code_ok, code_reason, schema_ok, schema_reason = verdicts(topic, doc)
    assert code_ok == schema_ok, (
        f"expected {DECODERS[topic].__name__} to agree with the schema on {doc!r}; "
        f"schema: {schema_reason}; {DECODERS[topic].__name__}: {code_reason}"
    )


def single_field_changes(topic: str, bases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each base with one field dropped, or set to one of its edge values or to a value of another type."""
    docs = []
    for base in bases:
        for name, edges in EDGES[topic].items():
            docs.append(without(base, name))
            wrong = [*WRONG_TYPES, None] if name in ALWAYS_REQUIRED[topic] else WRONG_TYPES
            docs.extend(base | {name: value} for value in [*edges, *wrong])
    return docs


EVENT_BASES = [event_doc(kind) for kind in EVENT_TYPES]
EVENT_BASES += [event_doc(kind, device="tv", session_id="s1", artwork_id="a1") for kind in ("seek", "thumbs_up")]
CATALOG_BASES = [catalog_doc(), catalog_doc(tags=["night"], release_ts=T0, artwork=["a1"])]
COMMAND_BASES = [command_doc(c) for c in COMMAND_NAMES]
COMMAND_BASES += [without(command_doc(c, likes=["drama"], dislikes=["horror"]), "user_id") for c in COMMAND_NAMES]


@pytest.mark.parametrize(
    ("topic", "bases"),
    [(EVENTS, EVENT_BASES), (CATALOG, CATALOG_BASES), (COMMANDS, COMMAND_BASES)],
    ids=["event", "catalog", "command"],
)
def test_every_single_field_change_gets_the_schemas_verdict(topic: str, bases: list[dict[str, Any]]) -> None:
    docs = single_field_changes(topic, bases)
    disagree, accepted = [], 0
    for doc in docs:
        code_ok, code_reason, schema_ok, schema_reason = verdicts(topic, doc)
        accepted += schema_ok
        if code_ok != schema_ok:
            disagree.append(f"{doc!r}: schema {schema_reason}; {DECODERS[topic].__name__} {code_reason}")
    assert 0 < accepted < len(docs), f"expected a mix of valid and invalid changes; {accepted} of {len(docs)} valid"
    assert not disagree, f"{len(disagree)} of {len(docs)} documents disagree, e.g.\n" + "\n".join(disagree[:8])


def texts(min_size: int, max_size: int) -> st.SearchStrategy[str]:
    return st.text(st.characters(codec="utf-8"), min_size=min_size, max_size=max_size)


def ids() -> st.SearchStrategy[str]:
    return texts(1, 12)


def other_json(null: bool, any_float: bool = True) -> st.SearchStrategy[Any]:
    """JSON values of any type; ``null`` only where both sides reject it, integral floats only where allowed."""
    if any_float:
        floats = st.floats(allow_nan=False, allow_infinity=False)
    else:
        floats = st.floats(min_value=-1e15, max_value=1e15).map(lambda x: x + 0.5 if x.is_integer() else x)
    scalars = st.one_of(st.booleans(), st.integers(-(2**63), 2**63 - 1), floats, texts(0, 6))
    values = st.one_of(
        scalars,
        st.lists(st.one_of(scalars, st.none()), max_size=3),
        st.dictionaries(texts(0, 4), st.one_of(scalars, st.none()), max_size=3),
    )
    return st.one_of(st.none(), values) if null else values


def seconds(low: float, high: float, exclude_low: bool = False) -> st.SearchStrategy[float | int]:
    return st.one_of(st.floats(low, high, exclude_min=exclude_low), st.integers(int(low) + int(exclude_low), int(high)))


def timestamps(low: int = MIN_TS) -> st.SearchStrategy[int]:
    return st.integers(low, MAX_TS)


def string_lists(max_items: int, min_items: int = 0) -> st.SearchStrategy[list[str]]:
    return st.lists(texts(1, 10), min_size=min_items, max_size=min(max_items, 4))


INTEGER_FIELDS = {"ts", "release_ts"}
VALID_VALUES: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    EVENTS: {
        "event_id": ids(),
        "user_id": ids(),
        "item_id": ids(),
        "type": st.sampled_from(EVENT_TYPES),
        "ts": timestamps(),
        "position_s": seconds(0, 86400),
        "duration_s": seconds(0, 86400, exclude_low=True),
        "offset_s": seconds(-86400, 86400),
        "device": st.sampled_from(DEVICES),
        "session_id": texts(0, 12),
        "artwork_id": texts(0, 12),
    },
    CATALOG: {
        "item_id": ids(),
        "title": texts(1, 20),
        "genres": string_lists(16, 1),
        "tags": string_lists(64),
        "release_ts": timestamps(0),
        "duration_s": seconds(0, 86400, exclude_low=True),
        "artwork": string_lists(32),
    },
    COMMANDS: {
        "user_id": ids(),
        "command": st.sampled_from(COMMAND_NAMES),
        "ts": timestamps(),
        "likes": string_lists(32),
        "dislikes": string_lists(32),
    },
}


def any_value(topic: str, name: str) -> st.SearchStrategy[Any]:
    """A valid value of the field, one of its edge values, or a value of any JSON type."""
    return st.one_of(
        VALID_VALUES[topic][name],
        st.sampled_from(EDGES[topic][name]),
        other_json(null=name in ALWAYS_REQUIRED[topic], any_float=name not in INTEGER_FIELDS),
    )


@st.composite
def valid_documents(draw: st.DrawFn, topic: str) -> dict[str, Any]:
    """The always-required fields, the ones its type requires, and a random choice of the others."""
    values = VALID_VALUES[topic]
    doc = {name: draw(values[name]) for name in values if name in ALWAYS_REQUIRED[topic]}
    needed = set()
    if topic == EVENTS:
        needed |= {"position_s", "duration_s"} if doc["type"] in NEEDS_POSITION else set()
        needed |= {"offset_s"} if doc["type"] in NEEDS_OFFSET else set()
    for name in values:
        if name not in doc and (name in needed or draw(st.booleans())):
            doc[name] = draw(values[name])
    return doc


@st.composite
def documents(draw: st.DrawFn, topic: str) -> dict[str, Any]:
    """A valid document with up to four mutations: a field dropped or replaced, or an unknown field added."""
    doc = draw(valid_documents(topic))
    names = sorted(VALID_VALUES[topic])
    for _ in range(draw(st.sampled_from([0, 1, 1, 1, 2, 2, 3]))):
        action = draw(st.sampled_from(["replace", "drop", "replace", "extra"]))
        if action == "extra":
            name = draw(texts(1, 8).filter(lambda n: n not in names))
            doc[name] = draw(other_json(null=True))
            continue
        name = draw(st.sampled_from(names))
        if action == "drop":
            doc.pop(name, None)
        else:
            doc[name] = draw(any_value(topic, name))
    return doc


@pytest.mark.parametrize("topic", [EVENTS, CATALOG, COMMANDS])
def test_the_valid_generator_makes_schema_valid_documents(topic: str) -> None:
    """Guards the property test below: its unmutated documents must be valid, or agreement proves little."""

    @hypothesis.settings(PROPERTY_TEST, max_examples=50)
    @given(valid_documents(topic))
    def check(doc: dict[str, Any]) -> None:
        errors = [e.message for e in VALIDATORS[topic].iter_errors(orjson.loads(raw(doc)))]
        assert not errors, f"expected a schema-valid document; {doc!r} has {errors}"

    check()


@pytest.mark.parametrize("topic", [EVENTS, CATALOG, COMMANDS])
def test_the_decoder_accepts_exactly_what_the_schema_accepts(topic: str) -> None:
    @PROPERTY_TEST
    @given(documents(topic))
    def check(doc: dict[str, Any]) -> None:
        assert_agree(topic, doc)

    check()


# Two edges the generators above leave out, decided explicitly: the schemas have no null, so a null
# optional field is rejected; JSON Schema 2020-12 counts 1767225600000.0 as an integer, and so does the decoder.
NULL_OPTIONAL = "null in an optional field"
INTEGRAL_FLOAT = "an integral float in an integer field"
KNOWN = [
    pytest.param(EVENTS, event_doc(device=None), NULL_OPTIONAL, id="event-device-null"),
    pytest.param(EVENTS, event_doc(position_s=None), NULL_OPTIONAL, id="event-thumbs_up-position-null"),
    pytest.param(EVENTS, event_doc("play", offset_s=None), NULL_OPTIONAL, id="event-play-offset-null"),
    pytest.param(EVENTS, event_doc(session_id=None), NULL_OPTIONAL, id="event-session_id-null"),
    pytest.param(EVENTS, event_doc(artwork_id=None), NULL_OPTIONAL, id="event-artwork_id-null"),
    pytest.param(EVENTS, event_doc(ts=float(T0)), INTEGRAL_FLOAT, id="event-ts-integral-float"),
    pytest.param(CATALOG, catalog_doc(tags=None), NULL_OPTIONAL, id="catalog-tags-null"),
    pytest.param(CATALOG, catalog_doc(release_ts=None), NULL_OPTIONAL, id="catalog-release_ts-null"),
    pytest.param(CATALOG, catalog_doc(artwork=None), NULL_OPTIONAL, id="catalog-artwork-null"),
    pytest.param(CATALOG, catalog_doc(release_ts=float(T0)), INTEGRAL_FLOAT, id="catalog-release_ts-integral-float"),
    pytest.param(COMMANDS, command_doc(user_id=None), NULL_OPTIONAL, id="command-user_id-null"),
    pytest.param(COMMANDS, command_doc(likes=None), NULL_OPTIONAL, id="command-likes-null"),
    pytest.param(COMMANDS, command_doc(dislikes=None), NULL_OPTIONAL, id="command-dislikes-null"),
    pytest.param(COMMANDS, command_doc(ts=float(T0)), INTEGRAL_FLOAT, id="command-ts-integral-float"),
]


@pytest.mark.parametrize(
    ("topic", "doc"),
    [pytest.param(*case.values[:2], id=case.id) for case in KNOWN],
)
def test_null_optional_fields_and_integral_floats_agree_with_the_schema(topic: str, doc: dict[str, Any]) -> None:
    assert_agree(topic, doc)
