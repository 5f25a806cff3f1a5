"""Topic specs (``topics/*.json``): the contract with producers and consumers.

Each spec names a topic, its partitions, cleanup policy, retention, key and the
JSON Schema of its value. ``"partitions": "STREAM_PARTITIONS"`` means the topic
is keyed by viewer and co-partitioned with the state changelogs, so it takes
the configured partition count.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from stream.settings import Settings

__all__ = [
    "CATALOG",
    "COMMANDS",
    "ERASE_WITHIN_A_DAY",
    "EVENTS",
    "MODEL",
    "MODEL_SNAPSHOTS",
    "RECOMMENDATIONS",
    "TOPICS_DIR",
    "TopicSpec",
    "load_schema",
    "load_specs",
]

TOPICS_DIR = Path(__file__).resolve().parents[2] / "topics"
if not TOPICS_DIR.is_dir():  # installed as a wheel: the specs ship inside the package
    TOPICS_DIR = Path(__file__).resolve().parents[1] / "topics"

EVENTS, CATALOG, COMMANDS, RECOMMENDATIONS = "playback-events", "catalog", "user-commands", "recommendations"
MODEL, MODEL_SNAPSHOTS = "model-deltas", "model-snapshots"
DAY_MS = 86_400_000
#: Configs of the compacted topics that hold a viewer's data (the recommendations topic and the
#: tables' changelogs): a value overwritten or deleted (a tombstone) is compacted away within a
#: day, and a tombstone itself is kept a day (for consumers to see) before it goes too.
ERASE_WITHIN_A_DAY = {
    "segment.ms": str(DAY_MS),
    "max.compaction.lag.ms": str(DAY_MS),
    "delete.retention.ms": str(DAY_MS),
}


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    cleanup_policy: str
    retention_ms: int
    key: str
    value_schema: str
    dead_letter: str | None
    description: str
    #: Further topic configs (how soon old segments go: the privacy section of the README).
    extra: dict[str, str] = field(default_factory=dict)

    def configs(self) -> dict[str, str]:
        return {"cleanup.policy": self.cleanup_policy, "retention.ms": str(self.retention_ms), **self.extra}


def load_specs(settings: Settings) -> dict[str, TopicSpec]:
    """All topic specs by their unprefixed name, partitions resolved for ``settings``."""
    specs = {}
    for path in sorted(TOPICS_DIR.glob("*.json")):
        raw = json.loads(path.read_text())
        parts = raw["partitions"]
        specs[raw["name"]] = TopicSpec(
            name=raw["name"],
            partitions=settings.partitions if parts == "STREAM_PARTITIONS" else int(parts),
            cleanup_policy=raw["cleanup_policy"],
            retention_ms=int(raw["retention_ms"]),
            key=raw["key"],
            value_schema=raw["value_schema"],
            dead_letter=raw.get("dead_letter"),
            description=raw.get("description", ""),
            extra={k: str(v) for k, v in raw.get("configs", {}).items()},
        )
    return specs


@cache
def load_schema(relative: str) -> dict[str, Any]:
    """The JSON Schema a spec names, e.g. ``schemas/playback-event.json``."""
    return dict(json.loads((TOPICS_DIR / relative).read_text()))
