"""stream: playback events in, a fresh recommendation list per viewer out, on Kafka.

The package is layered; each layer imports only the layers above it in this list::

    stream.settings      one frozen settings object, read once from the environment
    stream.contracts     what crosses Kafka: topic specs, message validation, dead-letter records
    stream.learning      what is learned from events: catalog, signals, profiles, features, models
    stream.ranking       pure functions from (viewers, catalog, models) to ranked, explained lists
    stream.processing    the pure batch step: (batch, state) -> (state changes, outputs)
    stream.runtime       Kafka and Faust: the worker app, Faust's internals (one guarded module), the broker
    stream.cli           the ``stream`` command line

Nothing below ``stream.runtime`` imports Faust or aiokafka, and nothing in the
package imports the load-test harness (``loadtest``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stream.settings import Settings, SettingsError

if TYPE_CHECKING:
    from stream.runtime.app import StreamApp, create_app

__all__ = ["Settings", "SettingsError", "StreamApp", "create_app"]


def __getattr__(name: str) -> Any:
    # The worker app pulls in Faust; import it only when asked for, so the pure layers stay light.
    if name in ("StreamApp", "create_app"):
        from stream.runtime import app

        return getattr(app, name)
    raise AttributeError(f"module 'stream' has no attribute {name!r}")
