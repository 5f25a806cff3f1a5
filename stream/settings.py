"""One settings object, loaded once from the environment.

Every field documents its variable and default; the README's settings table is
checked against :data:`VARIABLES` by a test, so the two never drift apart.

>>> s = Settings.from_env({"STREAM_TOP_K": "5", "STREAM_TOPIC_PREFIX": "run1."})
>>> s.top_k, s.topic("playback-events")
(5, 'run1.playback-events')
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

__all__ = ["VARIABLES", "Settings", "SettingsError"]


class SettingsError(ValueError):
    """An environment variable holds a value the worker cannot use."""


@dataclass(frozen=True)
class Settings:
    #: STREAM_BOOTSTRAP: Kafka bootstrap servers, comma-separated host:port.
    bootstrap: str = "127.0.0.1:9092"
    #: STREAM_APP_ID: Faust app id; the consumer group and the prefix of internal topics.
    app_id: str = "stream"
    #: STREAM_TOPIC_PREFIX: prepended to every topic name (run-scoped topics).
    topic_prefix: str = ""
    #: STREAM_PARTITIONS: partitions of the viewer-keyed topics and of the state changelogs.
    partitions: int = 8
    #: STREAM_REPLICATION: replication factor of every topic the project creates.
    replication: int = 1
    #: STREAM_DATA_DIR: Faust's data directory (table metadata, local state).
    data_dir: Path = Path("./.stream-data")
    #: STREAM_WEB_HOST: address the worker's HTTP server binds to.
    web_host: str = "127.0.0.1"
    #: STREAM_WEB_PORT: port of the worker's HTTP server (0: HTTP off).
    web_port: int = 6066
    #: STREAM_TOP_K: titles per recommendation snapshot.
    top_k: int = 10
    #: STREAM_DIVERSITY: how much a title is marked down for sharing genres with those above it
    #: in the list (0: pure relevance; score units, a strong genre match is worth about 1).
    diversity: float = 0.3
    #: STREAM_EXPLORATION: exploration impressions each new release (out for under a week) gets
    #: per viewer cohort, in one slot of the list (0: no exploration).
    exploration: int = 30
    #: STREAM_BATCH_MAX: most events of one partition processed together (a fetch may hold more).
    batch_max: int = 500
    #: STREAM_FETCH_WAIT_MS: the consumer's fetch wait (Faust hard-codes 1500 ms).
    fetch_wait_ms: int = 10
    #: STREAM_FETCH_MAX_BYTES: most bytes one fetch returns of one partition (a larger backlog is
    #: read in several fetches; Faust's default).
    fetch_max_bytes: int = 1048576
    #: STREAM_CATALOG_WAIT_MS: longest an event naming a title the worker's catalog does not hold
    #: waits for the catalog reader to catch up before it is dead-lettered (0: no wait).
    catalog_wait_ms: int = 2000
    #: STREAM_SESSION_TIMEOUT_S: consumer-group session timeout; a crashed worker's
    #: partitions move after about this long (1.5x on the embedded broker).
    session_timeout_s: float = 6.0
    #: STREAM_HEARTBEAT_S: consumer-group heartbeat interval.
    heartbeat_s: float = 1.0
    #: STREAM_MAX_EVENT_BYTES: larger messages are rejected to the dead-letter topic.
    max_event_bytes: int = 16384
    #: STREAM_HALF_LIFE_DAYS: half-life of a viewer's genre and tag affinities, in event time.
    half_life_days: float = 14.0
    #: STREAM_CHECKPOINT_S: how often each partition's model is written to its changelog.
    checkpoint_s: float = 2.0
    #: STREAM_COHORT_SYNC_S: how often a worker publishes its cohorts' centres and exploration impressions
    #: to the model topic, for workers that start to hold the same (see ``SharedModel.cohort_state``).
    cohort_sync_s: float = 60.0
    #: STREAM_MODEL_SNAPSHOT_S: how often the worker holding the events topic's partition 0 writes a
    #: snapshot of its replica of the deployment-wide model to ``model-snapshots``, which a worker that
    #: starts loads before reading the model topic after it (0: never).
    model_snapshot_s: float = 300.0
    #: STREAM_REFRESH_AFTER_S: a viewer's list is re-ranked once it is this old in event time, so a viewer
    #: who comes back reads one ranked with the model and trend of lately (0: never).
    refresh_after_s: float = 86400.0
    #: STREAM_REFRESH_ACTIVE_S: ... as long as the viewer's newest event is at most this old.
    refresh_active_s: float = 5184000.0
    #: STREAM_REFRESH_LEAD: ... the first this share of STREAM_REFRESH_AFTER_S early (0 to under 1): the refreshes
    #: then fall that much before each whole STREAM_REFRESH_AFTER_S since the viewer's newest event, so a viewer
    #: back at its usual hour reads a list ranked a few hours before, not one about to come up (0.17: 4 h of a day).
    refresh_lead: float = 0.17
    #: STREAM_REFRESH_IDLE_S: past STREAM_REFRESH_ACTIVE_S, a viewer's list is re-ranked this often instead (a week),
    #: until its newest event is a year old, so a viewer back after months reads a list at most a week old (0: never).
    refresh_idle_s: float = 604800.0
    #: STREAM_PROGRESS_S: how often a worker logs its partitions' positions and its counters (0: never).
    progress_s: float = 10.0
    #: STREAM_LOG_LEVEL: worker log level (debug, info, warn, error).
    log_level: str = "info"
    #: STREAM_API_TOKENS_FILE: the API tokens (salted hashes, names, scopes) that ``stream tokens``
    #: manages and the workers' HTTP routes accept; re-read when it changes.
    api_tokens_file: Path = Path("./.stream-tokens.json")
    #: STREAM_MAX_BODY_BYTES: largest HTTP request body the workers accept (413 beyond).
    max_body_bytes: int = 16384

    def topic(self, name: str) -> str:
        """The full name of a topic of ``topics/`` under this run's prefix."""
        return f"{self.topic_prefix}{name}"

    @property
    def faust_id(self) -> str:
        """The Faust app id: it names the consumer group and the changelog topics."""
        return f"{self.topic_prefix}{self.app_id}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        for f in fields(cls):
            var = VARIABLES[f.name]
            raw = env.get(var)
            if raw is None or raw == "":
                continue
            default = getattr(cls, f.name)
            try:
                if isinstance(default, bool):
                    values[f.name] = raw.lower() in ("1", "true", "yes", "on")
                elif isinstance(default, int):
                    values[f.name] = int(raw)
                elif isinstance(default, float):
                    values[f.name] = float(raw)
                elif isinstance(default, Path):
                    values[f.name] = Path(raw)
                else:
                    values[f.name] = raw
            except ValueError:
                raise SettingsError(f"{var} must be a {type(default).__name__}, got {raw!r}") from None
        settings = cls(**values)  # type: ignore[arg-type]
        settings.check()
        return settings

    def check(self) -> None:
        positive = (
            "partitions", "replication", "top_k", "batch_max", "fetch_max_bytes", "max_event_bytes", "max_body_bytes",
        )  # fmt: skip
        for name in positive:
            if getattr(self, name) < 1:
                raise SettingsError(f"{VARIABLES[name]} must be at least 1, got {getattr(self, name)}")
        at_least_0 = (
            "diversity", "catalog_wait_ms", "exploration", "model_snapshot_s", "refresh_after_s", "refresh_active_s",
            "refresh_lead", "refresh_idle_s",
        )  # fmt: skip
        for name in at_least_0:
            if getattr(self, name) < 0:
                raise SettingsError(f"{VARIABLES[name]} must be at least 0, got {getattr(self, name)}")
        if self.refresh_lead >= 1:
            raise SettingsError(f"STREAM_REFRESH_LEAD must be less than 1, got {self.refresh_lead}")
        if self.cohort_sync_s <= 0:
            raise SettingsError(f"STREAM_COHORT_SYNC_S must be more than 0, got {self.cohort_sync_s}")
        if self.session_timeout_s <= 3 * self.heartbeat_s:
            raise SettingsError(
                "STREAM_SESSION_TIMEOUT_S must exceed three heartbeats "
                f"(STREAM_HEARTBEAT_S={self.heartbeat_s}), got {self.session_timeout_s}"
            )
        if self.log_level not in ("debug", "info", "warn", "error"):
            raise SettingsError(f"STREAM_LOG_LEVEL must be debug, info, warn or error, got {self.log_level!r}")


#: Field name -> environment variable.
VARIABLES: dict[str, str] = {f.name: "STREAM_" + f.name.upper() for f in fields(Settings)}
