"""Kafka and Faust: the worker app, the embedded broker and the client helpers.

- :mod:`~stream.runtime.app`: the Faust app: topics, tables and thin agents around the batch step;
- :mod:`~stream.runtime._faust`: everything that touches Faust's or aiokafka's internals, and
  the version check that guards it;
- :mod:`~stream.runtime.kafka`: topic creation, partitions, reading a topic to its end;
- :mod:`~stream.runtime.broker`: the embedded Kafka-compatible broker for development and tests;
- :mod:`~stream.runtime.lifetime`: child processes that die with the process that started them.

The top of the package: may import every layer below it, and is imported only by :mod:`stream.cli`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stream.runtime.app import StreamApp, create_app
    from stream.runtime.broker import EmbeddedBroker, free_port
    from stream.runtime.kafka import create_topics, partitions_of, read_to_end

__all__ = ["EmbeddedBroker", "StreamApp", "create_app", "create_topics", "free_port", "partitions_of", "read_to_end"]
_HOME = {
    "StreamApp": "app",
    "create_app": "app",
    "EmbeddedBroker": "broker",
    "free_port": "broker",
    "create_topics": "kafka",
    "partitions_of": "kafka",
    "read_to_end": "kafka",
}


def __getattr__(name: str) -> Any:
    # Imported on first use: the tools that only produce or read topics need not load Faust.
    if name in _HOME:
        return getattr(importlib.import_module(f"stream.runtime.{_HOME[name]}"), name)
    raise AttributeError(f"module 'stream.runtime' has no attribute {name!r}")
