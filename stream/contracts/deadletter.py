"""The raw form of a consumed message, and the dead-letter record of one that was rejected."""

from __future__ import annotations

import base64
import hashlib
import time
from dataclasses import dataclass

import orjson

__all__ = ["RawMessage", "dead_letter", "pseudonym"]


@dataclass(slots=True, frozen=True)
class RawMessage:
    key: bytes | None
    value: bytes | None
    topic: str
    partition: int
    offset: int
    #: The record's timestamp, epoch milliseconds (None when not known).
    timestamp_ms: int | None = None


def _text(raw: bytes | None) -> tuple[str | None, str]:
    if raw is None:
        return None, "utf-8"
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode("ascii"), "base64"


def dead_letter(message: RawMessage, error: str, received_at: int | None = None) -> bytes:
    """The dead-letter record of a rejected message (schema: ``dead-letter.json``)."""
    raw, encoding = _text(message.value)
    key, _ = _text(message.key)
    return orjson.dumps(
        {
            "error": error,
            "topic": message.topic,
            "partition": message.partition,
            "offset": message.offset,
            "key": key,
            "raw": raw,
            "raw_encoding": encoding,
            "received_at": received_at if received_at is not None else int(time.time() * 1000),
        }
    )


def pseudonym(user_id: str) -> str:
    """How logs name a viewer: a short hash of its id, the same in every log line, never the id.

    >>> pseudonym("u42") == pseudonym("u42") != pseudonym("u43"), len(pseudonym("u42"))
    (True, 12)
    """
    return hashlib.blake2b(user_id.encode(), digest_size=6, person=b"stream-logs").hexdigest()
