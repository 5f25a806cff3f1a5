"""Routing JSON lines to topics for ``stream produce`` (stream.cli.produce.route); no broker involved."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator

from stream.cli.produce import route
from stream.contracts.topics import CATALOG, COMMANDS, EVENTS, load_schema, load_specs
from stream.contracts.validation import InvalidMessage
from stream.settings import Settings

T0 = 1_767_225_600_000  # 2026-01-01 00:00 UTC
EVENT = {
    "event_id": "e1",
    "user_id": "u1",
    "item_id": "t1",
    "type": "play",
    "ts": T0,
    "position_s": 1.0,
    "duration_s": 3000.0,
}
ENTRY = {"item_id": "t1", "title": "Night Shift", "genres": ["drama"], "duration_s": 3000.0}
COMMAND = {"user_id": "u1", "command": "set_preferences", "ts": T0, "likes": ["drama"]}


def line(doc: dict[str, Any]) -> str:
    return orjson.dumps(doc).decode()


@pytest.mark.parametrize(
    ("doc", "topic", "key"),
    [
        pytest.param(EVENT, EVENTS, b"u1", id="event"),
        pytest.param(EVENT | {"user_id": "viewer-ü"}, EVENTS, "viewer-ü".encode(), id="event-utf8-key"),
        pytest.param(ENTRY, CATALOG, b"t1", id="catalog"),
        pytest.param(COMMAND, COMMANDS, b"u1", id="command"),
        pytest.param({"user_id": "u2", "command": "forget", "ts": T0}, COMMANDS, b"u2", id="forget"),
    ],
)
def test_a_line_routes_to_its_topic_keyed_by_its_id_with_the_same_document(
    doc: dict[str, Any], topic: str, key: bytes
) -> None:
    routed_topic, routed_key, value = route(line(doc))
    assert (routed_topic, routed_key) == (topic, key), (
        f"expected ({topic!r}, {key!r}); got ({routed_topic!r}, {routed_key!r})"
    )
    assert value is not None and orjson.loads(value) == doc, f"expected the document {doc}; got {value!r}"


def test_a_line_with_surrounding_whitespace_routes_like_the_bare_line() -> None:
    assert route(f"  {line(EVENT)}\n") == route(line(EVENT))


def test_a_retirement_publishes_a_tombstone_to_the_catalog() -> None:
    assert route('{"retire": "t1"}') == (CATALOG, b"t1", None)


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        pytest.param('{"event_id": "e1",', ["expected one JSON object per line", "invalid JSON"], id="invalid-json"),
        pytest.param("", ["invalid JSON"], id="empty-line"),
        pytest.param("[1, 2]", ["expected a JSON object", "got list"], id="array"),
        pytest.param('"play"', ["expected a JSON object", "got str"], id="string"),
        pytest.param("null", ["expected a JSON object"], id="null"),
        pytest.param('{"name": "x", "rating": 5}', ["got fields ['name', 'rating']"], id="unrecognised-shape"),
        pytest.param("{}", ["expected a playback event", "got fields []"], id="empty-object"),
        pytest.param(
            line({k: v for k, v in EVENT.items() if k != "user_id"}), ["user_id:", "got None"], id="event-no-key"
        ),
        pytest.param(line(EVENT | {"user_id": 7}), ["user_id:", "a playback event", "got 7"], id="event-key-number"),
        pytest.param(
            line({k: v for k, v in ENTRY.items() if k != "item_id"}), ["item_id:", "got None"], id="entry-no-key"
        ),
        pytest.param(
            line({"command": "forget", "ts": T0}), ["user_id:", "a viewer command", "got None"], id="cmd-no-key"
        ),
        pytest.param('{"retire": ""}', ["retire:", "got ''"], id="retire-empty"),
        pytest.param('{"retire": 5}', ["retire:", "got 5"], id="retire-number"),
        pytest.param(line(EVENT | {"ts": "now"}), ["ts:", "got string 'now'"], id="event-ts-string"),
        pytest.param(line(EVENT | {"type": "binge"}), ["type:", "got 'binge'"], id="event-unknown-type"),
        pytest.param(line(ENTRY | {"genres": []}), ["genres:", "got 0"], id="entry-no-genres"),
        pytest.param(line(COMMAND | {"command": "nuke"}), ["command:", "got 'nuke'"], id="command-unknown"),
    ],
)
def test_a_line_that_cannot_be_published_raises_invalid_message_saying_why(text: str, fragments: list[str]) -> None:
    with pytest.raises(InvalidMessage) as caught:
        route(text)
    reason = str(caught.value)
    missing = [f for f in fragments if f not in reason]
    assert not missing, f"expected the reason to contain {missing}; got {reason!r}"


# The schemas allow unknown extra fields, so a field that marks another topic's shape must not
# send a line elsewhere.
EXTRA_FIELD_LINES = [
    pytest.param(ENTRY | {"type": "movie"}, CATALOG, b"t1", id="catalog-entry-with-type"),
    pytest.param(EVENT | {"retire": "t9"}, EVENTS, b"u1", id="event-with-retire"),
    pytest.param(EVENT | {"command": "from-remote"}, EVENTS, b"u1", id="event-with-command"),
]


@pytest.mark.parametrize(("doc", "topic", "key"), EXTRA_FIELD_LINES)
def test_the_lines_with_extra_fields_are_valid_for_their_topics_schema(
    doc: dict[str, Any], topic: str, key: bytes
) -> None:
    """The premise of the routing test below: each of these documents is one its topic accepts."""
    schema = load_schema(load_specs(Settings())[topic].value_schema)
    errors = [e.message for e in Draft202012Validator(schema).iter_errors(doc)]
    assert not errors and doc[load_specs(Settings())[topic].key].encode() == key, f"{doc}: {errors}"


@pytest.mark.parametrize(("doc", "topic", "key"), EXTRA_FIELD_LINES)
def test_a_schema_valid_line_with_an_extra_field_routes_by_its_shape(
    doc: dict[str, Any], topic: str, key: bytes
) -> None:
    try:
        got = route(line(doc))
    except InvalidMessage as exc:
        raise AssertionError(f"expected {doc} to route to {topic!r}; got InvalidMessage({exc})") from None
    assert got[:2] == (topic, key), f"expected {doc} to route to ({topic!r}, {key!r}); got {got}"
