"""Publish JSON lines to the right topic, keyed correctly (``stream produce``).

Each line is one message. Its shape says where it goes:

- a playback event (has ``event_id``) goes to ``playback-events``, keyed by ``user_id``;
- else a catalog entry (has ``title``) goes to ``catalog``, keyed by ``item_id``;
- else a viewer command (has ``command``) goes to ``user-commands``, keyed by ``user_id``;
- ``{"retire": "<item_id>"}`` (that field alone) publishes a tombstone that retires that title.

Lines are validated against the topic's schema first; a rejected line is
reported with its number and reason and not published.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import orjson
from aiokafka import AIOKafkaProducer

from stream.contracts.topics import CATALOG, COMMANDS, EVENTS
from stream.contracts.validation import InvalidMessage, decode_catalog, decode_command, decode_event
from stream.settings import Settings

__all__ = ["ProduceReport", "produce_lines", "route"]


@dataclass
class ProduceReport:
    sent: Counter[str] = field(default_factory=Counter)
    rejected: list[tuple[int, str]] = field(default_factory=list)


def route(line: str) -> tuple[str, bytes, bytes | None]:
    """(unprefixed topic, key, value) for one JSON line, or raise :class:`InvalidMessage`."""
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise InvalidMessage(f"expected one JSON object per line; got invalid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise InvalidMessage(f"expected a JSON object; got {type(doc).__name__}")
    value = orjson.dumps(doc)
    # the identifying field decides; the schemas allow unknown extra fields, so others may be present
    if "event_id" in doc:
        key = _key(doc, "user_id", "a playback event")
        decode_event(key, value)
        return EVENTS, key, value
    if "title" in doc:
        key = _key(doc, "item_id", "a catalog entry")
        decode_catalog(key, value)
        return CATALOG, key, value
    if "command" in doc:
        key = _key(doc, "user_id", "a viewer command")
        decode_command(key, value)
        return COMMANDS, key, value
    if set(doc) == {"retire"}:
        item = doc["retire"]
        if not isinstance(item, str) or not item:
            raise InvalidMessage(f"retire: expected a title id; got {item!r}")
        return CATALOG, item.encode(), None
    raise InvalidMessage(
        "expected a playback event (event_id), a catalog entry (title), "
        f'a command (command) or a retirement ({{"retire": id}}); got fields {sorted(doc)}'
    )


def _key(doc: dict[str, object], field_name: str, what: str) -> bytes:
    value = doc.get(field_name)
    if not isinstance(value, str) or not value:
        raise InvalidMessage(f"{field_name}: expected the id {what} is keyed by; got {value!r}")
    return value.encode()


async def produce_lines(settings: Settings, lines: Iterable[str]) -> ProduceReport:
    report = ProduceReport()
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap, linger_ms=5, acks="all")
    await producer.start()
    try:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                topic, key, value = route(line)
            except InvalidMessage as exc:
                report.rejected.append((number, str(exc)))
                continue
            await producer.send(settings.topic(topic), key=key, value=value)
            report.sent[settings.topic(topic)] += 1
        await producer.flush()
    finally:
        await producer.stop()
    return report
