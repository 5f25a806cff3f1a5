"""Helpers for tests that cross the broker: worker processes, publishing, reading topics."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from stream.cli.demo import start_worker, stop_process, wait_ready
from stream.runtime.broker import free_port
from stream.settings import Settings


class Workers:
    """Start, stop and kill worker processes; everything is stopped at teardown."""

    def __init__(self, settings: Settings, tmp_path: Path) -> None:
        self.settings = settings
        self.tmp_path = tmp_path
        self.procs: list[Any] = []
        #: The settings each worker was started with (its web port among them), by index in ``procs``.
        self.configs: list[Settings] = []

    def start(self, **overrides: Any) -> Any:
        return self.start_many(1, **overrides)[0]

    def start_many(self, count: int, **overrides: Any) -> list[Any]:
        """Start ``count`` workers at once (they join the group together), then wait until each is ready."""
        started = []
        for _ in range(count):
            s = replace(self.settings, web_port=free_port(), **overrides)
            proc = start_worker(s, self.tmp_path / f"worker-{len(self.procs)}.log")
            self.procs.append(proc)
            self.configs.append(s)
            started.append((s, proc))
        for s, proc in started:
            wait_ready(s, proc, timeout_s=90)
        return [proc for _, proc in started]

    def log_path(self, proc: Any) -> Path:
        return self.tmp_path / f"worker-{self.procs.index(proc)}.log"

    def log(self, index: int = -1) -> str:
        return (self.tmp_path / f"worker-{len(self.procs) + index if index < 0 else index}.log").read_text()

    def stop_all(self) -> None:
        for proc in self.procs:
            stop_process(proc)


async def publish(producer: AIOKafkaProducer, topic: str, messages: list[tuple[bytes | None, bytes | None]]) -> None:
    for key, value in messages:
        await producer.send(topic, key=key, value=value)
    await producer.flush()


def event(n: int, user: str, item: str, kind: str, **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "event_id": f"{user}-e{n}",
        "user_id": user,
        "item_id": item,
        "type": kind,
        "ts": int(time.time() * 1000),
    }
    if kind in ("play", "pause", "resume", "skip", "rewind", "seek", "complete", "stop"):
        doc.setdefault("duration_s", 3000.0)
        doc["position_s"] = {"complete": 3000.0, "skip": 60.0}.get(kind, 900.0)
    if kind in ("rewind", "seek"):
        doc["offset_s"] = -30.0
    doc.update(extra)
    return doc


def encode(doc: dict[str, Any], key: str | None = None) -> tuple[bytes, bytes]:
    return (key or str(doc["user_id"])).encode(), orjson.dumps(doc)


async def consume_until(
    settings: Settings,
    topic: str,
    done: Callable[[list[Any]], bool],
    timeout_s: float = 60.0,
) -> list[Any]:
    """Read ``topic`` from the beginning until ``done(records)`` or the timeout."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap, enable_auto_commit=False, fetch_max_wait_ms=50)
    await consumer.start()
    records: list[Any] = []
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in parts]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            for batch in batches.values():
                records.extend(batch)
            if done(records):
                return records
        return records
    finally:
        await consumer.stop()


def snapshots(records: list[Any], user: str | None = None) -> list[dict[str, Any]]:
    out = [orjson.loads(r.value) for r in records]
    return [s for s in out if user is None or s["user_id"] == user]
