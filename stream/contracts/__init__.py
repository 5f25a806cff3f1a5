"""What crosses Kafka: topic specs (``topics/*.json``), message validation, dead-letter records.

The contract with producers and consumers. Imports nothing of ``stream`` but
:mod:`stream.settings`, and no Kafka client.
"""

from stream.contracts.deadletter import RawMessage, dead_letter
from stream.contracts.topics import CATALOG, COMMANDS, EVENTS, RECOMMENDATIONS, TopicSpec, load_schema, load_specs
from stream.contracts.validation import (
    CatalogEntry,
    InvalidMessage,
    PlaybackEvent,
    decode_catalog,
    decode_command,
    decode_event,
)

__all__ = [
    "CATALOG",
    "COMMANDS",
    "EVENTS",
    "RECOMMENDATIONS",
    "CatalogEntry",
    "InvalidMessage",
    "PlaybackEvent",
    "RawMessage",
    "TopicSpec",
    "dead_letter",
    "decode_catalog",
    "decode_command",
    "decode_event",
    "load_schema",
    "load_specs",
]
