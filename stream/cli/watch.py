"""Follow the recommendations topic and print snapshots readably (``stream watch``)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Mapping
from typing import Any, TextIO

import orjson
from aiokafka import AIOKafkaConsumer

from stream.contracts.topics import CATALOG, RECOMMENDATIONS
from stream.contracts.validation import InvalidMessage, decode_catalog
from stream.runtime.kafka import read_to_end
from stream.settings import Settings

__all__ = ["read_titles", "render", "watch"]


def render(
    snapshot: Mapping[str, Any],
    titles: Mapping[str, str] | None = None,
    width: int = 3,
    previous: Mapping[str, Any] | None = None,
) -> str:
    """A snapshot as a few lines of text: who, why now, and the top of the list.

    Given the viewer's ``previous`` snapshot, it shows what changed: ``new`` for a title that
    was not listed, ``↑2``/``↓1`` for one that moved, the titles that left the top, or one line
    when the top is as it was.

    >>> snap = {"user_id": "u1", "version": 2, "events_applied": 2, "generated_at": 1767225600020,
    ...         "trigger": {"event_id": "e2", "type": "skip", "ts": 1767225600000},
    ...         "items": [{"item_id": "t2", "rank": 1, "score": 0.81, "reasons": ["because you watch drama"]}]}
    >>> print(render(snap, {"t2": "Night Shift"}))
    u1 · v2 · 2 events · after skip (e2)
       1. Night Shift                      0.810  because you watch drama
    >>> before = {**snap, "items": [{"item_id": "t1", "rank": 1, "score": 0.9, "reasons": []},
    ...                             {"item_id": "t2", "rank": 2, "score": 0.8, "reasons": []}]}
    >>> print(render(snap, {"t1": "Laugh Lines", "t2": "Night Shift"}, previous=before))
    u1 · v2 · 2 events · after skip (e2)
       1. Night Shift                ↑1    0.810  because you watch drama
          out of the top: Laugh Lines
    >>> print(render(snap, {"t2": "Night Shift"}, previous=snap))
    u1 · v2 · 2 events · after skip (e2) · top 1 unchanged
    """
    titles = titles or {}
    trigger = snapshot.get("trigger") or {}
    head = (
        f"{snapshot['user_id']} · v{snapshot['version']} · {snapshot['events_applied']} events"
        f" · after {trigger.get('type')} ({trigger.get('event_id')})"
    )
    top = snapshot.get("items", [])[:width]
    if previous is None:
        marks = [""] * len(top)
    else:
        before = {item["item_id"]: item["rank"] for item in previous.get("items", [])}
        marks = [_moved(before.get(item["item_id"]), item["rank"]) for item in top]
        was_top = [item["item_id"] for item in previous.get("items", [])[:width]]
        if was_top == [item["item_id"] for item in top]:
            return f"{head} · top {len(top)} unchanged"
    lines = [head]
    for item, mark in zip(top, marks, strict=True):
        name = titles.get(item["item_id"], item["item_id"])
        name = f"{name[:26]:<26} {mark:<3}" if previous is not None else f"{name[:30]:<30}"
        lines.append(f"  {item['rank']:>2}. {name} {round(item['score'], 3) + 0.0:>7.3f}  {'; '.join(item['reasons'])}")
    if previous is not None:
        now = {item["item_id"] for item in top}
        gone = [
            titles.get(i["item_id"], i["item_id"]) for i in previous.get("items", [])[:width] if i["item_id"] not in now
        ]
        if gone:
            lines.append(f"      out of the top: {', '.join(gone)}")
    return "\n".join(lines)


def _moved(before: int | None, rank: int) -> str:
    if before is None:
        return "new"
    if before == rank:
        return ""
    return f"↑{before - rank}" if before > rank else f"↓{rank - before}"


async def read_titles(settings: Settings, timeout_s: float = 2.0) -> dict[str, str]:
    """Title names by id, read once from the catalog topic (for display only)."""
    titles: dict[str, str] = {}

    def note(records: list[Any]) -> None:
        for r in records:
            try:
                entry = decode_catalog(r.key, r.value)
            except InvalidMessage:
                continue
            if entry is not None:
                titles[entry.item_id] = entry.title

    with contextlib.suppress(TimeoutError, RuntimeError):  # display only: whatever was read by then
        await read_to_end(settings.bootstrap, settings.topic(CATALOG), timeout_s, on_records=note)
    return titles


async def watch(
    settings: Settings,
    user: str | None = None,
    from_beginning: bool = False,
    limit: int = 0,
    out: TextIO = sys.stdout,
) -> int:
    """Print snapshots as they arrive; return how many were printed."""
    titles = await read_titles(settings)
    consumer = AIOKafkaConsumer(
        settings.topic(RECOMMENDATIONS),
        bootstrap_servers=settings.bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest" if from_beginning else "latest",
        fetch_max_wait_ms=100,
    )
    await consumer.start()
    shown = 0
    last: dict[str, Any] = {}  # each viewer's previous snapshot: what changed is marked
    try:
        async for record in consumer:
            if user is not None and record.key != user.encode():
                continue
            snapshot = orjson.loads(record.value)
            print(render(snapshot, titles, previous=last.get(snapshot["user_id"])), file=out, flush=True)
            last[snapshot["user_id"]] = snapshot
            shown += 1
            if limit and shown >= limit:
                break
    finally:
        await consumer.stop()
    return shown
